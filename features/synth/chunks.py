"""The hourly simulation, 4 weeks at a time: presence, ridership and incidents of each chunk.

Chunk ``ci`` draws from its own random stream (10, ci) in a fixed order (presence noise,
ridership, incidents, bad rows), so the files do not depend on anything else being drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.synth.context import Drivers, Gap, Simulated, SynthContext, World
from features.synth.events import event_window
from features.synth.incidents import (
    RateModel,
    bad_rows,
    draw_incidents,
    incident_means,
    rate_model,
)
from features.synth.origins import planted_origins
from features.synth.presence import (
    ChunkPresence,
    chunk_presence,
    hourly_rows,
    slot_rows,
)
from features.synth.realism import crowd_exposure, proxy_factor
from features.synth.scales import CHUNK_HOURS, FEATURES, rng_stream
from features.synth.signals import find_signal, gathering_hours, signal_multipliers
from features.synth.tally import Tally
from features.synth.timeline import Calendar, local_strings
from features.synth.weather_stops import draw_ridership, ridership_rows
from features.synth.writers import ChunkFiles, Table


def chunk_bounds(n_hours: int) -> list[tuple[int, int]]:
    """(first, end) hour of each chunk: :data:`CHUNK_HOURS` each, a short tail joins the last."""
    chunks = list(range(0, n_hours, CHUNK_HOURS))
    if len(chunks) > 1 and n_hours - chunks[-1] < CHUNK_HOURS:
        chunks = chunks[:-1]
    return list(zip(chunks, [*chunks[1:], n_hours], strict=True))


@dataclass(frozen=True)
class _Chunk:
    """The draws of one chunk."""

    cal: Calendar
    presence: ChunkPresence
    entries: np.ndarray  # (h, stops)
    transit: np.ndarray  # (h, Z)
    incidents: pd.DataFrame
    counts: np.ndarray  # per category, before bad rows
    bad: dict[str, int] | None


def _features(drv: Drivers, cal: Calendar, a: int, b: int, transit: np.ndarray) -> np.ndarray:
    """(h, Z, F) model features of hours a..b, in :data:`FEATURES` order."""
    n_h, Z = transit.shape
    return np.stack(
        [
            drv.dark[a:b],
            drv.dark_lamps_out[a:b],
            drv.event_k[a:b],
            np.broadcast_to(drv.rain[a:b, None], (n_h, Z)),
            transit / 1000.0,
            np.broadcast_to(cal.holiday[:, None], (n_h, Z)),
            np.broadcast_to(cal.school[:, None], (n_h, Z)),
        ],
        axis=-1,
    ).astype(float)


def _draw_chunk(
    ctx: SynthContext,
    world: World,
    drv: Drivers,
    model: RateModel,
    *,
    ci: int,
    span: tuple[int, int],
    first_id: int,
    with_bad_rows: bool,
    tally: Tally,
) -> _Chunk:
    """Presence, ridership and incidents of the hours ``span`` (chunk ``ci``); adds the chunk's
    sums to ``tally``."""
    a, b = span
    rng = rng_stream(ctx.seed, 10, ci)
    cal = ctx.cal.rows(a, b)
    g_idx = gathering_hours(world.signals, ctx.hours)
    gi = g_idx[(g_idx >= a) & (g_idx < b)] - a
    gz = find_signal(world.signals, "gathering").zones[0]
    crowd = drv.event_added[a:b]
    proxy = None
    if drv.realism is not None and ctx.realism is not None and drv.game_added is not None:
        crowd = crowd + drv.game_added[a:b]
        proxy = proxy_factor(drv.realism, day_index=cal.day_index,
                             sd_hour=ctx.realism.proxy_hour_sd, rng=rng_stream(ctx.seed, 11, ci))  # fmt: skip
    cp = chunk_presence(
        cal, world.zones, day_noise=drv.day_noise, ev_add=crowd, gathering=(gi, gz), rng=rng,
        proxy=proxy,
    )  # fmt: skip
    people = cp.exposure if drv.realism is None else cp.people
    entries, transit = draw_ridership(world.stops, exposure=people, cal=cal, rng=rng)
    Z = len(world.zones.ids)
    mult = signal_multipliers(world.signals, hours=ctx.hours[a:b], dark=drv.dark[a:b], Z=Z,
                              n_cats=len(model.names))  # fmt: skip
    x = _features(drv, cal, a, b, transit)
    exposure = cp.exposure
    if drv.realism is not None:
        exposure = crowd_exposure(people, crowd, drv.realism.elasticity)
        x[:, drv.realism.elasticity < 1, FEATURES.index("event_k")] = 0.0
        mult *= drv.realism.day_factor(cal.day_index)[:, :, None]
        mult *= drv.realism.zone_mult[None, :, None]
    mu = incident_means(model, cal, exposure=exposure, x=x, multiplier=mult)
    _tally(ctx, world, drv, tally, span=span, x=x, mu=mu, cp=cp, crowd=crowd, exposure=exposure)
    inc, counts = draw_incidents(
        model, cal=cal, zones=world.zones, mu=mu, first_id=first_id, rng=rng
    )
    bad = None
    if with_bad_rows:
        inc, bad = bad_rows(inc, rng)
    return _Chunk(cal, cp, entries, transit, inc, counts, bad)


def _tally(
    ctx: SynthContext, world: World, drv: Drivers, tally: Tally, *, span: tuple[int, int],
    x: np.ndarray, mu: np.ndarray, cp: ChunkPresence, crowd: np.ndarray, exposure: np.ndarray,
) -> None:  # fmt: skip
    """Add the chunk's expected incidents to the truth's sums."""
    a, b = span
    tally.add_effects(x, mu)
    spill = world.spill
    inside = np.asarray((ctx.hours[a:b] >= spill.start) & (ctx.hours[a:b] < spill.end))
    z = spill.zones[0]
    tally.add_outage(zone=z, inside=inside, dark=drv.dark[a:b, z], x=x, mu=mu)
    people = np.maximum(cp.people, 1.0)
    no_crowd = np.maximum(people - crowd, 1.0) / np.maximum(exposure, 1.0)
    i_k, i_t = FEATURES.index("event_k"), FEATURES.index("transit_k")
    log_irr = {e["feature"]: np.log(e["irr"]) for e in tally.effects if e["irr"] > 0}
    lift = log_irr.get("event_k", 0.0) * x[..., i_k] + log_irr.get("transit_k", 0.0) * x[
        ..., i_t
    ] * np.clip(crowd / people, 0.0, 1.0)
    tot = mu.sum(axis=-1)
    tally.add_events(drv.event_k[a:b], mu=tot, mu0=tot * no_crowd * np.exp(-lift))
    if drv.realism is None:
        return
    inelastic = [int(z) for z in np.flatnonzero(drv.realism.elasticity < 1)]
    tally.add_crowd(inelastic, mu=mu, people=cp.people, crowd=crowd, exposure=exposure)
    if world.ballpark is not None:
        tally.add_days(world.ballpark, day_index=ctx.cal.day_index[a:b], people=cp.people,
                       crowd=crowd, delivered=cp.exposure)  # fmt: skip


def _write_chunk(
    ctx: SynthContext, world: World, gap: Gap, ch: _Chunk, *, span: tuple[int, int],
    times: np.ndarray, files: ChunkFiles, pres_2h: Table,
) -> None:  # fmt: skip
    """The chunk's incidents, hourly presence, 2-hour rows (appended) and validations."""
    a, b = span
    tag = f"{ch.cal.local[0]:%Y%m%d}"
    ext = ctx.ext
    files.write("incidents", f"incidents/main_courante_{tag}.{ext}", ch.incidents)
    missing = np.zeros((b - a, len(world.zones.ids)), dtype=bool)
    missing[gap.mask[a:b], gap.zone] = True  # the export's gap: rows absent
    chunk_times = times[a:b]
    pr = hourly_rows(world.zones, ch.presence, times=chunk_times, missing=missing)
    files.write("presence", f"presence/flux_vision_horaire_{tag}.{ext}", pr)
    pres_2h.write(slot_rows(world.zones, ch.presence, times=chunk_times))
    rid = ridership_rows(world.stops, ch.entries, times=chunk_times)
    files.write("ridership", f"transport/validations_{tag}.{ext}", rid)


