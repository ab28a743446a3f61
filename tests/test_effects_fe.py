"""The effect fits' zone and week fixed effects (pipelines.models.effects_fe), checked against
statsmodels' Poisson and negative-binomial GLMs with explicit dummies, and the event IRR's
planted estimand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from _sim_cube import simulate_city
from statsmodels.stats.sandwich_covariance import cov_cluster, cov_cluster_2groups

from features.synth.tally import Tally
from pipelines import models as M
from pipelines.models import effects_fe as FE
from pipelines.models import robust
from pipelines.models.design import build_cells, design_features


@pytest.fixture(scope="module")
def panel():
    """A simulated cube whose transit entries sit in a few zones that also have their own
    incident level and whose incidents carry a trend over the weeks: what a pooled fit, or
    a backfitting stopped early, credits to transit."""
    c = simulate_city(zones=12, weeks=6, seed=5, base=2e-4, irr={"transit_k": 1.1})
    cube = c.cube.copy()
    zone = pd.factorize(cube["zone_id"])[0]
    day = robust.local_day(cube)
    level = np.exp(np.linspace(-0.6, 0.6, zone.max() + 1))[zone]  # hubs: higher level
    trend = np.exp(0.3 * (day - day.min()) / max(day.max() - day.min(), 1))
    cube["ridership_entries"] = (zone >= 8) * 1500.0 * (1 + np.sin(day)) / 2
    dz = M.design(cube)
    mu = (
        dz["exposure"].to_numpy(np.float64) * 2e-4 * level * trend
        * np.exp(np.log(1.1) * dz["transit_k"].to_numpy(np.float64))
    )  # fmt: skip
    y = np.random.default_rng(0).poisson(np.nan_to_num(mu)).astype(np.float64)
    keys = FE.fixed_keys(cube, day)
    return cube, dz, y, keys, day


def _psd(V: np.ndarray) -> np.ndarray:
    """The features' block of a two-way covariance with its negative eigenvalues set to 0
    (Cameron, Gelbach & Miller 2011, section 2.3: with 8 or 12 zones it is not PSD here)."""
    lam, U = np.linalg.eigh((V + V.T) / 2)
    return (U * np.maximum(lam, 0.0)) @ U.T


def _dummies(dz: pd.DataFrame, keys, feats) -> np.ndarray:
    """The design of ``feats`` with an intercept and a dummy per zone, week, hour and weekday."""
    parts = [dz[feats].reset_index(drop=True)]
    for name, k in (("z", keys[0]), ("w", keys[1]), ("h", dz["local_hour"]), ("d", dz["dow"])):
        parts.append(pd.get_dummies(pd.Series(np.asarray(k)), prefix=name, drop_first=True))
    return sm.add_constant(pd.concat(parts, axis=1).astype(float).to_numpy())


def _dummies_fit(dz: pd.DataFrame, y: np.ndarray, keys, day, feats):
    """statsmodels' Poisson GLM with a dummy per zone, week, hour and weekday."""
    rows = np.isfinite(dz["exposure"].to_numpy(np.float64)) & (dz["exposure"] > 0).to_numpy()
    X = _dummies(dz, keys, feats)[rows]
    return sm.GLM(
        y[rows], X, family=sm.families.Poisson(),
        exposure=dz["exposure"].to_numpy(np.float64)[rows],
    ).fit(cov_type="cluster", cov_kwds={"groups": day[rows], "use_correction": False})  # fmt: skip


