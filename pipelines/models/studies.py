"""What the effect studies share: the zone x slot grid, the ring of neighbours, exact tests.

The outage event study (:mod:`pipelines.models.outage`) and the event uplift
(:mod:`pipelines.models.uplift`) both lay the cube out as a zone x slot grid, find each zone's
ring of neighbouring zones, and report their estimates as :class:`Effect` values.

References
----------
Breslow, N. E. & Day, N. E. (1987). *Statistical Methods in Cancer Research, vol. II: The
Design and Analysis of Cohort Studies*. IARC (ratio of standardised incidence ratios, exact
conditional test).
Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed. Wiley, section 6.3 (ratio estimator).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from features.timeutil import utc_ns
from pipelines.models.baselines import zone_codes
from pipelines.models.results import Effect


def not_estimable(name: str, kind: str, why: str, **about: Any) -> Effect:
    """An effect that cannot be estimated, and why (``about``: group, feature, role...)."""
    return Effect(name=name, kind=kind, estimable=False, why=why, **about)


def finite(x: Any) -> float | None:
    """``x`` as a float, None when it is not finite."""
    x = float(x)
    return x if np.isfinite(x) else None


def grid(cube: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Zones, slots, and row -> (zone index, slot index) of a cube."""
    zones, zi = zone_codes(cube["zone_id"])
    t = utc_ns(cube["hour"])
    slots = np.unique(t)
    return zones, slots, zi, np.searchsorted(slots, t)


def adjacency(zones: list[str], neighbours: dict[str, list[str]] | None) -> sparse.csr_matrix:
    """Symmetric 0/1 adjacency of ``zones`` (empty without ``neighbours``)."""
    pos = {z: i for i, z in enumerate(zones)}
    rows, cols = [], []
    for z, nbs in (neighbours or {}).items():
        if z not in pos:
            continue
        for n in nbs:
            if n in pos and n != z:
                rows.append(pos[z])
                cols.append(pos[n])
    data = np.ones(len(rows))
    a = sparse.csr_matrix((data, (rows, cols)), shape=(len(zones), len(zones)))
    return ((a + a.T) > 0).astype(np.float64).tocsr()


def _odds(p: float) -> float:
    return p / (1 - p) if p < 1 else float("inf")


def rate_ratio(o_a: float, e_a: float, o_b: float, e_b: float, *, level: float = 0.95):
    """Ratio of SIRs (O_a/E_a) / (O_b/E_b) with exact conditional CI and p-value.

    Returns ``(estimate, low, high, p)``, or None without incidents or expectation.
    """
    n = int(round(o_a + o_b))
    if e_a <= 0 or e_b <= 0 or n == 0:
        return None
    p0 = e_a / (e_a + e_b)
    k = int(round(o_a))
    est = (o_a / e_a) / (o_b / e_b) if o_b > 0 else float("inf")
    test = stats.binomtest(k, n, p0)
    ci = test.proportion_ci(confidence_level=level, method="exact")
    return est, _odds(ci.low) * e_b / e_a, _odds(ci.high) * e_b / e_a, test.pvalue


def ratio_estimate(x: np.ndarray, a: np.ndarray) -> tuple[float, float, float, float]:
    """Ratio estimator sum(x)/sum(a) with its cluster standard error, CI and t-test p."""
    n = len(x)
    r = float(x.sum() / a.sum())
    if n < 2:
        return r, float("nan"), float("nan"), float("nan")
    resid = x - r * a
    se = float(np.sqrt(n / (n - 1) * (resid**2).sum()) / a.sum())
    tq = stats.t.ppf(0.975, n - 1)
    p = float(2 * stats.t.sf(abs(r / se), n - 1)) if se > 0 else float("nan")
    return r, r - tq * se, r + tq * se, p


def poisson_test(observed: float, expected: float) -> float:
    """Exact two-sided Poisson test of an observed count against its expectation."""
    if expected <= 0:
        return float("nan")
    lo_tail = stats.poisson.cdf(observed, expected)
    hi_tail = stats.poisson.sf(observed - 1, expected)
    return float(min(1.0, 2 * min(lo_tail, hi_tail)))


def cluster_rate_ratio(
    o_a: np.ndarray,
    e_a: np.ndarray,
    o_b: np.ndarray,
    e_b: np.ndarray,
    *,
    level: float = 0.95,
) -> tuple[float, float, float, float, int] | None:
    """Ratio of SIRs ``(sum o_a / sum e_a) / (sum o_b / sum e_b)`` over clusters, with the
    cluster-robust (delta-method) standard error of its log and a t interval on G - 1 degrees
    of freedom.

    Each entry of the arrays is one cluster (an outage episode, an event): the interval holds
    over-dispersion and any dependence within a cluster (Cameron & Miller 2015; Cochran 1977,
    section 6.3, for the ratio estimator).

    Returns
    -------
    tuple or None
        ``(estimate, low, high, p, G)``, or None without incidents or expectation in a phase or
        with fewer than 3 clusters.
    """
    keep = (e_a > 0) | (e_b > 0)
    o_a, e_a, o_b, e_b = o_a[keep], e_a[keep], o_b[keep], e_b[keep]
    G = len(o_a)
    sa, sb = float(o_a.sum()), float(o_b.sum())
    if G < 3 or sa <= 0 or sb <= 0 or e_a.sum() <= 0 or e_b.sum() <= 0:
        return None
    ra, rb = sa / float(e_a.sum()), sb / float(e_b.sum())
    u = (o_a - ra * e_a) / sa - (o_b - rb * e_b) / sb
    se = float(np.sqrt(G / (G - 1) * (u**2).sum()))
    log_r = float(np.log(ra / rb))
    tq = float(stats.t.ppf(0.5 + level / 2, G - 1))
    p = float(2 * stats.t.sf(abs(log_r) / se, G - 1)) if se > 0 else float("nan")
    return (
        float(np.exp(log_r)),
        float(np.exp(log_r - tq * se)),
        float(np.exp(log_r + tq * se)),
        p,
        G,
    )


#: iterations of the proportional fitting of the zone and day fixed effects
FE_ITERATIONS = 50


def fixed_effects(
    y: np.ndarray, mu: np.ndarray, fit_rows: np.ndarray, *keys: np.ndarray
) -> np.ndarray:
    """``mu`` times one factor per level of each of ``keys`` (zone, day...): the Poisson
    maximum-likelihood fixed effects given ``mu``, fitted on ``fit_rows`` by iterative
    proportional fitting of the totals of each key.

    A level without expectation on ``fit_rows`` has no factor: its rows get NaN (nothing to
    impute from); one without incidents there gets 0, its maximum-likelihood value.
    """
    ok = fit_rows & np.isfinite(mu) & (mu > 0)
    codes = [pd.factorize(k)[0] for k in keys]
    factors = [np.ones(c.max() + 1) for c in codes]

    def others(skip: int) -> np.ndarray:
        m = mu.copy()
        for j, (c, f) in enumerate(zip(codes, factors, strict=True)):
            if j != skip:
                m = m * f[c]
        return m

    for _ in range(FE_ITERATIONS):
        before = [f.copy() for f in factors]
        for j, c in enumerate(codes):
            m = others(j)
            num = np.bincount(c[ok], weights=y[ok], minlength=len(factors[j]))
            den = np.bincount(c[ok], weights=m[ok], minlength=len(factors[j]))
            factors[j] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        if all(
            np.allclose(f, b, rtol=1e-6, equal_nan=True)
            for f, b in zip(factors, before, strict=True)
        ):
            break
    return others(-1)
