"""The GLM's sufficient statistics on a Dask cluster, then statsmodels on the aggregated cells.

A Poisson rate GLM whose covariates are shared by many rows depends on the data only through the
per-cell sums of counts and exposures (:mod:`pipelines.models.design`): this module computes
those sums without loading the cube. Each month partition of the cube is one task (DuckDB reads its
columns, computes the features as :func:`~pipelines.models.design.design` does, rounds the
continuous ones as :func:`~pipelines.models.design.build_cells` does and groups by the cell key:
:mod:`pipelines.models.cells_sql`); the partial sums are
then combined by a groupby on the cluster in a tree of tasks, and only the aggregated cells (a
few hundred thousand at most) come back to fit the GLM with statsmodels, through the same cell
regression as :func:`pipelines.models.glm.fit_glm`.

The cells also carry the sum of squared exposures, so the NB2 quasi-likelihood's cell variance
is known; the NB2 dispersion itself is estimated on rows and stays with the local path.

References
----------
McCullagh, P. & Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed., ch. 6 (the Poisson
likelihood depends on the cell sums only). Dask Development Team (2016). *Dask: Library for
dynamic task scheduling*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.cube.dask_engine import run_tasks
from features.errors import InputError
from features.store import Store, atomic_file
from features.text import slug
from pipelines.models.cells_sql import sql_cells
from pipelines.models.cube_io import cube_columns_needed
from pipelines.models.design import (
    MIN_INCIDENTS,
    XGB_ROUNDS,
    _matrix,
    _terms,
    cube_categories,
    feature_status,
    group_categories,
)
from pipelines.models.glm import GLMFit, _CellModel, _one_blas_thread, _pearson
from pipelines.models.prepare import SparseGroupError, _estimable
from pipelines.models.xgb import _XGB_PARAMS, XGBFit

#: tasks combined per node of the reduction tree
FAN_IN = 8


def cell_plan(
    store: Store, *, groups: Sequence[str] | None
) -> tuple[str, list[str], tuple[str, ...], dict[str, list[str] | None]]:
    """What the cells of ``store``'s cube are made of: its grain, the cube columns the GLM
    reads, the estimable features and the category groups asked for (``all`` first)."""
    meta = store.cube_meta()
    grain = meta.get("grain") or store.grain
    columns = cube_columns_needed(meta.get("columns", []))
    features = tuple(f for f, why in feature_status(columns, grain=grain).items() if why is None)
    gmap = group_categories(cube_categories(columns))
    wanted: dict[str, list[str] | None] = {"all": None}
    wanted.update({g: gmap[g] for g in (groups or gmap) if g in gmap and g != "all"})
    return grain, columns, features, wanted


@dataclass(frozen=True)
class CellStats:
    """The GLM's sufficient statistics: one row per cell of identical covariates.

    Attributes
    ----------
    cells
        local_hour, dow, the rounded features, then ``E`` (sum of exposure), ``E2`` (sum of
        squared exposure), ``rows`` and one ``y_<group>`` column of summed counts per group;
        sorted by the key.
    features
        The features in the key (every one the cube's columns allow).
    groups
        Group -> its category slugs (None: every incident).
    grain, partitions
        The cube's grain and the month partitions read.
    """

    cells: pd.DataFrame
    features: tuple[str, ...]
    groups: dict[str, list[str] | None]
    grain: str
    partitions: int

    @property
    def keys(self) -> list[str]:
        return ["local_hour", "dow", *self.features]


def partition_cells(
    path: str,
    *,
    columns: Sequence[str],
    grain: str,
    features: Sequence[str],
    groups: dict[str, list[str] | None],
    resolution: float,
) -> pd.DataFrame:
    """The cell sums of one cube partition file (rows with known, positive presence),
    aggregated by DuckDB on one thread (:func:`pipelines.models.cells_sql.sql_cells`: the cells
    of :func:`~pipelines.models.design.build_cells`, reading only the columns they need)."""
    return sql_cells(
        [path], columns=list(columns), grain=grain, features=features, groups=groups,
        resolution=resolution, threads=1,
    )  # fmt: skip


def combine_cells(*parts: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Partial cell sums added up by key (one node of the reduction tree)."""
    frame = pd.concat(parts, ignore_index=True)
    return frame.groupby(list(keys), sort=False, as_index=False).sum()


def cell_statistics(
    store: Store,
    *,
    groups: Sequence[str] | None = None,
    resolution: float = 0.05,
    address: str | None = None,
) -> CellStats:
    """The GLM's sufficient statistics of a store's cube, summed on Dask.

    Parameters
    ----------
    store
        A store with a cube.
    groups
        Category groups besides ``all`` (default: every group present).
    resolution
        Rounding of the continuous features in the cell key (as :func:`build_cells`).
    address
        A ``distributed`` scheduler address, or None for local threads.

    Returns
    -------
    CellStats
    """
    import dask  # heavy: loaded only on this path

    grain, columns, features, wanted = cell_plan(store, groups=groups)
    paths = sorted(str(p) for p in Path(store.cube_dir).glob("month=*/*.parquet"))
    if not paths:
        raise InputError(f"{store.cube_dir}: no month partition in the cube.")
    keys = ["local_hour", "dow", *features]
    part = dask.delayed(partition_cells)
    level = [
        part(
            p, columns=columns, grain=grain, features=features, groups=wanted, resolution=resolution
        )
        for p in paths
    ]
    combine = dask.delayed(combine_cells)
    while len(level) > 1:
        level = [combine(*level[i : i + FAN_IN], keys=keys) for i in range(0, len(level), FAN_IN)]
    (cells,) = run_tasks(level, address)
    cells = cells.sort_values(keys, kind="stable").reset_index(drop=True)
    return CellStats(cells, features, wanted, grain, len(paths))


def cell_model(
    stats: CellStats, group: str, *, min_incidents: int = MIN_INCIDENTS
) -> tuple[_CellModel, dict[str, str], int]:
    """The cell regression of ``group`` on the aggregated cells (the same estimable features,
    terms and cells as :func:`pipelines.models.glm.fit_glm`), why the other features are out,
    and the group's incidents.

    Raises
    ------
    SparseGroupError
        Fewer than ``min_incidents`` incidents.
    """
    if group not in stats.groups:
        raise InputError(
            f"no sufficient statistics for group {group!r}: {', '.join(stats.groups)}."
        )
    c = stats.cells
    Ec = c["E"].to_numpy(dtype=np.float64)
    Yc = c[f"y_{group}"].to_numpy(dtype=np.float64)
    n_inc = int(round(Yc.sum()))
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents; at least {min_incidents} are needed."
        )
    keep = Ec > 0
    hours = sorted(int(h) for h in np.unique(c["local_hour"].to_numpy()[keep]))
    dows = sorted(int(d) for d in np.unique(c["dow"].to_numpy()[keep]))
    feats, why = _estimable(c, Ec, list(stats.features), hours, dows)
    terms = _terms(feats, hours, dows)
    Ek = Ec[keep]
    cm = _CellModel(keep=keep, terms=terms, X=_matrix(c.loc[keep], terms), Ek=Ek,
                    Yk=Yc[keep], sk=c["E2"].to_numpy(dtype=np.float64)[keep] / (Ek * Ek))  # fmt: skip
    return cm, why, n_inc


