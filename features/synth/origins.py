"""The synthetic Flux Vision origins file, with planted origin inflows.

Flux Vision's *origines* product gives, per zone and day, the mean number of people present by
their place of residence: residents of the study area, French visitors by département, foreign
visitors by country (Orange Business, Flux Vision documentation). The synthetic city writes:

- ``zone_etude``: the zone's residents present (as the hourly file's ``residents``);
- visitors split between :data:`ORIGINS` (départements ``dep_NN``, the rest of France
  ``autres_departements``, countries ``pays_XX``, other countries ``autres_pays``). Each zone has
  its own mix around :data:`BASE_SHARES` (a Dirichlet draw), foreigners grow in the tourist
  season, and each zone-day's mix is a Dirichlet draw around the zone's (over-dispersed against a
  multinomial, as real daily origins are);
- planted *origin inflows* (:func:`plan_inflows`): in a few zone-weeks, one origin's share of the
  visitors is multiplied (an unusual inflow from one département or country); the other origins
  give way so that the day's visitors are unchanged (the hourly presence file stays consistent).
  ``truth.json`` lists them under ``origin_inflows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.synth.context import SynthContext, World
from features.synth.presence import season
from features.synth.scales import rng_stream
from features.synth.timeline import Calendar
from features.synth.writers import Table
from features.synth.zones import Zones

#: residents of the study area, then the visitors' origins (départements, countries)
ORIGINS = (
    "zone_etude",
    "dep_92", "dep_93", "dep_94", "dep_77", "dep_78", "dep_91", "dep_95",
    "dep_69", "dep_13", "dep_59", "autres_departements",
    "pays_GB", "pays_DE", "pays_US", "autres_pays",
)  # fmt: skip

#: city-wide mix of French visitors (outside the season's foreign share), in ORIGINS[1:] order
_FRENCH = np.array([0.14, 0.13, 0.12, 0.08, 0.09, 0.08, 0.08, 0.05, 0.04, 0.04, 0.15])
#: city-wide mix of foreign visitors
_FOREIGN = np.array([0.30, 0.20, 0.20, 0.30])
#: concentration of each zone's mix around the city's, and of each day's around the zone's
ZONE_CONCENTRATION, DAY_CONCENTRATION = 60.0, 400.0
#: planted inflows: how many, and the factor on the origin's share of the zone's visitors
N_INFLOWS = {"tiny": 2, "city": 5, "full": 8}
INFLOW_FACTOR = (4.0, 8.0)
#: a planted zone has at least this many visitors a day on average (a detectable inflow)
MIN_VISITORS = 150.0


@dataclass(frozen=True)
class Inflow:
    """One planted origin inflow: zone index, origin, its ISO week's local days and the factor."""

    zone: int
    origin: str
    week: str
    first_day: int
    days: int
    factor: float


