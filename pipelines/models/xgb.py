"""The predictive model: gradient-boosted trees (XGBoost, objective ``count:poisson``).

Fitted on the same features as the rate models, with the log of the exposure (presence, or the
fallback of :mod:`pipelines.models.exposure`) as base margin, and explained by per-feature
contributions (``pred_contribs=True``, Lundberg & Lee's TreeSHAP). By default the trees also
see where they are: the zone's recent rates against the city's over 4, 13 and 52 weeks and the
city's recent level (:mod:`pipelines.models.history`, the features of the zone rate model,
known at the start of the row's week), so that a zone's own level is learnt, not only presence
and the calendar; they are then fitted on rows (the most recent :data:`MAX_ROWS`), not on
covariate cells. ``zone_features=False`` gives the cell fit without them.

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
from pipelines.models.history import FEATURE_NAMES, HistoryRows, WeeklyHistory
from pipelines.models.prepare import Prepared, _prepare

#: rows of the most recent training data a fit with zone features keeps at most (a 300-zone
#: hourly city: its last 20 weeks; a boosting round costs about 2.5 ms per 40 000 rows)
MAX_ROWS = 1_000_000

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
    history
        Weekly counts per zone for the zone features (None: fitted without them).
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
    history: WeeklyHistory | None = None

    def _dmatrix(self, dz: pd.DataFrame):
        """The model inputs of ``dz`` (absent columns as 0), the training offset as margin: the
        trees then give the log rate per person-slot, exposure is applied by the caller."""
        rec = self.history.features(dz) if self.history is not None else pd.DataFrame()
        X = (
            np.column_stack(
                [
                    rec[c].to_numpy(dtype=np.float32)
                    if c in rec.columns
                    else dz[c].to_numpy(dtype=np.float32)
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


def _cell_inputs(p: Prepared) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs of the cell fit: columns, X, label, exposure per cell, and each row's cell."""
    keep = p.Ec > 0
    columns = (["local_hour"] if p.hours and len(p.hours) > 1 else []) + ["dow"]
    # trees need no full rank: keep every non-constant feature
    columns += [f for f in p.cells.features if not p.why.get(f, "").startswith("constant")]
    keys = p.cells.keys.loc[keep]
    X = np.column_stack([keys[c].to_numpy(dtype=np.float32) for c in columns])
    where = np.full(len(p.Ec), -1)
    where[keep] = np.arange(int(keep.sum()))
    return columns, X, p.Yc[keep], p.Ec[keep], where[p.cells.cell]


def _row_inputs(
    dz: pd.DataFrame, p: Prepared, rows: HistoryRows, max_rows: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs of the row fit with zone features: columns, X, label and exposure of the training
    rows (the most recent ``max_rows``), and each row's index among them (-1: not in)."""
    use = p.use & (p.e > 0)
    if use.sum() > max_rows:
        use &= rows.keys.hours >= np.sort(rows.keys.hours[use])[-max_rows]
    columns = (["local_hour"] if p.hours and len(p.hours) > 1 else []) + ["dow"]
    columns += [f for f in p.cells.features if not p.why.get(f, "").startswith("constant")]
    if "presence_imputed" in dz.columns and np.ptp(dz["presence_imputed"].to_numpy()[use]) > 0:
        columns.append("presence_imputed")
    base = [dz[c].to_numpy(dtype=np.float32)[use] for c in columns]
    X = np.column_stack([*base, rows.recent[use].astype(np.float32)])
    where = np.full(len(dz), -1)
    where[use] = np.arange(int(use.sum()))
    return [*columns, *FEATURE_NAMES], X, p.y[use], p.e[use], where


def _zone_inputs(dz, y, p: Prepared, rows: HistoryRows | None, grain: str, max_rows: int):
    """:func:`_row_inputs` and the weekly history of the training rows (for forecasting)."""
    spw = 168 if grain == "1h" else 7
    if rows is None or not rows.matches(dz, y):
        rows = HistoryRows.of(dz, y, slots_per_week=spw)
    columns, X, label, expo, where = _row_inputs(dz, p, rows, max_rows)
    last = int(rows.keys.hours[where >= 0].max())
    history = WeeklyHistory.of(
        dz, rows.y, rows.keys.hours <= last, slots_per_week=spw, keys=rows.keys
    )
    return columns, X, label, expo, where, history


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
    zone_features: bool = True,
    rows: HistoryRows | None = None,
    max_rows: int = MAX_ROWS,
) -> XGBFit:
    """Fit XGBoost ``count:poisson`` on the model features, log(exposure) as base margin.

    Without zone features it is trained on the covariate cells of :func:`fit_glm` (sum of
    counts as label, log of summed exposure as margin): the Poisson objective's gradient and
    hessian of a cell are the sums over its rows, so this is the row-level fit (Chen & Guestrin
    2016). With them (the default; module docstring) it is trained on rows.

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
    zone_features, rows, max_rows
        Whether the trees see the zone's recent rates (module docstring); the
        :class:`pipelines.models.history.HistoryRows` of ``dz`` and ``y`` (shared by fits on
        one design; computed when None); the most recent training rows kept at most.
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
    history = None
    if zone_features:
        columns, X, label, expo, where, history = _zone_inputs(dz, y, p, rows, grain, max_rows)
    else:
        columns, X, label, expo, where = _cell_inputs(p)
    offset = float(np.log(max(label.sum(), 0.5) / expo.sum()))
    dm = xgb.DMatrix(X, label=label, feature_names=columns)
    dm.set_base_margin(np.log(expo) + offset)
    prm = {**_XGB_PARAMS, "seed": seed, **(params or {})}
    booster = xgb.train(prm, dm, num_boost_round=rounds)
    # the training matrix's margin holds log(exposure): take it off for the rate
    rate = np.exp(booster.predict(dm, output_margin=True).astype(np.float64) - np.log(expo))
    use = p.use & (where >= 0)
    mu_rows = p.e[use] * rate[where[use]]
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
        history=history,
    )