@_one_blas_thread
def fit_cells(
    stats: CellStats, group: str = "all", *, min_incidents: int = MIN_INCIDENTS
) -> GLMFit:
    """The Poisson rate GLM of ``group`` fitted with statsmodels on the aggregated cells.

    The same cell regression as :func:`pipelines.models.glm.fit_glm` with
    ``family="poisson"`` (:func:`cell_model`: the same estimable features, terms and Newton
    start), so the same estimates; the covariance is model-based.

    Raises
    ------
    SparseGroupError
        Fewer than ``min_incidents`` incidents.
    """
    cm, why, n_inc = cell_model(stats, group, min_incidents=min_incidents)
    res = cm.poisson()
    c = stats.cells
    return GLMFit(
        group=group, family="poisson", terms=tuple(cm.terms),
        params=np.asarray(res.params, dtype=np.float64),
        cov=np.asarray(res.cov_params(), dtype=np.float64), alpha=0.0,
        overdispersion_t=math.nan, n_rows=int(c["rows"].sum()), n_cells=int(cm.keep.sum()),
        n_incidents=n_inc, dropped={}, not_estimable=why, grain=stats.grain,
        categories=None if stats.groups[group] is None else tuple(stats.groups[group] or ()),
        deviance=float(res.deviance),
        pearson_dispersion=_pearson(cm, cm.means(np.asarray(res.params)), 0.0),
    )  # fmt: skip


