"""Events: a season of matches, concerts, markets, festivals and demonstrations.

Each event has a venue zone, a [start, end) in UTC, an expected attendance (the ``jauge`` of
``evenements.csv``, which ``event_k`` counts) and an actual attendance (the people it brings,
arriving and leaving over the hours around it: :func:`event_curves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.synth.scales import TIMEZONE, UPCOMING_DAYS, rng_stream
from features.synth.zones import Zones, points_in_zones

EVENT_KINDS: dict[str, dict[str, Any]] = {
    # DPS grid values (arrêté du 7 novembre 2006): P2 activity, E1 environment, E2 delay
    "match": {"indoor": False, "p2": 0.35, "e1": 0.25, "arrive_h": 2.0, "leave_h": 1.0, "peak": 1.0},
    "concert": {"indoor": True, "p2": 0.35, "e1": 0.25, "arrive_h": 1.5, "leave_h": 1.0, "peak": 1.0},
    "marche": {"indoor": False, "p2": 0.30, "e1": 0.25, "arrive_h": 0.5, "leave_h": 0.5, "peak": 0.5},
    "festival": {"indoor": False, "p2": 0.40, "e1": 0.30, "arrive_h": 1.5, "leave_h": 1.0, "peak": 0.7},
    "manifestation": {"indoor": False, "p2": 0.40, "e1": 0.25, "arrive_h": 1.0, "leave_h": 1.0, "peak": 1.0},
    # the ballpark's games (realism): never written to evenements.csv
    "ballgame": {"indoor": False, "p2": 0.35, "e1": 0.25, "arrive_h": 1.5, "leave_h": 1.0, "peak": 1.0},
}  # fmt: skip
_NAMES = {"match": "Match de football", "concert": "Concert", "marche": "Marché",
          "festival": "Festival", "manifestation": "Manifestation"}  # fmt: skip


@dataclass
class Event:
    """One event (times in UTC; ``zone`` an index into the zones)."""

    event_id: str
    name: str
    kind: str
    zone: int
    start: pd.Timestamp  # UTC
    end: pd.Timestamp
    expected: int
    actual: int
    lat: float
    lon: float
    upcoming: bool


#: kind, zone, local start, hours, attendance
_Raw = tuple[str, int, pd.Timestamp, float, int]


def make_events(
    zones: Zones, *, start: pd.Timestamp, end: pd.Timestamp, seed: int, avoid: set[int]
) -> list[Event]:
    """A season of matches, concerts, markets, festivals and demonstrations, past and upcoming
    (random stream 2); markets, demonstrations and festivals stay out of the zones ``avoid``."""
    rng = rng_stream(seed, 2)
    days = pd.date_range(
        start.tz_localize(None),
        end.tz_localize(None) + pd.Timedelta(days=UPCOMING_DAYS - 1),
        freq="D",
    )
    places = {
        "stadium": np.flatnonzero(zones.types == "stadium"),
        "venue": np.flatnonzero(zones.types == "venue"),
        "centre": [z for z in np.flatnonzero(zones.types == "centre") if z not in avoid],
        "park": [z for z in np.flatnonzero(zones.types == "park") if z not in avoid],
    }
    raw: list[_Raw] = []
    for i, day in enumerate(days):
        raw.extend(_day_events(i, day, places, rng))
    events = []
    for k, (kind, z, local_start, dur, att) in enumerate(raw):
        s = local_start.tz_localize(TIMEZONE).tz_convert("UTC")
        e = (local_start + pd.Timedelta(hours=dur)).tz_localize(TIMEZONE).tz_convert("UTC")
        lon, lat = points_in_zones(np.array([z]), quads=zones.quads, rng=rng)
        events.append(
            Event(
                event_id=f"EVT{k + 1:05d}",
                name=f"{_NAMES[kind]} – {zones.names[z]} ({local_start:%d/%m/%Y})",
                kind=kind,
                zone=int(z),
                start=s,
                end=e,
                expected=int(round(att, -2)),
                actual=int(att * rng.uniform(0.85, 1.1)),
                lat=float(lat[0]),
                lon=float(lon[0]),
                upcoming=bool(local_start >= end.tz_localize(None)),
            )
        )
    return events


def _day_events(
    i: int, day: pd.Timestamp, places: dict[str, Any], rng: np.random.Generator
) -> list[_Raw]:
    """The events of day ``i`` of the season (draws in a fixed order: matches, concerts,
    market, demonstration, festival)."""
    dow = day.dayofweek
    week = i // 7
    out: list[_Raw] = []
    for s in places["stadium"]:  # a home match every weekend: Saturday 21:00 or Sunday 17:00
        if (dow == 5 and (week + s) % 2 == 0) or (dow == 6 and (week + s) % 2 == 1):
            hour = 21 if dow == 5 else 17
            att = int(rng.uniform(18_000, 40_000))
            out.append(("match", s, day + pd.Timedelta(hours=hour), 2.0, att))
    for v in places["venue"]:
        if dow in (3, 4, 5) and rng.random() < 0.6:
            att = int(rng.uniform(1_500, 9_000))
            out.append(("concert", v, day + pd.Timedelta(hours=20), 3.0, att))
    centres, parks = places["centre"], places["park"]
    if dow == 6 and centres:
        z = centres[week % len(centres)]
        att = int(rng.uniform(1_500, 4_000))
        out.append(("marche", z, day + pd.Timedelta(hours=8), 5.0, att))
    if dow == 5 and week % 2 == 1 and centres:
        z = centres[(i // 14) % len(centres)]
        att = int(rng.uniform(3_000, 20_000))
        out.append(("manifestation", z, day + pd.Timedelta(hours=14), 4.0, att))
    if dow == 6 and parks and (day.month in (5, 6, 7, 8, 9) or week % 4 == 2):
        z = parks[week % len(parks)]
        att = int(rng.uniform(5_000, 15_000))
        out.append(("festival", z, day + pd.Timedelta(hours=14), 8.0, att))
    return out


def event_curves(ev: Event, hours: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Average attendees in the venue zone and in its ring over each hour of ``hours``.

    Arrivals spread linearly over ``arrive_h`` hours before the start, departures over
    ``leave_h`` hours after the end; people walking in or out are in the ring meanwhile
    (half of them at any time of the arrival and departure phases).
    """
    kind = EVENT_KINDS[ev.kind]
    a, d, peak = kind["arrive_h"] * 3600, kind["leave_h"] * 3600, kind["peak"]
    base = hours.as_unit("ns").asi8 // 10**9
    t0 = int(ev.start.value // 10**9)
    t1 = int(ev.end.value // 10**9)
    # minute grid within each hour
    mins = (base[:, None] + 60 * np.arange(60)[None, :] + 30).astype(float)
    venue = np.clip((mins - (t0 - a)) / a, 0, 1)
    venue = np.where(mins >= t1, np.clip(1 - (mins - t1) / d, 0, 1), venue)
    arriving = (mins >= t0 - a) & (mins < t0)
    leaving = (mins >= t1) & (mins < t1 + d)
    ring = 0.5 * (arriving | leaving)
    return ev.actual * peak * venue.mean(axis=1), ev.actual * ring.mean(axis=1)


def event_window(ev: Event) -> pd.DatetimeIndex:
    """UTC hours around an event where its attendees are present (its truth window)."""
    kind = EVENT_KINDS[ev.kind]
    lo = (ev.start - pd.Timedelta(hours=kind["arrive_h"])).floor("h")
    hi = (ev.end + pd.Timedelta(hours=kind["leave_h"])).ceil("h")
    return pd.date_range(lo, hi, freq="h", inclusive="left")


def event_load(
    events: list[Event], *, hours: pd.DatetimeIndex, zones: Zones
) -> tuple[np.ndarray, np.ndarray]:
    """``(event_k, added)`` of the past events over ``hours``, both (H, Z).

    ``event_k`` is the expected attendance / 1000 of the events whose [start, end) overlaps the
    hour in the zone (the model feature); ``added`` the attendees present in the venue zone and
    in its ring of neighbours (:func:`event_curves`).
    """
    H, Z = len(hours), len(zones.ids)
    ev_k = np.zeros((H, Z))
    ev_add = np.zeros((H, Z))
    for ev in events:
        if ev.upcoming:
            continue
        active = (hours < ev.end) & (hours + pd.Timedelta(hours=1) > ev.start)
        ev_k[active, ev.zone] += ev.expected / 1000.0
        win = event_window(ev)
        win = win[(win >= hours[0]) & (win <= hours[-1])]
        if len(win) == 0:
            continue
        idx = hours.get_indexer(win)
        v, r = event_curves(ev, win)
        ev_add[idx, ev.zone] += v
        ring = zones.neighbours[ev.zone]
        if ring:
            ev_add[np.ix_(idx, ring)] += (r / len(ring))[:, None]
    return ev_k, ev_add


def write_events(events: list[Event], path: Path) -> None:
    """``evenements.csv``: the events in local time with their DPS grid values."""
    pd.DataFrame(
        {
            "id_evenement": [e.event_id for e in events],
            "intitule": [e.name for e in events],
            "debut": [e.start.tz_convert(TIMEZONE).strftime("%Y-%m-%d %H:%M") for e in events],
            "fin": [e.end.tz_convert(TIMEZONE).strftime("%Y-%m-%d %H:%M") for e in events],
            "latitude": [round(e.lat, 6) for e in events],
            "longitude": [round(e.lon, 6) for e in events],
            "jauge": [e.expected for e in events],
            "type": [e.kind for e in events],
            "interieur": ["oui" if EVENT_KINDS[e.kind]["indoor"] else "non" for e in events],
            "dps_activite": [EVENT_KINDS[e.kind]["p2"] for e in events],
            "dps_environnement": [EVENT_KINDS[e.kind]["e1"] for e in events],
            "dps_delai": [0.25 for _ in events],
        }
    ).to_csv(path, index=False, lineterminator="\n")
