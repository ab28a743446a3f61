"""The predictive model: gradient-boosted trees (XGBoost, objective ``count:poisson``).

Fitted on the same features and cells as the rate models, with ``log(present)`` as base margin,
and explained by per-feature contributions (``pred_contribs=True``, Lundberg & Lee's TreeSHAP).

References
----------
Chen, T. & Guestrin, C. (2016). XGBoost: a scalable tree boosting system. *KDD '16*, 785-794.
Lundberg, S. M. et al. (2020). From local explanations to global understanding with explainable
AI for trees. *Nature Machine Intelligence* 2, 56-67.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from pipelines.models.design import MIN_INCIDENTS, XGB_ROUNDS, Cells
from pipelines.models.glm import _ct_alpha, _one_blas_thread, _overdispersed
from pipelines.models.prepare import _prepare

_XGB_PARAMS: dict[str, Any] = {
    "objective": "count:poisson",
    "eta": 0.1,
    "max_depth": 5,
    "min_child_weight": 5.0,
    "lambda": 1.0,
    "tree_method": "hist",
    "max_bin": 128,
    # one thread: OpenMP threads spin-wait on a shared, busy machine (16x slower measured)
    "nthread": 1,
    "verbosity": 0,
}


# --------------------------------------------------------------------------------------------
# XGBoost
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class XGBFit:
    """A fitted XGBoost ``count:poisson`` model with log(present) as base margin.

    Attributes
    ----------
    booster
        The ``xgboost.Booster``.
    columns
        Its input columns, in order (local_hour, dow, then features).
    alpha
        NB2 dispersion of the rows around its predictions (Cameron-Trivedi), for intervals.
    offset
        Log of the training rate (incidents per person-slot) added to the margin, so that the
        trees start from the mean rate instead of climbing to it under ``max_delta_step``.
    """

    group: str
    booster: Any
    columns: tuple[str, ...]
    alpha: float
    n_rows: int
    n_incidents: int
    grain: str = "1h"
    categories: tuple[str, ...] | None = None
    offset: float = 0.0

    def _dmatrix(self, dz: pd.DataFrame):
        """The model inputs of ``dz`` (absent columns as 0), the training offset as margin: the
        trees then give the log rate per person-slot, exposure is applied by the caller."""
        X = (
            np.column_stack(
                [
                    dz[c].to_numpy(dtype=np.float32)
                    if c in dz.columns
                    else np.zeros(len(dz), np.float32)
                    for c in self.columns
                ]
            )
            if len(self.columns)
            else np.zeros((len(dz), 0), np.float32)
        )
        dm = xgb.DMatrix(X, feature_names=list(self.columns))
        # always give a margin: without one XGBoost adds its base_score to the trees
        dm.set_base_margin(np.full(len(dz), self.offset))
        return dm

    def mean(self, dz: pd.DataFrame) -> np.ndarray:
        """Expected incidents for design rows (0 for zero presence, NaN for missing)."""
        e = dz["exposure"].to_numpy(dtype=np.float64)
        rate = self.booster.predict(self._dmatrix(dz), output_margin=True)
        return e * np.exp(rate.astype(np.float64))

    def contributions(self, dz: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the log expected count (TreeSHAP, ``pred_contribs``).

        Columns: one per input column, ``bias`` (the mean log rate) and ``log_exposure``; their
        row sum is the log of the expected count.
        """
        c = self.booster.predict(self._dmatrix(dz), pred_contribs=True)
        out = pd.DataFrame(c[:, :-1], columns=list(self.columns), index=dz.index)
        out["bias"] = c[:, -1]
        e = dz["exposure"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["log_exposure"] = np.log(e)
        return out


@_one_blas_thread
def fit_xgb(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    group: str = "all",
    features: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    cells: Cells | None = None,
    resolution: float = 0.05,
    rounds: int = XGB_ROUNDS,
    params: dict[str, Any] | None = None,
    grain: str = "1h",
    categories: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    seed: int = 0,
) -> XGBFit:
    """Fit XGBoost ``count:poisson`` on the model features, log(present) as base margin.

    Trained on the same covariate cells as :func:`fit_glm` (sum of counts as label, log of
    summed exposure as margin): the Poisson objective's gradient and hessian of a cell are the
    sums over its rows, so this is the row-level fit (Chen & Guestrin 2016).

    Parameters
    ----------
    dz, y, group, features, mask, cells, resolution, grain, categories, min_incidents
        As :func:`fit_glm`.
    rounds
        Boosting rounds.
    params
        Overrides of the booster parameters (default: eta 0.1, depth 5, hist, 1 thread).
    seed
        Booster seed.

    Returns
    -------
    XGBFit
    """
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
    Ec, Yc = p.Ec, p.Yc
    keep = Ec > 0
    columns = (["local_hour"] if p.hours and len(p.hours) > 1 else []) + ["dow"]
    # trees need no full rank: keep every non-constant feature
    columns += [f for f in p.cells.features if not p.why.get(f, "").startswith("constant")]
    keys = p.cells.keys.loc[keep]
    X = np.column_stack([keys[c].to_numpy(dtype=np.float32) for c in columns])
    offset = float(np.log(max(Yc[keep].sum(), 0.5) / Ec[keep].sum()))
    dm = xgb.DMatrix(X, label=Yc[keep], feature_names=columns)
    dm.set_base_margin(np.log(Ec[keep]) + offset)
    prm = {**_XGB_PARAMS, "seed": seed, **(params or {})}
    booster = xgb.train(prm, dm, num_boost_round=rounds)
    rate_c = np.zeros(len(Ec))
    dk = xgb.DMatrix(X, feature_names=columns)
    dk.set_base_margin(np.full(len(X), offset))
    rate_c[keep] = np.exp(booster.predict(dk, output_margin=True).astype(np.float64))
    use = p.use
    mu_rows = p.e[use] * rate_c[p.cells.cell[use]]
    alpha, t = _ct_alpha(p.y[use], mu_rows)
    alpha = alpha if _overdispersed(alpha, t) else 0.0
    return XGBFit(
        group=group,
        booster=booster,
        columns=tuple(columns),
        alpha=float(alpha),
        n_rows=int(use.sum()),
        n_incidents=p.n_inc,
        grain=grain,
        categories=None if categories is None else tuple(categories),
        offset=offset,
    )