def fit_on_cluster(
    store: Store,
    *,
    groups: Sequence[str] | None = None,
    address: str | None = None,
    min_incidents: int = MIN_INCIDENTS,
) -> dict[str, Any]:
    """Sufficient statistics on Dask, then each group's Poisson GLM: group -> fit (or the
    reason it was skipped, as text)."""
    return fits_of_cells(
        cell_statistics(store, groups=groups, address=address), min_incidents=min_incidents
    )


def fits_of_cells(stats: CellStats, *, min_incidents: int = MIN_INCIDENTS) -> dict[str, Any]:
    """Each group's Poisson GLM on the cells: group -> fit (or why it was skipped, as text)."""
    out: dict[str, Any] = {}
    for g in stats.groups:
        try:
            out[g] = fit_cells(stats, g, min_incidents=min_incidents)
        except SparseGroupError as exc:
            out[g] = str(exc)
    return out


#: where ``vigie fit --scheduler`` writes its fits, under the store
CLUSTER_FILE = "models/cluster_glm.json"


def save_cluster_fits(store: Store, fits: dict[str, Any]) -> Path:
    """Write the cluster's fits (:func:`fit_on_cluster`) to :data:`CLUSTER_FILE`."""
    (store.root / "models").mkdir(parents=True, exist_ok=True)
    payload = {g: f.to_dict() if isinstance(f, GLMFit) else {"skipped": f} for g, f in fits.items()}
    return store.write_json(CLUSTER_FILE, payload)


#: where ``vigie fit --scheduler`` lists its boosters (each in ``models/cluster_xgb_<group>.json``)
CLUSTER_XGB_FILE = "models/cluster_xgb.json"


def boost_on_cluster(
    stats: CellStats, fits: dict[str, Any], *, address: str, rounds: int = XGB_ROUNDS
) -> dict[str, XGBFit]:
    """XGBoost through ``xgboost.dask`` (:func:`xgb_on_cluster`) for each group with a GLM."""
    return {
        g: xgb_on_cluster(stats, g, address=address, rounds=rounds, min_incidents=1)
        for g, f in fits.items()
        if isinstance(f, GLMFit)
    }


def save_cluster_boosters(store: Store, boosts: dict[str, XGBFit]) -> Path:
    """Write each booster and their list (:data:`CLUSTER_XGB_FILE`: columns, margin offset)."""
    (store.root / "models").mkdir(parents=True, exist_ok=True)
    listing = {}
    for g, xm in boosts.items():
        name = f"cluster_xgb_{slug(g)}.json"
        with atomic_file(store.root / "models" / name) as tmp:  # a kill leaves no half file
            tmp.write_bytes(bytes(xm.booster.save_raw(raw_format="json")))
        listing[g] = {
            "file": name, "columns": list(xm.columns), "offset": xm.offset, "n_rows": xm.n_rows,
            "n_incidents": xm.n_incidents, "trained_on": "cells, through xgboost.dask",
            "categories": None if xm.categories is None else list(xm.categories),
        }  # fmt: skip
    return store.write_json(CLUSTER_XGB_FILE, listing)


def cluster_summary(fits: dict[str, Any], boosts: dict[str, XGBFit] | None = None) -> str:
    """One line per group: the cells fitted and the features' IRRs (and its booster)."""
    lines = []
    for g, f in fits.items():
        if not isinstance(f, GLMFit):
            lines.append(f"{g}: not modelled ({f})")
            continue
        irr = f.irr_table()
        feats = irr[irr["term"].isin(f.features)]
        shown = ", ".join(f"{t} {v:.3f}" for t, v in zip(feats["term"], feats["irr"], strict=True))
        lines.append(f"{g}: Poisson on {f.n_cells:,} cells ({f.n_rows:,} rows, "
                     f"{f.n_incidents:,} incidents); IRR {shown or '-'}")  # fmt: skip
        if boosts and g in boosts:
            lines.append(f"{g}: XGBoost count:poisson on the same cells through xgboost.dask "
                         f"({boosts[g].booster.num_boosted_rounds()} rounds)")  # fmt: skip
    return "\n".join(lines)


