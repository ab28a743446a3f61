"""``truth.json``: what was planted (docs/architecture.md "truth.json").

The model's terms, the signals, the events with their true presence, the incident totals, what
ingest should keep and quarantine, a summary of the features, the planted outage and the gap in
the presence export.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.synth.context import Drivers, Gap, Simulated, SynthContext, World
from features.synth.events import Event, event_curves, event_window
from features.synth.presence import base_presence
from features.synth.realism import SPARSE_CATEGORIES
from features.synth.realism_truth import realism_truth
from features.synth.scales import CATEGORIES, DOW, TIMEZONE, UNITS, rng_stream
from features.synth.signals import Signal
from features.synth.timeline import hour_calendar, utc_iso
from features.synth.zones import Zones
from features.timeutil import iso_week


def truth_doc(
    ctx: SynthContext, *, world: World, drv: Drivers, sim: Simulated, gap: Gap, rows: dict[str, int]
) -> dict[str, Any]:
    """The content of ``truth.json`` (key order as written); ``rows`` per source written."""
    zones, ids, start, end = world.zones, world.zones.ids, ctx.start, ctx.end
    presence: dict[str, dict[str, float]] = {e.event_id: {} for e in world.events}
    presence.update(sim.venue_presence)
    bias = drv.realism.proxy_zone if drv.realism is not None else None
    presence.update(upcoming_presence(world.events, zones, start=start, seed=ctx.seed, bias=bias))
    spill = world.spill
    assert sim.tally is not None
    return {
        "seed": ctx.seed,
        "scale": ctx.scale,
        "timezone": TIMEZONE,
        "start": utc_iso(start),
        "end": utc_iso(end),
        "local_start": start.isoformat(),
        "local_end": end.isoformat(),
        "last_week": iso_week(end - pd.Timedelta(days=1)),
        "zones": len(ids),
        "hours": int(len(ctx.cal.hours)),
        "zone_types": {ids[z]: zones.types[z] for z in range(len(ids))},
        "presence_2h_zones": [ids[z] for z in np.flatnonzero(zones.is_2h)],
        **_model_terms(sim, drv, ids),
        "signals": [_signal(s, ids, sim.extra_people) for s in world.signals],
        "events": [_event(e, ids, presence[e.event_id]) for e in world.events],
        "origin_inflows": sim.origin_inflows,
        "incidents": {
            "by_category": {c: int(sim.totals[i]) for i, c in enumerate(sim.names)},
            "total": int(sim.totals.sum()),
        },
        "expected_ingest": _expected_ingest(rows, sim.bad),
        "features_summary": _features_summary(ctx, world, drv, sim),
        "planted_outage": {
            "zone_id": ids[spill.zones[0]],
            "reported_at": utc_iso(spill.start),
            "repaired_at": utc_iso(spill.end),
            **sim.tally.outage_truth(),
        },
        "presence_gaps": [
            {"zone_id": ids[gap.zone], "start": utc_iso(gap.start), "end": utc_iso(gap.end),
             "hours": int(gap.mask.sum()), "note": "rows absent from the export; incidents still occur"}
        ],
        "realism": realism_truth(ctx, world=world, drv=drv, sim=sim),
    }  # fmt: skip


def _model_terms(sim: Simulated, drv: Drivers, ids: np.ndarray) -> dict[str, Any]:
    """Base rates, hour-of-day and day-of-week profiles, reference levels and effects (each with
    its expected-weighted multiplier; with realism, ``event_k`` names the zones it skips)."""
    assert sim.tally is not None
    specs = {**CATEGORIES, **SPARSE_CATEGORIES}
    effects = [dict(e, unit=UNITS[e["feature"]]) for e in sim.tally.effects_truth()]
    if drv.realism is not None:
        skip = [str(ids[z]) for z in np.flatnonzero(drv.realism.elasticity < 1)]
        for e in effects:
            if e["feature"] == "event_k":
                e["zones_excluded"] = skip
    exposure = "present (2-hour zones: slot average)"
    if drv.realism is not None:
        exposure = "true presence (the files deliver a proxy: realism.presence_proxy)"
    return {
        "base_rates": {c: specs[c]["base_rate"] for c in sim.names},
        "hour_of_day": {c: list(specs[c]["hod"]) for c in sim.names},
        "day_of_week": list(DOW),
        "reference": {"hour": 12, "dow": 0, "exposure": exposure},
        "effects": effects,
    }


def _signal(s: Signal, ids: np.ndarray, extra_people: float) -> dict[str, Any]:
    """One planted signal (zone ids; the gathering with the people it added)."""
    params = dict(s.params)
    if "neighbours" in params:
        params["neighbours"] = [ids[m] for m in params["neighbours"]]
    if s.type == "gathering":
        params["extra_people"] = extra_people
    return {
        "type": s.type,
        "zones": [ids[z] for z in s.zones],
        "start": utc_iso(s.start),
        "end": utc_iso(s.end),
        "local_start": s.start.tz_convert(TIMEZONE).isoformat(),
        "local_end": s.end.tz_convert(TIMEZONE).isoformat(),
        "week": iso_week((s.end - pd.Timedelta(seconds=1)).tz_convert(TIMEZONE))
        if s.type == "emerging"
        else iso_week(s.start.tz_convert(TIMEZONE)),
        "params": params,
    }


def _event(e: Event, ids: np.ndarray, presence: dict[str, float]) -> dict[str, Any]:
    """One event with its true presence in the venue zone."""
    return {
        "event_id": e.event_id,
        "zone_id": ids[e.zone],
        "kind": e.kind,
        "start": utc_iso(e.start),
        "end": utc_iso(e.end),
        "expected_attendance": e.expected,
        "attendance": e.actual,
        "upcoming": e.upcoming,
        "truth_present": presence,
    }


def _expected_ingest(rows: dict[str, int], bad: dict[str, int]) -> dict[str, Any]:
    """Rows ingest should read, keep and quarantine per source (only incidents have bad rows)."""
    good = rows["incidents"] - bad["unparseable_time"] - bad["outside_area"] - bad["duplicate_id"]
    return {
        "incidents": {
            "rows_read": rows["incidents"],
            "rows_kept": good,
            "rows_quarantined": rows["incidents"] - good,
            "reasons": bad,
        },
        **{
            k: {"rows_read": v, "rows_kept": v, "rows_quarantined": 0}
            for k, v in rows.items()
            if k != "incidents"
        },
    }


def _features_summary(
    ctx: SynthContext, world: World, drv: Drivers, sim: Simulated
) -> dict[str, Any]:
    """Shares and extremes of the model features over the study."""
    cal = ctx.cal
    lamps = world.light.per_zone.sum() * len(cal.hours)
    return {
        "dark_share": float(drv.dark.mean()),
        "rain_share": float(drv.rain.mean()),
        "lamps_out_share": float(drv.lamps_out.sum() / lamps),
        "transit_k_max": float(sim.transit.max() / 1000),
        "event_hours": int((drv.event_k > 0).sum()),
        "holiday_hours": int(cal.holiday.sum()),
        "school_holiday_hours": int(cal.school.sum()),
    }


def upcoming_presence(
    events: list[Event],
    zones: Zones,
    *,
    start: pd.Timestamp,
    seed: int,
    bias: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Truth of upcoming events: presence of the venue zone from the same model (not delivered
    in the presence files), with every upcoming event's attendees (random streams 20 and 21);
    ``bias`` (Z,) the presence proxy's bias per zone (realism), applied as the files would."""
    Z = len(zones.ids)
    out = {}
    for ev in events:
        if not ev.upcoming:
            continue
        win = event_window(ev)
        ucal = hour_calendar(win, start)
        urng = rng_stream(seed, 20, int(ev.event_id[3:]))
        noise = rng_stream(seed, 21, int(ev.event_id[3:])).lognormal(
            0, 0.05, (int(ucal.day_index.max()) + 1, Z)
        )
        pres = base_presence(ucal, zones=zones, day_noise=noise, rng=urng)
        add = np.zeros((len(win), Z))
        for other in events:
            if other.upcoming:
                v, r = event_curves(other, win)
                if v.any() or r.any():
                    add[:, other.zone] += v
                    ring = zones.neighbours[other.zone]
                    if ring:
                        add[:, ring] += (r / len(ring))[:, None]
        f = 1.0 if bias is None else bias[None, :]
        tot = np.maximum(
            np.round((pres.residents + 0.3 * add) * f) + np.round((pres.visitors + 0.7 * add) * f),
            1,
        )
        out[ev.event_id] = {utc_iso(h): float(tot[i, ev.zone]) for i, h in enumerate(win)}
    return out
