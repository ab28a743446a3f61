"""Forecasts wherever there are incidents (issue 12): the exposure fallback and its per-zone
report, the presence elasticity (the offset as a tested special case), the choice of the
downstream model, PAI on true areas, and calibration scores for counts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _sim_cube import simulate_city, write_store
from _sim_forecast import daily_city

from features.store import Store
from pipelines import models as M
from pipelines.models.exposure import ExposurePlan, exposure_plan, zone_areas
from pipelines.models.results import ModelScore
from pipelines.models.scoring import evaluate, expected_deviance, pit_coverage
from pipelines.models.selection import choose_downstream, versus_baselines
from pipelines.models.zone_glm import fit_zone_glm


# --------------------------------------------------------------------------------------------
# exposure
# --------------------------------------------------------------------------------------------
def test_exposure_plan_chooses_per_zone_and_says_so():
    """A zone with presence keeps it and fills its gaps with its mean; a zone without presence
    but with residents uses them, scaled by the median presence/population ratio; a zone with
    neither gets a constant (the median fill). The plan round-trips through JSON."""
    zone = np.array(["A", "A", "A", "B", "B", "C", "C", "D"])
    present = np.array([100.0, 300.0, np.nan, 50.0, 0.0, np.nan, np.nan, np.nan])
    plan = exposure_plan(zone, present, population={"A": 1000.0, "B": 500, "C": 2000.0})
    assert dict(plan.source) == {"A": "presence", "B": "presence", "C": "population", "D": "none"}
    # ratio presence/population: A 200/1000, B 50/500 -> median 0.15; C: 2000 x 0.15
    assert plan.fill["A"] == 200.0 and plan.fill["B"] == 50.0
    assert plan.fill["C"] == pytest.approx(300.0)
    assert plan.fill["D"] == pytest.approx(np.median([200.0, 50.0, 300.0]))
    assert plan.presence_share["A"] == pytest.approx(2 / 3) and plan.presence_share["C"] == 0
    e, imputed = plan.apply(zone, present)
    np.testing.assert_allclose(e, [100, 300, 200, 50, 50, 300, 300, 200])
    np.testing.assert_array_equal(imputed, [0, 0, 1, 0, 1, 1, 1, 1])
    assert ExposurePlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert plan.counts() == {"presence": 2, "population": 1, "none": 1}
    assert "1 zone(s) no exposure" in plan.summary()


def test_presence_ending_before_incidents_every_model_forecasts(tmp_path):
    """A study whose presence stops two weeks before its incidents, and one zone without any
    presence: `vigie fit` forecasts every zone-slot of the backtest with every model, and
    models.json says which exposure each zone used."""
    c = simulate_city(zones=9, weeks=8, seed=5, base=1.5e-4)
    cube = c.cube.copy()
    end = pd.to_datetime(cube["hour"], utc=True).max() - pd.Timedelta(days=14)
    cube.loc[pd.to_datetime(cube["hour"], utc=True) > end, "present"] = np.nan
    cube.loc[cube["zone_id"] == "Z004", "present"] = np.nan
    c.cube = cube
    root = write_store(tmp_path / "store", c)
    rep = M.fit_all(Store(root), backtest_weeks=2, xgb_rounds=20, effects=False)
    ev = rep.backtest
    assert ev is not None and not ev.absent
    assert {"zone_glm", "glm", "xgb"} <= set(ev.models)
    bt = pd.read_parquet(root / "models" / "backtest.parquet")
    fitted = bt[bt["model"].isin(["zone_glm", "glm", "xgb"])]
    assert np.isfinite(fitted["predicted"]).all()
    assert fitted.groupby("model")["zone_id"].nunique().eq(9).all()
    man = json.loads((root / "models" / "models.json").read_text())
    zones = man["exposure"]["zones"]
    assert zones["Z004"]["source"] == "none" and zones["Z000"]["source"] == "presence"
    assert 0.6 < zones["Z000"]["presence_share"] < 0.9
    assert man["downstream"]["model"] in ("zone_glm", "glm", "xgb")
    assert "exposure:" in rep.summary() and "zone(s) presence" in rep.summary()


def test_incidents_only_study_gets_models_and_forecasts(tmp_path):
    """Without any presence column, every model is fitted and backtested (constant exposure)
    and the elasticity is said to be not estimable."""
    c = simulate_city(zones=9, weeks=7, seed=6, base=1.5e-4)
    c.cube = c.cube.drop(columns=["present", "present_baseline"], errors="ignore")
    root = write_store(tmp_path / "store", c)
    rep = M.fit_all(Store(root), backtest_weeks=1, xgb_rounds=20, effects=False)
    assert rep.backtest is not None and {"zone_glm", "glm", "xgb"} <= set(rep.backtest.models)
    assert rep.exposure["counts"] == {"none": 9}
    assert "elasticity (all): not estimated" in rep.summary()
    pred = M.load_predictor(Store(root))
    assert pred.default_model == rep.downstream["model"]
    out = pred.predict(c.cube.drop(columns=["incidents"]).head(50), groups=["all"])
    assert np.isfinite(out["mean"]).all() and (out["mean"] > 0).all()


# --------------------------------------------------------------------------------------------
# elasticity: the offset is a special case, tested
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("truth", "offset_rejected"), [(1.0, False), (0.5, True)])
def test_presence_elasticity_is_estimated_not_assumed(truth, offset_rejected):
    """Incidents drawn proportional to presence give an elasticity near 1 whose interval holds
    1; drawn with elasticity 0.5, the estimate is near 0.5 and the offset is rejected."""
    cube = daily_city(elasticity=truth, seed=11 if truth == 1 else 12)
    dz = M.design(cube, grain="1d")
    plan = exposure_plan(dz["zone_id"].to_numpy(), dz["exposure"].to_numpy())
    dz["exposure"], dz["presence_imputed"] = plan.apply(
        dz["zone_id"].to_numpy(), dz["exposure"].to_numpy()
    )
    fit = fit_zone_glm(dz, cube["incidents"].to_numpy(float), grain="1d")
    e = fit.elasticity
    assert e["ci_low"] <= truth <= e["ci_high"]
    assert abs(e["estimate"] - truth) < 0.12
    assert (e["p_offset"] < 0.01) is offset_rejected


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------
def _score(dev: float, pai: float) -> ModelScore:
    return ModelScore(n=10, poisson_deviance=dev, mae=0.1, coverage80=0.8, coverage95=0.95,
                      pai={"5%": pai})  # fmt: skip


def test_downstream_is_the_best_fitted_model_by_backtest():
    """The downstream model is the fitted model of lowest deviance (not the GLM by default);
    a baseline that scores better is named; the ratios use the better of seasonal-naive 8w
    and recent-rate 8w, and the hotspot map's PAI."""
    models = {
        "zone_glm": _score(0.60, 9.0), "glm": _score(0.55, 5.0), "xgb": _score(0.70, 4.0),
        "seasonal_naive_8w": _score(0.65, 6.0), "recent_rate_8w": _score(0.50, 7.0),
        "recent_hotspot": _score(0.9, 7.5),
    }  # fmt: skip
    model, why = choose_downstream(models)
    assert model == "glm" and "does not beat recent_rate_8w" in why
    vs = versus_baselines(models)
    assert vs["glm"]["deviance_ratio"] == pytest.approx(0.55 / 0.50)
    assert vs["glm"]["yardstick"] == "recent_rate_8w"
    assert vs["zone_glm"]["pai5_ratio"] == pytest.approx(9.0 / 7.5)
    assert vs["glm"]["beats"] == {
        "seasonal_naive_8w": True, "recent_rate_8w": False, "recent_hotspot": True
    }  # fmt: skip
    assert choose_downstream({"seasonal_naive_8w": _score(0.6, 1)})[0] == "zone_glm"