def _xgb_inputs(
    stats: CellStats, group: str
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Columns, X, label and exposure of the cells with exposure: the inputs of the local cell
    fit (:func:`pipelines.models.xgb.fit_xgb` with ``zone_features=False``)."""
    c = stats.cells
    Ec = c["E"].to_numpy(dtype=np.float64)
    keep = Ec > 0
    hours = sorted(int(h) for h in np.unique(c["local_hour"].to_numpy()[keep]))
    dows = sorted(int(d) for d in np.unique(c["dow"].to_numpy()[keep]))
    _, why = _estimable(c, Ec, list(stats.features), hours, dows)
    columns = (["local_hour"] if len(hours) > 1 else []) + ["dow"]
    columns += [f for f in stats.features if not why.get(f, "").startswith("constant")]
    X = np.column_stack([c.loc[keep, col].to_numpy(dtype=np.float32) for col in columns])
    return columns, X, c[f"y_{group}"].to_numpy(dtype=np.float64)[keep], Ec[keep]


def xgb_on_cluster(
    stats: CellStats,
    group: str = "all",
    *,
    address: str,
    rounds: int = XGB_ROUNDS,
    seed: int = 0,
    min_incidents: int = MIN_INCIDENTS,
) -> XGBFit:
    """XGBoost ``count:poisson`` on the cluster's cells, trained by ``xgboost.dask``.

    The local cell fit's inputs (:func:`pipelines.models.xgb.fit_xgb` with
    ``zone_features=False``: the cell keys as features, the summed counts as label, the log of
    the summed exposure plus the training rate's log as base margin, the same booster
    parameters and seed), cut into one partition per worker thread; ``xgboost.dask`` builds
    each tree's gradient histograms on the workers and adds them up (Rabit allreduce). The
    Poisson objective's gradient and hessian of a cell are the sums over its rows, so this is
    the row-level fit. It differs from the local fit only by the order of those additions and
    by the quantile sketch merged across workers (equal here while a feature has fewer
    distinct values than ``max_bin``): see tests/test_distributed.py for the tolerance.

    Raises
    ------
    SparseGroupError
        Fewer than ``min_incidents`` incidents.

    References
    ----------
    Chen, T. & Guestrin, C. (2016). XGBoost: a scalable tree boosting system. *KDD '16*,
    785-794 (section 4: the weighted quantile sketch and distributed histograms).
    """
    import dask.array as da  # heavy: loaded only on this path
    import xgboost as xgb
    from distributed import Client
    from xgboost import dask as dxgb

    columns, X, label, expo = _xgb_inputs(stats, group)
    n_inc = int(round(label.sum()))
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents; at least {min_incidents} are needed."
        )
    offset = float(np.log(max(label.sum(), 0.5) / expo.sum()))
    prm = {**_XGB_PARAMS, "seed": seed}
    # xgboost.dask looks the client up as the default one: set for the fit, closed after it
    with Client(address, timeout="10s", set_as_default=True) as client:
        parts = max(1, sum(client.nthreads().values()))
        rows = max(1, math.ceil(len(label) / parts))
        dtrain = dxgb.DaskDMatrix(
            client, da.from_array(X, chunks=(rows, X.shape[1])),
            da.from_array(label, chunks=rows),
            base_margin=da.from_array(np.log(expo) + offset, chunks=rows),
            feature_names=columns,
        )  # fmt: skip
        booster: xgb.Booster = dxgb.train(client, prm, dtrain, num_boost_round=rounds)["booster"]
    cats = stats.groups[group]
    return XGBFit(
        group=group, booster=booster, columns=tuple(columns), alpha=0.0,
        n_rows=int(stats.cells.loc[stats.cells["E"] > 0, "rows"].sum()), n_incidents=n_inc,
        grain=stats.grain, categories=None if cats is None else tuple(cats), offset=offset,
    )  # fmt: skip
