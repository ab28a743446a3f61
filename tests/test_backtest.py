"""Rolling-origin backtest: no leakage, baselines and metrics computed by hand, model skill."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _sim_cube import simulate_city

from features.errors import InputError
from features.timeutil import utc_ns
from pipelines.models import backtest as B
from pipelines.models.results import BacktestEvaluation


@pytest.fixture(scope="module")
def city():
    """16 zones over 9 weeks, Poisson, every source (enough history for 3 weekly origins)."""
    return simulate_city(zones=16, weeks=9, seed=21, base=6e-5)


def test_origins_are_local_mondays_with_history(city):
    """Origins are local Mondays 00:00, one week apart, each with >= 4 weeks of data before it
    and a complete week after it; the last origin is the last complete week."""
    origins = B.weekly_origins(city.cube, weeks=8)
    assert len(origins) == 5  # weeks 5..9 of 9
    local = [o.tz_convert(city.timezone) for o in origins]
    assert all(t.dayofweek == 0 and t.hour == 0 for t in local)
    assert all((b - a) == pd.Timedelta(days=7) for a, b in zip(origins, origins[1:], strict=False))
    start = pd.to_datetime(city.cube["hour"], utc=True).min()
    assert origins[0] - start >= pd.Timedelta(weeks=4) - pd.Timedelta(hours=2)
    assert B.weekly_origins(city.cube, weeks=2) == origins[-2:]


def test_no_leakage_from_the_future(city):
    """An origin's forecasts do not change when every incident at or after the origin is
    replaced (all models and baselines are fitted on data before the origin only)."""
    origin = B.weekly_origins(city.cube, weeks=1)[0]
    kw = {"xgb_rounds": 30}
    a = B.forecast_at(city.cube, origin, **kw)
    cube = city.cube.copy()
    after = pd.to_datetime(cube["hour"], utc=True) >= origin
    rng = np.random.default_rng(0)
    for col in [c for c in cube.columns if c.startswith("inc_")]:
        cube.loc[after, col] = rng.integers(0, 9, int(after.sum())).astype(cube[col].dtype)
    cube["incidents"] = cube[[c for c in cube.columns if c.startswith("inc_")]].sum(axis=1)
    b = B.forecast_at(cube, origin, **kw)
    pd.testing.assert_series_equal(a["predicted"], b["predicted"])
    pd.testing.assert_series_equal(a["upper"], b["upper"])
    assert not a["observed"].equals(b["observed"])  # the outcome did change
    # and the same holds with the week's observed covariates
    c1 = B.forecast_at(city.cube, origin, covariates="observed", models=["glm"], **kw)
    c2 = B.forecast_at(cube, origin, covariates="observed", models=["glm"], **kw)
    pd.testing.assert_series_equal(c1["predicted"], c2["predicted"])


def test_seasonal_naive_matches_hand_computation():
    """Seasonal naive = mean of the same zone and hour of week over the last k weeks; a zero
    mean falls back on the zone's window mean, then on 0.5 / (k x slots per week)."""
    origin = pd.Timestamp("2026-03-02", tz="UTC")  # a Monday
    hours = pd.date_range(origin - pd.Timedelta(weeks=4), origin, freq="h", inclusive="left")
    n = len(hours)
    zone = np.array(["a"] * n + ["b"] * n + ["c"] * n)
    how = np.tile(hours.dayofweek * 24 + hours.hour, 3)
    y = np.zeros(3 * n)
    y[(zone == "a") & (how == 5)] = [1, 0, 2, 1]  # mean 1.0
    y[(zone == "b") & (how == 7)] = [4, 0, 0, 0]  # other hours: zone mean 4 / 672
    h64 = utc_ns(np.tile(hours, 3))
    pred = B.seasonal_naive(
        zone, how, y, h64, origin, np.array(["a", "a", "b", "c"]), np.array([5, 6, 9, 5]),
        k_weeks=4, slots_per_week=168,
    )  # fmt: skip
    np.testing.assert_allclose(pred, [1.0, 4 / 672, 4 / 672, 0.5 / (4 * 168)])


