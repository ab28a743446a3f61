"""How the forecasting models are fitted fast without changing what they estimate: the block
IRLS against statsmodels, recent-rate features computed once for every origin, warm starts,
predictive quantiles and expected deviance from one pmf pass against scipy; XGBoost's zone
features (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from _sim_forecast import daily_city
from scipy import stats

from features.store import Store
from pipelines import models as M
from pipelines.models.exposure import exposure_plan
from pipelines.models.history import HistoryRows, RowKeys, WeeklyHistory
from pipelines.models.pirls import Blocks, _irls
from pipelines.models.predictor import load_predictor, predictive_quantiles, save_models
from pipelines.models.scoring import expected_deviance, poisson_deviance
from pipelines.models.xgb import fit_xgb
from pipelines.models.zone_glm import fit_zone_glm


def _design(cube: pd.DataFrame) -> pd.DataFrame:
    dz = M.design(cube, grain="1d")
    plan = exposure_plan(dz["zone_id"].to_numpy(), dz["exposure"].to_numpy())
    dz["exposure"], dz["presence_imputed"] = plan.apply(
        dz["zone_id"].to_numpy(), dz["exposure"].to_numpy()
    )
    return dz


@pytest.fixture(scope="module")
def city():
    cube = daily_city(zones=12, days=280, zone_sd=0.8, seed=4)
    return cube, _design(cube), cube["incidents"].to_numpy(float)


def test_block_irls_is_the_poisson_glm_with_zone_dummies():
    """Unpenalised, the block IRLS (dense terms + zone sums, no dummies built) gives the
    estimates of statsmodels' Poisson GLM on the explicit zone dummies."""
    rng = np.random.default_rng(0)
    n, nz = 3000, 6
    zi = rng.integers(0, nz, n)
    D = rng.normal(size=(n, 2))
    y = rng.poisson(np.exp(0.3 * D[:, 0] - 0.2 * D[:, 1] + np.linspace(-1, 1, nz)[zi]))
    X = Blocks.of(D, zi, nz)
    beta, _, _ = _irls(X, y.astype(float), np.zeros(2 + nz), 0.0, np.zeros(2 + nz), iters=50)
    dummies = np.eye(nz)[zi]
    ref = sm.GLM(y, np.hstack([D, dummies]), family=sm.families.Poisson()).fit()
    np.testing.assert_allclose(beta, ref.params, atol=1e-6)


def test_recent_rates_computed_once_equal_each_fits_own(city):
    """The recent-rate features of every row, from the history of every row, equal those a fit
    gets from the history of the rows before its origin alone (what lets the backtest share
    them); and a frame in microseconds gives the features of one in nanoseconds."""
    cube, dz, y = city
    rows = HistoryRows.of(dz, y, slots_per_week=7)
    keys = RowKeys.of(dz)
    before = keys.hours < np.quantile(keys.hours, 0.6)
    own = WeeklyHistory.of(dz, y, before, slots_per_week=7).features(dz[before])
    np.testing.assert_allclose(rows.recent[before], own[["recent_4w", "recent_13w",
                               "recent_52w", "city_4w"]].to_numpy())  # fmt: skip
    assert np.abs(rows.recent[before]).max() > 0.1  # not trivially zero
    dz_us = dz.assign(hour=dz["hour"].astype("datetime64[us, UTC]"))
    np.testing.assert_array_equal(HistoryRows.of(dz_us, y, slots_per_week=7).recent, rows.recent)


def test_warm_start_reaches_the_cold_estimates(city):
    """A fit started from another origin's estimates (the backtest) or another group's lands
    where a cold start does."""
    _, dz, y = city
    h = RowKeys.of(dz).hours
    early = fit_zone_glm(dz, y, grain="1d", mask=h < np.quantile(h, 0.7))
    cold = fit_zone_glm(dz, y, grain="1d")
    warm = fit_zone_glm(dz, y, grain="1d", start=early)
    np.testing.assert_allclose(warm.params, cold.params, atol=2e-4)
    np.testing.assert_allclose(warm.zone_effects, cold.zone_effects, atol=2e-4)
    assert warm.alpha == pytest.approx(cold.alpha, rel=1e-3, abs=1e-5)


def test_quantiles_and_expected_deviance_match_scipy():
    """Predictive quantiles read off one pmf pass are scipy's ppf (Poisson and NB2, small and
    large means, NaN kept); the expected deviance is the sum over scipy's pmf."""
    rng = np.random.default_rng(1)
    mu = np.r_[rng.uniform(0, 3, 3000), rng.exponential(30, 300), [0.0, 1e-9, np.nan, 2500.0]]
    qs = (0.025, 0.1, 0.9, 0.975)
    ok = np.isfinite(mu)
    for a in (0.0, 0.05, 0.7, 4.0):
        got = predictive_quantiles(mu, a, qs)
        for j, q in enumerate(qs):
            n = 1 / a if a else 0
            ref = stats.nbinom.ppf(q, n, n / (n + mu[ok])) if a else stats.poisson.ppf(q, mu[ok])
            np.testing.assert_array_equal(got[ok, j], np.where(mu[ok] > 0, ref, 0.0))
        assert np.isnan(got[~ok]).all()
    m = rng.uniform(0.01, 4, 500)
    al = np.r_[np.zeros(250), np.full(250, 0.6)]
    ks = np.arange(401)
    r = 1 / np.where(al > 0, al, 1)
    pmf = np.where(al[:, None] > 0, stats.nbinom.pmf(ks, r[:, None], (r / (r + m))[:, None]),
                   stats.poisson.pmf(ks, m[:, None]))  # fmt: skip
    dev = poisson_deviance(ks[None, :].astype(float), m[:, None])
    assert expected_deviance(m, al) == pytest.approx(float((pmf * dev).sum(axis=1).mean()))


def test_xgboost_sees_each_zones_level(city, tmp_path):
    """Zone effects that presence does not carry: XGBoost with the zones' recent rates
    forecasts the last weeks better than without them, and a saved model predicts what the
    fitted one does (its weekly history travels with it)."""
    cube, dz, y = city
    h = RowKeys.of(dz).hours
    train = h < np.quantile(h, 0.8)
    kw = {"grain": "1d", "mask": train, "rounds": 60}
    dev = {}
    for zf in (True, False):
        m = fit_xgb(dz, y, zone_features=zf, **kw)
        dev[zf] = poisson_deviance(y[~train], m.mean(dz[~train])).mean()
        if zf:
            with_zones = m
    assert dev[True] < 0.95 * dev[False]
    assert "recent_52w" in with_zones.columns and with_zones.history is not None
    save_models(tmp_path / "models", {}, {"all": with_zones}, grain="1d", features=[])
    pred = load_predictor(Store(tmp_path))
    loaded = pred.xgbs["all"]
    np.testing.assert_allclose(loaded.mean(dz[~train]), with_zones.mean(dz[~train]), rtol=1e-6)
