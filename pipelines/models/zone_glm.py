"""The forecasting model: a negative-binomial rate model with shrunken zone effects.

``log E[y] = b0 + u_zone + beta log(exposure) + g presence_imputed + hour + weekday + features
+ recent rates + trend + annual seasonality``, with

* ``u_zone`` random zone effects, ``u ~ N(0, s2)``: a ridge penalty ``u'u / s2`` on the zone
  dummies, ``s2`` updated as ``(sum u^2 + tr V_uu) / Z`` (penalised quasi-likelihood, Breslow &
  Clayton 1993; the penalty of Wood 2017, ch. 6): a zone with few incidents is drawn to the
  city's level, a busy one keeps its own;
* ``beta`` the **elasticity** of incidents to the people present: estimated, not assumed. The
  offset of :mod:`pipelines.models.glm` is the special case ``beta = 1``; the fit reports
  ``beta``, its 95 % interval and the Wald test of ``beta = 1``. Without presence variation (an
  incidents-only study) the term is left out and the fit says so;
* the recent-rate features of :mod:`pipelines.models.history` (zone rates over 4, 13 and 52
  weeks before the row's week, the city's recent level), a linear trend (years) when the data
  span half a year, and annual Fourier terms (two harmonics) when they span 18 months;
* NB2 counts: ``Var y = mu (1 + alpha mu)``; ``alpha`` by maximum likelihood at the fitted means
  (Lawless 1987). Day-level shocks shared by every zone are what makes the counts of a day
  over-dispersed and correlated: ``alpha`` carries them into the predictive intervals, and the
  covariance of the fixed terms is the cluster-robust sandwich by day (Liang & Zeger 1986).

Fitted by penalised iteratively reweighted least squares on a sparse design (rows, not cells:
the recent-rate features differ by zone and week). A training set above ``max_rows`` rows keeps
its most recent rows.

References
----------
Breslow, N. E. & Clayton, D. G. (1993). Approximate inference in generalized linear mixed
models. *JASA* 88(421), 9-25.
Lawless, J. F. (1987). Negative binomial and mixed Poisson regression. *Canadian Journal of
Statistics* 15(3), 209-225.
Liang, K.-Y. & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika* 73(1), 13-22.
Wood, S. N. (2017). *Generalized Additive Models*, 2nd ed. CRC Press.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from features.errors import InputError
from pipelines.models.design import FEATURES, MIN_INCIDENTS
from pipelines.models.glm import SparseGroupError, _nb_alpha_mle, _one_blas_thread
from pipelines.models.history import FEATURE_NAMES, WeeklyHistory, week_index

_YEAR_NS = 365.25 * 86_400 * 1e9
#: rows of the most recent training data a fit keeps at most
MAX_ROWS = 2_000_000
_RIDGE = 1e-3  # a whisper of ridge on the fixed terms (not the intercept), for stability


@dataclass(frozen=True)
class ZoneGLMFit:
    """A fitted :mod:`pipelines.models.zone_glm` model for one category group.

    Attributes
    ----------
    group, terms, params, cov
        Group; fixed terms, their estimates and their cluster-robust covariance.
    zones, zone_effects, sigma2
        Zones and their shrunken effects (log scale), and the zone-effect variance.
    alpha
        NB2 dispersion per row (0: Poisson).
    history
        Weekly counts per zone, for the recent-rate features.
    t0_ns
        Origin of the trend (ns, UTC).
    elasticity
        ``estimate``, ``ci_low``, ``ci_high``, ``se``, ``p_offset`` (Wald test of 1) and
        ``why`` (when it is not estimated).
    """

    group: str
    terms: tuple[str, ...]
    params: np.ndarray
    cov: np.ndarray
    zones: tuple[str, ...]
    zone_effects: np.ndarray
    sigma2: float
    alpha: float
    history: WeeklyHistory
    t0_ns: int
    n_rows: int
    n_incidents: int
    grain: str = "1h"
    categories: tuple[str, ...] | None = None
    elasticity: dict[str, Any] = field(default_factory=dict)
    n_clusters: int = 0

    def dense(self, dz: pd.DataFrame) -> np.ndarray:
        """The fixed-term design of ``dz`` (absent features as 0)."""
        return _dense(dz, self.terms, history=self.history, t0_ns=self.t0_ns)

    def mean(self, dz: pd.DataFrame) -> np.ndarray:
        """Expected incidents of design rows (an unknown zone gets the city level)."""
        eta = self.dense(dz) @ self.params
        zmap = {z: i for i, z in enumerate(self.zones)}
        zi = dz["zone_id"].astype(str).map(zmap).fillna(-1).to_numpy(np.int64)
        eta = eta + np.where(zi >= 0, self.zone_effects[np.clip(zi, 0, None)], 0.0)
        return np.exp(eta)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "zone_glm",
            "group": self.group,
            "terms": list(self.terms),
            "params": self.params.tolist(),
            "cov": self.cov.tolist(),
            "zones": list(self.zones),
            "zone_effects": self.zone_effects.tolist(),
            "sigma2": self.sigma2,
            "alpha": self.alpha,
            "history": self.history.to_json(),
            "t0_ns": self.t0_ns,
            "n_rows": self.n_rows,
            "n_incidents": self.n_incidents,
            "grain": self.grain,
            "categories": None if self.categories is None else list(self.categories),
            "elasticity": self.elasticity,
            "n_clusters": self.n_clusters,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZoneGLMFit:
        return cls(
            group=d["group"],
            terms=tuple(d["terms"]),
            params=np.asarray(d["params"], dtype=np.float64),
            cov=np.asarray(d["cov"], dtype=np.float64),
            zones=tuple(d["zones"]),
            zone_effects=np.asarray(d["zone_effects"], dtype=np.float64),
            sigma2=float(d["sigma2"]),
            alpha=float(d["alpha"]),
            history=WeeklyHistory.from_json(d["history"]),
            t0_ns=int(d["t0_ns"]),
            n_rows=int(d["n_rows"]),
            n_incidents=int(d["n_incidents"]),
            grain=d.get("grain", "1h"),
            categories=None if d.get("categories") is None else tuple(d["categories"]),
            elasticity=dict(d.get("elasticity") or {}),
            n_clusters=int(d.get("n_clusters", 0)),
        )


def _dense(dz: pd.DataFrame, terms: Sequence[str], *, history: WeeklyHistory, t0_ns: int):
    """Fixed-term columns of design rows, in ``terms`` order."""
    n = len(dz)
    rec = history.features(dz) if any(t in FEATURE_NAMES for t in terms) else None
    h = pd.DatetimeIndex(pd.to_datetime(dz["hour"], utc=True))
    years = (h.asi8 - t0_ns) / _YEAR_NS
    doy = 2 * np.pi * (h.dayofyear.to_numpy(np.float64) - 1) / 365.25
    X = np.zeros((n, len(terms)))
    for j, t in enumerate(terms):
        if t == "Intercept":
            X[:, j] = 1.0
        elif t.startswith("hour_"):
            X[:, j] = dz["local_hour"].to_numpy() == int(t[5:])
        elif t.startswith("dow_"):
            X[:, j] = dz["dow"].to_numpy() == int(t[4:])
        elif t == "log_exposure":
            e = dz["exposure"].to_numpy(np.float64)
            X[:, j] = np.log(np.where(np.isfinite(e) & (e > 0), e, np.nan))
        elif t == "presence_imputed":
            X[:, j] = dz[t].to_numpy(np.float64) if t in dz.columns else 0.0
        elif t == "trend":
            X[:, j] = years
        elif t[:4] in ("sin_", "cos_"):
            k = int(t[4:])
            X[:, j] = np.sin(k * doy) if t[:3] == "sin" else np.cos(k * doy)
        elif rec is not None and t in rec.columns:
            X[:, j] = rec[t].to_numpy()
        elif t in dz.columns:
            X[:, j] = dz[t].to_numpy(np.float64)
    return X


def _varies(v: np.ndarray) -> bool:
    v = v[np.isfinite(v)]
    return v.size > 1 and float(v.max() - v.min()) > 1e-9


def _choose_terms(dz: pd.DataFrame, use: np.ndarray, span_years: float) -> tuple[list, dict]:
    """The fixed terms that vary over the training rows, and why others are out."""
    why: dict[str, str] = {}
    hours = sorted(int(h) for h in np.unique(dz["local_hour"].to_numpy()[use]))
    dows = sorted(int(d) for d in np.unique(dz["dow"].to_numpy()[use]))
    ref_h = 12 if 12 in hours else hours[0]
    terms = ["Intercept", *[f"hour_{h}" for h in hours if h != ref_h]]
    terms += [f"dow_{d}" for d in dows if d != dows[0]]
    e = dz["exposure"].to_numpy(np.float64)[use]
    if _varies(np.log(np.where(e > 0, e, np.nan))):
        terms.append("log_exposure")
    else:
        why["log_exposure"] = "exposure does not vary (no presence): elasticity not estimable"
    if "presence_imputed" in dz.columns and _varies(dz["presence_imputed"].to_numpy()[use]):
        terms.append("presence_imputed")
    for f in FEATURES:
        if f in dz.columns:
            if _varies(dz[f].to_numpy(np.float64)[use]):
                terms.append(f)
            else:
                why[f] = "constant over the fitting rows"
    terms += list(FEATURE_NAMES)
    if span_years >= 0.5:
        terms.append("trend")
    if span_years >= 1.5:
        terms += ["sin_1", "cos_1", "sin_2", "cos_2"]
    else:
        why["annual seasonality"] = f"{span_years:.1f} year(s) of data (needs 1.5)"
    return terms, why


def _pll(X: sp.csr_matrix, y: np.ndarray, beta: np.ndarray, pen: np.ndarray, alpha: float):
    """The penalised NB2 (Poisson when ``alpha`` is 0) log-likelihood, up to a constant."""
    eta = np.clip(X @ beta, -30, 30)
    mu = np.exp(eta)
    if alpha > 0:
        ll = y * eta - (y + 1 / alpha) * np.log1p(alpha * mu)
    else:
        ll = y * eta - mu
    return float(ll.sum() - 0.5 * (pen * beta * beta).sum())


def _irls(
    X: sp.csr_matrix, y: np.ndarray, pen: np.ndarray, alpha: float, beta: np.ndarray, iters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penalised IRLS (Fisher scoring with step halving) for the NB2 log-linear model:
    estimates, means and the penalised information ``X'WX + P``."""
    P = np.diag(pen)
    cur = _pll(X, y, beta, pen, alpha)
    for _ in range(iters):
        mu = np.exp(np.clip(X @ beta, -30, 30))
        w = mu / (1.0 + alpha * mu)
        XtW = X.T.multiply(w).tocsr()
        H = (XtW @ X).toarray() + P
        grad = X.T @ ((y - mu) / (1.0 + alpha * mu)) - pen * beta
        step = np.linalg.lstsq(H, grad, rcond=None)[0]
        t = 1.0
        while t > 1e-4:
            new = beta + t * step
            val = _pll(X, y, new, pen, alpha)
            if val >= cur - 1e-9 * abs(cur):
                break
            t /= 2
        done = np.max(np.abs(new - beta)) < 1e-6 or abs(val - cur) < 1e-10 * (1 + abs(cur))
        beta, cur = new, val
        if done:
            break
    mu = np.exp(np.clip(X @ beta, -30, 30))
    w = mu / (1.0 + alpha * mu)
    H = (X.T.multiply(w).tocsr() @ X).toarray() + P
    return beta, mu, H


