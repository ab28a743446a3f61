"""The event brief, assembled: load the event and its surroundings, forecast, staff, save.

``make_brief(store, event)`` answers the planner's question "how many agents, rescuers, lanes and
metres of barrier, at what time" for an event of the store (its ``event_id``) or one described
in a YAML file, and writes ``store/briefs/<key>.json``.

What it does, in order:

1. **Hours.** Every UTC hour from ``hours_before`` before the start to ``hours_after`` after the
   end (so past midnight and across a DST change nothing is dropped or doubled); each row
   carries its local time with its offset (:mod:`pipelines.events.timeline`).
2. **Presence forecast** for the venue zone and its ring of neighbouring zones
   (``features.zones.neighbours``: touching polygons, or the H3 ring). The *reference* is the
   median presence of the same zone and local hour of week on hours without events
   (:mod:`pipelines.events.history`). The *uplift* is learnt from comparable past events of the
   store (same category, attendance within a factor ``comparable_size_ratio``, start within
   ``comparable_hour_window`` hours of local time): their observed present − reference, per
   attendee, hour by hour relative to their start (before and during) and end (after), median
   over comparables, times this event's attendance (:mod:`pipelines.events.comparables`).
   Without comparables the uplift is the attendance itself with a triangular arrival curve over
   the entry window and a departure curve after the end (:mod:`pipelines.events.crowd`), and
   nothing in the ring. ``presence_method`` says which was used.
3. **Incident forecast** per hour, zone and category group, with 80 % and 95 % intervals, from
   the fitted models (:func:`pipelines.models.predictor.load_predictor`), on a frame of the
   cube's columns with the forecast presence and the event's attendance
   (:mod:`pipelines.events.frame`, :mod:`pipelines.events.forecast`).
4. **Staffing** per hour (:func:`pipelines.events.plan.plan_event`): rescuers by the DPS grid,
   agents, entry lanes, barrier and egress, with their arithmetic and sources.
5. **Context**: lamps out within ``lamp_radius_m`` of the venue, transit stops within
   ``stop_radius_m`` with their usual and expected entries, concurrent events within
   ``concurrent_radius_m`` (:mod:`pipelines.events.context`), and the comparable past events
   with what happened (presence peak, incidents observed against the usual count).

Anything that could not be estimated goes to the ``limitations`` list; a missing source never
stops the brief. Figures in the brief are raw (it is a store file): reports suppress small
counts when they publish it (:mod:`pipelines.reports.publish`).

References
----------
Arrêté du 7 novembre 2006 (référentiel national DPS); HSE (1999) HSG195; Fruin (1971); SGSA
(2018) Green Guide — see :mod:`pipelines.events.dps` and :mod:`pipelines.events.crowd`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import StoreError, VigieError
from features.store import Store
from pipelines.events.context import concurrent_events, lamps_context, stops_context
from pipelines.events.forecast import PresenceForecast, forecast_incidents, forecast_presence
from pipelines.events.frame import model_frame
from pipelines.events.params import StaffingParams
from pipelines.events.plan import EventStaffing, plan_event
from pipelines.events.result import Brief, BriefContext, BriefEvent, BriefHour
from pipelines.events.spec import (
    BriefParams,
    EventSpec,
    claim_brief_key,
    load_event,
    num_or_none,
)
from pipelines.events.surroundings import load_surroundings
from pipelines.events.timeline import attendance_curve, event_hours, local_parts, phase_keys
from pipelines.models.predictor import load_predictor


def _load_predictor(store: Store) -> tuple[Any, str | None]:
    """The store's fitted models, or None and why they could not be loaded."""
    try:
        return load_predictor(store), None
    except Exception as exc:  # noqa: BLE001 - a missing or broken model is a limitation
        return None, str(exc) if isinstance(exc, VigieError) else f"{exc.__class__.__name__}: {exc}"


