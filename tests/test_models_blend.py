"""The forecast combination (pipelines.models.blend) and the empirical-Bayes rate baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.backtest import BACKTEST_COLUMNS
from pipelines.models.baselines import eb_rate, recent_rate
from pipelines.models.blend import convex_weights, rolling_blend
from pipelines.models.scoring import evaluate


def test_convex_weights_recover_a_planted_mixture():
    rng = np.random.default_rng(0)
    n = 40_000
    a = rng.gamma(2.0, 0.5, n)
    b = rng.gamma(2.0, 0.5, n)
    c = rng.gamma(2.0, 0.5, n)
    y = rng.poisson(0.3 * a + 0.7 * b)
    w = convex_weights(np.column_stack([a, b, c]), y)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0).all()
    np.testing.assert_allclose(w, [0.3, 0.7, 0.0], atol=0.04)


def test_convex_weights_is_the_deviance_minimum_on_the_simplex():
    """Independent check: a grid over the 2-simplex finds no lower deviance."""
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2.0, 0.5, 3000), rng.gamma(3.0, 0.3, 3000)
    y = rng.poisson(0.5 * a + 0.5 * b + 0.2)

    def dev(w: float) -> float:
        mu = w * a + (1 - w) * b
        return float(np.mean(mu - y * np.log(mu)))

    w = convex_weights(np.column_stack([a, b]), y)
    grid = min(dev(g) for g in np.linspace(0, 1, 1001))
    assert dev(w[0]) <= grid + 1e-9


def _frame(seed: int = 0, n_origins: int = 4) -> pd.DataFrame:
    """Backtest rows: 20 zones x 7 days per weekly origin; ``good`` is the true mean, ``bad``
    a biased one."""
    rng = np.random.default_rng(seed)
    rows = []
    origins = pd.date_range("2019-01-07", periods=n_origins, freq="14D", tz="UTC")
    for o in origins:
        days = pd.date_range(o, periods=7, freq="D")
        zone = np.repeat([f"z{i}" for i in range(20)], 7)
        ps = np.tile(days, 20)
        mu = rng.gamma(2.0, 1.0, len(zone))
        y = rng.poisson(mu).astype(float)
        for name, pred in (("good", mu), ("bad", mu * 2.5 + 0.5)):
            rows.append(
                pd.DataFrame(
                    {
                        "zone_id": zone,
                        "period_start": ps,
                        "model": name,
                        "observed": y,
                        "predicted": pred,
                        "lower": 0.0,
                        "upper": 0.0,
                        "lower80": 0.0,
                        "upper80": 0.0,
                        "alpha": 0.0,
                        "origin": o,
                    }  # fmt: skip
                )
            )
    return pd.concat(rows, ignore_index=True)[BACKTEST_COLUMNS]


def test_blend_weights_never_see_the_scored_origin():
    f = _frame()
    b = rolling_blend(f, members=("good", "bad"), shrink=1.0)
    origins = sorted(b.weights)
    assert b.n_train[origins[0]] == 0
    assert b.weights[origins[0]] == {"good": 0.5, "bad": 0.5}  # nothing earlier: equal
    assert b.weights[origins[-1]]["good"] > 0.9  # learnt from the earlier origins
    # change everything at the last origin: its weights (and all others) do not move
    last = f["origin"] == f["origin"].max()
    g = f.copy()
    g.loc[last, "observed"] = 50.0
    g.loc[last & (g["model"] == "good"), "predicted"] = 0.01
    b2 = rolling_blend(g, members=("good", "bad"), shrink=1.0)
    assert b2.weights == b.weights
    # while the earlier origins' outcomes do move it (the check above can fail)
    first = f["origin"] == f["origin"].min()
    h = f.copy()
    h.loc[first, "observed"] = h.loc[first, "observed"] * 3 + 1
    b3 = rolling_blend(h, members=("good", "bad"), shrink=1.0)
    assert b3.weights[origins[1]]["bad"] > b.weights[origins[1]]["bad"] + 0.2


def test_blend_rows_are_the_weighted_means_and_score():
    f = _frame(seed=2)
    b = rolling_blend(f, members=("good", "bad"), shrink=0.8)
    wide = f.pivot_table(index=["zone_id", "period_start"], columns="model", values="predicted")
    out = b.frame.set_index(["zone_id", "period_start"])
    for o, w in b.weights.items():
        rows = out[out["origin"] == pd.Timestamp(o)]
        ref = wide.loc[rows.index, "good"] * w["good"] + wide.loc[rows.index, "bad"] * w["bad"]
        np.testing.assert_allclose(rows["predicted"], ref.to_numpy())
        if b.n_train[o]:  # shrunk towards equal weights
            assert min(w.values()) >= 0.2 * 0.5 - 1e-12
    assert list(b.frame.columns) == BACKTEST_COLUMNS
    assert (b.frame["lower"] <= b.frame["predicted"]).all()
    assert (b.frame["upper"] >= b.frame["upper80"]).all()
    ev = evaluate(pd.concat([f, b.frame], ignore_index=True))
    assert ev.models["blend"].poisson_deviance < ev.models["bad"].poisson_deviance


def _eb_reference(zone, how, y, n_zones, n_how):
    """eb_rate's formula cell by cell (Clayton & Kaldor 1987 moments), with pandas."""
    df = pd.DataFrame({"z": zone, "h": how, "y": y})
    c = df.groupby(["z", "h"])["y"].sum().unstack(fill_value=0.0)
    n = df.groupby(["z", "h"])["y"].size().unstack(fill_value=0).astype(float)
    zr = c.sum(1) / n.sum(1)
    prof = (c.sum(0) + 0.5) / n.sum(0)
    prof = prof / ((c.to_numpy().sum() + 0.5 * n_how) / n.to_numpy().sum())
    m = np.outer(zr, prof)
    e = n.to_numpy() * m
    v = (((c.to_numpy() - e) ** 2 / e).sum() - e.size) / e.sum()
    v = max(v, 0.0)
    return m * (c.to_numpy() + 1 / v) / (e + 1 / v) if v > 0 else m


