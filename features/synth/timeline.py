"""The synthetic study's clock: its period, the per-hour calendar, darkness and time strings."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from features import calendar
from features.synth.scales import END_LOCAL, TIMEZONE


def study_period(weeks: int) -> tuple[pd.Timestamp, pd.Timestamp, pd.DatetimeIndex]:
    """Local start, local end and the UTC hours of the study period."""
    end_naive = pd.Timestamp(END_LOCAL)
    start = (end_naive - pd.Timedelta(weeks=weeks)).tz_localize(TIMEZONE)
    end = end_naive.tz_localize(TIMEZONE)
    hours = pd.date_range(
        start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h", inclusive="left"
    )
    return start, end, hours.as_unit("ns")


def utc_iso(ts: pd.Timestamp) -> str:
    """``2026-11-15T23:00:00Z``: a timestamp as UTC ISO 8601 text."""
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Calendar:
    """Per-hour calendar of a span of UTC hours."""

    hours: pd.DatetimeIndex
    local: pd.DatetimeIndex
    local_hour: np.ndarray
    dow: np.ndarray
    doy: np.ndarray
    day_index: np.ndarray  # local day number since the period start
    holiday: np.ndarray
    school: np.ndarray
    offset_s: np.ndarray  # local - UTC, seconds

    def rows(self, a: int, b: int) -> Calendar:
        """The calendar of hours a to b (exclusive)."""
        return Calendar(**{f.name: getattr(self, f.name)[a:b] for f in fields(self)})


def _day_flags(
    first: pd.Timestamp, last: pd.Timestamp
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Public and school holidays (France, zone C) of every local date in [first, last]
    (:func:`features.calendar.day_flags`, cached there)."""
    days = pd.date_range(first.normalize(), last.normalize(), freq="D")
    day0 = int(days[0].value // 86_400_000_000_000)
    hol, sch = calendar.day_flags(day0, day0 + len(days), country="FR", school_zone="C")
    return days, hol, sch


def hour_calendar(hours: pd.DatetimeIndex, day0: pd.Timestamp) -> Calendar:
    """The :class:`Calendar` of ``hours``, local days counted from ``day0``'s date."""
    local = hours.tz_convert(TIMEZONE)
    dates = local.tz_localize(None).normalize()
    d0 = day0.tz_localize(None).normalize()
    days, hol, sch = _day_flags(d0, d0 + pd.Timedelta(weeks=104 + 8))
    pos = ((dates - d0).days).to_numpy()
    if pos.min() < 0 or pos.max() >= len(days):  # pragma: no cover - outside the cached span
        days, hol, sch = _day_flags(min(d0, dates.min()), dates.max())
        pos = days.get_indexer(dates)
    return Calendar(
        hours=hours,
        local=local,
        local_hour=local.hour.to_numpy(),
        dow=local.dayofweek.to_numpy(),
        doy=local.dayofyear.to_numpy(),
        day_index=((dates - d0).days).to_numpy(),
        holiday=hol[pos],
        school=sch[pos],
        offset_s=(
            (local.tz_localize(None) - hours.tz_localize(None))
            .total_seconds()
            .to_numpy()
            .astype(int)
        ),
    )


def dark_matrix(hours: pd.DatetimeIndex, *, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """dark[t, z] with :func:`features.calendar.dark_mask`, the cube's own definition.

    dark_mask rounds locations to a grid internally; zones sharing a grid cell share one call.
    """
    grid = calendar.SUN_GRID
    out = np.zeros((len(hours), len(lat)), dtype=bool)
    keys = np.stack([np.round(lat / grid), np.round(lon / grid)], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, z0 in enumerate(first):
        col = calendar.dark_mask(hours, float(lat[z0]), float(lon[z0]))
        out[:, inverse == k] = col[:, None]
    return out


def local_strings(cal: Calendar, fmt: str) -> np.ndarray:
    """Naive local time of each hour as text (e.g. ``%Y-%m-%d %H:%M:%S``)."""
    return np.asarray(cal.local.strftime(fmt), dtype=object)


def iso_offset(t: pd.Series) -> pd.Series:
    """ISO 8601 local times with their offset (``2026-10-25T02:15:00+02:00``); NaT gives ''."""
    txt = t.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return (txt.str[:-2] + ":" + txt.str[-2:]).fillna("")
