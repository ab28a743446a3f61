"""Around the venue: lamps out, transit stops with their usual and expected entries, and
concurrent events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.geo import haversine_m
from features.store import Store
from features.timeutil import as_utc
from pipelines.events.crowd import remaining_share
from pipelines.events.params import StaffingParams
from pipelines.events.result import LampsContext
from pipelines.events.spec import BriefParams, EventSpec
from pipelines.events.timeline import local_parts


def _locate_faults(faults: pd.DataFrame, lamps: pd.DataFrame | None) -> pd.DataFrame:
    """The faults with coordinates, those missing taken from their lamp."""
    f = faults.copy()
    if ("latitude" not in f or f["latitude"].isna().any()) and lamps is not None:
        loc = lamps.set_index("lamp_id")[["latitude", "longitude"]]
        for col in ("latitude", "longitude"):
            f[col] = f.get(col, pd.Series(np.nan, index=f.index)).fillna(f["lamp_id"].map(loc[col]))
    return f.dropna(subset=["latitude", "longitude"])


def _repair_row(r: Any) -> dict[str, Any]:
    return {
        "lamp_id": str(r.lamp_id),
        "fault_id": None if pd.isna(getattr(r, "fault_id", None)) else str(r.fault_id),
        "distance_m": round(float(r.distance_m), 1),
        "reported_at": pd.Timestamp(r.reported_at),
        "zone_id": None if pd.isna(getattr(r, "zone_id", None)) else str(r.zone_id),
    }


def lamps_context(
    store: Store, ev: EventSpec, bp: BriefParams, limitations: list[str]
) -> LampsContext:
    """Lamps within ``lamp_radius_m`` of the venue and the lighting faults open at the event."""
    lamps = store.validated("lamps")
    faults = store.validated("lighting_faults")
    radius = bp.lamp_radius_m
    if not np.isfinite(ev.latitude):
        limitations.append("venue location unknown: no lamps context")
        return LampsContext(radius)
    if lamps is None and faults is None:
        limitations.append(
            "no lighting data in the study (no lamps, no lighting_faults): street lights near the venue unknown"
        )
        return LampsContext(radius)
    n_lamps = None
    if lamps is not None:
        d = haversine_m(
            ev.latitude,
            ev.longitude,
            lamps["latitude"].to_numpy(float),
            lamps["longitude"].to_numpy(float),
        )
        n_lamps = int((d <= radius).sum())
    if faults is None:
        limitations.append("no lighting_faults source: lamps out near the venue unknown")
        return LampsContext(radius, n_lamps)
    f = _locate_faults(faults, lamps)
    reported = pd.to_datetime(f["reported_at"], utc=True)
    repaired = pd.to_datetime(f["repaired_at"], utc=True)
    f = f[(reported < ev.end) & (repaired.isna() | (repaired > ev.start))]
    d = haversine_m(
        ev.latitude, ev.longitude, f["latitude"].to_numpy(float), f["longitude"].to_numpy(float)
    )
    f = f.assign(distance_m=d)[d <= radius].sort_values("distance_m")
    latest = reported.max() if len(reported) else None
    as_of = None
    if latest is not None and latest < ev.start:
        as_of = latest
        limitations.append(
            f"lighting faults known up to {latest:%Y-%m-%d}: lamps out at the event are those still open then"
        )
    to_repair = [_repair_row(r) for r in f.itertuples()]
    return LampsContext(radius, n_lamps, int(f["lamp_id"].nunique()), to_repair, as_of)


def hourly_ridership(rid: pd.DataFrame) -> pd.DataFrame:
    """Entries per stop and UTC hour: finer slots summed, coarser slots split evenly."""
    r = rid[["stop_id", "start", "slot_minutes", "entries"]].copy()
    r["start"] = pd.to_datetime(r["start"], utc=True)
    r["slot_minutes"] = r["slot_minutes"].fillna(60).astype(int)
    big = r[r["slot_minutes"] > 60]
    small = r[r["slot_minutes"] <= 60]
    parts = [small.assign(hour=small["start"].dt.floor("h"))]
    if len(big):
        n = (big["slot_minutes"] // 60).clip(lower=1)
        rep = big.loc[big.index.repeat(n)].copy()
        k = rep.groupby(level=0).cumcount()
        rep["hour"] = rep["start"] + pd.to_timedelta(k, unit="h")
        rep["entries"] = rep["entries"] / n.loc[rep.index].to_numpy()
        parts.append(rep)
    out = pd.concat(parts, ignore_index=True)
    return out.groupby(["stop_id", "hour"], as_index=False)["entries"].sum()


def ridership_near(
    store: Store, stop_ids: pd.Series, *, since: pd.Timestamp, until: pd.Timestamp
) -> pd.DataFrame | None:
    """The validated ridership of some stops whose slots reach ``[since, until)`` (None
    without a ridership source or with an empty one): a filtered read (row groups pruned by their statistics), so
    a region's tens of millions of ridership rows are never loaded whole. A slot starts at most
    its length before the hour it reaches, so the read starts the longest slot earlier."""
    path = store.validated_path("ridership")
    if not path.exists():
        return None
    import pyarrow.parquet as pq  # the store's own engine

    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return None
    names = meta.schema.to_arrow_schema().names
    longest = 0
    if "slot_minutes" in names:
        col = names.index("slot_minutes")
        stats = [meta.row_group(i).column(col).statistics for i in range(meta.num_row_groups)]
        if any(s is None or not s.has_min_max for s in stats):
            return store.validated("ridership")  # no statistics: read whole
        longest = max((int(s.max) for s in stats), default=0)
    lo = as_utc(since) - pd.Timedelta(minutes=max(longest, 60))
    hi = as_utc(until)
    ids = sorted(stop_ids.astype(str).unique())
    return pd.read_parquet(
        path, filters=[("start", ">=", lo), ("start", "<", hi), ("stop_id", "in", ids)]
    )


def _usual_entries(
    rid: pd.DataFrame,
    near: pd.DataFrame,
    hours: pd.DatetimeIndex,
    ev: EventSpec,
    tz: str,
    weeks: int,
) -> np.ndarray:
    """Per stop and hour, the median entries of the same local hour of week over the ``weeks``
    weeks before the event."""
    parts = local_parts(hours, tz)
    usual = np.zeros((len(near), len(hours)))
    hourly = hourly_ridership(rid[rid["stop_id"].astype(str).isin(near["stop_id"].astype(str))])
    hourly = hourly[hourly["hour"] < ev.start]
    hourly = hourly[hourly["hour"] >= ev.start - pd.Timedelta(weeks=weeks)]
    loc = pd.DatetimeIndex(hourly["hour"]).tz_convert(tz)
    hourly = hourly.assign(local_hour=loc.hour, dow=loc.dayofweek)
    med = hourly.groupby(["stop_id", "dow", "local_hour"])["entries"].median()
    for i, sid in enumerate(near["stop_id"].astype(str)):
        for j in range(len(hours)):
            usual[i, j] = float(
                med.get((sid, parts["dow"].iat[j], parts["local_hour"].iat[j]), 0.0)
            )
    return usual


def _leaving(ev: EventSpec, hours: pd.DatetimeIndex, sp: StaffingParams) -> np.ndarray:
    """Attendees leaving in each hour (the departure curve after the end)."""
    after = np.array([((h - ev.end) / pd.Timedelta(minutes=1)) for h in hours], dtype=float)
    leaving = ev.attendance * (
        remaining_share(after, params=sp) - remaining_share(after + 60, params=sp)
    )
    return np.where(after + 60 > 0, leaving, 0.0)


def _stop_row(
    r: Any, usual: np.ndarray, exp: np.ndarray, weight: float, hours: pd.DatetimeIndex, tz: str,
    sp: StaffingParams,
) -> dict[str, Any]:  # fmt: skip
    local = hours.tz_convert(tz)
    j = int(np.argmax(exp))
    return {
        "stop_id": str(r.stop_id),
        "stop_name": str(r.stop_name),
        "distance_m": round(float(r.distance_m), 1),
        "usual_entries": float(usual.sum()),
        "expected_entries": float(exp.sum()),
        "peak_local": local[j].isoformat(),
        "peak_usual_entries": float(usual[j]),
        "peak_expected_entries": float(exp[j]),
        "hours": [
            {"hour": h, "usual_entries": float(u), "expected_entries": float(e)}
            for h, u, e in zip(hours, usual, exp, strict=False)
        ],
        "arithmetic": (
            f"expected = usual + {sp.transit_share:g} (transit share) × attendees leaving that hour × "
            f"{weight:.2f} (this stop's share of the usual entries near the venue)"
        ),
    }


def stops_context(
    store: Store,
    ev: EventSpec,
    hours: pd.DatetimeIndex,
    tz: str,
    bp: BriefParams,
    limitations: list[str],
) -> list[dict[str, Any]]:
    """Transit stops within ``stop_radius_m`` of the venue with their usual and expected entries.

    Expected = usual + ``transit_share`` × attendees leaving that hour × the stop's share of the
    usual entries near the venue (equal shares without ridership).
    """
    sp = bp.staffing
    stops = store.validated("stops")
    if stops is None:
        limitations.append("no transit stops in the study: transit load near the venue unknown")
        return []
    if not np.isfinite(ev.latitude):
        return []
    d = haversine_m(
        ev.latitude,
        ev.longitude,
        stops["stop_lat"].to_numpy(float),
        stops["stop_lon"].to_numpy(float),
    )
    near = stops.assign(distance_m=d)[d <= bp.stop_radius_m].sort_values("distance_m")
    if near.empty:
        limitations.append(f"no transit stop within {bp.stop_radius_m:g} m of the venue")
        return []
    rid = ridership_near(store, near["stop_id"], since=ev.start - pd.Timedelta(
        weeks=bp.baseline_weeks), until=ev.start)  # fmt: skip
    if rid is None or rid.empty:
        limitations.append("no ridership source: usual entries at the stops near the venue unknown")
        usual = np.zeros((len(near), len(hours)))
    else:
        usual = _usual_entries(rid, near, hours, ev, tz, bp.baseline_weeks)
    leaving = _leaving(ev, hours, sp)
    weights = usual.sum(axis=1)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(near), 1 / len(near))
    return [
        _stop_row(r, usual[i], usual[i] + sp.transit_share * leaving * weights[i], weights[i],
                  hours, tz, sp)
        for i, r in enumerate(near.itertuples())
    ]  # fmt: skip


def concurrent_events(
    events: pd.DataFrame | None, ev: EventSpec, tz: str, bp: BriefParams
) -> list[dict[str, Any]]:
    if events is None or events.empty or not np.isfinite(ev.latitude):
        return []
    e = events[events["event_id"].astype(str) != ev.event_id].copy()
    s, en = pd.to_datetime(e["start"], utc=True), pd.to_datetime(e["end"], utc=True)
    e = e[(s < ev.end) & (en > ev.start)]
    if e.empty:
        return []
    d = haversine_m(
        ev.latitude, ev.longitude, e["latitude"].to_numpy(float), e["longitude"].to_numpy(float)
    )
    e = e.assign(distance_m=d)[d <= bp.concurrent_radius_m].sort_values("distance_m")
    return [
        {
            "event_id": str(r.event_id),
            "name": str(r.name),
            "category": str(r.category),
            "start": pd.Timestamp(r.start).tz_convert("UTC"),
            "end": pd.Timestamp(r.end).tz_convert("UTC"),
            "start_local": pd.Timestamp(r.start).tz_convert(tz).isoformat(),
            "end_local": pd.Timestamp(r.end).tz_convert(tz).isoformat(),
            "zone_id": str(r.zone_id),
            "expected_attendance": float(r.expected_attendance),
            "distance_m": round(float(r.distance_m), 1),
        }
        for r in e.itertuples()
    ]