def _provenance(store: Store) -> dict[str, Any]:
    try:
        code = version("vigie")
    except Exception:  # noqa: BLE001 - not installed
        code = "unknown"
    try:
        sources = store.study().get("sources", {})
    except StoreError:
        sources = {}
    return {"code_version": code, "sources": sources, "store": str(store.root)}


def _hour_notes(ev: EventSpec, hours: pd.DatetimeIndex, tz: str) -> list[str]:
    """Notes on the hours covered: a DST change, midnight, an indoor event."""
    local = hours.tz_convert(tz)
    notes = []
    if len({t.utcoffset() for t in local}) > 1:
        notes.append(
            "the brief spans a daylight-saving change: hours are listed in UTC order with their local offset"
        )
    if local[0].date() != local[-1].date():
        notes.append("the brief spans midnight (local time)")
    if ev.indoor:
        notes.append(
            "indoor event: presence is as measured by the source inside the venue zone; lamps and transit matter for the approach routes"
        )
    return notes


def _staff(
    ev: EventSpec, hours: pd.DatetimeIndex, tz: str, crowd: np.ndarray, incidents: np.ndarray,
    sp: StaffingParams,
) -> EventStaffing:  # fmt: skip
    """The staffing plan of the event's hours (:func:`pipelines.events.plan.plan_event`)."""
    _, arrivals_share = attendance_curve(hours, ev.start, ev.end, sp)
    return plan_event(
        ev.attendance,
        hours=[t.isoformat() for t in hours.tz_convert(tz)],
        crowd=crowd.tolist(),
        arrivals_peak_per_min=(arrivals_share * ev.attendance).tolist(),
        incidents_per_hour=incidents.tolist(),
        category=ev.category,
        indoor=ev.indoor,
        high_risk=ev.high_risk,
        dps_activity=ev.dps_activity,
        dps_environment=ev.dps_environment,
        dps_delay=ev.dps_delay,
        exit_widths_m=ev.exit_widths_m,
        exit_stairs=ev.exit_stairs,
        params=sp,
    )


def _brief_hours(
    ev: EventSpec, hours: pd.DatetimeIndex, tz: str, ring: list[str], presence: PresenceForecast,
    incidents: np.ndarray, plan: EventStaffing,
) -> tuple[BriefHour, ...]:  # fmt: skip
    """One :class:`BriefHour` per hour: presence, incidents and the plan's figures."""
    local = hours.tz_convert(tz)
    keys = phase_keys(hours, ev.start, ev.end)
    fc = presence.zone_forecasts
    ring_total = np.sum([fc[z] for z in ring], axis=0) if ring else np.zeros(len(hours))
    return tuple(
        BriefHour(
            hour=h,
            local=local[i].isoformat(),
            phase=keys[i][0],
            phase_hour=keys[i][1],
            venue_present_forecast=float(fc[ev.zone_id][i]),
            venue_reference=num_or_none(presence.venue_reference[i]),
            ring_present_forecast=float(ring_total[i]),
            event_crowd=float(presence.learnt.crowd[i]),
            incidents_per_hour=float(incidents[i]),
            rescuers=plan.hours[i]["rescuers"],
            dps_tier=plan.hours[i]["dps_tier"],
            agents=plan.hours[i]["agents"],
            entry_lanes=plan.hours[i]["entry_lanes"],
            arrivals_peak_per_min=plan.hours[i]["arrivals_peak_per_min"],
        )
        for i, h in enumerate(hours)
    )


def _brief_event(ev: EventSpec, ring: list[str], tz: str) -> BriefEvent:
    return BriefEvent(
        event_id=ev.event_id,
        name=ev.name,
        category=ev.category,
        start=ev.start,
        end=ev.end,
        start_local=ev.start.tz_convert(tz).isoformat(),
        end_local=ev.end.tz_convert(tz).isoformat(),
        timezone=tz,
        zone_id=ev.zone_id,
        ring=tuple(ring),
        latitude=num_or_none(ev.latitude),
        longitude=num_or_none(ev.longitude),
        expected_attendance=ev.attendance,
        indoor=ev.indoor,
        origin=ev.origin,
    )


