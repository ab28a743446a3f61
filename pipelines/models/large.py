"""``vigie fit`` on a study too large for its cube in memory: the large-study rule.

Above :data:`LARGE_ROWS` zone-slots (a region: 5 000 zones x 2 years = 87 M) the cube is never
loaded whole. The rule, stated in ``models.json`` (``scale``) and in the fit's summary:

* **Rate GLMs of every group, on the whole period, exact.** Their sufficient statistics (the
  cells of :func:`pipelines.models.design.build_cells`) are aggregated by DuckDB over the month
  partitions (:mod:`pipelines.models.cells_sql`), and the Poisson GLM is fitted on them by the
  same cell regression as :func:`pipelines.models.glm.fit_glm` (the same coefficients). The NB2
  quasi-likelihood refit is also on the cells (they carry the squared exposures); only its
  dispersion ``alpha`` (maximum likelihood, as on rows: at most 500 000 random rows) and the
  Cameron-Trivedi over-dispersion test are computed on the rows of the recent window below.
* **Everything that needs rows, on the recent window**: the last ``backtest_weeks + 9`` weeks
  (:data:`WINDOW_EXTRA_WEEKS`: 8 weeks of history for the 8-week baselines before the first
  origin, and one more). The zone rate model and XGBoost (already fitted on their most recent
  2 M rows), their zones' recent-rate features (the 52-week rate is then the window's), the
  exposure plan, the backtest (its GLM fitted on the window's rows before each origin) and the
  effects (robust IRRs, outage event study, event uplift) read only that window.

Below the threshold nothing changes: ``vigie fit`` reads the cube's model columns in pandas.

References
----------
McCullagh, P. & Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed., ch. 6 (the Poisson
likelihood depends on the cell sums only). Lawless, J. F. (1987). Negative binomial and mixed
Poisson regression. *Canadian Journal of Statistics* 15(3), 209-225.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.cube.period import local_midnight
from features.errors import InputError, StoreError
from features.store import Store
from pipelines.models.cells_sql import sql_cells, sql_dropped
from pipelines.models.cube_io import _compact, cube_columns_needed
from pipelines.models.design import (
    CONTINUOUS,
    MIN_INCIDENTS,
    _linear_predictor,
    cube_categories,
    exposure_mask,
)
from pipelines.models.distributed import CellStats, cell_model, cell_plan
from pipelines.models.glm import GLMFit, _ct_alpha, _nb_alpha_mle, _pearson

log = logging.getLogger(__name__)

#: above this many zone-slots in the cube, ``vigie fit`` follows the large-study rule
LARGE_ROWS = 30_000_000
#: weeks of the recent window before the backtest's weeks
WINDOW_EXTRA_WEEKS = 9


@dataclass(frozen=True)
class ScaleRule:
    """How ``vigie fit`` read the cube (``models.json`` ``scale``).

    Attributes
    ----------
    rows, threshold
        The cube's zone-slots, and :data:`LARGE_ROWS` (or the threshold given).
    large
        Whether the large-study rule applied (module docstring).
    window_weeks, window_start, window_rows
        The recent window (weeks, first slot, zone-slots) read for what needs rows.
    cells, partitions, period_start
        Cells of the sufficient statistics, month partitions aggregated and the first slot
        of the whole period.
    """

    rows: int
    threshold: int
    large: bool
    window_weeks: int = 0
    window_start: str | None = None
    window_rows: int = 0
    cells: int = 0
    partitions: int = 0
    period_start: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        if self.large:
            out["rule"] = (
                "rate GLMs of every group on the whole period from sufficient statistics "
                "aggregated by DuckDB over the month partitions (exact Poisson; NB2 refit on "
                "the cells); NB2 dispersion, zone rate model, XGBoost, exposure plan, backtest "
                f"and effects on the last {self.window_weeks} weeks only"
            )
        return out

    def lines(self) -> list[str]:
        """The summary's lines (none below the threshold)."""
        if not self.large:
            return []
        return [
            f"large study ({self.rows:,} zone-slots > {self.threshold:,}): GLMs on "
            f"{self.cells:,} cells aggregated from {self.partitions} partitions (whole period); "
            f"NB2 dispersion, zone model, XGBoost, backtest and effects on the last "
            f"{self.window_weeks} weeks ({self.window_rows:,} zone-slots from "
            f"{self.window_start})"
        ]


def cube_files(store: Store) -> list[str]:
    """The cube's month partition files, in month order."""
    files = sorted(str(p) for p in Path(store.cube_dir).glob("month=*/*.parquet"))
    if not files:
        raise InputError(f"{store.cube_dir}: no month partition in the cube.")
    return files