def test_metrics_match_hand_computation():
    """Poisson deviance, MAE, coverage, hit rate and PAI of evaluate() equal values computed
    by hand on a 20-row week."""
    rows = 20
    obs = np.array([3, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], float)
    pred = np.linspace(2.0, 0.1, rows)  # decreasing: row 0 ranks first
    frame = pd.DataFrame(
        {
            "zone_id": [f"z{i}" for i in range(rows)],
            "period_start": pd.Timestamp("2026-03-02", tz="UTC"),
            "model": "m",
            "observed": obs,
            "predicted": pred,
            "lower": 0.0,
            "upper": 2.0,
            "lower80": 0.0,
            "upper80": 1.0,
            "origin": pd.Timestamp("2026-03-02", tz="UTC"),
        }
    )
    ev = B.evaluate(frame, levels=(0.05, 0.10)).models["m"]
    dev = 2 * np.where(obs > 0, obs * np.log(np.where(obs > 0, obs, 1) / pred), 0) - 2 * (
        obs - pred
    )
    assert ev.poisson_deviance == pytest.approx(dev.mean())
    assert ev.mae == pytest.approx(np.abs(obs - pred).mean())
    assert ev.coverage95 == pytest.approx(((obs >= 0) & (obs <= 2)).mean())
    assert ev.coverage80 == pytest.approx((obs <= 1).mean())
    # 5 % of 20 rows = row 0 (3 of 8 incidents); 10 % = rows 0-1 (3 of 8)
    assert ev.hit_rate["5%"] == pytest.approx(3 / 8)
    assert ev.pai["5%"] == pytest.approx((3 / 8) / 0.05)
    assert ev.pai["10%"] == pytest.approx((3 / 8) / 0.10)


def test_hotspot_concentrates_on_recent_incidents():
    """The recent-hotspot forecast puts more on zones with recent incidents and their
    neighbours than on far zones, and its week total is the window's weekly mean."""
    origin = pd.Timestamp("2026-03-02", tz="UTC")
    hours = pd.date_range(origin - pd.Timedelta(weeks=4), origin, freq="h", inclusive="left")
    n = len(hours)
    zone_idx = np.repeat(np.arange(3), n)
    how = np.tile(hours.dayofweek * 24 + hours.hour, 3)
    y = np.zeros(3 * n)
    y[:n][-10:] = 1  # zone 0: 10 recent incidents
    xy = np.array([[0.0, 0.0], [500.0, 0.0], [5000.0, 0.0]])
    kern = B.hotspot_weights(xy, 3)
    test_how = np.arange(168)
    pred = {
        z: B.recent_hotspot(
            zone_idx, how, y, utc_ns(np.tile(hours, 3)), origin, np.full(168, z), test_how,
            kernel=kern,
        ).sum()
        for z in range(3)
    }  # fmt: skip
    assert pred[0] > pred[1] > pred[2]
    assert sum(pred.values()) == pytest.approx(10 / 4, rel=1e-6)


def test_models_beat_seasonal_naive_on_simulated_city(city):
    """On a city simulated from the rate model, GLM and XGBoost have a lower Poisson deviance
    than both seasonal naives; PAI at 5 % is reported for every model and baseline; the GLM's
    95 % intervals cover at least 93 % of zone-hours."""
    res = B.run_backtest(city.cube, weeks=3, centroids=city.centroids, xgb_rounds=60)
    ev = res.evaluation
    m = ev.models
    assert ev.weeks == 3 and ev.n_origins == 3
    for model in ("glm", "xgb"):
        for naive in ("seasonal_naive_4w", "seasonal_naive_8w"):
            assert m[model].poisson_deviance < m[naive].poisson_deviance, (model, naive)
    for name in B.MODELS:
        assert np.isfinite(m[name].pai["5%"])
    assert m["glm"].coverage95 >= 0.93
    assert list(res.frame.columns) == B.BACKTEST_COLUMNS
    n_slots = res.frame.groupby("model").size()
    assert (n_slots == 16 * 3 * 168).all()
    written = json.loads(json.dumps(ev.to_json()))  # serialisable as evaluation.json
    assert BacktestEvaluation.from_json(written) == ev  # and read back unchanged
    assert "glm" in ev.summary()


def test_daily_grain_backtest():
    """At daily grain the backtest runs (hour-of-week = day of week) and the GLM beats the
    4-week seasonal naive."""
    c = simulate_city(zones=16, weeks=20, grain="1d", seed=2)
    res = B.run_backtest(c.cube, weeks=3, grain="1d", models=["glm", "seasonal_naive_4w"])
    m = res.evaluation.models
    assert m["glm"].poisson_deviance < m["seasonal_naive_4w"].poisson_deviance
    assert (res.frame.groupby("model").size() == 16 * 21).all()


