"""A cube-shaped simulation with planted incidence-rate ratios, for the model tests.

The simulated city follows the rate model of ``pipelines.models`` exactly:
``E[y] = present x base x prod_f irr_f ** x_f x hour x weekday`` with NB2 or Poisson noise, so
that the fitted IRRs can be checked against the planted ones. It also plants lighting outages
(with optional spill-over on the neighbour ring), events (presence rises by the attendance in
the venue zone and by ``ring_presence_share`` x attendance in each neighbour) and a few
categories, one of them too sparse to model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_IRR = {
    "dark": 1.4,
    "dark_lamps_out": 1.25,
    "event_k": 1.15,
    "rain": 0.8,
    "transit_k": 1.1,
    "holiday": 1.0,
    "school_holiday": 1.0,
}
CATEGORY_SHARES = {"assault": 0.3, "theft": 0.5, "noise": 0.198, "fire": 0.002}


@dataclass
class SimCity:
    """A simulated cube and what was planted in it."""

    cube: pd.DataFrame
    irr: dict[str, float]
    base: float
    alpha: float
    grain: str
    timezone: str
    centroids: pd.DataFrame
    neighbours: dict[str, list[str]]
    events: pd.DataFrame
    hour_effect: np.ndarray
    dow_effect: np.ndarray
    extra: dict = field(default_factory=dict)


def _grid(n_zones: int):
    side = int(np.ceil(np.sqrt(n_zones)))
    ids, xs, ys = [], [], []
    for i in range(n_zones):
        ids.append(f"Z{i:03d}")
        xs.append(i % side)
        ys.append(i // side)
    xs, ys = np.array(xs), np.array(ys)
    nbrs = {}
    for i, z in enumerate(ids):
        d = np.maximum(np.abs(xs - xs[i]), np.abs(ys - ys[i]))
        nbrs[z] = [ids[j] for j in np.flatnonzero(d == 1)]
    return ids, xs, ys, nbrs


def simulate_city(
    *,
    zones: int = 16,
    weeks: int = 10,
    grain: str = "1h",
    seed: int = 0,
    irr: dict[str, float] | None = None,
    base: float | None = None,
    alpha: float = 0.0,
    timezone: str = "Europe/Paris",
    start: str = "2026-01-05",
    missing_share: float = 0.01,
    zero_share: float = 0.002,
    outage_spill: float = 1.0,
    ring_presence_share: float = 0.1,
    sources: tuple[str, ...] = ("lamps", "events", "weather", "ridership", "calendar"),
) -> SimCity:
    """Simulate a cube with known IRRs.

    Parameters
    ----------
    zones, weeks, grain, seed
        Size, period length, ``"1h"`` or ``"1d"``, random seed.
    irr
        Planted IRR per feature (defaults :data:`DEFAULT_IRR`).
    base
        Incidents per person-slot at the reference hour, Monday (default 2.5e-5 hourly,
        6e-4 daily).
    alpha
        NB2 dispersion of the counts (0: Poisson).
    outage_spill
        Multiplier of the neighbour-ring rate at night while a zone's lamps are out.
    sources
        Sources present; the columns of the others are left out.
    """
    rng = np.random.default_rng(seed)
    irr = {**DEFAULT_IRR, **(irr or {})}
    ids, gx, gy, nbrs = _grid(zones)
    t0 = pd.Timestamp(start, tz=timezone).tz_convert("UTC")
    if grain == "1h":
        hours = pd.date_range(t0, periods=weeks * 7 * 24, freq="h")
    else:
        local_days = pd.date_range(pd.Timestamp(start), periods=weeks * 7, freq="D")
        hours = local_days.tz_localize(timezone).tz_convert("UTC")
    nh, nz = len(hours), len(ids)
    local = hours.tz_convert(timezone)
    lh = np.asarray(local.hour) if grain == "1h" else np.zeros(nh, int)
    dow = np.asarray(local.dayofweek)
    day_idx = np.asarray(
        (local.normalize().tz_localize(None) - local[0].normalize().tz_localize(None)).days
    )
    frac = day_idx / max(day_idx.max(), 1)
    # darkness: sunrise 9h -> 5h, sunset 16h -> 21h over the period (not collinear with hour)
    sunrise = 9.0 - 4.0 * frac
    sunset = 16.0 + 5.0 * frac
    dark_t = (
        ((lh + 0.5) < sunrise) | ((lh + 0.5) >= sunset) if grain == "1h" else np.zeros(nh, bool)
    )
    # hour-of-day and weekday effects (reference hour 12, Monday)
    hour_eff = np.exp(0.5 * np.sin(2 * np.pi * (np.arange(24) - 6) / 24))
    hour_eff = hour_eff / hour_eff[12]
    dow_eff = np.array([1.0, 0.95, 1.0, 1.05, 1.15, 1.35, 1.25])
    if grain == "1d":
        hour_eff = np.ones(24)
    # calendar
    dates = np.asarray(local.normalize().tz_localize(None))
    uniq_days = np.unique(dates)
    hol_days = uniq_days[[10, 25, 40, 55]] if len(uniq_days) > 56 else uniq_days[[3]]
    holiday_t = np.isin(dates, hol_days)
    school_t = (day_idx >= 14) & (day_idx < 28)
    # weather: rainy days, rain in some hours of them
    rainy_day = rng.random(len(uniq_days)) < 0.3
    rain_day_t = rainy_day[np.searchsorted(uniq_days, dates)]
    precip = np.where(rain_day_t & (rng.random(nh) < 0.5), rng.exponential(3.0, nh), 0.0)
    # zones
    pop = rng.lognormal(np.log(2000), 0.5, nz)
    profile = 0.6 + 0.4 * np.sin(2 * np.pi * (lh - 8) / 24) ** 2 if grain == "1h" else np.ones(nh)
    Z = np.repeat(np.arange(nz), nh)
    T = np.tile(np.arange(nh), nz)
    pres_ref = pop[Z] * profile[T] * (1.1 if grain == "1h" else 1.0) ** (dow[T] >= 5)
    present = pres_ref * rng.lognormal(0, 0.1, nz * nh)
    # lamps and outages
    lamps = rng.integers(50, 300, nz)
    lamps_out = np.zeros((nz, nh))
    outage_rows = []
    for z in range(nz):
        for _ in range(rng.poisson(max(weeks / 4, 1))):
            s = rng.integers(0, nh)
            dur = rng.integers(2, 8) * (24 if grain == "1h" else 1)
            share = rng.uniform(0.1, 0.6)
            lamps_out[z, s : s + dur] = np.maximum(
                lamps_out[z, s : s + dur], np.round(share * lamps[z])
            )
            outage_rows.append((ids[z], s, min(s + dur, nh)))
    lamps_out = lamps_out.reshape(-1)
    lamps_r = lamps[Z].astype(float)
    # events: evening events, presence rises by the attendance (venue) and a share (ring)
    att = np.zeros((nz, nh))
    ring_att = np.zeros((nz, nh))
    ev_rows = []
    cats = ["concert", "sport", "fair"]
    n_events = max(2, int(1.5 * weeks))
    for k in range(n_events):
        z = rng.integers(0, nz)
        if grain == "1h":
            d = rng.integers(0, weeks * 7)
            s = d * 24 + int(rng.integers(17, 20)) - 1
            dur = int(rng.integers(3, 5))
        else:
            s = int(rng.integers(0, nh))
            dur = 1
        a = float(rng.integers(1, 20)) * 1000.0
        att[z, s : s + dur] += a
        for nb in nbrs[ids[z]]:
            ring_att[ids.index(nb), s : s + dur] += a
        ev_rows.append(
            {
                "event_id": f"E{k:03d}",
                "name": f"event {k}",
                "start": hours[s],
                "end": hours[min(s + dur, nh - 1)]
                if s + dur < nh
                else hours[-1] + (hours[1] - hours[0]),
                "zone_id": ids[z],
                "expected_attendance": a,
                "category": cats[k % 3],
            }
        )
    att = att.reshape(-1)
    ring_att = ring_att.reshape(-1)
    present = present + att + ring_presence_share * ring_att
    # ridership at half the zones
    has_stop = rng.random(nz) < 0.6
    ride = np.where(has_stop[Z], rng.uniform(0.2, 2.5, nz)[Z] * 1000 * profile[T], 0.0)
    ride = np.round(ride * rng.lognormal(0, 0.2, nz * nh))
    # presence gaps: a missing value hides people who are there; a zero means nobody is there
    r = rng.random(nz * nh)
    zero = (r >= missing_share) & (r < missing_share + zero_share)
    present = np.where(zero, 0.0, present)
    true_present = present.copy()
    present = np.where(r < missing_share, np.nan, present)
    # features as the model sees them
    dark = dark_t[T]
    x = {
        "dark": dark.astype(float),
        "dark_lamps_out": dark * 10 * lamps_out / lamps_r
        if grain == "1h"
        else 10 * lamps_out / lamps_r,
        "event_k": att / 1000,
        "rain": (precip[T] >= 1).astype(float),
        "transit_k": ride / 1000,
        "holiday": holiday_t[T].astype(float),
        "school_holiday": school_t[T].astype(float),
    }
    if base is None:
        base = 2.5e-5 if grain == "1h" else 6e-4
    log_rate = np.log(base) + np.log(hour_eff[lh[T]]) + np.log(dow_eff[dow[T]])
    active = {
        "dark": grain == "1h",
        "dark_lamps_out": "lamps" in sources,
        "event_k": "events" in sources,
        "rain": "weather" in sources,
        "transit_k": "ridership" in sources,
        "holiday": "calendar" in sources,
        "school_holiday": "calendar" in sources,
    }
    for f, v in x.items():
        if active[f]:
            log_rate = log_rate + np.log(irr[f]) * v
    # spill-over: ring of a zone with lamps out, at night
    spill = np.zeros(nz * nh, bool)
    if outage_spill != 1.0 and "lamps" in sources:
        lo = lamps_out.reshape(nz, nh) > 0
        ring_out = np.zeros((nz, nh), bool)
        for i, z in enumerate(ids):
            for nb in nbrs[z]:
                ring_out[ids.index(nb)] |= lo[i]
        spill = ring_out.reshape(-1) & ~lo.reshape(-1) & dark
        log_rate = log_rate + np.log(outage_spill) * spill
    mu = true_present * np.exp(log_rate)
    # counterfactuals for the effect tests: without the event term and reference presence;
    # with the lamps on (no dark_lamps_out term, no spill-over)
    ev_term = np.log(irr["event_k"]) * x["event_k"] if active["event_k"] else 0.0
    mu_no_event = pres_ref * np.exp(log_rate - ev_term)
    lamp_term = (
        np.log(irr["dark_lamps_out"]) * x["dark_lamps_out"] if active["dark_lamps_out"] else 0.0
    )
    mu_lamps_on = true_present * np.exp(log_rate - lamp_term - np.log(outage_spill) * spill)
    counts = {}
    total = np.zeros(nz * nh, dtype=np.int64)
    for c, share in CATEGORY_SHARES.items():
        m = mu * share
        if alpha > 0:
            lam = rng.gamma(1 / alpha, alpha * np.where(m > 0, m, 1e-12))
            yc = rng.poisson(np.where(m > 0, lam, 0.0))
        else:
            yc = rng.poisson(m)
        counts[f"inc_{c}"] = yc.astype(np.int32)
        total += yc
    cube = pd.DataFrame(
        {
            "zone_id": np.asarray(ids, dtype=object)[Z],
            "hour": hours[T],
            "local_hour": lh[T].astype(np.int8),
            "dow": dow[T].astype(np.int8),
            "local_date": pd.to_datetime(dates[T]).date,
            "present": present,
            "present_missing": ~np.isfinite(present),
            "present_baseline": pres_ref,
            "incidents": total.astype(np.int32),
            **counts,
            "dark": dark,
        }
    )
    if "lamps" in sources:
        cube["lamps"] = lamps_r.astype(np.int32)
        cube["lamps_out"] = lamps_out.astype(np.int32)
    if "ridership" in sources:
        cube["ridership_entries"] = ride
    if "events" in sources:
        cube["events_active"] = (att > 0).astype(np.int32)
        cube["event_attendance"] = att
    if "calendar" in sources:
        cube["holiday"] = holiday_t[T]
        cube["school_holiday"] = school_t[T]
    if "weather" in sources:
        cube["temperature_c"] = 8.0
        cube["precipitation_mm"] = precip[T]
    cent = pd.DataFrame(
        {
            "zone_id": ids,
            "latitude": 48.85 + gy * 0.0045,
            "longitude": 2.30 + gx * 0.0068,
        }
    )
    events = pd.DataFrame(ev_rows) if "events" in sources else pd.DataFrame()
    planted = {f: (irr[f] if active[f] else None) for f in irr}
    return SimCity(
        cube=cube,
        irr=planted,
        base=base,
        alpha=alpha,
        grain=grain,
        timezone=timezone,
        centroids=cent,
        neighbours=nbrs,
        events=events,
        hour_effect=hour_eff,
        dow_effect=dow_eff,
        extra={
            "mu": mu,
            "mu_no_event": mu_no_event,
            "mu_lamps_on": mu_lamps_on,
            "ring_extra_present": ring_presence_share * ring_att,
            "outages": outage_rows,
            "spill": spill,
            "gx": gx,
            "gy": gy,
        },
    )


def write_store(root: str | Path, city: SimCity, *, with_zones: bool = True) -> Path:
    """Write a simulated cube as a vigie store (study.json, cube_meta.json, cube/, events)."""
    import geopandas as gpd
    from shapely.geometry import box

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cube = city.cube
    study = {
        "area": {"name": "sim", "timezone": city.timezone, "grain": city.grain},
        "suppression_k": 10,
        "sources": {},
        "zones_kind": "polygons",
    }
    (root / "study.json").write_text(json.dumps(study))
    month = cube["hour"].dt.strftime("%Y-%m")
    for m, part in cube.groupby(month):
        d = root / "cube" / f"month={m}"
        d.mkdir(parents=True, exist_ok=True)
        part.to_parquet(d / "part-0.parquet", index=False)
    cats = {c[4:]: c[4:] for c in cube.columns if c.startswith("inc_")}
    meta = {
        "grain": city.grain,
        "timezone": city.timezone,
        "start": str(cube["hour"].min()),
        "end": str(cube["hour"].max()),
        "zones": int(cube["zone_id"].nunique()),
        "rows": len(cube),
        "columns": list(cube.columns),
        "categories": cats,
        "sources": [],
    }
    (root / "cube_meta.json").write_text(json.dumps(meta))
    (root / "validated").mkdir(exist_ok=True)
    if with_zones:
        c = city.centroids
        geoms = [
            box(lon - 0.0034, lat - 0.00225, lon + 0.0034, lat + 0.00225)
            for lat, lon in zip(c["latitude"], c["longitude"], strict=True)
        ]
        gpd.GeoDataFrame({"zone_id": c["zone_id"]}, geometry=geoms, crs=4326).to_parquet(
            root / "validated" / "zones.parquet"
        )
    if len(city.events):
        city.events.to_parquet(root / "validated" / "events.parquet", index=False)
    return root


def signal_mask(cube: pd.DataFrame, truth: dict) -> np.ndarray:
    """Rows outside the planted weak signals (zones, and spill-over neighbours, in their
    periods): those multipliers are deliberately outside the rate model."""
    h = pd.to_datetime(cube["hour"], utc=True)
    keep = np.ones(len(cube), bool)
    for s in truth["signals"]:
        zones = set(s["zones"]) | set(s["params"].get("neighbours", []))
        inside = (h >= pd.Timestamp(s["start"])) & (h < pd.Timestamp(s["end"]))
        keep &= ~(cube["zone_id"].isin(zones) & inside).to_numpy()
    return keep
