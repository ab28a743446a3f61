"""The p values of the presence tests (:mod:`pipelines.signals.presence`): the day's extreme slot
against the quiet-day reference, Sidak-corrected over the day's slots, and at hourly grain the
day-level test too, each weighted for the run's Benjamini-Hochberg.

The slot test's Student t reads the degrees of freedom of the scale it divides by
(:func:`slot_df`): the scale is the lower half of the errors (about ``0.19 m`` degrees of freedom
for m errors, a MAD's ``0.37 m`` on half of them); at daily grain it is shrunk towards the zones'
by empirical Bayes, and a moderated scale carries the prior's ``d0`` more (Smyth 2004's moderated
t). Under normal errors ``0.19 m`` gives about the nominal share of p values below 1e-2 to 1e-4
for m of 90 and more (1.00-1.12 x) and fewer for m of 20 to 40 (0.4-0.9 x), where a full MAD's
``0.37 m - 1``, read until 2026-12 at hourly grain, gave 1.5-3.9 x at m = 20 to 40 below 1e-4
(400 000 draws per m; tests/test_presence_scale.py checks it on other seeds). The day-level test
at hourly grain reads the same. The tests' weights for the run's weighted Benjamini-Hochberg come
from each test's prior rate of a real anomaly (:func:`optimal_weights`).

References
----------
Sidak, Z. (1967). Rectangular confidence regions for the means of multivariate normal
distributions. JASA 62, 626-633.
Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing differential
expression in microarray experiments. Statistical Applications in Genetics and Molecular
Biology 3(1), article 3.
Genovese, C. R., Roeder, K. & Wasserman, L. (2006). False discovery control with p-value
weighting. Biometrika 93(3), 509-524.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from pipelines.signals.reference import MIN_CITY_ZONES, TAIL_Z, _past_sum, _weekly, tail_df

#: degrees of freedom per error of the lower-half scale of the presence tests (a MAD's 37 %
#: Gaussian efficiency on half of the errors; tests/test_presence_scale.py checks it).
LOWER_HALF_DF = 0.19
#: the tests' weights are optimal for anomalies of ``DESIGN_EFFECT`` SD tested at per-test level
#: ``DESIGN_LEVEL`` (:func:`optimal_weights`): an effect at the edge of detection, where weight
#: buys power, and about the level at which the run's weekly Benjamini-Hochberg at FDR 0.05
#: rejects (its discoveries are some 3 % of a week's tests on the synthetic city). Chosen on the
#: development seeds of docs/evaluation.md among effects of 2.0, 2.25, 2.5 and 3.0 SD. Each
#: weight is at least ``WEIGHT_FLOOR`` (a mixture with equal weights; 0.25 cost the development
#: seeds 0.03 of daily recall, 0.1 cost 0.013).
DESIGN_EFFECT, DESIGN_LEVEL, WEIGHT_FLOOR = 2.25, 1.5e-3, 0.1


@dataclass(frozen=True)
class DayLevel:
    """The day-level test's arrays ``(zones, days)``, each first for the gathering test then for
    the emptied one: z of the day's total against the reference's total and the errors behind
    its scale; the degrees of freedom of the lower tail; the tests' weights."""

    z: np.ndarray
    n: np.ndarray
    df: np.ndarray
    weights: np.ndarray
    #: ``(days,)``: the degrees of freedom the study's lower tail of day errors shows
    #: (:func:`pooled_tail_df`), at most those of the gathering day-level test (None: not read)
    df_pooled: np.ndarray | None = None