def simulate(ctx: SynthContext, *, world: World, drv: Drivers, gap: Gap) -> Simulated:
    """Simulate every chunk and write the presence, incident and ridership files.

    Returns the files and rows written, the incident totals, the bad rows, the gathering's
    extra people, the transit entries and the delivered presence around past events.
    """
    H, Z = len(ctx.hours), len(world.zones.ids)
    out, fmt, ext = ctx.out, ctx.fmt, ctx.ext
    model = rate_model(ctx.realism)
    files = ChunkFiles(out, fmt)
    pres_2h = Table(out / "presence" / f"flux_vision_2h_secteur_est.{ext}", fmt)
    origins = Table(out / "presence" / f"flux_vision_origines.{ext}", fmt)
    times = local_strings(ctx.cal, "%Y-%m-%d %H:%M:%S")
    bounds = chunk_bounds(H)
    venue_zones = sorted({e.zone for e in world.past})
    venue_exposure = np.zeros((H, len(venue_zones)))
    transit = np.zeros((H, Z))
    n_days = int(ctx.cal.day_index.max()) + 1
    day_sum, day_res = np.zeros((n_days, Z)), np.zeros((n_days, Z))
    totals = np.zeros(len(model.names), dtype=np.int64)
    tally = Tally(model.effects, model.names, n_days)
    next_id, extra_people = 0, 0.0
    bad: dict[str, int] = {}
    for ci, span in enumerate(bounds):
        ch = _draw_chunk(ctx, world, drv, model, ci=ci, span=span, first_id=next_id,
                         with_bad_rows=ci == len(bounds) - 1, tally=tally)  # fmt: skip
        a, b = span
        next_id += int(ch.counts.sum())
        totals += ch.counts
        bad = ch.bad if ch.bad is not None else bad
        if ch.presence.extra_people is not None:
            extra_people = ch.presence.extra_people
        venue_exposure[a:b] = ch.presence.exposure[:, venue_zones]
        transit[a:b] = ch.transit
        _write_chunk(ctx, world, gap, ch, span=span, times=times, files=files, pres_2h=pres_2h)
        np.add.at(day_sum, ch.cal.day_index, ch.presence.present)
        np.add.at(day_res, ch.cal.day_index, ch.presence.res_i)
    pres_2h.close()
    inflows = planted_origins(ctx, world, day_sum=day_sum, day_res=day_res, table=origins)
    origins.close()
    files_out = {
        "presence": files.files["presence"] + [str(pres_2h.path.relative_to(out))],
        "presence_origin": [str(origins.path.relative_to(out))],
        "incidents": files.files["incidents"],
        "ridership": files.files["ridership"],
    }
    rows = {
        "presence": files.rows["presence"] + pres_2h.rows,
        "presence_origin": origins.rows,
        "incidents": files.rows["incidents"],
        "ridership": files.rows["ridership"],
    }
    presence = _venue_presence(world, ctx.hours, venue_zones, venue_exposure)
    return Simulated(files_out, rows, totals, bad, extra_people, transit, presence,
                     model.names, tally, inflows)  # fmt: skip


def _venue_presence(
    world: World, hours: pd.DatetimeIndex, venue_zones: list[int], exposure: np.ndarray
) -> dict[str, dict[str, float]]:
    """Truth of past events: the delivered presence of the venue zone (as the cube will hold it)
    over each event's window."""
    hour_txt = np.asarray(hours.strftime("%Y-%m-%dT%H:%M:%SZ"))
    out = {}
    for ev in world.past:
        idx = hours.get_indexer(event_window(ev))
        idx = idx[idx >= 0]
        col = venue_zones.index(ev.zone)
        out[ev.event_id] = {hour_txt[i]: float(exposure[i, col]) for i in idx}
    return out