def cube_rows(store: Store) -> int:
    """Zone-slots of the cube (``cube_meta.json``, else the files' metadata)."""
    try:
        rows = store.cube_meta().get("rows")
    except (StoreError, OSError):  # no cube: load_cube says so
        return 0
    if rows:
        return int(rows)
    return sum(pq.ParquetFile(f).metadata.num_rows for f in cube_files(store))


def cube_start(store: Store) -> pd.Timestamp:
    """The cube's first slot (UTC, from ``cube_meta.json``)."""
    t = pd.Timestamp(store.cube_meta()["start"])
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def window_start(end: pd.Timestamp, *, weeks: int, tz: str | None) -> pd.Timestamp:
    """The first slot of the recent window: ``end`` less ``weeks``, moved back to that local
    day's midnight in ``tz`` (whole local days; a midnight that daylight saving skips is
    shifted forward, as the cube's days are: :func:`features.cube.period.local_midnight`)."""
    start = end - pd.Timedelta(weeks=weeks)
    if not tz:
        return start
    day = start.tz_convert(tz).date()
    return pd.Timestamp(local_midnight(day, tz), unit="s", tz="UTC")


def load_window(store: Store, *, weeks: int) -> tuple[pd.DataFrame, str, pd.Timestamp]:
    """The model columns of the cube's last ``weeks`` weeks (compact dtypes), its grain and
    the window's first slot (the local midnight of the study's time zone on or before the
    cube's end less ``weeks``); only the partitions that overlap the window are read."""
    meta = store.cube_meta()
    grain = meta.get("grain") or store.grain
    cols = cube_columns_needed(meta.get("columns", []))
    end = pd.Timestamp(meta["end"])
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    start = window_start(end, weeks=weeks, tz=meta.get("timezone"))
    month = start.tz_convert(None).strftime("%Y-%m")
    files = [f for f in cube_files(store) if Path(f).parent.name.split("=", 1)[1] >= month]
    wanted = list(dict.fromkeys(["zone_id", "hour", *cols]))
    parts = [pq.read_table(f, columns=wanted, filters=[("hour", ">=", start)]) for f in files]
    cube = _compact(pa.concat_tables(parts).to_pandas())
    if not len(cube):
        raise InputError(f"{store.root}: no cube rows after {start}.")
    return cube, grain, start


def cell_stats(
    store: Store, *, groups: Sequence[str] | None, resolution: float
) -> tuple[CellStats, dict[str, int]]:
    """The sufficient statistics of the whole cube by DuckDB (every group asked for, ``all``
    first), and the rows without exposure (``missing_presence``, ``zero_presence``)."""
    grain, columns, features, wanted = cell_plan(store, groups=groups)
    files = cube_files(store)
    cells = sql_cells(
        files, columns=columns, grain=grain, features=features, groups=wanted,
        resolution=resolution,
    )  # fmt: skip
    keys = ["local_hour", "dow", *features]
    cells = cells.sort_values(keys, kind="stable").reset_index(drop=True)
    stats = CellStats(cells, features, wanted, grain, len(files))
    return stats, sql_dropped(files)


def _glm(cm, res, *, family: str, alpha: float, t: float, stats: CellStats, group: str,
         why: dict[str, str], n_inc: int, dropped: dict[str, int]) -> GLMFit:  # fmt: skip
    params = np.asarray(res.params, dtype=np.float64)
    cats = stats.groups[group]
    return GLMFit(
        group=group, family=family, terms=tuple(cm.terms), params=params,
        cov=np.asarray(res.cov_params(), dtype=np.float64), alpha=float(alpha),
        overdispersion_t=float(t), n_rows=int(stats.cells["rows"].sum()),
        n_cells=int(cm.keep.sum()), n_incidents=n_inc, dropped=dict(dropped),
        not_estimable=why, grain=stats.grain,
        categories=None if cats is None else tuple(cats), deviance=float(res.deviance),
        pearson_dispersion=_pearson(cm, cm.means(params), alpha),
    )  # fmt: skip


def _cell_keys(
    dz: pd.DataFrame, rows: np.ndarray, features: Sequence[str], resolution: float
) -> pd.DataFrame:
    """The cell key of the design rows ``rows`` (continuous features rounded as
    :func:`pipelines.models.design.build_cells` rounds them)."""
    out = {c: dz[c].to_numpy()[rows] for c in ("local_hour", "dow")}
    for f in features:
        v = dz[f].to_numpy(dtype=np.float64)[rows]
        out[f] = np.round(v / resolution) * resolution if f in CONTINUOUS and resolution > 0 else v
    return pd.DataFrame(out)