def test_eb_rate_matches_an_independent_computation_and_planted_rates():
    rng = np.random.default_rng(3)
    n_zones, weeks = 12, 52
    hours = pd.date_range("2018-01-01", periods=weeks * 7, freq="D")
    zone = np.repeat(np.arange(n_zones), len(hours))
    t = np.tile(hours.to_numpy(), n_zones)
    how = np.tile(hours.day_of_week.to_numpy() * 24, n_zones).astype(np.int64)
    # real-data rates (0.05-0.4 a zone-day): zone x weekday profile x a small cell effect
    prof = np.array([1.0, 1.1, 1.0, 1.2, 1.4, 0.8, 0.6])
    cell = rng.gamma(20.0, 1 / 20.0, (n_zones, 7))
    truth = np.linspace(0.05, 0.4, n_zones)[:, None] * prof[None, :] * cell
    y = rng.poisson(truth[zone, how // 24]).astype(float)
    origin = pd.Timestamp(hours[-1] + pd.Timedelta(days=1), tz="UTC")
    test_z = np.repeat(np.arange(n_zones), 7)
    test_h = np.tile(np.arange(7) * 24, n_zones)
    got = eb_rate(zone, how, y, t.astype("datetime64[ns]"), origin, test_z, test_h,
                  n_zones=n_zones)  # fmt: skip
    ref = _eb_reference(zone, how // 24, y, n_zones, 7)
    np.testing.assert_allclose(got, ref.ravel(), rtol=1e-9)
    # shrinkage: closer to the planted cell rates than the raw cell means, on the whole
    raw = (pd.DataFrame({"z": zone, "h": how // 24, "y": y})
           .groupby(["z", "h"])["y"].mean().to_numpy())  # fmt: skip
    err_eb = np.mean((got - truth.ravel()) ** 2)
    err_raw = np.mean((raw - truth.ravel()) ** 2)
    assert err_eb < 0.85 * err_raw
    # counts after the origin do not change the forecast at the origin
    early = pd.Timestamp(hours[300], tz="UTC")
    y2 = y.copy()
    y2[t >= np.datetime64(early.tz_localize(None))] += 5.0
    kw = {"n_zones": n_zones}
    a = eb_rate(zone, how, y, t.astype("datetime64[ns]"), early, test_z, test_h, **kw)
    b = eb_rate(zone, how, y2, t.astype("datetime64[ns]"), early, test_z, test_h, **kw)
    np.testing.assert_array_equal(a, b)


def test_recent_rate_keeps_the_zone_level_at_daily_grain():
    """A flat weekday profile leaves each zone's 8-week rate unchanged: the profile is
    normalised over the 7 hours of week that a daily cube holds, not over all 168."""
    days = pd.date_range("2019-01-07", periods=8 * 7, freq="D")
    n_zones = 3
    zone = np.repeat(np.arange(n_zones), len(days))
    t = np.tile(days.to_numpy(), n_zones).astype("datetime64[ns]")
    how = np.tile(days.day_of_week.to_numpy() * 24, n_zones).astype(np.int64)
    y = np.tile(np.ones(len(days)), n_zones) * np.repeat([0.0, 1.0, 2.0], len(days))
    origin = pd.Timestamp(days[-1] + pd.Timedelta(days=1), tz="UTC")
    test_z = np.repeat(np.arange(n_zones), 7)
    test_h = np.tile(np.arange(7) * 24, n_zones)
    got = recent_rate(zone, how, y, t, origin, test_z, test_h, n_zones=n_zones, slots_per_week=7)
    np.testing.assert_allclose(got, np.repeat([0.5 / 56, 1.0, 2.0], 7), rtol=1e-12)
