"""The outage event study is not fooled by a shock of the whole city (issue 12): zone and
local-day fixed effects fitted on the untouched zone-slots put the shock in the counterfactual."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _sim_cube import simulate_city

from pipelines import models as M
from pipelines.models import outage as O
from pipelines.models import studies
from pipelines.models.design import lamps_out_share

LIT = ["Z000", "Z004", "Z012", "Z020", "Z024"]  # corners and centre of a 5 x 5 grid


def _shocked_city(seed: int, shock: float):
    """Outages in five zones only; on every local day one of them is out, incidents of the
    WHOLE city are ``shock`` times higher (a heat wave, a festival week). Returns the city,
    the rates without the lamp effect and the planted lamp multiplier per row."""
    c = simulate_city(zones=25, weeks=16, seed=seed, base=1.5e-4)
    cube = c.cube
    lit = cube["zone_id"].isin(LIT).to_numpy()
    cube.loc[~lit, "lamps_out"] = 0
    mu0 = c.extra["mu_lamps_on"]
    mult = np.where(lit & (mu0 > 0), c.extra["mu"] / np.where(mu0 > 0, mu0, 1.0), 1.0)
    day = pd.to_datetime(cube["local_date"]).to_numpy()
    hit = np.isin(day, np.unique(day[lamps_out_share(cube) >= O.MIN_SHARE_OUT]))
    y = np.random.default_rng(seed).poisson(mu0 * mult * np.where(hit, shock, 1.0))
    for col in [k for k in cube.columns if k.startswith("inc_")]:
        cube[col] = 0
    cube["incidents"] = y.astype(np.int32)
    cube["inc_theft"] = cube["incidents"]
    return c, mu0, mult


def test_city_wide_shock_fools_the_pooled_estimator_not_the_fixed_effects():
    """A x2 shock of the whole city on the outages' days: the old pooled counterfactual
    credits it to the outage (its interval lies above the planted ratio), the zone and day
    fixed effects do not (their interval holds it, the estimate within 15 %)."""
    c, mu0, mult = _shocked_city(68, 2.0)
    cube = c.cube
    zones, slots, zi, ti = studies.grid(cube)
    out2 = np.zeros((len(zones), len(slots)), bool)
    out2[zi, ti] = lamps_out_share(cube) >= O.MIN_SHARE_OUT
    dz = M.design(cube)
    before, _ = O.phases(out2, slots, np.timedelta64(O.WINDOW_DAYS, "D"))
    night = cube["dark"].to_numpy() & M.exposure_mask(dz)
    truth = O.planted_ratio(mu0, mult, out2[zi, ti] & night, (before & ~out2)[zi, ti] & night)

    def study(fixed: bool):
        eff = O.outage_event_study(cube, neighbours=c.neighbours, dz=dz, fixed=fixed)
        return {e.name: e for e in eff}["outage.zone.night.start"]

    old, new = study(False), study(True)
    assert old.ci_low > truth, (truth, old)
    assert new.ci_low <= truth <= new.ci_high, (truth, new)
    assert abs(new.estimate / truth - 1) < 0.15, (truth, new)
