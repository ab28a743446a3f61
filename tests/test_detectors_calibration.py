"""History calibration of the incident detectors and its tail: planted truth and simulated nulls.

The real-data null test (permuted Chicago weeks) is in test_detectors_null.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.signals.calibration import (
    Blocks,
    CalibrationSettings,
    block_statistics,
    calibrated_pvalues,
    calibrated_tests,
)
from pipelines.signals.drift import cusum_path, standardised_residuals
from pipelines.signals.panel import Panel
from pipelines.signals.pvalues import anchored_tail_pvalue, count_upper_p, tail_pvalue


def _null_rate(gen, rng, *, pools: int, pool_size: int, new: int, level: float) -> float:
    hits = total = 0
    for _ in range(pools):
        p = tail_pvalue(gen(rng, new), gen(rng, pool_size))
        hits += int((p < level).sum())
        total += new
    return hits / total


def _cusum_max(rng: np.random.Generator, n: int, mu: float = 0.3) -> np.ndarray:
    y = rng.poisson(mu, (n, 21)).astype(float)
    return cusum_path(standardised_residuals(y, np.full(y.shape, mu)))[:, 14:].max(axis=1)


@pytest.mark.parametrize(
    "name", ["exponential", "cusum maximum (discrete, mass at 0)"], ids=["expo", "cusum"]
)
def test_tail_pvalue_is_valid_in_the_tail(name):
    """P(p < 0.001) under the null, over 600 reference samples of 4 000 and 400 new values each
    (240 000 p values): within [0.0005, 0.0016] (the old min(Gumbel, empirical) gave 0.0019 on
    a CUSUM maximum); P(p < 0.01) within 20 % of 0.01."""
    rng = np.random.default_rng(11)

    def gen(r, n):
        return r.exponential(size=n) if name == "exponential" else _cusum_max(r, n)

    assert 0.0005 <= _null_rate(gen, rng, pools=600, pool_size=4000, new=400, level=1e-3) <= 0.0016
    assert _null_rate(gen, rng, pools=100, pool_size=4000, new=400, level=1e-2) == pytest.approx(
        0.01, rel=0.2
    )


def test_tail_pvalue_conformal_rank_and_leave_one_out():
    """Inside the sample: (1 + #{ref >= x}) / (n + 1); leave-one-out ranks the sample itself."""
    ref = np.arange(100.0)
    assert tail_pvalue(np.array([49.5]), ref)[0] == pytest.approx(51 / 101)
    loo = tail_pvalue(ref, ref, leave_one_out=True)
    assert loo[0] == pytest.approx(1.0) and loo[50] == pytest.approx(50 / 100)


def test_anchored_tail_is_exact_where_anchored_and_ignores_outbreaks_in_the_reference():
    """On exponential references of 4 000: p = 0.10 and 0.02 at the anchors; P(p < 0.001) under
    the null within [0.0007, 0.0015] with shape 0, at most 0.001 with shape 0.1; and 20
    outbreaks (0.5 %) planted at the top of the reference multiply a p value of 1e-4 by less
    than 5 where :func:`tail_pvalue`'s GPD fitted to the top multiplies it by more than 20
    (what hid new outbreaks among old ones on Chicago)."""
    rng = np.random.default_rng(3)
    ref = rng.exponential(size=4000)
    u, v = np.quantile(ref, [0.9, 0.98])
    p = anchored_tail_pvalue(np.array([u, v]), ref)
    assert p == pytest.approx([0.10, 0.02], rel=0.01)  # conformal rank at u
    x = np.log(np.array([1e3, 1e4]))  # true p 1e-3, 1e-4
    hits = {0.0: 0, 0.1: 0}
    for _ in range(300):  # 120 000 null p values against 300 references
        new, pool = rng.exponential(size=400), rng.exponential(size=4000)
        for c in hits:
            hits[c] += int((anchored_tail_pvalue(new, pool, shape=c) < 1e-3).sum())
    assert 0.0007 <= hits[0.0] / 120_000 <= 0.0015
    assert hits[0.1] / 120_000 <= 0.001  # conservative on a lighter tail
    dirty = np.concatenate([ref, rng.uniform(8.0, 14.0, 20)])
    x4 = np.log(1e4)
    moved = anchored_tail_pvalue(x4, dirty) / anchored_tail_pvalue(x4, ref)
    assert moved < 5.0  # 3.5 with this seed
    assert tail_pvalue(np.array([x4]), dirty)[0] > 20 * tail_pvalue(np.array([x4]), ref)[0]
    # a heavier shape is more conservative beyond the upper anchor, equal at it
    heavy = anchored_tail_pvalue(np.array([v, x4]), ref, shape=0.1)
    assert heavy[0] == pytest.approx(0.02, rel=1e-6) and heavy[1] > 1e-4
    with pytest.raises(ValueError, match="0 < upper < body < 1"):
        anchored_tail_pvalue(x, ref, body=0.01, upper=0.02)


def _overdispersed_panel(rng, *, zones=40, weeks=80, outbreak=None):
    """Counts with a day-level gamma shock shared by all zones (what the Poisson model misses)
    and zone-level NB noise; the expectation is the Poisson mean."""
    t = 7 * weeks
    days = pd.date_range("2024-01-01", periods=t, freq="D")
    mu = rng.uniform(0.3, 3.0, zones)[:, None] * np.ones((1, t))
    day_shock = rng.gamma(4.0, 1 / 4.0, t)[None, :]
    y = rng.poisson(mu * day_shock * rng.gamma(4.0, 0.25, (zones, t))).astype(float)
    if outbreak is not None:
        z, t0, cases = outbreak
        y[z, t0 : t0 + 3] += cases
    return Panel(
        zones=np.array([f"z{i}" for i in range(zones)], dtype=object),
        days=days,
        observed=y,
        expected=mu,
        period=(t - 7 * 12, t),
    )


def test_calibrated_flag_rate_matches_nominal_where_model_tails_do_not():
    """On over-dispersed counts the model's Poisson p value of the weekly count is below 0.05
    in more than 8 % of the zone-weeks; the calibrated p value is below 0.05 in 5 % +- 2 points of
    the zone-weeks (12 weeks x 40 zones, calibrated on the 52 weeks before each)."""
    rng = np.random.default_rng(3)
    panel = _overdispersed_panel(rng)
    blocks = Blocks.of(panel)
    cfg = CalibrationSettings()
    stats = block_statistics(panel, None, blocks, dispersion=0.0, cfg=cfg)
    p, comp, n_ref = calibrated_pvalues(stats, blocks, cfg)
    assert (n_ref == 52 * 40).all()
    fp = blocks.first_period
    a, b = blocks.a[fp:], blocks.b[fp:]
    o = np.stack([panel.observed[:, i:j].sum(1) for i, j in zip(a, b, strict=True)], 1)
    e = np.stack([panel.expected[:, i:j].sum(1) for i, j in zip(a, b, strict=True)], 1)
    assert (count_upper_p(o, e) < 0.05).mean() > 0.08
    assert abs((p < 0.05).mean() - 0.05) <= 0.02
    assert abs((comp["excess_week"] < 0.05).mean() - 0.05) <= 0.02


def test_a_planted_outbreak_is_the_run_s_strongest_test_and_names_its_window():
    """24 extra incidents over 3 days in a zone of the last week: that zone-week's calibrated
    test has the smallest p value of the week, below 0.05 / zones, and its window holds the
    outbreak's days."""
    rng = np.random.default_rng(4)
    t = 7 * 80
    panel = _overdispersed_panel(rng, outbreak=(7, t - 5, 8))
    tests, info = calibrated_tests(panel, None, dispersion=0.0)
    last = tests[tests["details"].map(lambda d: d["week"]) == 11]
    top = last.sort_values("p_value").iloc[0]
    assert top["zones"] == ["z7"]
    assert top["p_value"] < 0.05 / 40
    assert top["start"] <= panel.days[t - 3] and top["end"] >= panel.days[t - 5]
    assert info["weeks_without_reference"] == 0
    assert set(top["details"]["components"]) == {"excess_3d", "excess_week"}


def test_without_enough_history_no_calibrated_p():
    """Fewer than min_weeks usable weeks before a week: its p values are NaN (the runner then
    falls back on the model's tail probabilities and says so)."""
    rng = np.random.default_rng(5)
    panel = _overdispersed_panel(rng, weeks=20)
    p, _, n_ref = calibrated_pvalues(
        block_statistics(panel, None, Blocks.of(panel), dispersion=0.0, cfg=CalibrationSettings()),
        Blocks.of(panel),
        CalibrationSettings(),
    )
    assert (n_ref == 0).all() and np.isnan(p).all()
