"""Rate models: Poisson and negative-binomial GLMs with the present population as exposure.

Per group of incident categories, statsmodels GLMs (log link, ``exposure=`` the people present)
are fitted on the cells of :mod:`pipelines.models.design`: Poisson, and negative binomial (NB2)
when the counts are over-dispersed. Their coefficients are reported as incidence-rate ratios
(IRR) with 95 % Wald intervals.

The negative binomial is fitted on the cells as a quasi-likelihood with the exact variance of a
sum of NB2 rows sharing a rate, ``M (1 + alpha s M)`` with ``s = sum(E_i^2) / (sum E_i)^2``, and
``alpha`` is the row-level dispersion, estimated by maximum likelihood at the fitted means
(Lawless 1987) and updated with them; the Cameron-Trivedi auxiliary regression gives the
over-dispersion test that chooses the reported family.

References
----------
McCullagh, P. & Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed. Chapman & Hall.
Liang, K.-Y. & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika* 73(1), 13-22.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
Cameron, A. C. & Trivedi, P. K. (1990). Regression-based tests for overdispersion in the Poisson
model. *Journal of Econometrics* 46(3), 347-364.
Hilbe, J. M. (2011). *Negative Binomial Regression*, 2nd ed. Cambridge University Press.
Lawless, J. F. (1987). Negative binomial and mixed Poisson regression. *Canadian Journal of
Statistics* 15(3), 209-225.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.errors import InputError
from pipelines.models.design import (
    FEATURES,
    MIN_INCIDENTS,
    Cells,
    _linear_predictor,
    _matrix,
    _terms,
    build_cells,
    design_features,
    exposure_mask,
)


def _estimable(
    keys: pd.DataFrame,
    exposure: np.ndarray,
    features: Sequence[str],
    hours: list[int],
    dows: list[int],
) -> tuple[list[str], dict[str, str]]:
    """Features that can be estimated on these cells, and why the others cannot.

    A feature is dropped when it is constant over the cells with exposure, or when it does not
    raise the rank of the exposure-weighted Gram matrix of the design (collinear with hour of
    day, day of week or the features before it).
    """
    used = exposure > 0
    k = keys.loc[used]
    why: dict[str, str] = {}
    kept: list[str] = []
    for f in features:
        v = k[f].to_numpy(dtype=np.float64)
        if v.size == 0 or np.nanmax(v) == np.nanmin(v):
            why[f] = f"constant over the fitting rows (always {v[0] if v.size else 0:g})"
            continue
        kept.append(f)
    base = _terms([], hours, dows)
    X = _matrix(k, [*base, *kept])
    w = exposure[used] / exposure[used].mean()
    G = (X * w[:, None]).T @ X
    d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
    G = G / d[:, None] / d[None, :]
    nb = len(base)
    sel = list(range(nb))

    def _rank(idx: list[int]) -> int:
        ev = np.linalg.eigvalsh(G[np.ix_(idx, idx)])
        return int((ev > 1e-9 * max(ev.max(), 1e-300)).sum())

    rank = _rank(sel)
    final: list[str] = []
    for j, f in enumerate(kept):
        r = _rank([*sel, nb + j])
        if r > rank:
            sel.append(nb + j)
            rank = r
            final.append(f)
        else:
            what = "hour of day" if f == "dark" else "hour of day, day of week or another feature"
            why[f] = f"confounded with {what} over the fitting period"
    return final, why


# --------------------------------------------------------------------------------------------
# GLM
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GLMFit:
    """A fitted rate model for one group of categories.

    Attributes
    ----------
    group, family
        The category group and ``"poisson"`` or ``"negbin"``.
    terms, params, cov
        Coefficient names, estimates (log scale) and their covariance.
    alpha
        NB2 dispersion per row (0 for Poisson); used for predictive intervals.
    overdispersion_t
        Cameron-Trivedi t statistic of the over-dispersion test (H0: alpha = 0).
    n_rows, n_cells, n_incidents
        Rows used, cells fitted, incidents in them.
    dropped
        Rows left out: ``missing_presence``, ``zero_presence``.
    not_estimable
        Feature -> why it is not in the model.
    grain, categories
        Grain of the data, and the category slugs summed (``None``: all incidents).
    deviance, pearson_dispersion
        Cell-level deviance and Pearson dispersion of the fit.
    cov_type, n_clusters
        ``"model"`` (inverse Fisher information) or ``"cluster"`` (sandwich over
        ``n_clusters`` clusters, see :func:`fit_glm`).
    """

    group: str
    family: str
    terms: tuple[str, ...]
    params: np.ndarray
    cov: np.ndarray
    alpha: float
    overdispersion_t: float
    n_rows: int
    n_cells: int
    n_incidents: int
    dropped: dict[str, int]
    not_estimable: dict[str, str]
    grain: str = "1h"
    categories: tuple[str, ...] | None = None
    deviance: float = float("nan")
    pearson_dispersion: float = float("nan")
    cov_type: str = "model"
    n_clusters: int = 0

    @property
    def features(self) -> list[str]:
        return [t for t in self.terms if t in FEATURES]

    @property
    def bse(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def irr_table(self, *, level: float = 0.95) -> pd.DataFrame:
        """Incidence-rate ratios with Wald intervals and two-sided p-values.

        Returns
        -------
        pandas.DataFrame
            term, irr, ci_low, ci_high, p_value, log_irr, se (intercept: baseline rate per
            person-slot at the reference hour and day).
        """
        z = stats.norm.ppf(0.5 + level / 2)
        se = self.bse
        b = self.params
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            p = 2 * stats.norm.sf(np.abs(b / se))
            return pd.DataFrame(
                {
                    "term": list(self.terms),
                    "irr": np.exp(b),
                    "ci_low": np.exp(b - z * se),
                    "ci_high": np.exp(b + z * se),
                    "p_value": p,
                    "log_irr": b,
                    "se": se,
                }
            )

    def log_rate(self, dz: pd.DataFrame) -> np.ndarray:
        """Log incidents per person-slot for design rows (unknown hours/days: reference)."""
        return _linear_predictor(dz, self.terms, self.params)

    def mean(self, dz: pd.DataFrame) -> np.ndarray:
        """Expected incidents for design rows (exposure x rate; NaN when exposure is missing)."""
        return dz["exposure"].to_numpy(dtype=np.float64) * np.exp(self.log_rate(dz))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "glm",
            "group": self.group,
            "family": self.family,
            "terms": list(self.terms),
            "params": self.params.tolist(),
            "cov": self.cov.tolist(),
            "alpha": self.alpha,
            "overdispersion_t": self.overdispersion_t,
            "n_rows": self.n_rows,
            "n_cells": self.n_cells,
            "n_incidents": self.n_incidents,
            "dropped": self.dropped,
            "not_estimable": self.not_estimable,
            "grain": self.grain,
            "categories": None if self.categories is None else list(self.categories),
            "deviance": self.deviance,
            "pearson_dispersion": self.pearson_dispersion,
            "cov_type": self.cov_type,
            "n_clusters": self.n_clusters,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GLMFit:
        return cls(
            group=d["group"],
            family=d["family"],
            terms=tuple(d["terms"]),
            params=np.asarray(d["params"], dtype=np.float64),
            cov=np.asarray(d["cov"], dtype=np.float64),
            alpha=float(d["alpha"]),
            overdispersion_t=float(d["overdispersion_t"]),
            n_rows=int(d["n_rows"]),
            n_cells=int(d["n_cells"]),
            n_incidents=int(d["n_incidents"]),
            dropped=dict(d["dropped"]),
            not_estimable=dict(d["not_estimable"]),
            grain=d.get("grain", "1h"),
            categories=None if d.get("categories") is None else tuple(d["categories"]),
            deviance=float(d.get("deviance") or float("nan")),
            pearson_dispersion=float(d.get("pearson_dispersion") or float("nan")),
            cov_type=d.get("cov_type", "model"),
            n_clusters=int(d.get("n_clusters", 0)),
        )


class SparseGroupError(InputError):
    """A category group has too few incidents to be modelled."""


def _prepare(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    features: Sequence[str] | None,
    mask: np.ndarray | None,
    cells: Cells | None,
    resolution: float,
    group: str,
    min_incidents: int,
) -> dict[str, Any]:
    """Shared preparation of GLM and XGBoost fits: usable rows, cells, estimable features."""
    if len(dz) != len(y):
        raise InputError(f"design has {len(dz)} rows but the counts have {len(y)}.")
    ok = exposure_mask(dz)
    base = np.ones(len(dz), bool) if mask is None else np.asarray(mask, bool)
    e = dz["exposure"].to_numpy(dtype=np.float64)
    dropped = {
        "missing_presence": int((base & ~np.isfinite(e)).sum()),
        "zero_presence": int((base & np.isfinite(e) & (e <= 0)).sum()),
    }
    use = base & ok
    if features is None:
        features = design_features(dz)
    yv = np.nan_to_num(np.asarray(y, dtype=np.float64))
    n_inc = int(round(yv[use].sum()))
    if not use.any():
        raise InputError(
            f"group {group!r}: no row with known, positive presence to fit on "
            f"({dropped['missing_presence']} rows with presence missing, "
            f"{dropped['zero_presence']} with zero presence); presence is the exposure of the "
            "rate models."
        )
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents over {int(use.sum())} rows with presence; at "
            f"least {min_incidents} are needed to fit a rate model: merge its categories into "
            "another group or use a longer period."
        )
    if cells is None:
        cells = build_cells(dz, features=features, resolution=resolution)
    Ec = cells.sums(e, use)
    Yc = cells.sums(yv, use)
    E2c = cells.sums(e * e, use)
    hours = sorted(int(h) for h in np.unique(cells.keys["local_hour"].to_numpy()[Ec > 0]))
    dows = sorted(int(d) for d in np.unique(cells.keys["dow"].to_numpy()[Ec > 0]))
    feats, why = _estimable(
        cells.keys, Ec, [f for f in features if f in cells.features], hours, dows
    )
    for f in features:
        if f not in cells.features:
            why[f] = "not in the design"
    return {
        "use": use,
        "cells": cells,
        "Ec": Ec,
        "Yc": Yc,
        "E2c": E2c,
        "hours": hours,
        "dows": dows,
        "features": feats,
        "why": why,
        "dropped": dropped,
        "n_inc": n_inc,
        "y": yv,
        "e": e,
    }


def _nb_alpha_mle(y: np.ndarray, mu: np.ndarray, *, max_rows: int = 500_000) -> float:
    """Maximum-likelihood NB2 dispersion for counts ``y`` with fixed means ``mu`` (Lawless
    1987), searched on log(alpha) in [1e-6, 20] (on ``max_rows`` random rows at most)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import gammaln

    ok = mu > 0
    y, mu = y[ok], mu[ok]
    if len(y) < 3:
        return 0.0
    if len(y) > max_rows:  # a fixed random subsample is plenty for one parameter
        pick = np.random.default_rng(0).choice(len(y), size=max_rows, replace=False)
        y, mu = y[pick], mu[pick]

    def nll(log_a: float) -> float:
        a = math.exp(log_a)
        r = 1.0 / a
        ll = (
            gammaln(y + r)
            - gammaln(r)
            - gammaln(y + 1)
            + r * np.log(r / (r + mu))
            + y * np.log(mu / (r + mu))
        )
        return -float(ll.sum())

    res = minimize_scalar(nll, bounds=(math.log(1e-6), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def _ct_alpha(y: np.ndarray, mu: np.ndarray) -> tuple[float, float]:
    """Cameron-Trivedi (1990) regression estimate of NB2 alpha and its t statistic."""
    ok = mu > 0
    y, mu = y[ok], mu[ok]
    z = ((y - mu) ** 2 - y) / mu
    smu2 = float((mu * mu).sum())
    if smu2 <= 0 or len(y) < 3:
        return 0.0, 0.0
    a = float((z * mu).sum() / smu2)
    resid = z - a * mu
    se = math.sqrt(float((resid * resid).sum()) / (len(y) - 1) / smu2)
    return a, (a / se if se > 0 else 0.0)


def _overdispersed(alpha: float, t: float) -> bool:
    """NB2 rather than Poisson: a positive alpha and the Cameron-Trivedi test rejecting
    equidispersion at the one-sided 5 % level."""
    return alpha > 0 and t > stats.norm.ppf(0.95)


def _one_blas_thread(fn):
    """Run with a single BLAS thread: the matrices are small and the machine is shared."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@_one_blas_thread
def fit_glm(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    family: str = "auto",
    group: str = "all",
    features: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    cells: Cells | None = None,
    resolution: float = 0.05,
    grain: str = "1h",
    categories: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    cluster: np.ndarray | None = None,
) -> GLMFit:
    """Fit a Poisson or negative-binomial rate GLM with presence as exposure.

    ``log E[y] = log(present) + b0 + sum_f b_f x_f + hour-of-day + day-of-week``, fitted with
    statsmodels on cells of identical covariates (exact for the Poisson likelihood; a
    quasi-likelihood with the exact cell variance for the NB2).

    Parameters
    ----------
    dz
        Output of :func:`design`.
    y
        Incident counts per row of ``dz``.
    family
        ``"poisson"``, ``"negbin"`` or ``"auto"`` (NB2 when the Cameron-Trivedi test rejects
        equidispersion at the one-sided 5 % level, else Poisson).
    group
        Name of the category group (for messages and the result).
    features
        Candidate features (default: every feature column of ``dz``). Constant or collinear ones
        are dropped and listed in ``not_estimable``.
    mask
        Rows allowed in the fit (e.g. before a backtest origin); rows without positive
        presence are always left out.
    cells
        Precomputed :func:`build_cells` of ``dz`` (reused across fits).
    resolution
        Rounding of continuous features in the cell key.
    grain, categories
        Recorded in the result.
    min_incidents
        Fewer incidents than this raise :class:`SparseGroupError`.
    cluster
        Cluster label per row (e.g. the local date). When given, the covariance is the
        cluster-robust sandwich (Liang & Zeger 1986; Cameron & Miller 2015) with the small-sample
        factor G / (G - 1): city-wide covariates such as rain or holidays vary by day, not by
        zone-slot, and the model-based intervals would be too narrow under day-level shocks.

    Returns
    -------
    GLMFit

    Raises
    ------
    SparseGroupError
        Too few incidents.
    InputError
        No usable row, or unknown family.

    References
    ----------
    McCullagh & Nelder (1989), ch. 6 (log-linear models, offsets); Cameron & Trivedi (1990)
    for the over-dispersion test and the moment estimator of alpha; Hilbe (2011) for NB2.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    if family not in ("auto", "poisson", "negbin"):
        raise InputError(f"family must be 'auto', 'poisson' or 'negbin', got {family!r}.")
    p = _prepare(
        dz,
        y,
        features=features,
        mask=mask,
        cells=cells,
        resolution=resolution,
        group=group,
        min_incidents=min_incidents,
    )
    Ec, Yc, E2c = p["Ec"], p["Yc"], p["E2c"]
    keep = Ec > 0
    terms = _terms(p["features"], p["hours"], p["dows"])
    keys = p["cells"].keys.loc[keep]
    X = _matrix(keys, terms)
    Ek, Yk = Ec[keep], Yc[keep]
    sk = E2c[keep] / (Ek * Ek)

    def _fit(var_weights: np.ndarray | None, start: np.ndarray):
        model = sm.GLM(Yk, X, family=sm.families.Poisson(), exposure=Ek, var_weights=var_weights)
        # Newton on the p x p Hessian: cheaper than IRLS's least squares on the n x p matrix.
        # A level without any incident (sparse groups) has no finite MLE: its IRR tends to 0
        # with a huge standard error, which is what the table then shows.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            return model.fit(method="newton", start_params=start, maxiter=100, disp=0)

    start = np.zeros(len(terms))
    start[0] = math.log(max(Yk.sum(), 0.5) / Ek.sum())
    res = _fit(None, start)
    rate_c = np.zeros(len(Ec))
    rate_c[keep] = np.exp(X @ res.params)
    use = p["use"]
    cell = p["cells"].cell
    mu_rows = p["e"][use] * rate_c[cell[use]]
    alpha, t = _ct_alpha(p["y"][use], mu_rows)
    fam = family
    if family == "auto":
        fam = "negbin" if _overdispersed(alpha, t) else "poisson"
    if fam == "negbin":
        alpha = _nb_alpha_mle(p["y"][use], mu_rows)
        for _ in range(3):
            M = Ek * np.exp(X @ res.params)
            res = _fit(1.0 / (1.0 + alpha * sk * M), res.params)
            rate_c[keep] = np.exp(X @ res.params)
            mu_rows = p["e"][use] * rate_c[cell[use]]
            alpha_new = _nb_alpha_mle(p["y"][use], mu_rows)
            if abs(alpha_new - alpha) <= 1e-3 * alpha:
                alpha = alpha_new
                break
            alpha = alpha_new
    else:
        alpha = 0.0
    cov = np.asarray(res.cov_params(), dtype=np.float64)
    M = Ek * np.exp(X @ res.params)
    cov_type = "model"
    n_clusters = 0
    if cluster is not None:
        wk = 1.0 / (1.0 + alpha * sk * M)  # NB2 quasi-likelihood weight (1 for Poisson)
        kept_idx = np.full(len(Ec), -1, dtype=np.int64)
        kept_idx[keep] = np.arange(int(keep.sum()))
        ci = kept_idx[cell[use]]
        resid = p["y"][use] - mu_rows
        codes, _ = pd.factorize(np.asarray(cluster)[use])
        G = int(codes.max()) + 1
        S = np.empty((G, len(terms)))
        for j in range(len(terms)):
            S[:, j] = np.bincount(codes, weights=X[ci, j] * wk[ci] * resid, minlength=G)
        if G > 1:
            B = S.T @ S * G / (G - 1)
            cov = cov @ B @ cov
            cov_type = "cluster"
            n_clusters = G
    v = M * (1 + alpha * sk * M)
    pearson = float(((Yk - M) ** 2 / v).sum() / max(len(Yk) - len(terms), 1))
    return GLMFit(
        group=group,
        family=fam,
        terms=tuple(terms),
        params=np.asarray(res.params, dtype=np.float64),
        cov=cov,
        alpha=float(alpha),
        overdispersion_t=float(t),
        n_rows=int(use.sum()),
        n_cells=int(keep.sum()),
        n_incidents=p["n_inc"],
        dropped=p["dropped"],
        not_estimable=p["why"],
        grain=grain,
        categories=None if categories is None else tuple(categories),
        deviance=float(res.deviance),
        pearson_dispersion=pearson,
        cov_type=cov_type,
        n_clusters=n_clusters,
    )