def test_optional_eb_rate_runs_and_blends_at_daily_grain():
    """eb_rate_52w is run when asked for, its rows pass the schema, and the blend of the
    backtest's forecasts scores every zone-day."""
    from pipelines.models.blend import rolling_blend

    c = simulate_city(zones=16, weeks=20, grain="1d", seed=2)
    models = ["eb_rate_52w", "recent_rate_8w", "seasonal_naive_4w"]
    res = B.run_backtest(c.cube, weeks=3, grain="1d", models=models)
    B.backtest_schema().validate(res.frame)
    m = res.evaluation.models
    assert m["eb_rate_52w"].poisson_deviance < m["seasonal_naive_4w"].poisson_deviance
    b = rolling_blend(res.frame, members=models)
    assert len(b.frame) == 16 * 21 and b.frame["predicted"].notna().all()
    assert len(b.weights) == 3


def test_short_cube_says_why():
    """A cube shorter than 4 weeks + 1 gives no origin and the evaluation says why."""
    c = simulate_city(zones=4, weeks=4, seed=1)
    res = B.run_backtest(c.cube, weeks=8, models=["seasonal_naive_4w"])
    assert res.evaluation.weeks == 0
    assert "4 weeks of data before it" in res.evaluation.notes[0]
    # no forecast at all: evaluation.json has no origins, incidents nor per-origin scores
    assert set(res.evaluation.to_json()) == {
        "models", "n_rows", "group", "grain", "weeks", "covariates", "flag_levels", "deviance",
        "intervals", "notes",
    }  # fmt: skip


def test_bad_arguments_are_input_errors(city):
    """Unknown models or covariate modes raise InputError with the expected values."""
    origin = B.weekly_origins(city.cube, weeks=1)[0]
    with pytest.raises(InputError, match="unknown backtest model"):
        B.forecast_at(city.cube, origin, models=["oracle"])
    with pytest.raises(InputError, match="covariates must be 'forecast' or 'observed'"):
        B.forecast_at(city.cube, origin, covariates="future")


def test_tiny_city_models_beat_seasonal_naive(fitted_store):
    """Issue 4 acceptance: in `vigie fit`'s backtest on the tiny synthetic city, GLM and
    XGBoost beat the seasonal naives on Poisson deviance, and PAI at 5 % is reported for every
    model and baseline."""
    raw = json.loads((fitted_store / "models" / "evaluation.json").read_text())
    assert BacktestEvaluation.from_json(raw).to_json() == raw  # the typed result round-trips
    m = BacktestEvaluation.from_json(raw).models
    assert set(m) == set(B.MODELS)
    for model in ("glm", "xgb"):
        for naive in ("seasonal_naive_4w", "seasonal_naive_8w"):
            assert m[model].poisson_deviance < m[naive].poisson_deviance, (model, naive)
    for name in B.MODELS:
        assert m[name].pai["5%"] > 0
    bt = pd.read_parquet(fitted_store / "models" / "backtest.parquet")
    assert set(bt["model"]) == set(B.MODELS)
    assert (bt["lower"] <= bt["upper"]).all() and (bt["lower80"] >= bt["lower"]).all()
    origins = pd.to_datetime(bt["origin"], utc=True)
    assert (pd.to_datetime(bt["period_start"], utc=True) >= origins).all()


def test_backtest_schema_rejects_inconsistent_rows():
    """The pandera contract of backtest.parquet reports every broken rule at once (lazy):
    an unknown model, a negative forecast and a 95 % bound inside the 80 % one."""
    import pandera.errors as pe

    t = pd.Timestamp("2026-03-02", tz="UTC")
    bad = pd.DataFrame(
        {
            "zone_id": ["a", "b"],
            "period_start": [t, t],
            "model": ["glm", "oracle"],
            "observed": [1.0, 0.0],
            "predicted": [-0.5, 1.0],
            "lower": [1.0, 0.0],
            "upper": [3.0, 2.0],
            "lower80": [0.0, 0.0],
            "upper80": [2.0, 1.0],
            "origin": [t, t],
        }
    )
    with pytest.raises(pe.SchemaErrors, match="oracle|isin") as err:
        B.backtest_schema().validate(bad, lazy=True)
    text = str(err.value)
    assert "greater_than_or_equal_to" in text and "lower95<=lower80" in text