def test_fixed_effects_fit_is_the_glm_with_dummies(panel):
    """The backfitted zone and week factors reach the maximum likelihood of the GLM with a
    dummy per zone and per week (statsmodels): the same IRRs to 1e-3; and the features'
    covariance with the factors partialled out is statsmodels' two-way cluster-robust one by
    zone and day on that GLM (``cov_cluster_2groups``: each term's G / (G - 1) the only
    correction, its OLS factor (N - 1) / (N - K) taken out)."""
    cube, dz, y, keys, day = panel
    feats = design_features(dz)
    glm = M.fit_glm(dz, y, family="poisson")
    mask = np.ones(len(dz), bool)
    cells = build_cells(dz, features=feats)
    fit, frame = FE.refit_fixed(dz, y, glm, keys=keys, mask=mask, cluster=day, cells=cells)
    fit = FE.fe_cluster_cov(frame, y, fit, keys=keys, mask=mask, cluster=day, cells=cells)
    gone = FE.absorbed(dz, feats, keys, np.isfinite(dz["exposure"].to_numpy(np.float64)))
    assert set(fit.not_estimable) >= set(gone)  # a feature filling whole weeks says why
    feats = [f for f in feats if f not in gone]
    ref = _dummies_fit(dz, y, keys, day, feats)
    rows = np.isfinite(dz["exposure"].to_numpy(np.float64)) & (dz["exposure"] > 0).to_numpy()
    cov2 = cov_cluster_2groups(ref, keys[0][rows], day[rows])[0]
    n, k = int(rows.sum()), len(ref.params)
    cov2 = _psd(cov2[1 : 1 + len(feats), 1 : 1 + len(feats)] * (n - k) / (n - 1))
    assert fit.cov_type == FE.TWO_WAY
    for j, f in enumerate(feats):
        i = list(fit.terms).index(f)
        assert fit.params[i] == pytest.approx(ref.params[1 + j], abs=1e-3), f
        se_ref = float(np.sqrt(cov2[j, j]))
        assert np.sqrt(fit.cov[i, i]) == pytest.approx(se_ref, rel=0.02), f
    # the planted transit IRR is found; a pooled fit (no factors) credits the hubs' level to it
    t = list(fit.terms).index("transit_k")
    assert abs(fit.params[t] - np.log(1.1)) < 3 * np.sqrt(fit.cov[t, t])
    pooled = glm.irr_table().set_index("term").loc["transit_k", "irr"]
    assert abs(np.log(pooled / 1.1)) > 5 * np.sqrt(fit.cov[t, t])


def test_nb2_fixed_effects_fit_is_statsmodels_negative_binomial_with_dummies():
    """The NB2 branch, checked independently: with a cell per row (transit entries distinct
    on every row, cells unrounded), the backfitted factors and the NB2 quasi-likelihood reach
    statsmodels' negative-binomial GLM (the same alpha) with a dummy per zone, week, hour and
    weekday: the same coefficients to 1e-3; and the features' covariance with the factors
    partialled out (the NB2 weights ``1 / (1 + alpha mu)``) is statsmodels' cluster-robust
    sandwich on its expected information, to 0.5 %. Gamma-Poisson draws (alpha 0.5)."""
    c = simulate_city(zones=8, weeks=4, seed=7, base=2e-4, irr={"transit_k": 1.1})
    cube = c.cube.copy()
    rng = np.random.default_rng(11)
    zone = pd.factorize(cube["zone_id"])[0]
    day = robust.local_day(cube)
    cube["ridership_entries"] = (zone >= 5) * 1500.0 * (1 + np.sin(day)) / 2 + rng.uniform(
        0, 50, len(cube)
    )
    dz = M.design(cube)
    level = np.exp(np.linspace(-0.6, 0.6, zone.max() + 1))[zone]
    mu = np.nan_to_num(
        dz["exposure"].to_numpy(np.float64) * 2e-4 * level
        * np.exp(np.log(1.1) * dz["transit_k"].to_numpy(np.float64))
    )  # fmt: skip
    y = rng.poisson(mu * rng.gamma(2.0, 0.5, len(mu))).astype(np.float64)
    keys = FE.fixed_keys(cube, day)
    feats = design_features(dz)
    cells = build_cells(dz, features=feats, resolution=0)
    assert cells.n == len(dz)  # a cell per row: the cell quasi-likelihood is the row NB2's
    glm = M.fit_glm(dz, y, family="negbin", cells=cells)
    mask = np.ones(len(dz), bool)
    fit, frame = FE.refit_fixed(dz, y, glm, keys=keys, mask=mask, cluster=day, cells=cells)
    fit = FE.fe_cluster_cov(frame, y, fit, keys=keys, mask=mask, cluster=day, cells=cells)
    assert fit.family == "negbin" and 0.2 < fit.alpha < 1.0
    gone = FE.absorbed(dz, feats, keys, np.isfinite(dz["exposure"].to_numpy(np.float64)))
    feats = [f for f in feats if f not in gone]
    rows = np.isfinite(dz["exposure"].to_numpy(np.float64)) & (dz["exposure"] > 0).to_numpy()
    X = _dummies(dz, keys, feats)[rows]
    ref = sm.GLM(
        y[rows], X, family=sm.families.NegativeBinomial(alpha=fit.alpha),
        exposure=dz["exposure"].to_numpy(np.float64)[rows],
    ).fit()  # fmt: skip
    # the two-way cluster-robust sandwich (zone, day) on the expected information (the GLM's
    # Fisher scoring), each term with its G / (G - 1)
    bread = np.linalg.inv(ref.model.hessian(ref.params, observed=False))
    score = ref.model.score_obs(ref.params)
    zone_r, day_r = zone[rows], day[rows]
    both = pd.factorize(pd.MultiIndex.from_arrays([zone_r, day_r]))[0]
    cov_ref = sum(
        sign * cov_cluster((score, bread), g, use_correction=False) * G / (G - 1)
        for sign, g in ((1, zone_r), (1, day_r), (-1, both))
        for G in [len(np.unique(g))]
    )
    cov_ref = _psd(cov_ref[1 : 1 + len(feats), 1 : 1 + len(feats)])
    for j, f in enumerate(feats):
        i = list(fit.terms).index(f)
        assert fit.params[i] == pytest.approx(ref.params[1 + j], abs=1e-3), f
        assert np.sqrt(fit.cov[i, i]) == pytest.approx(np.sqrt(cov_ref[j, j]), rel=5e-3), f


