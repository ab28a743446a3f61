"""What the brief reads around an event: its ring, the events near it, their comparables and
the cube's history of every zone involved (the load step of the brief)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.errors import StoreError
from features.store import Store
from pipelines.events.comparables import events_around, find_comparables
from pipelines.events.history import History, read_cube
from pipelines.events.spec import BriefParams, EventSpec
from pipelines.events.venue import ZoneInfo, store_zones


@dataclass(frozen=True)
class Surroundings:
    """The store's data around one event.

    Attributes
    ----------
    zones, ring
        The study's zones and the venue's ring of neighbouring zones.
    events
        The store's events (None without events).
    comparables
        The event's comparable past events (:func:`pipelines.events.comparables.find_comparables`).
    others
        Other events whose crowd reaches the venue zone or its ring during the brief's hours,
        each with its comparables.
    comp_zones
        Ring of every zone a comparable or another event took place in.
    cube, history
        The cube's rows of every zone involved, and the :class:`History` over them.
    area
        The study's ``area`` settings (country, subdivision, school zone).
    """

    zones: ZoneInfo
    ring: list[str]
    events: pd.DataFrame | None
    comparables: pd.DataFrame
    others: list[tuple[EventSpec, pd.DataFrame]]
    comp_zones: dict[str, list[str]]
    cube: pd.DataFrame | None
    history: History
    area: dict[str, Any]


def _study_area(store: Store) -> dict[str, Any]:
    try:
        return store.study().get("area", {})
    except StoreError:
        return {}


def load_surroundings(
    store: Store,
    ev: EventSpec,
    *,
    hours: pd.DatetimeIndex,
    bp: BriefParams,
    limitations: list[str],
) -> Surroundings:
    """Read what the brief of ``ev`` needs from the store; what is missing goes to ``limitations``."""
    tz = store.timezone
    zones = store_zones(store)
    if zones.gdf is None:
        limitations.append(
            "no zones in the store: the ring of neighbouring zones is H3-based or empty"
        )
    ring = zones.ring(ev.zone_id)
    if not ring:
        limitations.append(f"venue zone {ev.zone_id} has no neighbouring zones: no ring forecast")
    events = store.validated("events")
    comps = find_comparables(events, ev, tz, bp)
    # other events whose crowd reaches the venue zone or its ring during these hours
    ours = {ev.zone_id, *ring}
    others = [
        (spec, find_comparables(events, spec, tz, bp))
        for spec in events_around(events, ev, hours, bp)
        if spec.zone_id in ours or ours & set(zones.ring(spec.zone_id))
    ]
    comp_zones: dict[str, list[str]] = {}
    for table in [comps, *(c for _, c in others)]:
        for cz in table.get("zone_id", pd.Series(dtype=str)).astype(str):
            comp_zones.setdefault(cz, zones.ring(cz))
    for spec, _ in others:
        comp_zones.setdefault(spec.zone_id, zones.ring(spec.zone_id))
    wanted = {*ours, *comp_zones, *(z for r in comp_zones.values() for z in r)}
    cube = read_cube(store, sorted(wanted), limitations)
    hist = History(cube, events, before=bp.hours_before, after=bp.hours_after)
    return Surroundings(
        zones, ring, events, comps, others, comp_zones, cube, hist, _study_area(store)
    )
