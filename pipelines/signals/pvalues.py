"""p values of counts and of maximum-type statistics, and the false discovery rate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pipelines.signals.panel import P_FLOOR


def count_upper_p(observed: Any, expected: Any, *, dispersion: float = 0.0) -> np.ndarray:
    """Upper-tail probability P(X >= observed) of a Poisson or negative-binomial count.

    Parameters
    ----------
    observed, expected
        Counts and their means (broadcastable arrays).
    dispersion
        NB2 dispersion alpha (Var = mu + alpha mu^2); 0 gives the Poisson.

    Returns
    -------
    numpy.ndarray
        p values in [0, 1]; NaN where the mean is not finite.

    References
    ----------
    Farrington, C. P. et al. (1996). A statistical algorithm for the early detection of outbreaks
    of infectious disease. JRSS A 159(3), 547-563 (tail probability of the current count).
    Hilbe, J. M. (2011). Negative Binomial Regression, 2nd ed., Cambridge (NB2 parametrisation).
    """
    obs = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    mu_safe = np.where(np.isfinite(mu), np.maximum(mu, 1e-12), 1.0)
    k = np.ceil(obs) - 1.0
    if dispersion and dispersion > 0:
        n = 1.0 / dispersion
        p = stats.nbinom.sf(k, n, n / (n + mu_safe))
    else:
        p = stats.poisson.sf(k, mu_safe)
    return np.where(np.isfinite(mu) & np.isfinite(obs), p, np.nan)


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (q values), NaN kept as NaN.

    References
    ----------
    Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate: a practical and
    powerful approach to multiple testing. JRSS B 57(1), 289-300.
    (computed with ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``)
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = multipletests(np.clip(p[ok], 0.0, 1.0), method="fdr_bh")[1]
    return q


def mc_pvalue(observed: Any, simulated: Any, *, min_exceed: int = 10) -> np.ndarray:
    """Monte Carlo p value of a maximum-type statistic, with a Gumbel tail approximation.

    ``p = (1 + #{sim >= obs}) / (R + 1)`` (Dwass 1957); when fewer than ``min_exceed`` replicates
    reach the observed value, the p value comes from a Gumbel distribution fitted by moments to
    the replicates, so that very strong signals get p values below 1/(R+1) (Abrams, Kleinman &
    Kulldorff 2010, as SaTScan does).

    Parameters
    ----------
    observed
        Statistic(s), shape S.
    simulated
        Replicates under the null, shape (R, *S).

    References
    ----------
    Dwass, M. (1957). Modified randomization tests for nonparametric hypotheses. Ann. Math.
    Stat. 28, 181-187.
    Abrams, A. M., Kleinman, K. & Kulldorff, M. (2010). Gumbel based p-value approximations for
    spatial scan statistics. Int. J. Health Geographics 9:61.
    """
    obs = np.asarray(observed, dtype=float)
    sims = np.asarray(simulated, dtype=float)
    r = sims.shape[0]
    n_exceed = (sims >= obs[None, ...] - 1e-9).sum(axis=0)
    p_emp = (1.0 + n_exceed) / (r + 1.0)
    mean = sims.mean(axis=0)
    sd = sims.std(axis=0, ddof=1) if r > 1 else np.zeros_like(mean)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        beta = sd * math.sqrt(6.0) / math.pi
        mu = mean - 0.5772156649 * beta
        p_gum = -np.expm1(-np.exp(-(obs - mu) / beta))
    use_gumbel = (n_exceed < min_exceed) & (sd > 0) & np.isfinite(p_gum)
    p = np.where(use_gumbel, np.minimum(p_gum, p_emp), p_emp)
    return np.clip(p, P_FLOOR, 1.0)


def simulate_counts(
    expected: np.ndarray, n: int, rng: np.random.Generator, dispersion: float
) -> np.ndarray:
    """``n`` replicates of counts drawn from Poisson(expected), or NB2 with ``dispersion``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, *expected.shape)``; zero where the expectation is unknown.
    """
    mu = np.where(np.isfinite(expected), np.maximum(expected, 0.0), 0.0)
    if dispersion and dispersion > 0:
        shape = 1.0 / dispersion
        lam = rng.gamma(shape, mu[None, ...] / shape, size=(n, *mu.shape))
        return rng.poisson(lam).astype(float)
    return rng.poisson(mu[None, ...], size=(n, *mu.shape)).astype(float)
