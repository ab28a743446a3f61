"""The pandas engine: per-source hourly aggregates with pyarrow + numpy, one month at a time.

Each source has its own reader (read the month's rows, map zones, spread slots over hours,
group); :func:`pandas_inputs` calls those of the sources present. The result follows the
engines' contract (see :mod:`features.cube`). The Dask engine runs this per month.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from features.cube.period import DAY, HOUR, MonthSpec
from features.cube.plan import Plan

Arrays = dict[str, np.ndarray]


# ------------------------------------------------------------------------------------------
# reading and spreading
# ------------------------------------------------------------------------------------------
def _read(
    path: str,
    columns: list[str],
    time_col: str | None = None,
    lo_s: int | None = None,
    hi_s: int | None = None,
) -> pa.Table:
    """Read columns of a Parquet file, rows with lo_s <= time_col < hi_s (UTC seconds)."""
    dataset = pads.dataset(path, format="parquet")
    names = dataset.schema.names
    cols = [c for c in columns if c in names]
    expr = None
    if time_col is not None:
        typ = dataset.schema.field(time_col).type
        f = pads.field(time_col)
        if lo_s is not None:
            expr = f >= pa.scalar(pd.Timestamp(lo_s, unit="s", tz="UTC"), type=typ)
        if hi_s is not None:
            hi = f < pa.scalar(pd.Timestamp(hi_s, unit="s", tz="UTC"), type=typ)
            expr = hi if expr is None else expr & hi
    return dataset.to_table(columns=cols, filter=expr)


def _np(tbl: pa.Table, name: str, dtype: Any = float) -> np.ndarray:
    """A column as numpy; nulls become NaN for floats."""
    col = tbl.column(name)
    if dtype is float:
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(float)
    return col.to_numpy(zero_copy_only=False)


def _seconds(tbl: pa.Table, name: str) -> np.ndarray:
    """Timestamps as float UTC epoch seconds (NaN for nulls)."""
    col = tbl.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    arr = col.to_numpy(zero_copy_only=False)
    out = np.asarray(arr, dtype=float) / 1e6
    if col.null_count:
        out[np.asarray(col.is_null().to_numpy(zero_copy_only=False))] = np.nan
    return out


def _slot_end(tbl: pa.Table, s: np.ndarray, tz: str) -> np.ndarray:
    """End of each slot in seconds: start + slot_minutes, or local days for 1 440-minute slots."""
    minutes = (
        tbl.column("slot_minutes").to_pandas().fillna(60).to_numpy(np.int64)
        if "slot_minutes" in tbl.column_names
        else np.full(len(s), 60, dtype=np.int64)
    )
    e = s + 60.0 * minutes
    daily = (minutes % 1440) == 0
    if daily.any():
        start = pd.DatetimeIndex(pd.to_datetime(s[daily] * 1e6, unit="us", utc=True))
        local = start.tz_convert(tz).tz_localize(None) + pd.to_timedelta(
            minutes[daily] // 1440, unit="D"
        )
        end = local.tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")
        e[daily] = end.as_unit("us").asi8 / 1e6
    return e


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows repeated over the integer ranges [lo, hi): (row index, value)."""
    n = np.maximum(hi - lo, 0).astype(np.int64)
    rows = np.repeat(np.arange(len(lo)), n)
    offsets = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return rows, lo[rows] + offsets


def _zone_index(plan: Plan, values: np.ndarray) -> np.ndarray:
    return pd.Index(plan.zone_ids).get_indexer(pd.Index(values.astype(object)))