def _sandwich(X, y, mu, alpha, H, cluster) -> tuple[np.ndarray, int]:
    """Cluster-robust covariance ``H^-1 B H^-1`` (factor G / (G - 1)) and G."""
    codes, _ = pd.factorize(cluster)
    G = int(codes.max()) + 1
    r = (y - mu) / (1.0 + alpha * mu)
    C = sp.csr_matrix((r, (codes, np.arange(len(y)))), shape=(G, len(y)))
    S = np.asarray((C @ X).todense()) if sp.issparse(C @ X) else C @ X
    Hi = np.linalg.pinv(H)
    if G <= 1:
        return Hi, 0
    return Hi @ (S.T @ S * G / (G - 1)) @ Hi, G


def _elasticity(terms: Sequence[str], b: np.ndarray, cov: np.ndarray, why: dict) -> dict:
    if "log_exposure" not in terms:
        return {"why": why.get("log_exposure", "no presence")}
    j = list(terms).index("log_exposure")
    est, se = float(b[j]), float(math.sqrt(max(cov[j, j], 0.0)))
    z = stats.norm.ppf(0.975)
    p = float(2 * stats.norm.sf(abs(est - 1.0) / se)) if se > 0 else float("nan")
    return {"estimate": est, "ci_low": float(est - z * se), "ci_high": float(est + z * se), "se": se,
            "p_offset": p, "test": "Wald test of elasticity 1 (presence as an offset)"}  # fmt: skip