def save_brief(store: Store, brief: Brief) -> Brief:
    """Write the brief to ``store/briefs/<key>.json`` (after checking its hours); the brief with
    its ``path``."""
    brief.validate()
    path = store.write_json(
        store.brief_relpath(claim_brief_key(store, brief.event.event_id)), brief.to_json()
    )
    return dataclasses.replace(brief, path=str(path))


def make_brief(
    store: Store | str | Path,
    event: str | Path | Mapping[str, Any],
    *,
    params: Mapping[str, Any] | BriefParams | StaffingParams | None = None,
    predictor: Any = None,
    write: bool = True,
) -> Brief:
    """The event brief: presence, incidents, staffing and context per hour.

    Parameters
    ----------
    store
        The vigie store (or its folder).
    event
        An ``event_id`` of the store's events, a YAML file or a mapping (see ``load_event``).
    params
        Overrides: a flat mapping of ``BriefParams`` and ``StaffingParams`` names, or either.
    predictor
        An object with ``predict(frame, groups=None)`` returning zone_id, hour, group, mean,
        lower80, upper80, lower95, upper95 per row and group; by default the store's models.
    write
        Write ``store/briefs/<key>.json`` (:func:`save_brief`).

    Returns
    -------
    Brief
        The typed brief; its ``path`` is the written file, when written.

    Raises
    ------
    InputError
        The event cannot be found or read (missing data is a limitation, never an error).
    """
    store = store if isinstance(store, Store) else Store(store)
    tz = store.timezone
    limitations: list[str] = []
    notes: list[str] = []
    bp = BriefParams.from_mapping(params)
    ev = load_event(store, event, notes=notes)
    bp = bp.for_event(ev)
    hours = event_hours(ev.start, ev.end, before=bp.hours_before, after=bp.hours_after)
    notes += _hour_notes(ev, hours, tz)
    sur = load_surroundings(store, ev, hours=hours, bp=bp, limitations=limitations)
    predictor, load_error = (predictor, None) if predictor is not None else _load_predictor(store)
    presence = forecast_presence(
        ev, hours=hours, sur=sur, tz=tz, bp=bp, notes=notes, limitations=limitations
    )
    concurrent = concurrent_events(sur.events, ev, tz, bp)
    frame = model_frame(
        sur.cube, ev=ev, ring=sur.ring, parts=local_parts(hours, tz),
        zone_forecasts=presence.zone_forecasts, concurrent=concurrent, zones=sur.zones,
        area=sur.area, tz=tz, limitations=limitations,
    )  # fmt: skip
    incidents, planned = forecast_incidents(
        predictor, frame, hours=hours, quantile=bp.staffing.incident_quantile,
        limitations=limitations, load_error=load_error,
    )  # fmt: skip
    plan = _staff(ev, hours, tz, presence.learnt.crowd, planned, bp.staffing)
    brief = Brief(
        event=_brief_event(ev, sur.ring, tz),
        generated_at=pd.Timestamp.now(tz="UTC"),
        params=bp.describe(),
        presence_method=presence.learnt.method,
        presence_method_text=presence.learnt.method_text,
        hours=_brief_hours(ev, hours, tz, sur.ring, presence, planned, plan),
        presence=presence.rows,
        incidents=incidents,
        staffing=plan,
        context=BriefContext(
            lamps=lamps_context(store, ev, bp, limitations),
            stops=stops_context(store, ev, hours, tz, bp, limitations),
            concurrent_events=concurrent,
            comparables=presence.learnt.comparables,
        ),
        notes=notes + plan.notes,
        limitations=limitations,
        provenance=_provenance(store),
    )
    return save_brief(store, brief) if write else brief.validate()