# --------------------------------------------------------------------------------------------
# PAI on true areas, calibration of count forecasts
# --------------------------------------------------------------------------------------------
def test_pai_on_true_areas_matches_hand_computation():
    """Two zones, one slot, one origin: the big zone (area 19) holds 1 incident, the small one
    (area 1) none, and the model forecasts more in the big zone. With equal areas the top 5 %
    is one zone of two (half the area): PAI = 1 / 0.5 = 2. With true areas, flagging is per
    unit area: the small zone (forecast 0.5 per unit against 2/19) is flagged, it is 5 % of
    the area and holds nothing: PAI 0."""
    o = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame({
        "zone_id": ["big", "small"], "period_start": [o, o], "model": "m",
        "observed": [1.0, 0.0], "predicted": [2.0, 0.5], "lower": 0.0, "upper": 5.0,
        "lower80": 0.0, "upper80": 3.0, "origin": o,
    })  # fmt: skip
    assert evaluate(frame).models["m"].pai["5%"] == pytest.approx(2.0)
    assert evaluate(frame, area={"big": 19.0, "small": 1.0}).models["m"].pai["5%"] == 0.0
    frame2 = frame.assign(observed=[0.0, 1.0])
    assert evaluate(frame2, area={"big": 19.0, "small": 1.0}).models["m"].pai[
        "5%"
    ] == pytest.approx(1.0 / 0.05)


