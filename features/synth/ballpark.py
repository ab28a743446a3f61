"""The ballpark (realism): recurring games that the event file does not list.

A residential zone away from every planted signal and every listed event holds a ballpark. On
about ``games_per_week`` days a week of the ``season_months`` (each local day a game with
probability ``games_per_week / 7``) a game starts at 19:00 (13:00 on Saturdays and Sundays) and
lasts 3 hours; its attendees arrive and leave as :func:`features.synth.events.event_curves`
describes (kind ``ballgame``). Each game's attendance is set so that the zone's mean presence of
that day is ``u`` times what it would be without the game, ``u`` drawn uniformly in
``game_uplift`` (random stream 31). The games are :class:`~features.synth.events.Event` objects
kept out of ``evenements.csv``; ``truth.json`` lists them ("realism" -> "withheld_gatherings").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.synth.events import Event, event_curves
from features.synth.presence import base_presence
from features.synth.realism import Realism
from features.synth.scales import TIMEZONE, rng_stream
from features.synth.signals import Signal
from features.synth.timeline import Calendar
from features.synth.zones import Zones, points_in_zones


def pick_ballpark(zones: Zones, *, signals: list[Signal], events: list[Event], seed: int) -> int:
    """A residential, hourly-delivered zone away from the signals and the listed events and out
    of their rings (random stream 31)."""
    rng = rng_stream(seed, 31)
    busy: set[int] = set()
    for z in [z for s in signals for z in s.zones] + [e.zone for e in events]:
        busy.add(z)
        busy.update(zones.neighbours[z])
    busy.update(m for s in signals for m in s.params.get("neighbours", []))
    ok = [
        int(z)
        for z in rng.permutation(len(zones.ids))
        if zones.types[z] == "residential" and not zones.is_2h[z] and z not in busy
    ]
    near = [z for z in ok if not set(zones.neighbours[z]) & busy]
    fallback = [int(z) for z in np.flatnonzero(zones.types == "residential")]
    return (near or ok or fallback)[0]


def plan_games(
    r: Realism, *, zone: int, zones: Zones, cal: Calendar, seed: int
) -> tuple[list[Event], list[float]]:
    """The games of the study (``cal`` its hours) and the uplift planted for each."""
    rng = rng_stream(seed, 31, 1)
    games: list[Event] = []
    uplifts: list[float] = []
    n_days = int(cal.day_index.max()) + 1
    first = np.searchsorted(cal.day_index, np.arange(n_days))
    last = np.searchsorted(cal.day_index, np.arange(n_days), side="right")
    quiet = np.ones((1, len(zones.ids)))
    for d in range(n_days):
        day = cal.local[first[d]].tz_localize(None).normalize()
        if day.month not in r.season_months or rng.random() >= r.games_per_week / 7.0:
            continue
        u = float(rng.uniform(*r.game_uplift))
        hour = 13 if day.dayofweek >= 5 else 19
        start = (day + pd.Timedelta(hours=hour)).tz_localize(TIMEZONE).tz_convert("UTC")
        game = Event(f"BALL{len(games) + 1:04d}", f"Baseball ({day:%d/%m/%Y})", "ballgame", zone,
                     start, start + pd.Timedelta(hours=3), 1, 1, 0.0, 0.0, False)  # fmt: skip
        day_cal = cal.rows(int(first[d]), int(last[d]))
        p0 = base_presence(day_cal, zones=zones, day_noise=quiet, rng=rng_stream(seed, 31, 2))
        people = (p0.residents + p0.visitors)[:, zone].sum()
        per_head = event_curves(game, day_cal.hours)[0].sum()
        attendance = int(round((u - 1.0) * people / per_head))
        lon, lat = points_in_zones(np.array([zone]), quads=zones.quads, rng=rng)
        game.expected = game.actual = attendance
        game.lat, game.lon = float(lat[0]), float(lon[0])
        games.append(game)
        uplifts.append(u)
    return games, uplifts
