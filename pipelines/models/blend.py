"""Forecast combination: a convex blend of backtest forecasts, its weights learnt on earlier
origins only.

At each origin the weights are the convex combination (non-negative, summing to 1) of the
member forecasts that minimises the mean Poisson deviance over the zone-slots of the *earlier*
origins whose slots ended before this origin; they never see the origin being scored (stacking
scored out of sample, Wolpert 1992; Breiman 1996; the combination puzzle of Bates & Granger
1969 is why the fitted weights are shrunk towards equal weights, Smith & Wallis 2009). The
first origin, with no earlier rows, takes equal weights. Its predictive distribution is NB2
with the weighted mean of the members' dispersions (Poisson where a member states none).
A long-memory member that needs no model fit is the empirical-Bayes zone x hour-of-week rate
``eb_rate_52w`` (:func:`pipelines.models.baselines.eb_rate`).

References
----------
Bates, J. M. & Granger, C. W. J. (1969). The combination of forecasts. *Operational Research
Quarterly* 20(4), 451-468.
Wolpert, D. H. (1992). Stacked generalization. *Neural Networks* 5(2), 241-259.
Breiman, L. (1996). Stacked regressions. *Machine Learning* 24(1), 49-64.
Smith, J. & Wallis, K. F. (2009). A simple explanation of the forecast combination puzzle.
*Oxford Bulletin of Economics and Statistics* 71(3), 331-355.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from features.timeutil import utc_ns
from pipelines.models.predictor import predictive_quantiles

#: members of the default blend (fitted models and baselines of the backtest)
MEMBERS = ("zone_glm", "xgb", "recent_rate_8w", "seasonal_naive_8w")
#: weight of the fitted weights against equal weights (1: the fitted weights alone)
SHRINK = 0.8
_FLOOR = 1e-6


def convex_weights(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The convex weights of the columns of ``pred`` minimising the mean Poisson deviance of
    ``pred @ w`` against ``y`` (SLSQP on the simplex; the objective is convex in ``w``).

    Parameters
    ----------
    pred
        Member forecasts, shape (n, k), non-negative.
    y
        Observed counts, shape (n,).
    """
    p = np.clip(np.asarray(pred, np.float64), _FLOOR, None)
    yy = np.asarray(y, np.float64)
    k = p.shape[1]
    if k == 1:
        return np.ones(1)
    n = max(len(yy), 1)

    def loss(w: np.ndarray) -> float:  # mean of mu - y log mu (deviance up to a constant)
        mu = np.clip(p @ w, _FLOOR, None)
        return float((mu - yy * np.log(mu)).sum() / n)

    def grad(w: np.ndarray) -> np.ndarray:
        mu = np.clip(p @ w, _FLOOR, None)
        return np.asarray(p.T @ (1.0 - yy / mu) / n)

    res = optimize.minimize(
        loss, np.full(k, 1.0 / k), jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * k,
        constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},),
        options={"ftol": 1e-12, "maxiter": 200},
    )  # fmt: skip
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


@dataclass(frozen=True)
class Blend:
    """A blend's backtest rows and the weights used at each origin.

    Attributes
    ----------
    frame
        Backtest rows of the blend (model ``name``), the members' columns.
    weights
        Origin (ISO) -> member -> weight used at that origin.
    n_train
        Origin -> number of earlier zone-slots the weights were learnt on (0: equal weights).
    """

    frame: pd.DataFrame
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    n_train: dict[str, int] = field(default_factory=dict)


def _wide(frame: pd.DataFrame, members: Sequence[str]) -> pd.DataFrame:
    """One row per zone-slot: observed, origin, each member's mean and dispersion."""
    f = frame[frame["model"].isin(members)]
    f = f[np.isfinite(f["predicted"].to_numpy(np.float64))]
    keys = ["zone_id", "period_start", "origin", "observed"]
    pred = f.pivot_table(index=keys, columns="model", values="predicted", aggfunc="first")
    alpha = f.assign(alpha=f["alpha"].fillna(0.0)).pivot_table(
        index=keys, columns="model", values="alpha", aggfunc="first"
    )
    pred = pred.dropna()  # the zone-slots every member forecast
    out = pred[list(members)].add_prefix("p_")
    out = out.join(alpha.reindex(pred.index)[list(members)].fillna(0.0).add_prefix("a_"))
    return out.reset_index()


def rolling_blend(
    frame: pd.DataFrame,
    *,
    members: Sequence[str] = MEMBERS,
    name: str = "blend",
    shrink: float = SHRINK,
) -> Blend:
    """The convex blend of ``members`` at each origin of a backtest frame, weights learnt on the
    zone-slots that ended before that origin (module docstring).

    Parameters
    ----------
    frame
        Backtest rows (:data:`pipelines.models.backtest.BACKTEST_COLUMNS`).
    members
        The models blended; those absent from ``frame`` are left out.
    name
        The blend's model name in the rows returned.
    shrink
        Weight of the fitted weights against equal weights.

    Returns
    -------
    Blend
    """
    mem = [m for m in members if m in set(frame["model"])]
    if not mem:
        return Blend(frame=frame.iloc[0:0])
    w = _wide(frame, mem)
    start = utc_ns(w["period_start"]).astype(np.int64)
    org = utc_ns(w["origin"]).astype(np.int64)
    slot = np.diff(np.unique(start)).min() if len(np.unique(start)) > 1 else 0
    P, A = w[[f"p_{m}" for m in mem]].to_numpy(), w[[f"a_{m}" for m in mem]].to_numpy()
    y = w["observed"].to_numpy(np.float64)
    mean, alpha = np.full(len(w), np.nan), np.full(len(w), np.nan)
    weights: dict[str, dict[str, float]] = {}
    n_train: dict[str, int] = {}
    eq = np.full(len(mem), 1.0 / len(mem))
    for o in np.unique(org):
        train = (org < o) & (start + slot <= o)  # earlier origins' slots over by this one
        wt = eq if not train.any() else shrink * convex_weights(P[train], y[train])
        wt = wt if not train.any() else wt + (1.0 - shrink) * eq
        at = org == o
        mean[at], alpha[at] = P[at] @ wt, A[at] @ wt
        iso = pd.Timestamp(o, tz="UTC").isoformat()
        weights[iso] = {m: float(v) for m, v in zip(mem, wt, strict=True)}
        n_train[iso] = int(train.sum())
    out = w[["zone_id", "period_start", "observed", "origin"]].assign(model=name, predicted=mean)
    out["alpha"] = alpha
    for col, lo, hi in (("", 0.025, 0.975), ("80", 0.10, 0.90)):
        q = np.column_stack([_quantiles(mean, alpha, qq) for qq in (lo, hi)])
        out[f"lower{col}"], out[f"upper{col}"] = q[:, 0], q[:, 1]
    return Blend(frame=out[list(frame.columns)], weights=weights, n_train=n_train)


def _quantiles(mean: np.ndarray, alpha: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of NB2 means with per-row dispersion (rounded to 3 decimals, grouped)."""
    out = np.full(len(mean), np.nan)
    ar = np.round(alpha, 3)
    for a in np.unique(ar):
        at = ar == a
        out[at] = predictive_quantiles(mean[at], float(a), [q])[:, 0]
    return out