def pooled_tail_df(u: np.ndarray, *, weeks: int) -> np.ndarray:
    """``(days,)``: the Student t degrees of freedom whose lower tail matches every zone's
    standardised day errors ``u`` ``(zones, days)`` of the ``weeks`` weeks before each day's week
    (:func:`~pipelines.signals.reference.tail_df` on the study's counts). Day errors are
    heavier-tailed than a t with the lower-half scale's degrees of freedom (a scale mixture:
    on panels without any gathering, 2.1 % of them beyond 2.33 robust SD on each side); one
    zone has too few days to show it, the study has enough. Only the lower tail is read:
    gatherings sit in the upper one."""
    z, d = u.shape
    nw = -(-d // 7)
    uw = _weekly(u[:, :, None], nw)[..., 0]  # (zones, weeks, 7)
    below = (uw < -TAIL_Z).sum(axis=(0, 2)).astype(float)[None, :]
    n = np.isfinite(uw).sum(axis=(0, 2)).astype(float)[None, :]
    df = tail_df(_past_sum(below, weeks), _past_sum(n, weeks))[0]
    return np.repeat(df, 7)[:d]


def slot_df(n_scale: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """The degrees of freedom of the slot test's scale from the ``n_scale`` errors behind it:
    ``0.19 m`` (the lower-half scale), plus, given ``prior`` (the moderation's ``d0`` of each day,
    :func:`moderated_scale`; 0 where the zones keep their own
    scales), ``d0`` (the scale moderated: Smyth 2004); at least 3.

    ``n_scale`` is ``(zones, days, slots)``, ``prior`` ``(days,)``.
    """
    own = np.maximum(3.0, LOWER_HALF_DF * n_scale)
    return own if prior is None else prior[None, :, None] + own


def t_sf(z: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``P(u > z)`` for a MAD-standardised Student t with ``df`` degrees of freedom."""
    return stats.t.sf(z * 1.4826 * stats.t.ppf(0.75, df), df=df)


def p_values(
    df_slot: np.ndarray, tail_df: np.ndarray, day: DayLevel, zs: np.ndarray, sign: float, *,
    days: np.ndarray, daily: bool,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """The p values of the tests (zone x period day, one way).

    The slot test: the day's extreme slot j, ``p = 1 - (1 - F(-|z|max))^n`` (Sidak over the n
    slots, F a Student t with ``df_slot`` degrees of freedom, :func:`slot_df`; below, at most
    those of the zone's lower tail ``tail_df``, :func:`~pipelines.signals.reference.tail_df`).
    At hourly grain, the day-level test (:func:`~pipelines.signals.presence.day_level`) too, and
    ``p = 2 min(p_slot, p_day)`` (Bonferroni over the two). The weighted p value is
    ``min(1, p / w)`` at daily grain and ``min(1, 2 min(p_slot, p_day / w))`` at hourly grain:
    the weight, read from day-level errors, goes to the day-level half of the test (a weighted
    Bonferroni; the test's weight is ``(1 + w) / 2``, which still averages 1). ``df_slot`` and
    ``tail_df`` are ``(zones, days, slots)`` and ``(zones, days)``, ``zs`` the signed z of the
    period's ``days`` as ``(zones x days, slots)``. Returns
    ``(p, p_weighted, w, j, zmax, use_day, n)``.
    """
    s = zs.shape[1]
    ok = np.isfinite(zs)
    n = ok.sum(axis=1)
    j = np.argmax(np.where(ok, zs, -np.inf), axis=1)
    r = np.arange(len(zs))
    zmax = zs[r, j]
    df = df_slot[:, days].reshape(-1, s)[r, j]
    if sign < 0:
        df = np.minimum(df, tail_df[:, days].reshape(-1))
    p1 = t_sf(zmax, df)
    p = -np.expm1(n * np.log1p(-np.minimum(p1, 1 - 1e-16)))
    use_day = np.zeros(len(zs), bool)
    w = day.weights[0 if sign > 0 else 1][:, days].reshape(-1)
    pw = np.minimum(1.0, p / w)
    if not daily:
        k = 0 if sign > 0 else 1
        zd = sign * day.z[k][:, days].reshape(-1)
        dfd = np.maximum(3.0, LOWER_HALF_DF * day.n[k][:, days].reshape(-1))
        if sign < 0:
            dfd = np.minimum(dfd, day.df[:, days].reshape(-1))
        elif day.df_pooled is not None:
            dfd = np.minimum(dfd, np.tile(day.df_pooled[days], day.z.shape[1]))
        has = np.isfinite(zd)  # a zone-day with values but no day-level test: the slot test
        pd_ = np.where(has, t_sf(np.nan_to_num(zd, nan=-np.inf), dfd), 1.0)
        pdw = np.where(has, pd_ / w, np.inf)
        use_day = pdw < p
        zmax = np.where(use_day, zd, zmax)
        pw = np.minimum(1.0, 2.0 * np.minimum(p, pdw))
        p = np.minimum(1.0, 2.0 * np.minimum(p, pd_))
    return p, pw, w, j, zmax, use_day, n


def optimal_weights(
    prior: np.ndarray,
    *,
    effect: float = DESIGN_EFFECT,
    level: float = DESIGN_LEVEL,
    floor: float = WEIGHT_FLOOR,
    tested: np.ndarray | None = None,
) -> np.ndarray:
    """The tests' weights from their prior rates of being a true signal, averaging 1 each day.

    ``prior`` is ``(2, zones, days)``: each test's prior probability ``pi`` of a real
    anomaly (the gathering test's rate of gathering days, the emptied test's prior rate). A test
    at per-test level ``level w`` has threshold ``c = isf(level w)``; the thresholds that find the
    most real anomalies of ``effect`` SD for a given expected number of false ones maximise
    ``sum pi Phi(effect - c) - L sum (1 - pi) Phi(-c)``, whence
    ``c = effect / 2 + log(L (1 - pi) / pi) / effect``: the threshold falls with the log odds of
    the prior (Roeder & Wasserman 2009 derive it for differing effects; Pena, Habiger & Wu 2011
    for differing priors). ``L`` is set each day (by bisection) so that the weights
    ``w = Phi(-c) / level`` average 1, as weighted Benjamini-Hochberg needs (Genovese, Roeder &
    Wasserman 2006). Weights proportional to ``pi`` (the former rule) spread more of the day's
    budget over zones whose high days are a small, diffuse excess; these give it to the zones
    whose history shows a real second component. Priors are read between 1e-6 and 0.5 (odds of
    at most 1: no zone's history makes a gathering the likelier outcome of a day; NaN as 1e-6).
    Last, each weight is mixed with an equal share, ``floor + (1 - floor) w``: the weights
    still average 1, and no test falls below ``floor`` (the emptied tests' prior is an assumed
    rate, not a measured one, and a study of a few zones with one venue would otherwise leave
    every other test a twentieth of an equal share). ``tested`` ``(zones, days)`` (default: all):
    the zone-days that have a test; the weights average 1 over those (a zone without data that
    day takes no share of the budget).

    References
    ----------
    Roeder, K. & Wasserman, L. (2009). Genome-wide significance levels and weighted hypothesis
    testing. Statistical Science 24(4), 398-413.
    Pena, E. A., Habiger, J. D. & Wu, W. (2011). Power-enhanced multiple decision functions
    controlling family-wise error and false discovery rates. Annals of Statistics 39(1), 556-583.
    """
    pi = np.clip(np.nan_to_num(prior, nan=1e-6), 1e-6, 0.5)
    odds = np.log((1 - pi) / pi)
    lo, hi = np.full(pi.shape[-1], -60.0), np.full(pi.shape[-1], 60.0)

    def weights(log_l: np.ndarray) -> np.ndarray:
        return stats.norm.sf(effect / 2 + (log_l[None, None, :] + odds) / effect) / level

    t = np.ones(pi.shape[1:], bool) if tested is None else np.asarray(tested, bool)
    t = np.broadcast_to(np.where(t.any(axis=0), t, True)[None], pi.shape)  # none: all count

    def mean(w: np.ndarray) -> np.ndarray:
        return np.where(t, w, 0.0).sum(axis=(0, 1)) / t.sum(axis=(0, 1))

    for _ in range(60):  # the mean weight falls as log L rises
        mid = (lo + hi) / 2
        above = mean(weights(mid)) > 1
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    w = weights((lo + hi) / 2)
    return floor + (1 - floor) * w / mean(w)[None, None, :]


def moderated_scale(
    scale: np.ndarray, df: np.ndarray, *, min_zones: int = MIN_CITY_ZONES
) -> tuple[np.ndarray, np.ndarray]:
    """Each zone's scale shrunk towards the study's, by empirical Bayes (Smyth 2004).

    ``scale`` and ``df`` are ``(zones, days)``: each zone's scale and its degrees of freedom
    (the lower-half scale of m errors has about ``0.19 m``: the MAD's 37 % efficiency on the
    half of the errors below zero; tests/test_presence_scale.py checks it). Each day, the zones' squared
    scales are taken as ``s0^2 chi2_d0 / d0`` draws around a common prior: ``d0`` and ``s0`` are
    read from the mean and variance of ``log s^2`` over the zones (limma's ``fitFDist``: the
    sampling variance ``trigamma(d / 2)`` taken out of the observed one), and each zone's
    squared scale becomes the posterior ``(d0 s0^2 + d s^2) / (d0 + d)``. A zone whose scale
    sampled low or high over its few months of errors (at a venue, a season of unlisted
    gatherings and downward days leaves a lopsided lower half) moves towards the zones' common
    spread by as much as the zones' scales agree; where they differ more than sampling explains,
    ``d0`` is small and the zones keep their own. Days with fewer than ``min_zones`` zones keep
    the zones' own scales.

    Returns
    -------
    numpy.ndarray
        The moderated scales, ``(zones, days)``, and each day's prior degrees of freedom ``d0`` (``inf``: the common scale; 0: the zones' own), so that a
        moderated scale counts ``d0 + d`` (Smyth 2004's moderated t).

    References
    ----------
    Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing differential
    expression in microarray experiments. Statistical Applications in Genetics and Molecular
    Biology 3(1), article 3.
    """
    from scipy import special

    ok = np.isfinite(scale) & (scale > 0) & np.isfinite(df) & (df > 0)
    d = np.where(ok, df, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(ok, np.log(scale**2) - special.digamma(d / 2) + np.log(d / 2), np.nan)
    use = ok.sum(axis=0) >= max(min_zones, 3)  # days with enough zones
    good = ok & use[None, :]
    n = np.maximum(good.sum(axis=0), 2)
    mean = np.where(good, e, 0.0).sum(axis=0) / n
    sampling = np.where(good, special.polygamma(1, d / 2), 0.0).sum(axis=0) / n
    var = np.where(good, (e - mean) ** 2, 0.0).sum(axis=0) / (n - 1) - sampling
    fin = use & (var > 0)  # else the zones agree beyond sampling: the common scale
    d0 = np.where(fin, 2.0 * _trigamma_inverse(np.where(fin, var, 1.0)), 1.0)
    s02 = np.exp(mean + np.where(fin, special.digamma(d0 / 2) - np.log(d0 / 2), 0.0))
    post = np.where(fin, (d0 * s02 + d * scale**2) / (d0 + d), s02)
    out = np.where(good, np.sqrt(post), scale)
    return out, np.where(use, np.where(fin, d0, np.inf), 0.0)


def _trigamma_inverse(x: np.ndarray, *, iterations: int = 50) -> np.ndarray:
    """``y`` with ``trigamma(y) = x`` (x > 0), by Smyth's (2004) Newton iteration."""
    from scipy import special

    y = 0.5 + 1.0 / x
    for _ in range(iterations):
        tri = special.polygamma(1, y)
        step = tri * (1.0 - tri / x) / special.polygamma(2, y)
        y = y + step
        if np.all(np.abs(step / y) < 1e-8):
            break
    return y