def test_zone_areas_in_an_equal_area_projection():
    """zone_areas agrees with the geodesic area (pyproj.Geod, WGS84) of a 0.05° square at
    the latitude of Chicago, to 0.5 %."""
    import geopandas as gpd
    from pyproj import Geod
    from shapely.geometry import box

    sq = box(-87.70, 41.80, -87.65, 41.85)
    gdf = gpd.GeoDataFrame({"zone_id": ["a"]}, geometry=[sq], crs=4326)
    geod_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(sq)[0]) / 1e6
    assert zone_areas(gdf)["a"] == pytest.approx(geod_km2, rel=0.005)


def test_pit_coverage_is_nominal_for_calibrated_counts():
    """Counts drawn from their own Poisson/NB2 forecasts: the randomised-PIT coverage is 80 % /
    95 % (while the discrete interval over-covers), and the expected deviance matches the
    observed mean deviance."""
    rng = np.random.default_rng(3)
    mu = rng.uniform(0.05, 3.0, 40_000)
    for alpha in (0.0, 0.5):
        a = np.full(len(mu), alpha)
        y = rng.poisson(mu) if alpha == 0 else rng.poisson(rng.gamma(1 / alpha, mu * alpha))
        assert pit_coverage(y, mu, a, 0.8) == pytest.approx(0.8, abs=0.01)
        assert pit_coverage(y, mu, a, 0.95) == pytest.approx(0.95, abs=0.006)
        from pipelines.models.scoring import poisson_deviance

        assert expected_deviance(mu, a) == pytest.approx(poisson_deviance(y, mu).mean(), rel=0.02)
    # y = 0 under Poisson(0.1): PIT uniform on [0, e^-0.1]; [0.1, 0.9] holds 0.8 / e^-0.1 of it
    one = pit_coverage(np.array([0.0]), np.array([0.1]), np.array([0.0]), 0.8)
    assert one == pytest.approx(0.8 / np.exp(-0.1))


def test_exposure_plan_apply_fills_per_zone_and_keeps_known_presence():
    """Each row gets its zone's fill where presence is missing or zero (looked up once per
    zone), the default for an unknown or missing zone, and its presence where known."""
    from pipelines.models.exposure import ExposurePlan

    plan = ExposurePlan(source={"a": "presence", "b": "recent_rate"},
                        fill={"a": 2.0, "b": 5.0, "None": 7.0}, default=1.5)  # fmt: skip
    ids = np.array(["a", "b", "b", "c", None, "a"], dtype=object)
    present = np.array([np.nan, 0.0, 3.0, np.nan, np.nan, 4.0])
    e, imputed = plan.apply(ids, present)
    np.testing.assert_array_equal(e, [2.0, 5.0, 3.0, 1.5, 7.0, 4.0])
    np.testing.assert_array_equal(imputed, [1, 1, 0, 1, 1, 0])
    cat = pd.Categorical(["b", "a"])
    np.testing.assert_array_equal(plan.apply(cat, np.array([np.nan, np.nan]))[0], [5.0, 2.0])
    assert plan.apply(np.array([], dtype=object), np.array([]))[0].shape == (0,)
