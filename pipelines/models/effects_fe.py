"""Fixed effects of the effect fits: zone and week factors, and the covariance that knows them.

The IRRs of ``effects.json`` (:mod:`pipelines.models.robust`) compare each zone with itself and
each week with itself:

* **zone factors**: presence as exposure does not carry all that distinguishes zones (a
  station, a nightlife street, a presence product biased by zone type), and a pooled model
  credits those differences to whatever feature is zone-level too (transit entries, lamps);
* **ISO-week factors** (city-wide): a trend, an annual season or a slow city-wide shock is
  otherwise credited to whatever feature moves with the season. Over the synthetic city's two
  years (incidents peaking in July), darkness read 1.08 against 1.30 planted without them.
  Public holidays (single days) stay identified; school holidays (whole weeks) only by the
  weeks they start or end in, and their interval says so.

Both are fitted by backfitting, accelerated (:func:`refit_fixed`), and carried in the exposure;
:func:`fe_cluster_cov` then recomputes the features' cluster-robust covariance with the factors
partialled out, since a sandwich that takes them as known is too narrow for every feature
correlated with them, and clusters it two ways, by zone and by local day
(:func:`twoway_cluster_cov`; Cameron, Gelbach & Miller 2011).

References
----------
Varadhan, R. & Roland, C. (2008). Simple and globally convergent methods for accelerating the
convergence of any EM algorithm. *Scandinavian Journal of Statistics* 35(2), 335-353.
Gaure, S. (2013). OLS with multiple high dimensional category variables. *Computational
Statistics & Data Analysis* 66, 8-18.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2011). Robust inference with multiway
clustering. *Journal of Business & Economic Statistics* 29(2), 238-249.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from pipelines.models.design import FEATURES, Cells, build_cells, design_features, exposure_mask
from pipelines.models.glm import GLMFit, fit_glm

#: the fixed effects have converged when no coefficient of the GLM moves by more (log scale)
FE_TOL = 1e-3
#: most GLM fits the backfitting of the fixed effects may take
FE_ROUNDS = 60
#: ``GLMFit.cov_type`` of the effect fits: two-way cluster-robust by zone and by local day
TWO_WAY = "cluster_zone_day"


def refit(
    dz: pd.DataFrame,
    y: np.ndarray,
    glm: GLMFit,
    *,
    mask: np.ndarray,
    cluster=None,
    cells=None,
    features: list[str] | None = None,
) -> GLMFit:
    """``glm`` fitted again on the rows of ``mask`` (same family, features and categories;
    ``features`` instead of its features when given).

    Raises ``numpy.linalg.LinAlgError`` when the fit did not converge: its expected incidents
    over the rows fitted are more than 10 % off the observed ones (at the maximum likelihood
    of a model with an intercept they are equal for the Poisson, close for the NB)."""
    fit = fit_glm(
        dz, y, family=glm.family, group=glm.group, mask=mask,
        features=(glm.features or None) if features is None else features,
        grain=glm.grain, categories=glm.categories, min_incidents=1, cluster=cluster, cells=cells,
    )  # fmt: skip
    rows = mask & exposure_mask(dz) & np.isfinite(y)
    expected, observed = float(np.nansum(fit.mean(dz)[rows])), float(y[rows].sum())
    if observed > 0 and not abs(np.log(max(expected, 1e-300) / observed)) < 0.1:
        raise np.linalg.LinAlgError(
            f"the fit did not converge ({expected:.4g} incidents expected over its rows, "
            f"{observed:.0f} observed)"
        )
    return fit


def fixed_keys(cube: pd.DataFrame, day: np.ndarray) -> list[np.ndarray]:
    """The fixed effects of the effect fits: one code per zone, one per ISO week (from the local
    day codes ``day``: day 0, 1970-01-01, is a Thursday)."""
    zone = pd.factorize(cube["zone_id"])[0].astype(np.int64)
    week = pd.factorize((day + 3) // 7)[0].astype(np.int64)
    return [zone, week]


def _factor_pass(
    keys: list[np.ndarray],
    logf: list[np.ndarray],
    *,
    y: np.ndarray,
    mu: np.ndarray,
    rows,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """One Gauss-Seidel pass of the fixed effects' likelihood equations at the GLM's means
    ``mu`` (computed with ``logf``): each factor scaled so that its ``weights``-weighted
    expected incidents over ``rows`` equal its weighted observed ones (``sum c (y - mu) = 0``
    over the factor's rows: the Poisson score with ``c`` 1, the NB2 quasi-score with the GLM's
    weights ``c``, :func:`nb_weights`; a factor without incidents is left as it is), the logs
    of each set centred on 0 (the intercept carries the level)."""
    out = []
    mu = mu.copy()
    w = np.ones(len(mu)) if weights is None else weights
    for key, lf in zip(keys, logf, strict=True):
        num = np.bincount(key[rows], weights=(w * y)[rows], minlength=len(lf))
        den = np.bincount(key[rows], weights=(w * mu)[rows], minlength=len(lf))
        ok = (den > 0) & (num > 0)
        step = np.where(ok, np.log(np.where(ok, num, 1.0) / np.where(ok, den, 1.0)), 0.0)
        mu *= np.exp(step)[key]
        new = lf + step
        out.append(new - new.mean())
    return out


def nb_weights(
    fit: GLMFit, cells: Cells, *, mu: np.ndarray, exposure: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """The GLM's quasi-likelihood weight of every row (1 for the Poisson; for the NB2, its
    cell's ``c = 1 / (1 + alpha s M)``, ``M`` the cell's expected incidents over ``rows`` and
    ``s = sum(E^2) / sum(E)^2`` of its exposures, the weights of
    :func:`pipelines.models.glm.fit_glm`); 0 outside ``rows``."""
    c = np.where(rows, 1.0, 0.0)
    if fit.alpha <= 0:
        return c
    cell = cells.cell
    M = np.bincount(cell[rows], weights=mu[rows], minlength=cells.n)
    se = np.bincount(cell[rows], weights=exposure[rows], minlength=cells.n)
    s = np.bincount(cell[rows], weights=exposure[rows] ** 2, minlength=cells.n)
    s = s / np.maximum(se * se, 1e-300)
    return np.where(rows, 1.0 / (1.0 + fit.alpha * s * M)[cell], 0.0)


def absorbed(
    dz: pd.DataFrame, features: list[str], keys: list[np.ndarray], rows: np.ndarray
) -> dict[str, str]:
    """Feature -> why, for the features constant within every code of one of ``keys`` over
    ``rows`` (a feature that fills whole ISO weeks, or is a zone's constant): the fixed effects
    absorb them, so they have no IRR of their own."""
    names = ("zone", "ISO week")
    out: dict[str, str] = {}
    for f in features:
        x = np.nan_to_num(dz[f].to_numpy(np.float64))[rows]
        if len(x) == 0 or np.ptp(x) == 0:
            continue  # constant everywhere: the GLM says so itself
        for name, key in zip(names, keys, strict=False):
            k = key[rows]
            n = np.bincount(k)
            mean = np.bincount(k, weights=x) / np.maximum(n, 1)
            if np.abs(x - mean[k]).max() <= 1e-9 * max(np.abs(x).max(), 1.0):
                out[f] = f"constant within every {name}: the {name} factors absorb it"
                break
    return out


def _squarem(step, theta: np.ndarray, *, tol: float, max_rounds: int) -> np.ndarray:
    """The fixed point of ``step`` (theta -> (next theta, the GLM's coefficients at theta)) by
    SQUAREM (Varadhan & Roland 2008, scheme S3, step length at most -1): two steps, an
    extrapolation, a stabilising step; done when the coefficients move by less than ``tol``.
    Raises ``numpy.linalg.LinAlgError`` past ``max_rounds`` steps."""
    prev: np.ndarray | None = None  # the GLM's coefficients at the last extrapolated factors
    fits = 0
    while True:
        if fits + 3 > max_rounds:
            raise np.linalg.LinAlgError(
                f"the zone and week effects did not converge in {max_rounds} fits"
            )
        t1, p1 = step(theta)
        fits += 1
        if prev is not None and np.max(np.abs(p1 - prev)) < tol:
            return t1
        t2, p2 = step(t1)
        fits += 1
        if np.max(np.abs(p2 - p1)) < tol:
            return t2
        r, v = t1 - theta, t2 - 2 * t1 + theta
        nv = float(np.linalg.norm(v))
        alpha = min(-float(np.linalg.norm(r)) / nv, -1.0) if nv > 0 else -1.0
        theta, prev = step(theta - 2 * alpha * r + alpha * alpha * v)
        fits += 1


def refit_fixed(
    dz: pd.DataFrame,
    y: np.ndarray,
    glm: GLMFit,
    *,
    keys: list[np.ndarray],
    mask: np.ndarray,
    cluster: np.ndarray | None = None,
    cells: Cells | None = None,
    tol: float = FE_TOL,
    max_rounds: int = FE_ROUNDS,
) -> tuple[GLMFit, pd.DataFrame]:
    """``glm`` refitted with fixed effects (a factor per code of each of ``keys``: the zones
    and the ISO weeks of :func:`fixed_keys`) carried in its exposure.

    The fixed effects and the GLM are fitted by backfitting: the GLM at the factors, then each
    factor scaled so that its expected incidents over the rows fitted equal its observed ones,
    each row weighted by the GLM's quasi-likelihood weight (the estimating equation of a fixed
    effect under the GLM's family: the Poisson likelihood equation, or the NB2 quasi-score,
    :func:`nb_weights`), until the GLM's coefficients move by less
    than ``tol`` (log scale). Plain backfitting converges only linearly, and slowly where a
    feature is concentrated in a few zones (transit entries at the hubs: at two rounds the
    transit IRR of the synthetic city was 0.86 against 1.08 planted, as the zones' factors
    were not yet absorbed); the iteration is therefore accelerated by SQUAREM (Varadhan &
    Roland 2008, scheme S3, the step length kept at most -1), which brings it to ``tol`` in a
    few cycles of three fits. A zone without incidents keeps factor 1.

    Returns the fit and ``dz`` with the factors in its exposure (what its ``mean`` takes).
    ``cells``: the covariate cells of ``dz`` for ``glm``'s features (shared by every round;
    built when None). Raises
    ``numpy.linalg.LinAlgError`` when a GLM fit does not converge (:func:`refit`) or the
    backfitting does not reach ``tol`` in ``max_rounds`` fits. A feature the factors absorb
    (:func:`absorbed`) is left out of the fit and named in its ``not_estimable``.
    """
    e0 = dz["exposure"].to_numpy(np.float64)
    out = dz.copy()
    cells = cells_of(out, glm) if cells is None else cells
    feats = list(glm.features) or design_features(dz)
    gone = absorbed(dz, feats, keys, mask & exposure_mask(dz) & np.isfinite(y))
    feats = [f for f in feats if f not in gone]
    sizes = [int(k.max()) + 1 for k in keys]
    cuts = np.cumsum(sizes)[:-1]

    def with_factors(theta: np.ndarray) -> pd.DataFrame:
        lf = np.split(theta, cuts)
        out["exposure"] = e0 * np.exp(sum(f[k] for f, k in zip(lf, keys, strict=True)))
        return out

    def step(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One backfitting round from ``theta``: the new factors and the GLM's coefficients."""
        frame = with_factors(theta)
        fit = refit(frame, y, glm, mask=mask, cells=cells, features=feats)
        mu = fit.mean(frame)
        rows = mask & exposure_mask(frame) & np.isfinite(mu) & (mu > 0) & np.isfinite(y)
        e = frame["exposure"].to_numpy(np.float64)
        c = nb_weights(fit, cells, mu=np.where(rows, mu, 0.0), exposure=e, rows=rows)
        lf = _factor_pass(keys, np.split(theta, cuts), y=y, mu=mu, rows=rows, weights=c)
        return np.concatenate(lf), np.asarray(fit.params)

    theta = _squarem(step, np.zeros(int(sum(sizes))), tol=tol, max_rounds=max_rounds)
    frame = with_factors(theta)
    fit = refit(frame, y, glm, mask=mask, cluster=cluster, cells=cells, features=feats)
    return dataclasses.replace(fit, not_estimable={**fit.not_estimable, **gone}), frame


def _partial_out(
    X: np.ndarray, factors: list[np.ndarray], w: np.ndarray, *, tol: float = 1e-6, rounds: int = 100
) -> np.ndarray:
    """``X`` minus its ``w``-weighted projection on the dummies of every factor of ``factors``
    (alternating weighted demeaning until the columns move by less than ``tol`` of their scale;
    Gaure 2013)."""
    X = X.copy()
    scale = np.maximum(np.abs(X).max(axis=0), 1e-300)
    wsum = [np.maximum(np.bincount(f, weights=w), 1e-300) for f in factors]
    for _ in range(rounds):
        moved = 0.0
        for f, ws in zip(factors, wsum, strict=True):
            for j in range(X.shape[1]):
                m = np.bincount(f, weights=w * X[:, j], minlength=len(ws)) / ws
                X[:, j] -= m[f]
                moved = max(moved, float(np.abs(m).max()) / scale[j])
        if moved < tol:
            break
    return X


def fe_cluster_cov(
    frame: pd.DataFrame,
    y: np.ndarray,
    fit: GLMFit,
    *,
    keys: list[np.ndarray],
    mask: np.ndarray,
    cluster: np.ndarray,
    cells: Cells,
) -> GLMFit:
    """``fit`` with the cluster-robust covariance of its features recomputed with the fixed
    effects estimated, not known.

    The fixed effects of :func:`refit_fixed` are carried in the exposure, so the sandwich
    the GLM computes treats them as known: a feature correlated with them (transit entries at
    the hubs, lamps out in a few zones, school holidays with the weeks) then gets both a bread
    and a meat that are too small. Here the features are first partialled out of every
    categorical term (zones, weeks, hour of day, day of week, the intercept) with the GLM's
    working weights ``c mu`` (``c`` the NB2 cell weight ``1 / (1 + alpha s M)``, 1 for the
    Poisson), by alternating weighted demeaning; with ``x~`` the partialled features and ``r``
    the residuals, the scores ``c r x~`` and the bread ``A^-1``, ``A = sum c mu x~ x~'`` (the
    profiled estimating equations: Frisch-Waugh-Lovell for GLMs; Cameron & Miller 2015,
    section VI; Gaure 2013 for the demeaning) give the **two-way** cluster-robust covariance
    by zone (``keys[0]``) and by local day (``cluster``) of :func:`twoway_cluster_cov`
    (Cameron, Gelbach & Miller 2011). By day alone, the sandwich ignores what ties a zone's
    days: a zone's misfit that persists over weeks (a station busier than its presence says,
    a street whose incidents drift) moves with whatever feature is persistent within the zone
    too (its transit entries, its lamps out, a run of school-holiday weeks), and on the
    synthetic city the transit IRR's interval by day missed its planted value
    (docs/evaluation.md). Every feature gets it, the city-wide daily ones too: where only the
    days are correlated, ``V_zone - V_zone∩day`` is 0 in expectation and the two-way
    covariance is the one by day, and it is right where they are not. The returned fit's
    ``cov_type`` is :data:`TWO_WAY`. The covariances between the features and the other terms
    are set to 0 (only the features' IRRs are reported from these fits).
    """
    feats = [t for t in fit.terms if t in FEATURES]
    if not feats or fit.cov_type != "cluster":
        return fit
    mu_all = fit.mean(frame)
    rows = mask & exposure_mask(frame) & np.isfinite(y) & np.isfinite(mu_all)
    mu, r = mu_all[rows], y[rows] - mu_all[rows]
    e = frame["exposure"].to_numpy(np.float64)
    c = nb_weights(fit, cells, mu=np.where(rows, mu_all, 0.0), exposure=e, rows=rows)[rows]
    factors = [k[rows] for k in keys] + [
        pd.factorize(frame["local_hour"].to_numpy()[rows])[0],
        pd.factorize(frame["dow"].to_numpy()[rows])[0],
    ]
    X = frame[feats].to_numpy(np.float64)[rows]
    Xt = _partial_out(X, factors, c * mu)
    A = (Xt * (c * mu)[:, None]).T @ Xt
    cov_f = twoway_cluster_cov(Xt * (c * r)[:, None], np.linalg.pinv(A),
                               keys[0][rows], cluster[rows])  # fmt: skip
    idx = [fit.terms.index(f) for f in feats]
    cov = np.array(fit.cov, dtype=np.float64, copy=True)
    cov[idx, :] = 0.0
    cov[:, idx] = 0.0
    cov[np.ix_(idx, idx)] = cov_f
    return dataclasses.replace(fit, cov=cov, cov_type=TWO_WAY)


def _meat(scores: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
    """``G / (G - 1) sum_g S_g S_g'``, ``S_g`` the sums of ``scores`` over the rows of cluster
    ``g`` (``codes`` in 0 .. ``size`` - 1; ``G`` the clusters that have rows)."""
    G = int(np.count_nonzero(np.bincount(codes, minlength=size)))
    S = np.column_stack(
        [np.bincount(codes, weights=scores[:, j], minlength=size) for j in range(scores.shape[1])]
    )
    return S.T @ S * (G / max(G - 1, 1))


def twoway_cluster_cov(
    scores: np.ndarray, bread: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """The two-way cluster-robust covariance ``V = V_1 + V_2 - V_12`` of Cameron, Gelbach &
    Miller (2011): each ``V = bread M bread`` with ``M = G / (G - 1) sum_g S_g S_g'`` (``S_g``
    the sums of the rows' ``scores`` over cluster ``g``) for the clusters of ``first``, of
    ``second`` and of their intersection, each with its own ``G``; where ``V`` is not
    positive semi-definite, its negative eigenvalues are set to 0 (their section 2.3).

    It is statsmodels' ``cov_cluster_2groups`` on ``(scores, bread)`` without the OLS factor
    ``(N - 1) / (N - K)``, computed by ``bincount`` over the pairs' codes (no sort nor hash of
    the pairs: the effect fits at region scale have millions of rows).

    References
    ----------
    Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2011). Robust inference with multiway
    clustering. *Journal of Business & Economic Statistics* 29(2), 238-249.
    """
    a, na = _codes(first)
    b, nb = _codes(second)
    meat = _meat(scores, a, na) + _meat(scores, b, nb) - _meat(scores, a * nb + b, na * nb)
    V = bread @ meat @ bread.T
    V = (V + V.T) / 2
    lam, U = np.linalg.eigh(V)
    if lam.min(initial=0.0) < 0:
        V = (U * np.maximum(lam, 0.0)) @ U.T
    return V


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` as codes 0 .. n - 1, and n."""
    codes, uniq = pd.factorize(values)
    return codes.astype(np.int64), len(uniq)


def cells_of(dz: pd.DataFrame, glm: GLMFit, cache: dict | None = None) -> Cells:
    """The covariate cells :func:`refit` would build for ``glm`` on ``dz`` (its features, or
    every design feature when it has none), kept in ``cache`` by frame and features."""
    feats = tuple(glm.features) or tuple(design_features(dz))
    key = (id(dz), feats)
    if cache is not None and key in cache:
        return cache[key]
    cells = build_cells(dz, features=list(feats))
    if cache is not None:
        cache[key] = cells
    return cells
