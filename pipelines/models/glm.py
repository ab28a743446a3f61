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
import statsmodels.api as sm
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.special import gammaln
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from features.errors import InputError
from pipelines.models.design import (
    FEATURES,
    MIN_INCIDENTS,
    Cells,
    _linear_predictor,
    _matrix,
    _terms,
)
from pipelines.models.prepare import (  # noqa: F401  (SparseGroupError, _estimable: re-exported)
    Prepared,
    SparseGroupError,
    _estimable,
    _prepare,
)


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


def _nb_alpha_mle(y: np.ndarray, mu: np.ndarray, *, max_rows: int = 500_000) -> float:
    """Maximum-likelihood NB2 dispersion for counts ``y`` with fixed means ``mu`` (Lawless
    1987), searched on log(alpha) in [1e-6, 20] (on ``max_rows`` random rows at most)."""
    ok = mu > 0
    y, mu = y[ok], mu[ok]
    if len(y) < 3:
        return 0.0
    if len(y) > max_rows:  # a fixed random subsample is plenty for one parameter
        pick = np.random.default_rng(0).choice(len(y), size=max_rows, replace=False)
        y, mu = y[pick], mu[pick]

    # the terms free of alpha (gammaln(y + 1), y log mu) are left out; the gamma terms are
    # summed over the distinct counts, which are few
    vals, times = np.unique(y, return_counts=True)
    n = float(len(y))

    def nll(log_a: float) -> float:
        r = math.exp(-log_a)
        lg = np.log(r + mu)
        ll = float(times @ (gammaln(vals + r) - gammaln(r)))
        ll += n * r * math.log(r) - r * float(lg.sum()) - float(y @ lg)
        return -ll

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
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class _CellModel:
    """The cell-level regression of a GLM fit: the cells with exposure and their design."""

    keep: np.ndarray  # cells with exposure
    terms: list[str]
    X: np.ndarray  # design matrix of the kept cells
    Ek: np.ndarray  # their exposure
    Yk: np.ndarray  # their counts
    sk: np.ndarray  # sum(E_i^2) / (sum E_i)^2 of their rows

    @classmethod
    def of(cls, p: Prepared) -> _CellModel:
        keep = p.Ec > 0
        terms = _terms(p.features, p.hours, p.dows)
        Ek = p.Ec[keep]
        return cls(
            keep=keep,
            terms=terms,
            X=_matrix(p.cells.keys.loc[keep], terms),
            Ek=Ek,
            Yk=p.Yc[keep],
            sk=p.E2c[keep] / (Ek * Ek),
        )

    def means(self, params: np.ndarray) -> np.ndarray:
        """Expected counts of the kept cells."""
        return self.Ek * np.exp(self.X @ params)

    def row_means(self, p: Prepared, params: np.ndarray) -> np.ndarray:
        """Expected counts of the fitted rows (``p.use``)."""
        rate_c = np.zeros(len(p.Ec))
        rate_c[self.keep] = np.exp(self.X @ params)
        return p.e[p.use] * rate_c[p.cells.cell[p.use]]

    def newton(self, var_weights: np.ndarray | None, start: np.ndarray):
        """The statsmodels Poisson GLM (quasi-likelihood with ``var_weights``) by Newton.

        Newton on the p x p Hessian is cheaper than IRLS's least squares on the n x p matrix.
        A level without any incident (sparse groups) has no finite MLE: its IRR tends to 0
        with a huge standard error, which is what the table then shows. When Newton diverges
        (large covariates without presence to scale them), statsmodels' IRLS is used.
        """
        model = sm.GLM(
            self.Yk, self.X, family=sm.families.Poisson(), exposure=self.Ek, var_weights=var_weights
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = model.fit(method="newton", start_params=start, maxiter=100, disp=0)
            if not np.isfinite(res.params).all():
                res = model.fit(maxiter=100)
            else:
                score = np.abs(model.score(res.params))
                if not np.isfinite(score).all() or score.max() > 1e-4 * max(
                    float(self.Yk.sum()), 1.0
                ):
                    # Newton stopped away from the optimum (an event term of 30 000 attendees
                    # overshoots, and the steps back are 1 / k long) or its means overflowed:
                    # IRLS, if it does better (a non-finite likelihood never wins)
                    irls = model.fit(maxiter=100)
                    better = np.isfinite(irls.llf) and (
                        not np.isfinite(res.llf) or irls.llf > res.llf
                    )
                    res = irls if better else res
            return res

    def poisson(self):
        """The Poisson fit, started from the mean rate."""
        start = np.zeros(len(self.terms))
        start[0] = math.log(max(self.Yk.sum(), 0.5) / self.Ek.sum())
        return self.newton(None, start)


def _fit_negbin(cm: _CellModel, p: Prepared, res, mu_rows: np.ndarray):
    """NB2 quasi-likelihood refits, alternating with the ML update of alpha (at most 3)."""
    y = p.y[p.use]
    alpha = _nb_alpha_mle(y, mu_rows)
    for _ in range(3):
        res = cm.newton(1.0 / (1.0 + alpha * cm.sk * cm.means(res.params)), res.params)
        mu_rows = cm.row_means(p, res.params)
        alpha_new = _nb_alpha_mle(y, mu_rows)
        if abs(alpha_new - alpha) <= 1e-3 * alpha:
            alpha = alpha_new
            break
        alpha = alpha_new
    return res, alpha, mu_rows


def _cluster_cov(
    cm: _CellModel, p: Prepared, cov: np.ndarray, *, weights: np.ndarray, mu_rows, cluster
) -> tuple[np.ndarray, str, int]:
    """The cluster-robust sandwich ``cov B cov`` with factor G / (G - 1) (model-based when a
    single cluster): covariance, ``cov_type`` and number of clusters."""
    use, cell = p.use, p.cells.cell
    kept_idx = np.full(len(p.Ec), -1, dtype=np.int64)
    kept_idx[cm.keep] = np.arange(int(cm.keep.sum()))
    ci = kept_idx[cell[use]]
    resid = p.y[use] - mu_rows
    codes, _ = pd.factorize(np.asarray(cluster)[use])
    G = int(codes.max()) + 1
    S = np.empty((G, len(cm.terms)))
    for j in range(len(cm.terms)):
        S[:, j] = np.bincount(codes, weights=cm.X[ci, j] * weights[ci] * resid, minlength=G)
    if G <= 1:
        return cov, "model", 0
    B = S.T @ S * G / (G - 1)
    return cov @ B @ cov, "cluster", G


def _covariance(cm: _CellModel, p: Prepared, res, *, alpha: float, M, mu_rows, cluster):
    """Covariance of the estimates, ``cov_type`` and number of clusters: model-based, or the
    cluster-robust sandwich when ``cluster`` is given."""
    cov = np.asarray(res.cov_params(), dtype=np.float64)
    if cluster is None:
        return cov, "model", 0
    weights = 1.0 / (1.0 + alpha * cm.sk * M)  # NB2 quasi-likelihood weights (1 for Poisson)
    return _cluster_cov(cm, p, cov, weights=weights, mu_rows=mu_rows, cluster=cluster)


def _pearson(cm: _CellModel, M: np.ndarray, alpha: float) -> float:
    """Cell-level Pearson dispersion under the NB2 cell variance ``M (1 + alpha s M)``."""
    v = M * (1 + alpha * cm.sk * M)
    return float(((cm.Yk - M) ** 2 / v).sum() / max(len(cm.Yk) - len(cm.terms), 1))


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
    quasi-likelihood with the exact cell variance for the NB2). References: McCullagh & Nelder
    (1989) ch. 6; Cameron & Trivedi (1990) for the over-dispersion test; Hilbe (2011) for NB2.

    Parameters
    ----------
    dz, y
        Output of :func:`design`, and incident counts per row of it.
    family
        ``"poisson"``, ``"negbin"`` or ``"auto"`` (NB2 when the Cameron-Trivedi test rejects
        equidispersion at the one-sided 5 % level, else Poisson).
    group, grain, categories
        Name of the category group (for messages), grain and category slugs: recorded.
    features
        Candidate features (default: every feature column of ``dz``). Constant or collinear ones
        are dropped and listed in ``not_estimable``.
    mask
        Rows allowed in the fit (e.g. before a backtest origin); rows without positive
        presence are always left out.
    cells, resolution
        Precomputed :func:`build_cells` of ``dz`` (reused across fits); rounding of
        continuous features in the cell key otherwise.
    min_incidents
        Fewer incidents than this raise :class:`SparseGroupError`.
    cluster
        Cluster label per row (e.g. the local date): the covariance is then the cluster-robust
        sandwich (Liang & Zeger 1986; Cameron & Miller 2015) with factor G / (G - 1), as
        city-wide covariates (rain, holidays) vary by day, not by zone-slot.

    Raises
    ------
    SparseGroupError
        Too few incidents.
    InputError
        No usable row, or unknown family.
    """
    if family not in ("auto", "poisson", "negbin"):
        raise InputError(f"family must be 'auto', 'poisson' or 'negbin', got {family!r}.")
    prep: dict[str, Any] = dict(features=features, mask=mask, cells=cells, resolution=resolution)
    p = _prepare(dz, y, group=group, min_incidents=min_incidents, **prep)
    cm = _CellModel.of(p)
    res = cm.poisson()
    mu_rows = cm.row_means(p, res.params)
    alpha, t = _ct_alpha(p.y[p.use], mu_rows)
    fam = ("negbin" if _overdispersed(alpha, t) else "poisson") if family == "auto" else family
    if fam == "negbin":
        res, alpha, mu_rows = _fit_negbin(cm, p, res, mu_rows)
    else:
        alpha = 0.0
    M = cm.means(res.params)
    cov, cov_type, n_clusters = _covariance(
        cm, p, res, alpha=alpha, M=M, mu_rows=mu_rows, cluster=cluster
    )
    return GLMFit(
        group=group, family=fam, terms=tuple(cm.terms),
        params=np.asarray(res.params, dtype=np.float64), cov=cov, alpha=float(alpha),
        overdispersion_t=float(t), n_rows=int(p.use.sum()), n_cells=int(cm.keep.sum()),
        n_incidents=p.n_inc, dropped=p.dropped, not_estimable=p.why, grain=grain,
        categories=None if categories is None else tuple(categories),
        deviance=float(res.deviance), pearson_dispersion=_pearson(cm, M, alpha), cov_type=cov_type, n_clusters=n_clusters,
    )  # fmt: skip