def plan_inflows(
    seed: int, *, cal: Calendar, zones: Zones, visitors: np.ndarray, scale: str
) -> list[Inflow]:
    """The planted inflows: distinct zones with enough visitors, complete local weeks after
    12 weeks of history (half the span if shorter), the last complete week among them.

    ``visitors`` is the mean visitors per (day, zone).
    """
    rng = rng_stream(seed, 40)
    n_days = visitors.shape[0]
    day_first = np.searchsorted(cal.day_index, np.arange(n_days))
    local = cal.local[day_first]
    mondays = np.flatnonzero((local.dayofweek == 0) & (np.arange(n_days) + 7 <= n_days))
    mondays = mondays[mondays >= min(84, n_days // 2)]
    eligible = np.flatnonzero(visitors.mean(axis=0) >= MIN_VISITORS)
    n = min(N_INFLOWS.get(scale, 3), len(eligible), len(mondays))
    if n == 0:
        return []
    zs = rng.choice(eligible, size=n, replace=False)
    weeks = np.r_[mondays[-1], rng.choice(mondays[:-1], size=n - 1, replace=False)]
    out = []
    for z, d in zip(zs, weeks, strict=True):
        o = str(rng.choice(ORIGINS[1:]))
        iso = local[d].isocalendar()
        week = f"{iso[0]}-W{iso[1]:02d}"
        out.append(Inflow(int(z), o, week, int(d), 7, float(rng.uniform(*INFLOW_FACTOR))))
    return out


def _shares(seed: int, *, doy: np.ndarray, n_zones: int) -> np.ndarray:
    """Visitors' origin shares per (day, zone, origin), each day's a draw around the zone's."""
    rng = rng_stream(seed, 41)
    zone_fr = rng.dirichlet(ZONE_CONCENTRATION * _FRENCH, size=n_zones)
    zone_fo = rng.dirichlet(ZONE_CONCENTRATION * _FOREIGN, size=n_zones)
    foreign = np.clip(0.15 * season(doy), 0, 0.4)[:, None, None]
    mean = np.concatenate(
        [(1 - foreign) * zone_fr[None], foreign * zone_fo[None]], axis=2
    )  # (D, Z, O-1)
    g = rng.gamma(DAY_CONCENTRATION * mean)
    return g / np.maximum(g.sum(axis=2, keepdims=True), 1e-12)


def _plant(shares: np.ndarray, inflows: list[Inflow]) -> None:
    """Multiply each inflow's origin share in its zone-week; the other origins give way."""
    for f in inflows:
        k = ORIGINS.index(f.origin) - 1
        sl = shares[f.first_day : f.first_day + f.days, f.zone]
        new = np.minimum(sl[:, k] * f.factor, 0.6)
        rest = np.delete(np.arange(sl.shape[1]), k)
        sl[:, rest] *= ((1 - new) / np.maximum(1 - sl[:, k], 1e-12))[:, None]
        sl[:, k] = new


def origin_rows(
    day_sum: np.ndarray,
    *,
    day_res: np.ndarray,
    cal: Calendar,
    zones: Zones,
    seed: int,
    inflows: list[Inflow],
) -> pd.DataFrame:
    """Daily mean presence per zone and origin (the Flux Vision 'origines' file).

    ``day_sum``/``day_res`` are the sums over each local day of people present and residents.
    """
    n_days, n_z = day_sum.shape
    day_cnt = np.maximum(np.bincount(cal.day_index, minlength=n_days), 1)[:, None]
    day_first = np.searchsorted(cal.day_index, np.arange(n_days))
    day_label = np.asarray(list(cal.local[day_first].strftime("%Y-%m-%d")), dtype=object)
    res = day_res / day_cnt
    vis = np.maximum(day_sum / day_cnt - res, 0)
    shares = _shares(seed, doy=cal.doy[day_first], n_zones=n_z)
    _plant(shares, inflows)
    counts = np.concatenate([res[:, :, None], vis[:, :, None] * shares], axis=2)  # (D, Z, O)
    d, z, o = np.meshgrid(np.arange(n_days), np.arange(n_z), np.arange(len(ORIGINS)), indexing="ij")
    return pd.DataFrame(
        {
            "id_zone": zones.ids[z.ravel()],
            "jour": day_label[d.ravel()],
            "origine": np.asarray(ORIGINS, dtype=object)[o.ravel()],
            "volume": np.round(counts.ravel()).astype(np.int64),
        }
    )


def inflows_truth(inflows: list[Inflow], *, zones: Zones) -> list[dict[str, Any]]:
    """``truth.json``'s ``origin_inflows``: zone id, origin, ISO week and share factor."""
    return [
        {"zone": str(zones.ids[f.zone]), "origin": f.origin, "week": f.week,
         "factor": round(f.factor, 3)}
        for f in inflows
    ]  # fmt: skip


def planted_origins(
    ctx: SynthContext, world: World, *, day_sum: np.ndarray, day_res: np.ndarray, table: Table
) -> list[dict[str, Any]]:
    """Plan the inflows, write the origins file to ``table`` (closed) and return the truth."""
    n_days = day_sum.shape[0]
    cnt = np.maximum(np.bincount(ctx.cal.day_index, minlength=n_days), 1)[:, None]
    visitors = np.maximum(day_sum - day_res, 0) / cnt
    inflows = plan_inflows(ctx.seed, cal=ctx.cal, zones=world.zones, visitors=visitors,
                           scale=ctx.scale)  # fmt: skip
    table.write(origin_rows(day_sum, day_res=day_res, cal=ctx.cal, zones=world.zones,
                            seed=ctx.seed, inflows=inflows))  # fmt: skip
    table.close()
    return inflows_truth(inflows, zones=world.zones)
