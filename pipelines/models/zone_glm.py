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

Fitted by penalised iteratively reweighted least squares on rows, not cells (the recent-rate
features differ by zone and week), in two blocks: the dense fixed terms and the zone sums
(:mod:`pipelines.models.pirls`). The rows' keys and recent-rate features are computed once per
design and counts (:class:`pipelines.models.history.HistoryRows`) and shared by the fits of a
backtest's origins, each started from the previous one's estimates. A training set above
``max_rows`` rows keeps its most recent rows.

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
from scipy import stats

from features.errors import InputError
from pipelines.models.design import FEATURES, MIN_INCIDENTS
from pipelines.models.glm import SparseGroupError, _one_blas_thread
from pipelines.models.history import FEATURE_NAMES, HistoryRows, RowKeys, WeeklyHistory
from pipelines.models.pirls import Blocks, fit_pql, sandwich

_YEAR_NS = 365.25 * 86_400 * 1e9
#: rows of the most recent training data a fit keeps at most
MAX_ROWS = 2_000_000


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


def _dense(
    dz: pd.DataFrame,
    terms: Sequence[str],
    *,
    history: WeeklyHistory,
    t0_ns: int,
    recent: np.ndarray | None = None,
):
    """Fixed-term columns of design rows, in ``terms`` order (``recent``: the rows' recent-rate
    features in :data:`FEATURE_NAMES` order, when already computed)."""
    n = len(dz)
    rec = None
    if recent is not None:
        rec = pd.DataFrame(recent, columns=list(FEATURE_NAMES), index=dz.index)
    elif any(t in FEATURE_NAMES for t in terms):
        rec = history.features(dz)
    h = pd.DatetimeIndex(pd.to_datetime(dz["hour"], utc=True))
    years = (h.as_unit("ns").asi8 - t0_ns) / _YEAR_NS  # ns whatever the frame's unit
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


def _category(dz: pd.DataFrame) -> np.ndarray:
    """Each row's hour of day x day of week (``0..167``): what the intercept, ``hour_*`` and
    ``dow_*`` terms are functions of (:class:`pipelines.models.pirls.Blocks`)."""
    return dz["local_hour"].to_numpy(np.int64) * 7 + dz["dow"].to_numpy(np.int64)


def _cat_terms(terms: Sequence[str]) -> list[int]:
    """Positions of the terms that are functions of :func:`_category`."""
    return [j for j, t in enumerate(terms) if t == "Intercept" or t.startswith(("hour_", "dow_"))]


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


def _elasticity(terms: Sequence[str], b: np.ndarray, cov: np.ndarray, why: dict) -> dict:
    if "log_exposure" not in terms:
        return {"why": why.get("log_exposure", "no presence")}
    j = list(terms).index("log_exposure")
    est, se = float(b[j]), float(math.sqrt(max(cov[j, j], 0.0)))
    z = stats.norm.ppf(0.975)
    p = float(2 * stats.norm.sf(abs(est - 1.0) / se)) if se > 0 else float("nan")
    return {"estimate": est, "ci_low": float(est - z * se), "ci_high": float(est + z * se), "se": se,
            "p_offset": p, "test": "Wald test of elasticity 1 (presence as an offset)"}  # fmt: skip


def _training_rows(
    dz: pd.DataFrame, keys: RowKeys, mask: np.ndarray | None, max_rows: int
) -> np.ndarray:
    """Rows to fit on: in ``mask``, exposure known, a week of history, at most ``max_rows``."""
    e = dz["exposure"].to_numpy(np.float64)
    use = (np.ones(len(dz), bool) if mask is None else np.asarray(mask, bool)) & np.isfinite(e)
    use &= e > 0
    if use.any():
        use &= keys.week > keys.week[use].min()  # the first week has no history
    if use.sum() > max_rows:
        use &= keys.hours >= np.sort(keys.hours[use])[-max_rows]
    return use


def _start(
    start: ZoneGLMFit | None, terms: Sequence[str], zones: Sequence[str], X: Blocks, y: np.ndarray
) -> np.ndarray:
    """Starting coefficients: those of ``start`` (a previous fit, matched by term and zone
    name) or a flat rate, the intercept set so that the expected total is the observed one."""
    beta = np.zeros(X.p + X.nz)
    if start is not None:
        fixed = dict(zip(start.terms, start.params, strict=True))
        eff = dict(zip(start.zones, start.zone_effects, strict=True))
        beta[: X.p] = [fixed.get(t, 0.0) for t in terms]
        beta[X.p :] = [eff.get(z, 0.0) for z in zones]
    total = float(np.exp(X.eta(beta)).sum())
    beta[0] += math.log(max(float(y.sum()), 1e-6) / total)
    return beta


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
    rows: HistoryRows | None = None,
    start: ZoneGLMFit | None = None,
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
    rows
        The keys and recent-rate features of ``dz`` for ``y``
        (:class:`pipelines.models.history.HistoryRows`), shared by fits on the same design
        (computed when ``None``).
    start
        A previous fit whose coefficients start the first IRLS (a warm start: another origin,
        another group); the estimates are those of a cold start, reached in fewer iterations.
    """
    spw = 168 if grain == "1h" else 7
    if rows is None or not rows.matches(dz, y):
        rows = HistoryRows.of(dz, y, slots_per_week=spw)
    yv, keys = rows.y, rows.keys
    use = _training_rows(dz, keys, mask, max_rows)
    n_inc = int(round(yv[use].sum()))
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents in its training rows; at least "
            f"{min_incidents} are needed for the zone rate model."
        )
    hrs = keys.hours[use]
    t0 = int(hrs.max())
    history = WeeklyHistory.of(dz, yv, keys.hours <= t0, slots_per_week=spw, keys=keys)
    terms, why = _choose_terms(dz, use, (hrs.max() - hrs.min()) / _YEAR_NS)
    D = _dense(dz.loc[use], terms, history=history, t0_ns=t0, recent=rows.recent[use])
    zcodes, zi = np.unique(keys.zi[use], return_inverse=True)
    zones = tuple(keys.zones[c] for c in zcodes)
    X = Blocks.of(D, zi, len(zones), cat=_category(dz.loc[use]), cat_columns=_cat_terms(terms))
    del D
    yy = yv[use]
    f = fit_pql(X, yy, beta=_start(start, terms, zones, X, yy))
    p = len(terms)
    cov, G = sandwich(X, yy, f.mu, f.alpha, f.H, keys.day[use])
    bfix = f.beta[:p]
    return ZoneGLMFit(
        group=group, terms=tuple(terms), params=bfix, cov=cov, zones=zones,
        zone_effects=f.beta[p:], sigma2=f.sigma2, alpha=f.alpha, history=history, t0_ns=t0,
        n_rows=int(use.sum()), n_incidents=n_inc, grain=grain,
        categories=None if categories is None else tuple(categories),
        elasticity=_elasticity(terms, bfix, cov, why), n_clusters=G,
    )  # fmt: skip


def check_design(dz: pd.DataFrame) -> None:
    """Raise :class:`InputError` when the design lacks what the model reads."""
    missing = [c for c in ("zone_id", "hour", "exposure", "local_hour", "dow") if c not in dz]
    if missing:
        raise InputError(f"the zone rate model needs design columns {missing}.")
