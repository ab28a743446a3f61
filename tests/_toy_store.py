"""A small store with planted signals, written straight to the store contract.

Used by the tests and the benchmark of the signals package so that they do not depend on the
synthetic city generator: a grid of square zones, hourly (or daily) presence with a daily
profile, Poisson incidents proportional to presence, and four planted signals in the last week
(an emerging rise, a three-zone cluster, a night gathering without event and a gathering
explained by an event), plus two overlapping events close to each other.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store import Store


def _grid(n: int) -> tuple[list[str], np.ndarray]:
    ids, xy = [], []
    for i in range(n):
        for j in range(n):
            ids.append(f"Z{i}{j}")
            xy.append((2.30 + 0.01 * j, 48.84 + 0.007 * i))
    return ids, np.array(xy)


def toy_store(
    root: str | Path,
    *,
    side: int = 4,
    weeks: int = 10,
    grain: str = "1h",
    seed: int = 7,
    incidents: bool = True,
    daily_incidents: float = 3.0,
    plant: bool = True,
) -> dict[str, Any]:
    """Write a toy store and return its truth.

    Parameters
    ----------
    root
        Store folder.
    side
        The city is ``side x side`` square zones.
    weeks
        Length of the study in weeks, starting on Monday 2026-08-31 (local, Europe/Paris); the
        last week is ISO week 2026-W{35 + weeks}.
    grain
        ``"1h"`` or ``"1d"``.
    incidents
        Whether the cube has incidents (False: a presence-only study).
    daily_incidents
        Mean incidents per zone and day.
    plant
        Plant the signals (False: a null city).

    Returns
    -------
    dict
        ``{"week": "2026-Wxx", "signals": [{"type", "zones", "start", "end"}], "zones": [...]}``
    """
    rng = np.random.default_rng(seed)
    tz = "Europe/Paris"
    st = Store(root)
    st.root.mkdir(parents=True, exist_ok=True)
    zones, xy = _grid(side)
    nz = len(zones)
    first = dt.date(2026, 8, 31)
    n_days = 7 * weeks
    local = pd.date_range(pd.Timestamp(first).tz_localize(tz), periods=n_days, freq="D")
    if grain == "1h":
        end = (pd.Timestamp(first) + pd.Timedelta(days=n_days)).tz_localize(tz).tz_convert("UTC")
        hours = pd.date_range(local[0].tz_convert("UTC"), end, freq="h", inclusive="left")
    else:
        hours = local.tz_convert("UTC")
    lh = hours.tz_convert(tz)
    nh = len(hours)
    local_hour = lh.hour.to_numpy() if grain == "1h" else np.zeros(nh, int)
    dow = lh.dayofweek.to_numpy()
    local_date = np.array(lh.date)
    day_idx = np.array([(d - first).days for d in local_date])
    prof = (
        0.4 + 0.6 * np.exp(-0.5 * ((local_hour - 14) / 4.5) ** 2) if grain == "1h" else np.ones(nh)
    )
    base_pop = rng.uniform(800, 3000, nz)
    present = base_pop[:, None] * prof[None, :] * np.exp(rng.normal(0, 0.06, (nz, nh)))
    events_active = np.zeros((nz, nh), int)
    attendance = np.zeros((nz, nh))
    lamps_out = np.zeros((nz, nh), int)
    truth: list[dict[str, Any]] = []
    week_start = n_days - 7
    wk_local = local[week_start]
    iso = wk_local.isocalendar()
    week = f"{iso[0]}-W{iso[1]:02d}"
    events_rows = []

    def slots(day: int, h0: int, h1: int) -> np.ndarray:
        if grain == "1h":
            return np.flatnonzero((day_idx == day) & (local_hour >= h0) & (local_hour < h1))
        return np.flatnonzero(day_idx == day)

    rate_mult = np.ones((nz, nh))
    if plant:
        # gathering without event: zone index 5, night 01-04 local, day 3 of the week
        g = 5
        s = slots(week_start + 3, 1, 4)
        present[g, s] *= 4.0
        truth.append(_truth("gathering", [zones[g]], hours, s, grain))
        # gathering explained by an event: zone 10, day 5, 18-22
        v = 10
        s = slots(week_start + 5, 18, 22)
        present[v, s] *= 3.0
        events_active[v, s] = 1
        attendance[v, s] = 4000
        ev_start, ev_end = hours[s[0]], hours[s[-1]] + (hours[1] - hours[0])
        events_rows.append(("E1", "Concert", ev_start, ev_end, zones[v], *xy[v][::-1], 4000))
        events_rows.append(("E2", "Market", ev_start, ev_end, zones[v + 1], *xy[v + 1][::-1], 1500))
        truth.append(_truth("event_gathering", [zones[v]], hours, s, grain))
        if incidents:
            # emerging rise: zone 0, rate x1 -> x3 over the last 21 days
            e = 0
            ramp = np.clip((day_idx - (n_days - 21)) / 20.0, 0, 1)
            rate_mult[e] *= 1.0 + 2.0 * ramp
            s = np.flatnonzero(day_idx >= n_days - 21)
            truth.append(_truth("emerging", [zones[e]], hours, s, grain))
            # cluster: zone at the far corner and its row neighbours, last 5 days x2.5
            c = [nz - 1, nz - 2, nz - 1 - side]
            s = np.flatnonzero(day_idx >= n_days - 5)
            for zi in c:
                rate_mult[zi, s] *= 2.5
            truth.append(_truth("cluster", [zones[i] for i in c], hours, s, grain))
    rate = daily_incidents / (present.sum(axis=1, keepdims=True) / n_days)
    inc = rng.poisson(present * rate * rate_mult)
    pres_df = pd.DataFrame(
        {
            "zone_id": np.repeat(zones, nh),
            "hour": np.tile(hours, nz),
            "local_hour": np.tile(local_hour, nz).astype("int8"),
            "dow": np.tile(dow, nz).astype("int8"),
            "local_date": np.tile(local_date, nz),
            "present": present.ravel(),
            "events_active": events_active.ravel(),
            "event_attendance": attendance.ravel(),
            "lamps": 40,
            "lamps_out": lamps_out.ravel(),
            "dark": np.tile((local_hour < 7) | (local_hour >= 20), nz),
        }
    )
    pres_df["present_missing"] = False
    pres_df["present_baseline"] = _baseline(pres_df)
    pres_df["present_ratio"] = pres_df["present"] / pres_df["present_baseline"]
    if incidents:
        pres_df["incidents"] = inc.ravel()
    pres_df["month"] = pres_df["hour"].dt.tz_convert(tz).dt.strftime("%Y-%m")
    for m, part in pres_df.groupby("month"):
        d = st.cube_dir / f"month={m}"
        d.mkdir(parents=True, exist_ok=True)
        part.drop(columns="month").to_parquet(d / "part-0.parquet", index=False)
    cols = [c for c in pres_df.columns if c != "month"]
    (st.root / "cube_meta.json").write_text(
        json.dumps(
            {
                "grain": grain,
                "timezone": tz,
                "start": hours[0].isoformat(),
                "end": (hours[-1] + (hours[1] - hours[0])).isoformat(),
                "zones": nz,
                "rows": len(pres_df),
                "columns": cols,
                "categories": {},
                "sources": ["zones", "presence", "events"] + (["incidents"] if incidents else []),
            }
        )
    )
    (st.root / "study.json").write_text(
        json.dumps(
            {
                "area": {"name": "toy", "timezone": tz, "grain": grain},
                "suppression_k": 10,
                "sources": {},
                "zones_kind": "polygons",
            }
        )
    )
    _write_zones(st, zones, xy)
    if events_rows:
        ev = pd.DataFrame(
            events_rows,
            columns=[
                "event_id",
                "name",
                "start",
                "end",
                "zone_id",
                "latitude",
                "longitude",
                "expected_attendance",
            ],
        )
        ev["category"] = "show"
        st.validated_dir.mkdir(parents=True, exist_ok=True)
        ev.to_parquet(st.validated_path("events"), index=False)
    return {"week": week, "signals": truth, "zones": zones}


def _truth(type_: str, zones: list[str], hours: pd.DatetimeIndex, s: np.ndarray, grain: str):
    step = pd.Timedelta(hours=1) if grain == "1h" else pd.Timedelta(days=1)
    return {"type": type_, "zones": zones, "start": hours[s[0]], "end": hours[s[-1]] + step}


def _baseline(df: pd.DataFrame, weeks: int = 8) -> np.ndarray:
    """Median of the same zone and local slot of week over the previous weeks (past only)."""
    key = (
        df["zone_id"].astype(str) + "|" + df["dow"].astype(str) + "|" + df["local_hour"].astype(str)
    )
    s = df.assign(_k=key).sort_values("hour")
    base = s.groupby("_k")["present"].transform(
        lambda x: x.shift(1).rolling(weeks, min_periods=2).median()
    )
    return base.reindex(df.index).to_numpy()


def _write_zones(st: Store, zones: list[str], xy: np.ndarray) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    geoms = [box(x - 0.005, y - 0.0035, x + 0.005, y + 0.0035) for x, y in xy]
    gdf = gpd.GeoDataFrame({"zone_id": zones}, geometry=geoms, crs=4326)
    st.validated_dir.mkdir(parents=True, exist_ok=True)
    gdf.to_parquet(st.validated_path("zones"))
