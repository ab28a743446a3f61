"""Weather (hourly temperature and rain), transit stops (GTFS) and their ridership."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from features.synth.presence import TRANSIT
from features.synth.scales import rng_stream
from features.synth.timeline import Calendar, utc_iso
from features.synth.zones import Zones, points_in_zones


def make_weather(cal: Calendar, *, seed: int) -> pd.DataFrame:
    """Hourly temperature and rain: seasonal and daily cycles, rain spells as a Markov chain
    (random stream 4)."""
    rng = rng_stream(seed, 4)
    n = len(cal.hours)
    wet_season = 1 + 0.3 * np.cos(2 * np.pi * (cal.doy - 15) / 365.25)
    raining = np.zeros(n, dtype=bool)
    state = False
    u = rng.random(n)
    for i in range(n):
        state = (u[i] > 0.2) if state else (u[i] < 0.03 * wet_season[i])
        raining[i] = state
    amount = np.where(raining, rng.gamma(1.2, 1.6, n), 0.0)
    temp = (
        12.5
        - 8 * np.cos(2 * np.pi * (cal.doy - 20) / 365.25)
        - 4 * np.cos(2 * np.pi * (cal.local_hour - 4) / 24)
        - 2 * raining
    )
    ar = np.zeros(n)
    e = rng.normal(0, 0.35, n)
    for i in range(1, n):
        ar[i] = 0.97 * ar[i - 1] + e[i]
    return pd.DataFrame(
        {"temperature_c": np.round(temp + ar, 1), "precipitation_mm": np.round(amount, 1)}
    )


def write_weather(weather: pd.DataFrame, *, hours: pd.DatetimeIndex, path: Path) -> None:
    """``meteo_horaire.csv``: UTC hour, temperature and rain with one decimal."""
    pd.DataFrame(
        {
            "date": [utc_iso(h) for h in hours],
            "t": weather["temperature_c"].map(lambda v: f"{v:.1f}"),
            "rr1": weather["precipitation_mm"].map(lambda v: f"{v:.1f}"),
        }
    ).to_csv(path, index=False, lineterminator="\n")


def make_stops(zones: Zones, *, seed: int) -> pd.DataFrame:
    """Stops: hubs in the centre and business zones, one stop in most other zones (random
    stream 5). ``rate`` is the entries per person present and hour at the transit peak."""
    rng = rng_stream(seed, 5)
    rows = []
    for z, t in enumerate(zones.types):
        if t in ("centre", "business"):
            n, k = 2, (0.06, 0.02)
        elif t in ("stadium", "venue", "nightlife"):
            n, k = 1, (0.03, 0.01)
        else:
            n, k = (1 if rng.random() < 0.6 else 0), (0.02, 0.008)
        for _ in range(n):
            rows.append((z, rng.uniform(*k[::-1])))
    zone = np.array([r[0] for r in rows])
    lon, lat = points_in_zones(zone, quads=zones.quads, rng=rng)
    return pd.DataFrame(
        {
            "stop_id": [f"ARR{i + 1:05d}" for i in range(len(rows))],
            "stop_name": [f"{zones.names[z]} – quai {i % 2 + 1}" for i, z in enumerate(zone)],
            "zone": zone,
            "lat": np.round(lat, 6),
            "lon": np.round(lon, 6),
            "rate": np.array([r[1] for r in rows]),
        }
    )


def draw_ridership(
    stops: pd.DataFrame, *, exposure: np.ndarray, cal: Calendar, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(entries, transit)``: Poisson entries per (hour, stop), and their sum per (hour, zone)."""
    st_zone = stops["zone"].to_numpy()
    mu_r = (
        stops["rate"].to_numpy()[None, :] * exposure[:, st_zone] * TRANSIT[cal.local_hour][:, None]
    )
    entries = rng.poisson(mu_r)
    transit = np.zeros(exposure.shape)
    np.add.at(transit.T, st_zone, entries.T)
    return entries, transit


def ridership_rows(stops: pd.DataFrame, entries: np.ndarray, *, times: np.ndarray) -> pd.DataFrame:
    """The validation rows of a chunk: one per hour and stop (``times[h]`` local text)."""
    n_h = len(entries)
    sh = np.repeat(np.arange(n_h), len(stops))
    sk = np.tile(np.arange(len(stops)), n_h)
    return pd.DataFrame(
        {
            "id_arret": stops["stop_id"].to_numpy()[sk],
            "date_heure": times[sh],
            "nb_validations": entries[sh, sk],
        }
    )


def write_gtfs(stops: pd.DataFrame, path: Path) -> None:
    """``gtfs.zip`` with agency, routes and stops (fixed timestamps, so the bytes are stable)."""
    files = {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nVSS,Transports de Vigie-sur-Seine,https://example.org,Europe/Paris\n",
        "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\nL1,VSS,1,Ligne 1,1\nB2,VSS,42,Bus 42,3\n",
        "stops.txt": stops.rename(columns={"lat": "stop_lat", "lon": "stop_lon"})
        .assign(location_type=0)[["stop_id", "stop_name", "stop_lat", "stop_lon", "location_type"]]
        .to_csv(index=False, lineterminator="\n"),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 16, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text.encode("utf-8"))