def test_backfitting_that_does_not_converge_says_so(panel):
    """With too few fits allowed the refit raises, rather than report IRRs of factors that
    have not absorbed the zones."""
    cube, dz, y, keys, day = panel
    glm = M.fit_glm(dz, y, family="poisson")
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        FE.refit_fixed(dz, y, glm, keys=keys, mask=np.ones(len(dz), bool), max_rounds=2)


def test_whole_week_features_get_the_days_of_the_weeks_they_start_or_end_in():
    """A feature that fills whole weeks is identified, beside the week factors, only by the
    days of the weeks it starts or ends in: its t degrees of freedom count those."""
    day = np.repeat(np.arange(28) + 4, 2)  # 1970-01-05 (a Monday) on: four ISO weeks
    school = ((day >= 9) & (day <= 19)).astype(float)  # Sat of week 1 to Tue of week 3
    rain = (day % 3 == 0).astype(float)
    dz = pd.DataFrame({"exposure": 1.0, "school_holiday": school, "rain": rain})
    out = robust.treated_days(dz, ["school_holiday", "rain"], day, np.ones(len(day), bool))
    assert out["school_holiday"] == (11, 28, 4, 3)  # 2 + 2 days in mixed weeks, 5 + 5 without
    g1, g, g1w, dof = out["rain"]
    assert (g1, g, g1w) == (9, 28, 9) and dof == min(9, 19) - 1


def test_event_estimand_is_the_pseudo_true_log_linear_coefficient():
    """The event IRR truth solves the Poisson score of a log-linear term: with one size of
    event it is the ratio of expected incidents per 1 000 attendees; with two, the score is 0
    at it."""
    t = Tally(effects=[], names=("a",), n_days=1)
    k = np.array([[2.0, 0.0], [2.0, 0.0]])
    t.add_events(k, mu=np.array([[3.0, 1.0], [6.0, 1.0]]), mu0=np.array([[1.0, 1.0], [2.0, 1.0]]))
    assert t.event_estimand()["irr"] == pytest.approx(3.0**0.5, rel=1e-9)
    t.add_events(np.array([[5.0]]), mu=np.array([[4.0]]), mu0=np.array([[1.0]]))
    e = t.event_estimand()
    kk, mu, mu0 = np.array([2.0, 2.0, 5.0]), np.array([3.0, 6.0, 4.0]), np.array([1.0, 2.0, 1.0])
    b = np.log(e["irr"])
    assert abs((kk * (mu - mu0 * np.exp(b * kk))).sum()) < 1e-6
    assert e["rows"] == 3


def test_a_p_value_that_underflows_to_zero_keeps_q_zero():
    """A p value of exactly 0 (an effect measured to many standard errors) has q 0, not 1."""
    from pipelines.models.effects import with_family_q
    from pipelines.models.results import Effect

    effs = [
        Effect(name=f"irr.all.{f}", kind="irr", estimable=True, estimate=1.3, p_value=p)
        for f, p in (("dark", 0.0), ("rain", 0.2), ("holiday", 0.01))
    ]
    q = [e.details["q_value_bh"] for e in with_family_q(effs)]
    assert q[0] == 0.0 and q[2] == pytest.approx(0.015) and q[1] == pytest.approx(0.2)
