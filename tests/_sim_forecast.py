"""A small daily cube with known truth for the forecasting model's tests.

Incidents are drawn as ``y ~ Poisson(base x present ** elasticity x exp(u_zone) x day shock)``:
presence varies between zones and from day to day (log-normal), zone effects ``u`` and
city-wide day shocks are log-normal too. ``elasticity = 1`` is presence as an offset; 0.5 is a
crowd that does not raise incidents in proportion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def daily_city(
    *,
    zones: int = 20,
    days: int = 364,
    elasticity: float = 1.0,
    base: float = 2e-4,
    zone_sd: float = 0.4,
    day_sd: float = 0.1,
    seed: int = 0,
    start: str = "2021-01-04",
    timezone: str = "UTC",
) -> pd.DataFrame:
    """The cube (zone_id, hour, local_hour, dow, present, incidents) of the module docstring."""
    rng = np.random.default_rng(seed)
    zid = np.array([f"Z{i:02d}" for i in range(zones)])
    local = pd.date_range(start, periods=days, freq="D", tz=timezone)
    level = np.exp(rng.normal(np.log(2000.0), 0.6, zones))
    u = rng.normal(0.0, zone_sd, zones)
    shock = np.exp(rng.normal(0.0, day_sd, days))
    present = level[:, None] * np.exp(rng.normal(0.0, 0.35, (zones, days)))
    mu = base * present**elasticity * (2000.0 ** (1 - elasticity)) * np.exp(u)[:, None]
    mu = mu * shock[None, :]
    y = rng.poisson(mu)
    return pd.DataFrame(
        {
            "zone_id": np.repeat(zid, days),
            "hour": np.tile(local.tz_convert("UTC"), zones),
            "local_hour": 0,
            "dow": np.tile(local.dayofweek.to_numpy(), zones),
            "present": present.ravel(),
            "incidents": y.ravel().astype(np.int32),
        }
    )
