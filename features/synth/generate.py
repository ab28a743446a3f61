"""``generate``: the synthetic city, step by step.

context (period, calendar) -> world (zones, signals, events, lighting, weather, stops) ->
drivers (the model's features per hour and zone) -> gap -> chunked simulation (writes presence,
incidents, ridership) -> static files -> ``sources.yaml`` and ``truth.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError
from features.synth.ballpark import pick_ballpark, plan_games
from features.synth.chunks import simulate
from features.synth.context import Drivers, Gap, SynthContext, World
from features.synth.events import Event, event_load, make_events, write_events
from features.synth.lighting import lamps_out_matrix, make_lighting, write_lighting
from features.synth.realism import Realism, draw_realism
from features.synth.scales import CHUNKED, SCALES, TIMEZONE, rng_stream
from features.synth.signals import plan_signals
from features.synth.timeline import dark_matrix, hour_calendar, study_period
from features.synth.truth import truth_doc
from features.synth.weather_stops import make_stops, make_weather, write_gtfs, write_weather
from features.synth.writers import sources_yaml, write_zones
from features.synth.zones import make_zones

log = logging.getLogger("features.synth")


@dataclass(frozen=True)
class SynthResult:
    """What :func:`generate` wrote.

    Attributes
    ----------
    out
        The folder.
    scale, seed
        As asked.
    sources_yaml, truth_json
        Paths of the study description and of the planted truth.
    files
        Source name -> files written for it (relative to ``out``).
    rows
        Source name -> rows written (incidents include the deliberately bad rows).
    seconds
        Wall time of the generation.
    """

    out: Path
    scale: str
    seed: int
    sources_yaml: Path
    truth_json: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def generate(
    scale: str, out: str | Path, *, seed: int = 0, realism: bool | None = None
) -> SynthResult:
    """Write a synthetic city's raw files, its ``sources.yaml`` and its ``truth.json``.

    Parameters
    ----------
    scale
        ``tiny`` (30 zones, 8 weeks; seconds), ``city`` (300 zones, 104 weeks),
        ``metropolis`` (1 000 zones, 104 weeks) or ``region`` (5 000 zones, 104 weeks).
    out
        Folder to write into (created; files of an earlier run are overwritten).
    seed
        Random seed; the same seed gives byte-identical files.
    realism
        Incidents from a process the models do not assume (:mod:`features.synth.realism`):
        True, False, or None for the scale's default (on for ``city``, ``metropolis`` and
        ``region``, off for ``tiny``). With it off, incidents follow the models' own process (see the package
        docstring).

    Returns
    -------
    SynthResult

    Raises
    ------
    InputError
        For an unknown scale or a negative seed.

    References
    ----------
    The model is the log-linear Poisson rate model with exposure of McCullagh & Nelder (1989),
    *Generalized Linear Models*, 2nd ed., ch. 6; see the package docstring for its terms.

    Examples
    --------
    >>> res = generate("tiny", "/tmp/tiny_city", seed=1)  # doctest: +SKIP
    >>> res.truth_json.name  # doctest: +SKIP
    'truth.json'
    """
    t_start = time.perf_counter()
    ctx = make_context(scale, out, seed=_checked_seed(scale, seed), realism=realism)
    world = draw_world(ctx)
    drv = drivers(ctx, world)
    gap = plan_gap(ctx, world)
    sim = simulate(ctx, world=world, drv=drv, gap=gap)
    files, rows = dict(sim.files), dict(sim.rows)
    static_files, static_rows = write_static(ctx, world)
    files.update(static_files)
    rows.update(static_rows)
    (ctx.out / "sources.yaml").write_text(sources_yaml(ctx.fmt), encoding="utf-8")
    truth = truth_doc(ctx, world=world, drv=drv, sim=sim, gap=gap, rows=rows)
    (ctx.out / "truth.json").write_text(
        json.dumps(truth, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    seconds = time.perf_counter() - t_start
    log.info("synth %s written to %s in %.1f s", scale, ctx.out, seconds)
    return SynthResult(out=ctx.out, scale=scale, seed=ctx.seed, sources_yaml=ctx.out / "sources.yaml",
                       truth_json=ctx.out / "truth.json", files=files, rows=rows, seconds=seconds)  # fmt: skip


def _checked_seed(scale: str, seed: int) -> int:
    """``seed`` as an int, after checking the scale and the seed."""
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}: expected one of {', '.join(SCALES)}.")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def make_context(
    scale: str, out: str | Path, *, seed: int, realism: bool | None = None
) -> SynthContext:
    """The run's context; creates ``out`` and removes the chunk files of an earlier run (the
    readers' globs would catch them). ``realism`` True/False overrides the scale's default (True
    takes the scale's settings, or :class:`~features.synth.realism.Realism`'s defaults)."""
    spec = SCALES[scale]
    if realism is not None:
        spec = replace(spec, realism=(spec.realism or Realism()) if realism else None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for pattern in CHUNKED:
        for old in out.glob(pattern):
            old.unlink()
    start, end, hours = study_period(spec.weeks)
    cal = hour_calendar(hours, start)
    return SynthContext(scale, seed, spec, out, start, end, hours, cal)


def draw_world(ctx: SynthContext) -> World:
    """Zones, planted signals, events (away from the signals' zones), lighting (with the planted
    outage), weather and stops; each from its own random stream."""
    seed = ctx.seed
    zones = make_zones(ctx.spec, seed=seed)
    signals = plan_signals(zones, end=ctx.end, seed=seed)
    sig_zones = {z for s in signals for z in s.zones}
    events = make_events(zones, start=ctx.start, end=ctx.end, seed=seed, avoid=sig_zones)
    spill = next(s for s in signals if s.type == "outage_spillover")
    planted = [(spill.zones[0], spill.start, spill.end, spill.params["outage_share"])]
    light = make_lighting(
        zones, spec=ctx.spec, start=ctx.start, end=ctx.end, seed=seed, planted=planted
    )
    ballpark: int | None = None
    games: list[Event] = []
    uplifts: list[float] = []
    if ctx.realism is not None:
        ballpark = pick_ballpark(zones, signals=signals, events=events, seed=seed)
        games, uplifts = plan_games(ctx.realism, zone=ballpark, zones=zones, cal=ctx.cal, seed=seed)
    world = World(
        zones,
        signals,
        events,
        light,
        make_weather(ctx.cal, seed=seed),
        make_stops(zones, seed=seed),
        ballpark,
        games,
        uplifts,
    )
    log.info("synth %s: %d zones, %d hours, %d events, %d lamps, %d faults", ctx.scale,
             len(zones.ids), len(ctx.hours), len(events), len(light.lamps), len(light.faults))  # fmt: skip
    return world


def drivers(ctx: SynthContext, world: World) -> Drivers:
    """The model's features per (hour, zone) and the day-level presence noise (stream 7)."""
    zones, Z = world.zones, len(world.zones.ids)
    dark = dark_matrix(ctx.hours, lat=zones.lat, lon=zones.lon)  # (H, Z)
    lamps_out = lamps_out_matrix(world.light, hours=ctx.hours, Z=Z)
    dlo = dark * 10.0 * lamps_out / world.light.per_zone[None, :]
    rain = world.weather["precipitation_mm"].to_numpy() >= 1.0
    n_days = int(ctx.cal.day_index.max()) + 2
    day_noise = rng_stream(ctx.seed, 7).lognormal(0, 0.05, (n_days, Z))
    ev_k, ev_add = event_load(world.events, hours=ctx.hours, zones=zones)
    if ctx.realism is None:
        return Drivers(dark, lamps_out, dlo, rain, ev_k, ev_add, day_noise)
    game_added = event_load(world.games, hours=ctx.hours, zones=zones)[1]
    first_day = ctx.start.tz_localize(None).normalize()
    day_doy = pd.date_range(first_day, periods=n_days, freq="D").dayofyear.to_numpy()
    draws = draw_realism(ctx.realism, rng=rng_stream(ctx.seed, 30), types=zones.types,
                         day_doy=day_doy, ballpark=world.ballpark)  # fmt: skip
    return Drivers(dark, lamps_out, dlo, rain, ev_k, ev_add, day_noise, game_added, draws)


