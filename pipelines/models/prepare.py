"""What the GLM and XGBoost fits share: usable rows, covariate cells, estimable features.

Rows whose presence is missing or zero carry no exposure: they are left out of fitting and
counted in the fit's ``dropped`` figures. A group with fewer incidents than ``min_incidents`` is
not modelled (:class:`SparseGroupError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import InputError
from pipelines.models.design import (
    Cells,
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


class SparseGroupError(InputError):
    """A category group has too few incidents to be modelled."""


@dataclass(frozen=True)
class Prepared:
    """What GLM and XGBoost fits share: usable rows, their cells and the estimable features.

    Attributes
    ----------
    use
        Rows in the fit (inside the mask, presence known and positive).
    cells
        The covariate cells of the design.
    Ec, Yc, E2c
        Per-cell sums over ``use`` of exposure, counts and squared exposure.
    hours, dows
        Hours of day and days of week seen in cells with exposure.
    features, why
        Estimable features, and why each other one is not.
    dropped
        Rows left out: ``missing_presence``, ``zero_presence``.
    n_inc
        Incidents in the fitted rows.
    y, e
        Counts (NaN as 0) and exposure per row.
    """

    use: np.ndarray
    cells: Cells
    Ec: np.ndarray
    Yc: np.ndarray
    E2c: np.ndarray
    hours: list[int]
    dows: list[int]
    features: list[str]
    why: dict[str, str]
    dropped: dict[str, int]
    n_inc: int
    y: np.ndarray
    e: np.ndarray


def _usable_rows(
    dz: pd.DataFrame, mask: np.ndarray | None, *, group: str
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows with known, positive presence inside ``mask``, the exposure, and the rows dropped."""
    ok = exposure_mask(dz)
    base = np.ones(len(dz), bool) if mask is None else np.asarray(mask, bool)
    e = dz["exposure"].to_numpy(dtype=np.float64)
    dropped = {
        "missing_presence": int((base & ~np.isfinite(e)).sum()),
        "zero_presence": int((base & np.isfinite(e) & (e <= 0)).sum()),
    }
    use = base & ok
    if not use.any():
        raise InputError(
            f"group {group!r}: no row with known, positive presence to fit on "
            f"({dropped['missing_presence']} rows with presence missing, "
            f"{dropped['zero_presence']} with zero presence); presence is the exposure of the "
            "rate models."
        )
    return use, e, dropped


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
) -> Prepared:
    """Shared preparation of GLM and XGBoost fits: usable rows, cells, estimable features."""
    if len(dz) != len(y):
        raise InputError(f"design has {len(dz)} rows but the counts have {len(y)}.")
    use, e, dropped = _usable_rows(dz, mask, group=group)
    if features is None:
        features = design_features(dz)
    yv = np.nan_to_num(np.asarray(y, dtype=np.float64))
    n_inc = int(round(yv[use].sum()))
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents over {int(use.sum())} rows with presence; at "
            f"least {min_incidents} are needed to fit a rate model: merge its categories into "
            "another group or use a longer period."
        )
    if cells is None:
        cells = build_cells(dz, features=features, resolution=resolution)
    Ec = cells.sums(e, use)
    hours = sorted(int(h) for h in np.unique(cells.keys["local_hour"].to_numpy()[Ec > 0]))
    dows = sorted(int(d) for d in np.unique(cells.keys["dow"].to_numpy()[Ec > 0]))
    feats, why = _estimable(
        cells.keys, Ec, [f for f in features if f in cells.features], hours, dows
    )
    for f in features:
        if f not in cells.features:
            why[f] = "not in the design"
    return Prepared(
        use=use,
        cells=cells,
        Ec=Ec,
        Yc=cells.sums(yv, use),
        E2c=cells.sums(e * e, use),
        hours=hours,
        dows=dows,
        features=feats,
        why=why,
        dropped=dropped,
        n_inc=n_inc,
        y=yv,
        e=e,
    )
