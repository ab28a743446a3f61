"""The cube's time frame: the study period, its months, and local-calendar helpers.

The period runs from the local midnight before the earliest time to the local midnight after the
latest time found in presence, incidents and ridership (events, lighting faults and weather when
none of those exist), unless ``start``/``end`` are given. Months are **UTC** months of slot starts
(at daily grain, of the local midnights in UTC). Times are epoch seconds or epoch hours
(``seconds // 3600``) throughout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.baseline import LOOKBACK_WEEKS
from features.errors import ConfigError, StoreError
from features.timeutil import as_utc

HOUR = 3600
DAY = 86400
#: hours of history read before a month for the reference value (8 weeks + a day of margin).
LOOKBACK_HOURS = (LOOKBACK_WEEKS * 7 + 1) * 24
#: sources whose times define the study period, in order of preference.
PERIOD_SOURCES = (("presence", "start"), ("incidents", "occurred_at"), ("ridership", "start"))
FALLBACK_PERIOD_SOURCES = (
    ("events", "start"),
    ("lighting_faults", "reported_at"),
    ("weather", "start"),
)


@dataclass(frozen=True)
class MonthSpec:
    """The hours one month partition covers, and the past it reads for the reference value."""

    label: str
    a0: int  # first target hour (epoch hours)
    a1: int  # end of target hours (exclusive)
    w0: int  # first hour read for the reference value
    day_starts: np.ndarray | None  # daily grain: slot starts (epoch seconds)
    day_index: np.ndarray | None  # daily grain: local days (days since epoch)


# ------------------------------------------------------------------------------------------
# local calendar
# ------------------------------------------------------------------------------------------
def local_midnight(day: dt.date, tz: str) -> int:
    """UTC epoch seconds of a local date's midnight (shifted forward if it does not exist)."""
    ts = pd.Timestamp(day).tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return int(ts.tz_convert("UTC").value // 1_000_000_000)


def local_parts(seconds: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local day (days since 1970-01-01), clock hour and day of week (Monday 0) of UTC seconds."""
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True))
    local = idx.tz_convert(tz)
    naive = local.tz_localize(None)
    days = naive.normalize().to_numpy().astype("datetime64[D]").astype(np.int64)
    return days, local.hour.to_numpy(np.int8), local.dayofweek.to_numpy(np.int8)


def local_day(seconds: np.ndarray, tz: str) -> np.ndarray:
    """Local day (days since 1970-01-01) of UTC epoch seconds."""
    return local_parts(seconds, tz)[0]


# ------------------------------------------------------------------------------------------
# Parquet statistics (min/max and emptiness without reading the column when possible)
# ------------------------------------------------------------------------------------------
def column_stats(path: str, col: str) -> list[Any] | None:
    """Row-group statistics of a column, or None when some row group has none."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if col not in names:
        return None
    j = names.index(col)
    stats = [meta.row_group(i).column(j).statistics for i in range(meta.num_row_groups)]
    return None if any(st is None for st in stats) else stats


def has_values(path: str, col: str) -> bool:
    """Whether a column has at least one non-null value (from Parquet statistics when there)."""
    stats = column_stats(path, col)
    if stats is not None and all(st.has_null_count for st in stats):
        rows = pq.ParquetFile(path).metadata.num_rows
        return sum(st.null_count for st in stats) < rows
    values = pq.read_table(path, columns=[col]).column(0)
    return values.null_count < len(values)


def min_max(path: str, col: str) -> tuple[Any, Any] | None:
    """Minimum and maximum of a column (Parquet statistics when there; else a read)."""
    stats = column_stats(path, col)
    if stats is not None and stats and all(st.has_min_max for st in stats):
        return min(st.min for st in stats), max(st.max for st in stats)
    mm = pc.min_max(pq.read_table(path, columns=[col]).column(0)).as_py()
    return None if mm["min"] is None else (mm["min"], mm["max"])


# ------------------------------------------------------------------------------------------
# the study period
# ------------------------------------------------------------------------------------------
def data_bounds(paths: dict[str, str]) -> tuple[Any, Any]:
    """Earliest and latest time of the preferred dated sources (None, None when none is dated)."""
    lo = hi = None
    for group in (PERIOD_SOURCES, FALLBACK_PERIOD_SOURCES):
        for source, col in group:
            if source not in paths:
                continue
            mm = min_max(paths[source], col)
            if mm is None:
                continue
            vmin, vmax = pd.Timestamp(mm[0]), pd.Timestamp(mm[1])
            lo = vmin if lo is None else min(lo, vmin)
            hi = vmax if hi is None else max(hi, vmax)
        if lo is not None:
            break
    return lo, hi


def _given_dates(start: Any, end: Any) -> tuple[dt.date | None, dt.date | None]:
    try:
        d_lo = pd.Timestamp(start).date() if start is not None else None
        d_hi = pd.Timestamp(end).date() if end is not None else None
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"cube period: expected local dates like 2026-01-31, got {exc}."
        ) from None
    return d_lo, d_hi


def study_period(
    root: Any, paths: dict[str, str], *, tz: str, start: Any, end: Any
) -> tuple[int, int]:
    """Study period [start, end) in UTC epoch seconds, aligned on local midnights.

    Parameters
    ----------
    root
        The store's folder (named in errors).
    paths
        Source -> validated Parquet path, for the sources present.
    tz
        The study's time zone.
    start, end
        Local dates given by the caller (``end`` exclusive), or None for the data's period.

    Returns
    -------
    tuple of int
        UTC epoch seconds of the first local midnight and of the (exclusive) last one.
    """
    lo, hi = data_bounds(paths)
    d_lo, d_hi = _given_dates(start, end)
    if d_lo is None:
        if lo is None:
            raise StoreError(
                f"{root}: no dated source (presence, incidents, ridership, events, lighting "
                "faults or weather) to build the cube's period from; ingest one, or give start "
                "and end."
            )
        d_lo = as_utc(lo).tz_convert(tz).date()
    if d_hi is None:
        if hi is None:
            raise StoreError(f"{root}: no dated source to end the cube's period; give end.")
        d_hi = as_utc(hi).tz_convert(tz).date() + dt.timedelta(days=1)
    if d_hi <= d_lo:
        raise ConfigError(f"cube period: end ({d_hi}) must be after start ({d_lo}).")
    return local_midnight(d_lo, tz), local_midnight(d_hi, tz)


# ------------------------------------------------------------------------------------------
# months
# ------------------------------------------------------------------------------------------
def _hourly_months(h_lo: int, h_hi: int) -> list[MonthSpec]:
    specs = []
    months = pd.date_range(
        pd.Timestamp(h_lo * HOUR, unit="s", tz="UTC").floor("D").replace(day=1),
        pd.Timestamp((h_hi - 1) * HOUR, unit="s", tz="UTC"),
        freq="MS",
    )
    for m in months:
        m0 = int(m.value // 10**9) // HOUR
        m1 = int((m + pd.offsets.MonthBegin(1)).value // 10**9) // HOUR
        a0, a1 = max(h_lo, m0), min(h_hi, m1)
        if a0 < a1:
            specs.append(MonthSpec(m.strftime("%Y-%m"), a0, a1, a0 - LOOKBACK_HOURS, None, None))
    return specs


def _daily_months(start_s: int, end_s: int, tz: str) -> list[MonthSpec]:
    d_lo = local_day(np.array([start_s]), tz)[0]
    d_hi = local_day(np.array([end_s]), tz)[0]
    days = np.arange(d_lo, d_hi)
    starts = np.array(
        [local_midnight(dt.date(1970, 1, 1) + dt.timedelta(days=int(d)), tz) for d in days]
    )
    ends = np.append(starts[1:], end_s)
    labels = pd.to_datetime(starts, unit="s", utc=True).strftime("%Y-%m").to_numpy()
    specs = []
    for label in pd.unique(labels):
        sel = labels == label
        a0, a1 = int(starts[sel][0] // HOUR), int(-(-ends[sel][-1] // HOUR))
        specs.append(MonthSpec(str(label), a0, a1, a0 - LOOKBACK_HOURS, starts[sel], days[sel]))
    return specs


def month_specs(start_s: int, end_s: int, *, grain: str, tz: str) -> list[MonthSpec]:
    """One spec per UTC month of slot starts over the period [start_s, end_s).

    Parameters
    ----------
    start_s, end_s
        The study period in UTC epoch seconds (local midnights, ``end_s`` exclusive).
    grain
        ``1h`` or ``1d``.
    tz
        The study's time zone (daily slots start at local midnights).

    Returns
    -------
    list of MonthSpec
    """
    if grain == "1h":
        return _hourly_months(start_s // HOUR, -(-end_s // HOUR))
    return _daily_months(start_s, end_s, tz)