def plan_gap(ctx: SynthContext, world: World) -> Gap:
    """A gap in the presence export: one quiet residential zone, 6 hours on the 10th night."""
    zones, signals = world.zones, world.signals
    hourly_z = np.flatnonzero(~zones.is_2h)
    busy = (
        {z for s in signals for z in s.zones}
        | {e.zone for e in world.events}
        | {m for s in signals for m in s.params.get("neighbours", [])}
        | ({world.ballpark} if world.ballpark is not None else set())
    )
    quiet = [int(z) for z in hourly_z if z not in busy]
    gap_zone = next(
        (z for z in quiet if zones.types[z] == "residential"), (quiet or [int(hourly_z[0])])[0]
    )
    start = (ctx.start.tz_localize(None) + pd.Timedelta(days=10, hours=3)).tz_localize(TIMEZONE)
    end = start + pd.Timedelta(hours=6)
    mask = np.asarray((ctx.hours >= start) & (ctx.hours < end))
    return Gap(gap_zone, start, end, mask)


def write_static(ctx: SynthContext, world: World) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Zones, lamps, faults, GTFS stops, weather and events; returns files and rows per source."""
    out = ctx.out
    write_zones(world.zones, out / "zones_iris.geojson")
    write_lighting(world.light, out / "eclairage")
    (out / "transport").mkdir(exist_ok=True)
    write_gtfs(world.stops, out / "transport" / "gtfs.zip")
    write_weather(world.weather, hours=ctx.hours, path=out / "meteo_horaire.csv")
    write_events(world.events, out / "evenements.csv")
    files = {
        "zones": ["zones_iris.geojson"],
        "lamps": ["eclairage/lampadaires.csv"],
        "lighting_faults": ["eclairage/pannes.csv"],
        "stops": ["transport/gtfs.zip"],
        "weather": ["meteo_horaire.csv"],
        "events": ["evenements.csv"],
    }
    rows = {
        "zones": len(world.zones.ids),
        "lamps": len(world.light.lamps),
        "lighting_faults": len(world.light.faults),
        "stops": len(world.stops),
        "weather": len(ctx.hours),
        "events": len(world.events),
    }
    return files, rows
