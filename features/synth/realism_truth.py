"""``truth.json`` -> ``realism``: every multiplier of the realistic incident process.

Null when the city follows the models' own process. Otherwise the settings, each drawn
multiplier (zones, city days, zone-days, trend and season, the presence proxy's biases), the
ballpark's withheld games with their planted and realised uplift, the crowds' elasticities with
their expected-weighted IRRs, and the sparse categories' realised rates (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.synth.context import Drivers, Simulated, SynthContext, World
from features.synth.realism import SPARSE_CATEGORIES, Realism, RealismDraws


def realism_truth(
    ctx: SynthContext, *, world: World, drv: Drivers, sim: Simulated
) -> dict[str, Any] | None:
    """The ``realism`` section of ``truth.json`` (None without realism)."""
    r, dr = ctx.realism, drv.realism
    if r is None or dr is None or sim.tally is None:
        return None
    ids = [str(z) for z in world.zones.ids]
    n_days = int(ctx.cal.day_index.max()) + 1
    first = ctx.start.tz_localize(None).normalize()
    dates = [str(d.date()) for d in pd.date_range(first, periods=n_days, freq="D")]
    day_of = pd.Series(
        {g.event_id: int(ctx.cal.day_index[ctx.hours.get_loc(g.start)]) for g in world.games},
        dtype="int64",
    )
    return {
        "settings": r.settings(),
        "incident_multiplier": "zone_effects[z] * city_day[d] * zone_day[d][z] * "
        "trend_season[d], on the true presence (crowds: crowd_elasticity)",
        "zone_effects": _zone_effects(r, dr, ids),
        "day_shocks": _day_shocks(r, dr, ids, dates),
        "trend_season": {
            "trend_per_year": r.trend_per_year,
            "season_amplitude": r.season_amplitude,
            "season_peak_doy": r.season_peak_doy,
            "multiplier": dict(zip(dates, _r(dr.trend_season[:n_days]), strict=True)),
        },
        "presence_proxy": _proxy(r, dr, ids),
        "withheld_gatherings": {
            "zone_id": ids[world.ballpark] if world.ballpark is not None else None,
            "kind": "ballgame",
            "in_events_csv": False,
            "season_months": list(r.season_months),
            "games_per_week": r.games_per_week,
            "uplift_range": list(r.game_uplift),
            "elasticity": r.ballpark_elasticity,
            "days": sim.tally.game_days(world.games, world.game_uplift, day_of),
        },
        "crowd_elasticity": sim.tally.crowd_truth(world.zones.ids, dr.elasticity),
        "sparse_categories": {
            c: {
                "base_rate": SPARSE_CATEGORIES[c]["base_rate"],
                "per_zone_day": float(sim.totals[sim.names.index(c)] / (len(ids) * n_days)),
            }
            for c in sim.names
            if c in SPARSE_CATEGORIES
        },
    }


def _r(values: np.ndarray, digits: int = 6) -> list[float]:
    """Rounded floats for JSON."""
    return [round(float(v), digits) for v in values]


def _zone_effects(r: Realism, dr: RealismDraws, ids: list[str]) -> dict[str, Any]:
    """The zone multipliers, their planted and realised log-SD."""
    return {
        "log_sd_planted": r.zone_log_sd,
        "log_sd_realised": float(np.log(dr.zone_mult).std(ddof=1)),
        "multiplier": dict(zip(ids, _r(dr.zone_mult), strict=True)),
    }


def _day_shocks(r: Realism, dr: RealismDraws, ids: list[str], dates: list[str]) -> dict[str, Any]:
    """The city-wide and zone-day gamma multipliers, with their realised coefficients of
    variation (a gamma of shape k has CV 1 / sqrt(k))."""
    n = len(dates)
    return {
        "city_shape": r.day_shape,
        "city_cv_planted": float(1 / np.sqrt(r.day_shape)),
        "city_cv_realised": float(dr.city_day[:n].std(ddof=1)),
        "city_day": dict(zip(dates, _r(dr.city_day[:n]), strict=True)),
        "zone_day_shape": r.zone_day_shape,
        "zone_day_cv_planted": float(1 / np.sqrt(r.zone_day_shape)),
        "zone_day_cv_realised": float(dr.zone_day[:n].std(ddof=1)),
        "zone_day": {
            "dates": dates,
            "zones": ids,
            "values": [_r(row, 4) for row in dr.zone_day[:n]],
        },  # fmt: skip
    }


def _proxy(r: Realism, dr: RealismDraws, ids: list[str]) -> dict[str, Any]:
    """The presence proxy: bias per zone type and per zone, noise SDs."""
    return {
        "bias_by_type": dict(r.proxy_bias),
        "zone_bias": dict(zip(ids, _r(dr.proxy_zone), strict=True)),
        "zone_sd": r.proxy_zone_sd,
        "day_sd": r.proxy_day_sd,
        "hour_sd": r.proxy_hour_sd,
        "note": "delivered = true x zone_bias x exp(N(0, day_sd) per zone-day + N(0, hour_sd) "
        "per zone-hour), before rounding; incidents follow the true presence",
    }