def _training_rows(dz: pd.DataFrame, y: np.ndarray, mask, max_rows: int) -> np.ndarray:
    """Rows to fit on: in ``mask``, exposure known, a week of history, at most ``max_rows``."""
    e = dz["exposure"].to_numpy(np.float64)
    use = (np.ones(len(dz), bool) if mask is None else np.asarray(mask, bool)) & np.isfinite(e)
    use &= e > 0
    w = week_index(dz)
    if use.any():
        use &= w > w[use].min()  # the first week has no history
    if use.sum() > max_rows:
        order = np.sort(pd.DatetimeIndex(pd.to_datetime(dz["hour"], utc=True)).asi8[use])
        cut = order[-max_rows]
        use &= pd.DatetimeIndex(pd.to_datetime(dz["hour"], utc=True)).asi8 >= cut
    return use


@_one_blas_thread
def fit_zone_glm(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    group: str = "all",
    mask: np.ndarray | None = None,
    grain: str = "1h",
    categories: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    max_rows: int = MAX_ROWS,
    rounds: int = 4,
) -> ZoneGLMFit:
    """Fit the model of the module docstring on the rows of ``mask``.

    Parameters
    ----------
    dz, y
        A design (:func:`pipelines.models.design.design`, exposure resolved by
        :mod:`pipelines.models.exposure`, optionally ``presence_imputed``) and counts per row.
    mask
        Rows allowed in the fit (e.g. before a backtest origin).
    grain, categories, group
        Recorded.
    min_incidents
        Fewer incidents raise :class:`SparseGroupError`.
    max_rows
        The most recent rows kept at most.
    rounds
        Outer rounds of (IRLS, NB2 alpha, zone variance) updates.
    """
    yv = np.nan_to_num(np.asarray(y, dtype=np.float64))
    use = _training_rows(dz, yv, mask, max_rows)
    n_inc = int(round(yv[use].sum()))
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents in its training rows; at least "
            f"{min_incidents} are needed for the zone rate model."
        )
    spw = 168 if grain == "1h" else 7
    history = WeeklyHistory.of(dz, yv, use | _before(dz, use), slots_per_week=spw)
    d = dz.loc[use]
    hrs = pd.DatetimeIndex(pd.to_datetime(d["hour"], utc=True)).asi8
    t0 = int(hrs.max())
    terms, why = _choose_terms(dz, use, (hrs.max() - hrs.min()) / _YEAR_NS)
    D = _dense(d, terms, history=history, t0_ns=t0)
    zones, zi = np.unique(d["zone_id"].astype(str).to_numpy(), return_inverse=True)
    Z = sp.csr_matrix((np.ones(len(zi)), (np.arange(len(zi)), zi)), shape=(len(zi), len(zones)))
    X = sp.hstack([sp.csr_matrix(D), Z], format="csr")
    yy = yv[use]
    p = len(terms)
    beta = np.zeros(X.shape[1])
    beta[0] = math.log(max(yy.mean(), 1e-6))
    sigma2, alpha = 0.5, 0.0
    for r in range(rounds):
        pen = np.r_[0.0, np.full(p - 1, _RIDGE), np.full(len(zones), 1.0 / sigma2)]
        beta, mu, H = _irls(X, yy, pen, alpha, beta, iters=25 if r == 0 else 10)
        u = beta[p:]
        Vuu = np.diag(np.linalg.pinv(H))[p:]
        sigma2 = max(float((u @ u + Vuu.sum()) / len(zones)), 1e-4)
        alpha = _nb_alpha_mle(yy, mu)
    cov, G = _sandwich(X, yy, mu, alpha, H, _day(d))
    bfix = beta[:p]
    return ZoneGLMFit(
        group=group, terms=tuple(terms), params=bfix, cov=cov[:p, :p], zones=tuple(map(str, zones)),
        zone_effects=beta[p:], sigma2=sigma2, alpha=float(alpha), history=history, t0_ns=t0,
        n_rows=int(use.sum()), n_incidents=n_inc, grain=grain,
        categories=None if categories is None else tuple(categories),
        elasticity=_elasticity(terms, bfix, cov, why), n_clusters=G,
    )  # fmt: skip


def _before(dz: pd.DataFrame, use: np.ndarray) -> np.ndarray:
    """Rows before the last training row (the first week, left out of the fit, is history)."""
    if not use.any():
        return use
    h = pd.DatetimeIndex(pd.to_datetime(dz["hour"], utc=True)).asi8
    return h <= h[use].max()


def _day(d: pd.DataFrame) -> np.ndarray:
    """A day label per row (UTC slot start floored to the local day via dow and local hour)."""
    h = pd.DatetimeIndex(pd.to_datetime(d["hour"], utc=True)).asi8
    return (h - d["local_hour"].to_numpy(np.int64) * 3600 * 10**9) // (86_400 * 10**9)


def check_design(dz: pd.DataFrame) -> None:
    """Raise :class:`InputError` when the design lacks what the model reads."""
    missing = [c for c in ("zone_id", "hour", "exposure", "local_hour", "dow") if c not in dz]
    if missing:
        raise InputError(f"the zone rate model needs design columns {missing}.")
