"""Small validated stores written directly in the layout of docs/architecture.md.

The cube tests do not depend on synth or ingest: each fixture writes ``study.json`` and
``validated/<source>.parquet`` with canonical columns (UTC times, string zone ids), with
content chosen so that the expected cube values can be computed independently in the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import box

from features.schemas import STORED

ALL_SOURCES = (
    "presence",
    "incidents",
    "lamps",
    "lighting_faults",
    "stops",
    "ridership",
    "events",
    "weather",
)
CATEGORIES = ("Vol à l'étalage", "Assault", "ROAD ACCIDENT")


def utc_hours(start: str, end: str, tz: str) -> pd.DatetimeIndex:
    """UTC hours from local midnight of ``start`` to local midnight of ``end`` (exclusive)."""
    lo = pd.Timestamp(start).tz_localize(tz).tz_convert("UTC")
    hi = pd.Timestamp(end).tz_localize(tz).tz_convert("UTC")
    return pd.date_range(lo, hi, freq="h", inclusive="left")


def make_store(
    root: str | Path,
    *,
    start: str = "2026-03-01",
    end: str = "2026-04-12",
    tz: str = "Europe/Paris",
    grain: str = "1h",
    sources: tuple[str, ...] = ALL_SOURCES,
    n_zones: int = 4,
    seed: int = 0,
    lat0: float = 48.85,
    lon0: float = 2.30,
    country: str | None = "FR",
    school_zone: str | None = "C",
) -> Path:
    """Write a small validated store and return its root.

    Zones ``Z00..`` are 0.01-degree squares in a row east of (lat0, lon0). Presence: zone Z00
    hourly, Z01 in 2-hour slots, Z02 in 15-minute slots, the rest hourly, with a gap of 6 hours
    in Z00 on the 10th day. Incidents: Poisson counts over three categories, plus incidents with
    no zone and with an unknown zone. Lamps: 5 per zone with faults (open, repaired, a
    never-repaired one, one naming an unknown lamp). Events: three in Z00. Weather: hourly.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "validated").mkdir(parents=True, exist_ok=True)
    zone_ids = [f"Z{i:02d}" for i in range(n_zones)]
    zones = gpd.GeoDataFrame(
        {
            "zone_id": zone_ids,
            "name": [f"zone {i}" for i in range(n_zones)],
            "population": rng.integers(500, 5000, n_zones).astype(float),
        },
        geometry=[
            box(lon0 + 0.01 * i, lat0, lon0 + 0.01 * (i + 1), lat0 + 0.01) for i in range(n_zones)
        ],
        crs="EPSG:4326",
    )
    zones.to_parquet(root / "validated" / "zones.parquet")
    hours = utc_hours(start, end, tz)
    H = len(hours)

    def write(name: str, frame: pd.DataFrame) -> None:
        frame.to_parquet(root / "validated" / f"{name}.parquet", index=False)

    if "presence" in sources:
        rows = []
        local_h = hours.tz_convert(tz).hour.to_numpy()
        for i, z in enumerate(zone_ids):
            level = 1000.0 * (i + 1) * (1.0 + 0.5 * np.sin(2 * np.pi * local_h / 24))
            noise = rng.normal(0, 20, H)
            values = np.round(level + noise, 1)
            if i == 1:  # 2-hour slots: one value per pair of hours
                starts = hours[::2]
                frame = pd.DataFrame({"start": starts, "slot_minutes": 120, "present": values[::2]})
            elif i == 2:  # 15-minute slots
                starts = pd.date_range(hours[0], periods=H * 4, freq="15min")
                v = np.repeat(values, 4) + rng.normal(0, 5, H * 4)
                frame = pd.DataFrame(
                    {"start": starts, "slot_minutes": 15, "present": np.round(v, 1)}
                )
            else:
                frame = pd.DataFrame({"start": hours, "slot_minutes": 60, "present": values})
                if i == 0:
                    frame = frame.drop(index=range(24 * 9 + 3, 24 * 9 + 9))
            frame["zone_id"] = z
            frame["residents"] = np.round(frame["present"] * 0.6, 1)
            frame["visitors"] = np.round(frame["present"] * 0.4, 1)
            rows.append(frame)
        presence = pd.concat(rows, ignore_index=True)
        for col in ("tourists", "excursionists", "foreign", "unique_visitors", "entries"):
            presence[col] = np.nan
        presence["slot_minutes"] = presence["slot_minutes"].astype("Int64")
        write(
            "presence",
            presence[STORED["presence"]],
        )
    if "incidents" in sources:
        n = 40 * H // 24
        t = hours[0] + pd.to_timedelta(rng.uniform(0, H * 3600, n), unit="s")
        z = rng.choice(
            zone_ids + [None, "ZZ_unknown"], n, p=[0.9 / n_zones] * n_zones + [0.05, 0.05]
        )
        incidents = pd.DataFrame(
            {
                "incident_id": [f"I{i}" for i in range(n)],
                "occurred_at": t.floor("s"),
                "zone_id": pd.array(z, dtype=object),
                "latitude": lat0 + 0.005,
                "longitude": lon0 + 0.005,
                "category": rng.choice(CATEGORIES, n),
            }
        )
        write("incidents", incidents)
    if "lamps" in sources:
        lamps = pd.DataFrame(
            {
                "lamp_id": [f"L{z}_{k}" for z in zone_ids for k in range(5)],
                "latitude": lat0 + 0.005,
                "longitude": np.repeat([lon0 + 0.01 * i + 0.005 for i in range(n_zones)], 5),
                "zone_id": np.repeat(zone_ids, 5),
                "wattage": 70.0,
            }
        )
        write("lamps", lamps)
        if "lighting_faults" in sources:
            faults = []
            for k in range(30):
                lamp = lamps["lamp_id"].iloc[rng.integers(len(lamps))]
                rep = hours[0] + pd.Timedelta(seconds=float(rng.uniform(0, (H - 48) * 3600)))
                fix = rep + pd.Timedelta(hours=float(rng.uniform(0.2, 120)))
                faults.append((f"F{k}", rep.floor("s"), fix.floor("s"), lamp))
            # never repaired; a duplicate report overlapping it; a fault on an unknown lamp
            faults.append(("F_open", hours[H // 2], pd.NaT, "LZ00_0"))
            faults.append(
                (
                    "F_dup",
                    hours[H // 2] + pd.Timedelta(hours=3),
                    hours[H // 2] + pd.Timedelta(hours=30),
                    "LZ00_0",
                )
            )
            faults.append(("F_unknown", hours[10], hours[40], "L_nowhere"))
            f = pd.DataFrame(faults, columns=["fault_id", "reported_at", "repaired_at", "lamp_id"])
            f["repaired_at"] = pd.to_datetime(f["repaired_at"], utc=True)
            f["zone_id"] = f["lamp_id"].str.slice(1, 4).where(f["lamp_id"] != "L_nowhere", None)
            f["latitude"] = np.nan
            f["longitude"] = np.nan
            write("lighting_faults", f)
    if "stops" in sources or "ridership" in sources:
        stops = pd.DataFrame(
            {
                "stop_id": [f"S{i}" for i in range(n_zones + 1)],
                "stop_name": [f"stop {i}" for i in range(n_zones + 1)],
                "stop_lat": lat0 + 0.005,
                "stop_lon": [lon0 + 0.01 * i + 0.005 for i in range(n_zones)] + [lon0 + 0.002],
                "zone_id": zone_ids + [zone_ids[0]],
            }
        )
        write("stops", stops)
        if "ridership" in sources:
            rows = []
            for _, s in stops.iterrows():
                slot = 30 if s["stop_id"] == "S1" else 60
                starts = pd.date_range(hours[0], hours[-1], freq=f"{slot}min")
                rows.append(
                    pd.DataFrame(
                        {
                            "stop_id": s["stop_id"],
                            "start": starts,
                            "slot_minutes": slot,
                            "entries": rng.poisson(50, len(starts)).astype(float),
                            "exits": np.nan,
                            "zone_id": s["zone_id"],
                        }
                    )
                )
            rid = pd.concat(rows, ignore_index=True)
            rid["slot_minutes"] = rid["slot_minutes"].astype("Int64")
            write("ridership", rid)
    if "events" in sources:
        t0 = hours[0]
        events = pd.DataFrame(
            {
                "event_id": ["E1", "E2", "E3"],
                "name": ["concert", "market", "match"],
                "start": [
                    t0 + pd.Timedelta(days=20, hours=18),
                    t0 + pd.Timedelta(days=27, hours=7, minutes=30),
                    t0 + pd.Timedelta(days=27, hours=9),
                ],
                "end": [
                    t0 + pd.Timedelta(days=20, hours=22),
                    t0 + pd.Timedelta(days=27, hours=12),
                    t0 + pd.Timedelta(days=27, hours=11),
                ],
                "zone_id": [zone_ids[0], zone_ids[0], zone_ids[0]],
                "latitude": lat0 + 0.005,
                "longitude": lon0 + 0.005,
                "expected_attendance": [5000.0, 800.0, 12000.0],
                "category": ["concert", "market", "match"],
            }
        )
        write("events", events)
    if "weather" in sources:
        write(
            "weather",
            pd.DataFrame(
                {
                    "start": hours,
                    "slot_minutes": pd.array([60] * H, dtype="Int64"),
                    "temperature_c": np.round(rng.normal(12, 4, H), 1),
                    "precipitation_mm": np.round(rng.exponential(0.3, H), 2),
                }
            ),
        )
    study = {
        "area": {
            "name": "fixture",
            "timezone": tz,
            "grain": grain,
            "h3_resolution": 8,
            "country": country,
            "subdivision": None,
            "school_zone": school_zone,
        },
        "suppression_k": 10,
        "sources": {s: {"files": []} for s in ("zones", *sources)},
        "zones_kind": "polygons",
    }
    (root / "study.json").write_text(json.dumps(study, indent=2))
    return root
