"""The empirical-Bayes scale of the daily presence tests (:func:`moderated_scale`, Smyth 2004).

Each zone's scale is computed here as the module computes it (1.4826 x the median of the
out-of-sample errors below zero, from m errors: 0.19 m degrees of freedom, the value checked
below; the moderated scale's p values read the prior's d0 more, Smyth's moderated t), from
simulated normal errors whose spread is known: moderation must bring the zones' scales closer
to the planted ones when the zones share a spread, leave them their own when they do not, and
leave alone a study with too few zones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special

from pipelines.signals.presence_pvalues import _trigamma_inverse, moderated_scale


def _scales(sigma: np.ndarray, *, m: int, days: int, seed: int) -> np.ndarray:
    """``(zones, days)`` lower-half MAD scales, each from m fresh errors of SD ``sigma[zone]``."""
    rng = np.random.default_rng(seed)
    err = rng.normal(0.0, 1.0, (len(sigma), days, m)) * sigma[:, None, None]
    below = np.where(err <= 0, -err, np.nan)
    return 1.4826 * np.nanmedian(below, axis=-1)


def test_shared_spread_is_recovered():
    """30 zones of one spread: the moderated scales' error is at most half the raw ones'."""
    sigma = np.full(30, 0.1)
    for seed in (21, 22):
        s = _scales(sigma, m=180, days=40, seed=seed)
        df = np.full(s.shape, 0.19 * 180)
        mod, _ = moderated_scale(s, df)
        raw_err = np.sqrt(np.mean((s - 0.1) ** 2))
        mod_err = np.sqrt(np.mean((mod - 0.1) ** 2))
        assert mod_err <= 0.5 * raw_err, (mod_err, raw_err)


def test_distinct_spreads_are_kept():
    """Zones whose spreads differ 6-fold keep their own order and are not pulled together:
    the moderated scales are no further from the planted ones than the raw scales."""
    sigma = np.linspace(0.05, 0.3, 30)
    s = _scales(sigma, m=180, days=20, seed=23)
    mod, _ = moderated_scale(s, np.full(s.shape, 0.19 * 180))
    truth = sigma[:, None]
    assert np.mean((mod - truth) ** 2) <= 1.05 * np.mean((s - truth) ** 2)
    rank = np.argsort(np.argsort(mod.mean(axis=1)))
    assert (np.abs(rank - np.arange(30)) <= 2).all()


def test_few_zones_or_missing_scales_are_left_alone():
    """Below ``min_zones`` zones with a scale that day, every zone keeps its own; NaN stays NaN."""
    s = _scales(np.full(12, 0.1), m=120, days=3, seed=24)
    s[3:, 0] = np.nan  # 3 zones that day
    s[:, 1] = np.nan
    mod, _ = moderated_scale(s, np.full(s.shape, 40.0), min_zones=10)
    assert np.array_equal(mod[:3, 0], s[:3, 0])
    assert np.isnan(mod[:, 1]).all()
    assert not np.array_equal(mod[:, 2], s[:, 2])


def test_trigamma_inverse_against_a_root_finder():
    x = np.array([0.01, 0.1, 1.0, 5.0])
    y = _trigamma_inverse(x)
    ref = [optimize.brentq(lambda v, t=t: special.polygamma(1, v) - t, 1e-3, 1e4) for t in x]
    assert np.allclose(y, ref, rtol=1e-6)


def test_lower_half_scale_degrees_of_freedom():
    """The sampling variance of log s^2 of the lower-half scale of m normal errors matches a
    chi-square with about 0.19 m degrees of freedom (the value the daily tests give
    :func:`moderated_scale`), within 15 %."""
    for m in (60, 360):
        s = _scales(np.ones(300), m=m, days=10, seed=25)
        d = 2.0 * _trigamma_inverse(np.array([np.var(np.log(s**2))]))[0]
        assert abs(d / m - 0.19) <= 0.15 * 0.19, d / m


def _reference(seed: int, moderate: bool, monkeypatch) -> tuple[np.ndarray, list[str]]:
    """The daily scales ``(zones, period days)`` of the review of tests/test_presence_daily.py's
    panel (12 zones sharing a 0.08 noise, a venue with withheld games), and the zones."""
    from test_presence_daily import PERIOD, _panel

    import pipelines.signals.presence as presence
    from pipelines.signals.explain import day_facts

    monkeypatch.setattr(presence, "MODERATE_SCALE", moderate)
    frame, _ = _panel(seed)
    lay = presence.layout(frame)
    first = lay.days.index(pd.Timestamp(PERIOD[0]).date())
    base = presence.reference_without_gaps(
        lay, day_facts(frame, events=None, country=None), from_day=first
    )
    return base.ref.scale[:, first:, 0], [str(z) for z in lay.zones]


def test_moderated_scales_on_the_review_path(monkeypatch):
    """On the path of ``vigie signals`` at daily grain (``reference_without_gaps``), with zones
    sharing one noise (seeds 21, 22, not the panel's own): the moderated scales spread less
    across zones each day than the zones' own (at most 60 % of their SD of log scale) and keep
    their median within 15 %."""
    for seed in (21, 22):
        own, zones = _reference(seed, False, monkeypatch)
        mod, _ = _reference(seed, True, monkeypatch)
        quiet = [i for i, z in enumerate(zones) if z != "z00"]
        sd_own = np.nanstd(np.log(own[quiet]), axis=0).mean()
        sd_mod = np.nanstd(np.log(mod[quiet]), axis=0).mean()
        assert sd_mod <= 0.6 * sd_own, (sd_mod, sd_own)
        assert abs(np.nanmedian(mod) / np.nanmedian(own) - 1) < 0.15


def test_moderated_t_is_calibrated_with_the_priors_degrees_of_freedom():
    """The daily slot test's p values (:func:`~pipelines.signals.presence_pvalues.slot_df` with
    the moderation's prior ``d0``) on fresh null errors against the moderated scale: the share
    below 0.01 within 15 % of 0.01 whether the zones share one spread (``d0`` infinite: the
    common scale), differ 6-fold (``d0`` small) or mostly share one (bounds set on seeds 31, 32:
    0.90-1.04 x nominal, where ``0.37 m - 1`` gave 0.74-1.18; checked here on seeds 41, 42)."""
    from pipelines.signals.presence_pvalues import slot_df, t_sf

    cases = {
        "shared": np.full(30, 0.1),
        "spread": np.linspace(0.05, 0.3, 30),
        "mixed": np.r_[np.full(25, 0.1), np.linspace(0.05, 0.2, 5)],
    }
    m, days = 120, 400
    n = np.full((30, days, 1), float(m))
    for name, sigma in cases.items():
        hits, d0s = [], []
        for seed in (41, 42):
            s = _scales(sigma, m=m, days=days, seed=seed)
            mod, d0 = moderated_scale(s, slot_df(n, np.zeros(days))[..., 0])
            e = np.random.default_rng(seed + 1000).normal(size=(30, days)) * sigma[:, None]
            hits.append(np.mean(t_sf(e / mod, slot_df(n, d0)[..., 0]) < 0.01))
            d0s.append(np.median(d0))
        assert 0.85 <= np.mean(hits) / 0.01 <= 1.15, (name, hits)
        if name == "shared":
            assert min(d0s) > 100, d0s
        if name == "spread":
            assert max(d0s) < 10, d0s


def test_prior_degrees_of_freedom_of_few_zones_are_zero():
    """A day with fewer than ``min_zones`` zones keeps the zones' own scales, so its prior
    counts no degrees of freedom; the slot test then reads the lower-half scale's 0.19 m."""
    from pipelines.signals.presence_pvalues import slot_df

    s = _scales(np.full(12, 0.1), m=120, days=2, seed=24)
    s[3:, 0] = np.nan
    _, d0 = moderated_scale(s, np.full(s.shape, 0.19 * 120), min_zones=10)
    assert d0[0] == 0.0 and d0[1] > 0
    df = slot_df(np.full((12, 2, 1), 120.0), d0)
    assert np.allclose(df[:, 0, 0], 0.19 * 120)
    assert np.allclose(slot_df(np.full((1, 1, 1), 120.0)), 0.19 * 120)


def test_unmoderated_slot_test_is_not_liberal_in_the_far_tail():
    """The hourly slot test (:func:`~pipelines.signals.presence_pvalues.slot_df` without a
    prior) on fresh normal errors against the lower-half scale of m past ones (seeds 41, 42; the
    figures in presence_pvalues' docstring came from seed 1): at most the nominal share of p
    values below 1e-2 and 1e-3 (plus 10 % and 30 % for the draws' noise) for m = 40 and 182,
    where the MAD's ``0.37 m - 1`` it read before exceeds 1.5 x nominal below 1e-3 at m = 40
    (2.2 x over 400 000 draws)."""
    from pipelines.signals.presence_pvalues import slot_df, t_sf

    for seed in (41, 42):
        rng = np.random.default_rng(seed)
        for m in (40, 182):
            e = rng.normal(size=(100_000, m))
            s = 1.4826 * np.nanmedian(np.where(e <= 0, -e, np.nan), axis=1)
            u = rng.normal(size=len(s)) / s
            p = t_sf(u, slot_df(np.full((1, 1, 1), float(m)))[0, 0, 0])
            # 1e-2: some 1 000 draws below, +-6 % at 2 SE; 1e-3: some 100, +-20 %
            for a, tol in ((1e-2, 1.1), (1e-3, 1.3)):
                assert np.mean(p < a) <= tol * a, (seed, m, a, np.mean(p < a))
            if m == 40:
                assert np.mean(t_sf(u, 0.37 * m - 1) < 1e-3) > 1.5e-3  # the former df fails


def test_optimal_weights_against_a_numerical_optimum():
    """:func:`~pipelines.signals.presence_pvalues.optimal_weights` against scipy's SLSQP: for one day's
    priors (a venue at 0.25, a zone with a diffuse excess at 0.08, the rest at the floor), the
    thresholds ``isf(level w)`` maximise the expected true discoveries of anomalies of the design
    effect among all thresholds with the same expected false ones (to 1e-3 SD), and the weights
    average 1, the venue's above the proportional rule's."""
    from scipy import optimize, stats

    from pipelines.signals.presence_pvalues import DESIGN_EFFECT, DESIGN_LEVEL, optimal_weights

    pi = np.r_[0.25, 0.08, np.full(18, 0.01)]
    w = optimal_weights(pi[None, :, None], floor=0.0)[0, :, 0]
    assert abs(w.mean() - 1) < 1e-9
    mu, c = DESIGN_EFFECT, stats.norm.isf(DESIGN_LEVEL * w)
    false = np.sum((1 - pi) * stats.norm.sf(c))
    found = np.sum(pi * stats.norm.sf(c - mu))  # both scaled to about 1 for the optimiser
    res = optimize.minimize(
        lambda x: -np.sum(pi * stats.norm.sf(x - mu)) / found,
        x0=np.full(len(pi), 3.0),
        constraints=[{"type": "eq",
                      "fun": lambda x: np.sum((1 - pi) * stats.norm.sf(x)) / false - 1}],
        method="SLSQP", options={"ftol": 1e-12, "maxiter": 500},
    )  # fmt: skip
    assert res.success, res.message
    assert np.allclose(res.x, c, atol=1e-3), (res.x, c)
    assert w[0] > pi[0] / pi.mean() and w[0] > w[1] > w[2]


def test_optimal_weights_keep_a_floor_and_average_one():
    """A study of five zones, one a venue with a high prior: the weights (both directions, two
    days) average 1 each day, none falls below the floor (``WEIGHT_FLOOR``) where without it the
    other tests would keep a twentieth of an equal share, and a NaN prior reads as the smallest
    (it does not spread NaN over the day)."""
    from pipelines.signals.presence_pvalues import WEIGHT_FLOOR, optimal_weights

    pi = np.full((2, 5, 2), 0.01)
    pi[0, 0] = 0.25
    pi[0, 3, 1] = np.nan
    bare, w = optimal_weights(pi, floor=0.0), optimal_weights(pi)
    assert np.allclose(w.mean(axis=(0, 1)), 1.0) and np.isfinite(w).all()
    assert bare[1].max() < 0.1 and w.min() >= WEIGHT_FLOOR - 1e-12
    assert w[0, 3, 1] == w.min()


def test_optimal_weights_average_one_over_the_tests_made():
    """Zones without data on a day make no test: the weights of the tests made that day average
    1 (weighted Benjamini-Hochberg's condition), whatever the missing zones' priors; a day with
    no test at all keeps weights averaging 1 over every zone."""
    from pipelines.signals.presence_pvalues import optimal_weights

    pi = np.full((2, 6, 3), 0.01)
    pi[0, :2] = 0.3  # two venues, missing on day 1
    tested = np.ones((6, 3), bool)
    tested[:2, 1] = False
    tested[:, 2] = False
    w = optimal_weights(pi, tested=tested)
    made = np.broadcast_to(tested[None], w.shape)
    for d in (0, 1):
        assert np.isclose(w[..., d][made[..., d]].mean(), 1.0), d
    assert np.isclose(w[..., 2].mean(), 1.0)
    assert not np.isclose(optimal_weights(pi)[..., 1][made[..., 1]].mean(), 1.0)


def test_hourly_zone_day_without_a_day_level_test_keeps_its_slot_test():
    """At hourly grain a zone-day with values but no day-level test (fewer than three quarters of
    its slots) is judged on its slot test alone, Bonferroni over the two halves: ``2 p_slot``,
    not ``2 / w`` from a day-level p of 1 divided by a large weight."""
    from pipelines.signals.presence_pvalues import DayLevel, p_values

    zones, days, slots = 2, 3, 24
    rng = np.random.default_rng(5)
    zs = rng.normal(size=(zones * days, slots))
    z_day = np.full((2, zones, days), np.nan)
    z_day[:, 0] = 0.5  # zone 0 has a day-level test, zone 1 none
    w = np.full((2, zones, days), 20.0)
    day = DayLevel(z=z_day, n=np.full((2, zones, days), 200.0), df=np.full((zones, days), 50.0),
                   weights=w)  # fmt: skip
    df_slot = np.full((zones, days, slots), 40.0)
    p, pw, _, _, zmax, use_day, _ = p_values(
        df_slot, np.full((zones, days), 50.0), day, zs, 1.0, days=np.arange(days), daily=False
    )
    none = np.repeat([False, True], days)
    assert not use_day[none].any() and np.isfinite(zmax).all()
    assert np.allclose(pw[none], p[none]) and (pw[none] > 2 / 20.0).all()


def test_pooled_tail_df_reads_the_studys_heavy_tails():
    """Day errors of 12 zones drawn from a Student t with 4 degrees of freedom (MAD-scaled):
    after 26 weeks the study's lower tail gives at most 6 degrees of freedom (each zone's own
    days could not show it); normal errors at least 10 (15 to infinity on seeds 8-11: the
    tail count's noise); each day reads only the weeks
    before its own (its week's errors, all far below, change nothing)."""
    from scipy import stats

    from pipelines.signals.presence_pvalues import pooled_tail_df

    rng = np.random.default_rng(8)
    k = 1.4826 * stats.t.ppf(0.75, 4)
    heavy = rng.standard_t(4, (12, 40 * 7)) / k
    normal = rng.normal(0, 1, (12, 40 * 7))
    late = slice(30 * 7, 40 * 7)
    assert pooled_tail_df(heavy, weeks=26)[late].max() <= 6
    assert pooled_tail_df(normal, weeks=26)[late].min() >= 10
    shocked = normal.copy()
    shocked[:, 35 * 7 : 36 * 7] = -10.0
    same = pooled_tail_df(shocked, weeks=26)[35 * 7 : 36 * 7]
    assert np.array_equal(same, pooled_tail_df(normal, weeks=26)[35 * 7 : 36 * 7])