def cell_glms(
    stats: CellStats,
    group: str,
    *,
    dz: pd.DataFrame,
    y: np.ndarray,
    dropped: dict[str, int],
    min_incidents: int = MIN_INCIDENTS,
    resolution: float = 0.05,
) -> tuple[GLMFit, GLMFit]:
    """The Poisson and NB2 GLMs of ``group`` on the whole period's cells; the NB2 dispersion
    and the over-dispersion test on the window's rows ``dz``, ``y`` (module docstring).

    The NB2 fit alternates, as :func:`pipelines.models.glm.fit_glm` does, the quasi-likelihood
    refit on the cells (variance ``M (1 + alpha s M)`` of a cell) with the maximum-likelihood
    update of ``alpha`` at the rows' fitted means (at most 3 times); a row's mean is its
    exposure times its cell's rate (the continuous features rounded to ``resolution``).

    Raises
    ------
    SparseGroupError
        Fewer than ``min_incidents`` incidents in the whole period.
    """
    cm, why, n_inc = cell_model(stats, group, min_incidents=min_incidents)
    res = cm.poisson()
    ok = exposure_mask(dz)
    yw = np.nan_to_num(np.asarray(y, dtype=np.float64))[ok]
    ew = dz["exposure"].to_numpy(dtype=np.float64)[ok]
    keys = _cell_keys(dz, ok, [t for t in cm.terms if t in stats.features], resolution)

    def mu(params: np.ndarray) -> np.ndarray:
        return ew * np.exp(_linear_predictor(keys, cm.terms, params))

    mu_w = mu(np.asarray(res.params))
    _, t = _ct_alpha(yw, mu_w)
    common: dict[str, Any] = {"stats": stats, "group": group, "why": why, "n_inc": n_inc,
                              "dropped": dropped}  # fmt: skip
    pois = _glm(cm, res, family="poisson", alpha=0.0, t=t, **common)
    alpha = _nb_alpha_mle(yw, mu_w)
    nres = res
    for _ in range(3):
        nres = cm.newton(1.0 / (1.0 + alpha * cm.sk * cm.means(nres.params)), nres.params)
        alpha_new = _nb_alpha_mle(yw, mu(np.asarray(nres.params)))
        done = abs(alpha_new - alpha) <= 1e-3 * alpha
        alpha = alpha_new
        if done:
            break
    if not math.isfinite(alpha):
        alpha = 0.0
    return pois, _glm(cm, nres, family="negbin", alpha=alpha, t=t, **common)


def load_cube(store: Store) -> tuple[pd.DataFrame, str]:
    """The cube's columns the models read (compact dtypes), and its grain.

    Raises
    ------
    InputError
        No incidents column (a cube without presence is fitted with the fallback exposure of
        :mod:`pipelines.models.exposure`).
    """
    meta = store.cube_meta()
    grain = meta.get("grain") or store.grain
    cols = cube_columns_needed(meta.get("columns", []))
    return _with_incidents(_compact(store.cube(columns=cols or None)), store), grain


def _with_incidents(cube: pd.DataFrame, store: Store) -> pd.DataFrame:
    """``cube``, checked to hold incidents (:class:`InputError` otherwise)."""
    if "incidents" not in cube.columns and not cube_categories(cube.columns):
        raise InputError(
            f"{store.root}: the cube has no incidents column; `vigie fit` models incidents, so "
            "the study needs an incidents source."
        )
    return cube


#: the large-study rule's cells: the sufficient statistics and the rows without exposure
Large = tuple[CellStats, dict[str, int]] | None


def load(
    store: Store, *, large_rows: int, weeks: int, groups: Sequence[str] | None, resolution: float
) -> tuple[pd.DataFrame, str, Large, ScaleRule]:
    """The cube (whole, or its recent window under the large-study rule of
    :mod:`pipelines.models.large`), its grain, the whole period's cells (large studies) and the
    rule followed; ``weeks`` are the backtest's."""
    rows = cube_rows(store)
    if rows <= large_rows:
        cube, grain = load_cube(store)
        return cube, grain, None, ScaleRule(rows=rows, threshold=large_rows, large=False)
    weeks += WINDOW_EXTRA_WEEKS
    cube, grain, start = load_window(store, weeks=weeks)
    stats, dropped = cell_stats(store, groups=groups, resolution=resolution)
    rule = ScaleRule(rows=rows, threshold=large_rows, large=True, window_weeks=weeks,
                     window_start=str(start), window_rows=len(cube), cells=len(stats.cells),
                     partitions=stats.partitions, period_start=str(cube_start(store)))  # fmt: skip
    log.info("%s", rule.lines()[0])
    return _with_incidents(cube, store), grain, (stats, dropped), rule