def _group(keys: list[np.ndarray], sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Group rows by the key columns, summing the given arrays (NaN-aware: NaNs skipped)."""
    if len(keys[0]) == 0:
        return {
            **{f"k{i}": k[:0] for i, k in enumerate(keys)},
            **{n: v[:0] for n, v in sums.items()},
        }
    frame = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)} | sums)
    g = frame.groupby([f"k{i}" for i in range(len(keys))], sort=False).sum(min_count=1)
    g = g.reset_index()
    return {c: g[c].to_numpy() for c in g.columns}


def _hour_overlaps(
    s: np.ndarray, e: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each slot [s, e) (epoch seconds) against the hours it overlaps within [lo, hi) (hour
    numbers): the slot's row, the hour, and the overlap in seconds (> 0)."""
    rows, k = _expand(
        np.maximum(np.floor(s / HOUR), lo).astype(np.int64),
        np.minimum(np.ceil(e / HOUR), hi).astype(np.int64),
    )
    w = np.minimum(e[rows], (k + 1) * float(HOUR)) - np.maximum(s[rows], k * float(HOUR))
    keep = w > 0
    return rows[keep], k[keep], w[keep]


# ------------------------------------------------------------------------------------------
# one reader per source
# ------------------------------------------------------------------------------------------
def _presence(plan: Plan, spec: MonthSpec) -> Arrays:
    """Time-weighted mean of each stock column per (zone, hour), hours [w0, a1)."""
    cols = ["zone_id", "start", "slot_minutes", "present", *plan.presence_cols]
    t = _read(plan.paths["presence"], cols, "start", spec.w0 * HOUR - 2 * DAY, spec.a1 * HOUR)
    zi = _zone_index(plan, _np(t, "zone_id", object))
    t = t.filter(pa.array(zi >= 0))
    zi = zi[zi >= 0]
    s = _seconds(t, "start")
    e = _slot_end(t, s, plan.tz)
    rows, k, w = _hour_overlaps(s, e, spec.w0, spec.a1)
    stocks = ("present", *plan.presence_cols)
    sums = {}
    for c in stocks:
        v = _np(t, c)[rows]
        ok = ~np.isnan(v)
        sums[f"{c}_vw"] = np.where(ok, v * w, np.nan)
        sums[f"{c}_w"] = np.where(ok, w, np.nan)
    g = _group([zi[rows], k], sums)
    res = {"zi": g["k0"], "eh": g["k1"]}
    for c in stocks:
        with np.errstate(invalid="ignore", divide="ignore"):
            res[c] = g[f"{c}_vw"] / g[f"{c}_w"]
    return res


def _incidents(plan: Plan, spec: MonthSpec) -> Arrays:
    """Incidents per (zone, hour, category index), hours [a0, a1)."""
    t = _read(
        plan.paths["incidents"],
        ["zone_id", "occurred_at", "category"],
        "occurred_at",
        spec.a0 * HOUR,
        spec.a1 * HOUR,
    )
    zi = _zone_index(plan, _np(t, "zone_id", object))
    cats = pd.Series(_np(t, "category", object)).map(plan.category_map)
    ok = (zi >= 0) & cats.notna().to_numpy()
    eh = np.floor(_seconds(t, "occurred_at") / HOUR).astype(np.int64)
    g = _group(
        [zi[ok], eh[ok], cats.to_numpy()[ok].astype(np.int64)],
        {"n": np.ones(int(ok.sum()), dtype=np.int64)},
    )
    return {"zi": g["k0"], "eh": g["k1"], "ci": g["k2"], "n": g["n"]}


def _ridership(plan: Plan, spec: MonthSpec) -> Arrays:
    """Entries spread evenly over the hours each slot covers, per (zone, hour), [a0, a1)."""
    t = _read(
        plan.paths["ridership"],
        ["zone_id", "start", "slot_minutes", "entries"],
        "start",
        spec.a0 * HOUR - 2 * DAY,
        spec.a1 * HOUR,
    )
    zi = _zone_index(plan, _np(t, "zone_id", object))
    v = _np(t, "entries")
    ok = (zi >= 0) & ~np.isnan(v)
    t, zi, v = t.filter(pa.array(ok)), zi[ok], v[ok]
    s = _seconds(t, "start")
    e = _slot_end(t, s, plan.tz)
    rows, k, w = _hour_overlaps(s, e, spec.a0, spec.a1)
    g = _group([zi[rows], k], {"entries": v[rows] * w / (e[rows] - s[rows])})
    return {"zi": g["k0"], "eh": g["k1"], "entries": g["entries"]}


def _events(plan: Plan, spec: MonthSpec) -> Arrays:
    """One row per (zone, event, hour) the event is active in, hours [w0, a1)."""
    t = _read(
        plan.paths["events"],
        ["event_id", "zone_id", "start", "end", "expected_attendance"],
        "start",
        None,
        spec.a1 * HOUR,
    )
    zi = _zone_index(plan, _np(t, "zone_id", object))
    ok = zi >= 0
    t, zi = t.filter(pa.array(ok)), zi[ok]
    s = _seconds(t, "start")
    e = np.fmax(_seconds(t, "end"), s + 1)
    rows, k = _expand(
        np.maximum(np.floor(s / HOUR), spec.w0).astype(np.int64),
        np.minimum(np.ceil(e / HOUR), spec.a1).astype(np.int64),
    )
    att = np.nan_to_num(_np(t, "expected_attendance"), nan=0.0)
    frame = pd.DataFrame(
        {"zi": zi[rows], "ev": _np(t, "event_id", object)[rows], "att": att[rows], "eh": k}
    ).drop_duplicates()
    return {c: frame[c].to_numpy() for c in frame.columns}


def _lamps_out(plan: Plan, spec: MonthSpec) -> Arrays:
    """Each known lamp's merged out-intervals of hours [k0, k1) (midpoint rule) meeting
    [a0, a1), with the lamp's zone."""
    lamps = _read(plan.paths["lamps"], ["lamp_id", "zone_id"])
    lzi = _zone_index(plan, _np(lamps, "zone_id", object))
    lamp_ids = _np(lamps, "lamp_id", object)[lzi >= 0]
    lzi = lzi[lzi >= 0]
    f = _read(
        plan.paths["lighting_faults"],
        ["lamp_id", "reported_at", "repaired_at"],
        "reported_at",
        None,
        spec.a1 * HOUR,
    )
    li = pd.Index(lamp_ids).get_indexer(pd.Index(_np(f, "lamp_id", object)))
    r = _seconds(f, "reported_at")
    q = np.nan_to_num(_seconds(f, "repaired_at"), nan=1e18)
    k0 = np.ceil((r - 1800) / HOUR)
    k1 = np.minimum(np.ceil((q - 1800) / HOUR), spec.a1)
    ok = (li >= 0) & (k0 < k1) & (k1 > spec.a0)
    iv = pd.DataFrame({"li": li[ok], "k0": k0[ok].astype(np.int64), "k1": k1[ok].astype(np.int64)})
    iv = iv.sort_values(["li", "k0", "k1"], kind="stable")
    # merge each lamp's overlapping faults, so that a lamp counts once
    prev_end = iv.groupby("li")["k1"].cummax().groupby(iv["li"]).shift()
    iv["grp"] = (~(prev_end >= iv["k0"])).cumsum()
    m = iv.groupby(["li", "grp"], sort=False).agg(k0=("k0", "min"), k1=("k1", "max"))
    li_m = m.index.get_level_values("li").to_numpy()
    return {"zi": lzi[li_m], "k0": m["k0"].to_numpy(), "k1": m["k1"].to_numpy()}


def _weather(plan: Plan, spec: MonthSpec) -> Arrays:
    """Study-wide temperature (time-weighted mean) and precipitation (spread) per hour."""
    t = _read(
        plan.paths["weather"],
        ["start", "slot_minutes", "temperature_c", "precipitation_mm"],
        "start",
        spec.a0 * HOUR - 2 * DAY,
        spec.a1 * HOUR,
    )
    s = _seconds(t, "start")
    e = _slot_end(t, s, plan.tz)
    rows, k, w = _hour_overlaps(s, e, spec.a0, spec.a1)
    temp = _np(t, "temperature_c")[rows]
    rain = _np(t, "precipitation_mm")[rows]
    g = _group(
        [k],
        {
            "t_vw": np.where(np.isnan(temp), np.nan, temp * w),
            "t_w": np.where(np.isnan(temp), np.nan, w),
            "precipitation_mm": rain * w / (e[rows] - s[rows]),
        },
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "eh": g["k0"],
            "temperature_c": g["t_vw"] / g["t_w"],
            "precipitation_mm": g["precipitation_mm"],
        }


#: (source file, input name, reader), in the order the DuckDB engine stages them.
_READERS: tuple[tuple[str, str, Callable[[Plan, MonthSpec], Arrays]], ...] = (
    ("presence", "presence", _presence),
    ("incidents", "incidents", _incidents),
    ("ridership", "ridership", _ridership),
    ("events", "events", _events),
    ("lighting_faults", "lamps_out", _lamps_out),
    ("weather", "weather", _weather),
)


def pandas_inputs(plan: Plan, spec: MonthSpec) -> dict[str, Arrays]:
    """The month's sparse hourly aggregates of every source present (the engines' contract)."""
    return {name: read(plan, spec) for source, name, read in _READERS if source in plan.paths}
