"""The GLM's sufficient statistics (cells) of cube partitions, aggregated by DuckDB.

The same cells as :func:`pipelines.models.design.build_cells` over the rows with known, positive
presence (:func:`pipelines.models.design.exposure_mask`): one row per cell of identical
covariates (local hour, day of week and the model features, the continuous ones rounded to
``resolution``) with the sums ``E`` (exposure), ``E2`` (squared exposure), ``rows`` and one
``y_<group>`` per category group. The features are computed in SQL exactly as
:func:`pipelines.models.design.design` computes them in numpy (float32 values, then the
round-half-to-even of :func:`numpy.round`), so the keys are the same numbers and the Poisson GLM
fitted on these cells is the one :func:`pipelines.models.glm.fit_glm` fits on rows (the sums
differ only by the order of floating-point additions). DuckDB reads only the columns it needs
from the Parquet partitions and streams them through a hash aggregate: memory is the cells, not
the cube.

References
----------
McCullagh, P. & Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed., ch. 6.
Raasveldt, M. & Mühleisen, H. (2019). DuckDB: an embeddable analytical database. *SIGMOD '19*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipelines.models.design import CONTINUOUS

#: DuckDB's memory limit while aggregating (it spills beyond it)
MEMORY_LIMIT = "3GB"


def _num(col: str, columns: Sequence[str]) -> str:
    """A cube column as DOUBLE, missing (or absent) as 0 (``np.nan_to_num`` of ``numeric``),
    through float32 as :func:`pipelines.models.cube_io._compact` reads the cube's numbers."""
    if col not in columns:
        return "0.0"
    v = f'CAST(CAST("{col}" AS FLOAT) AS DOUBLE)'
    return f"(CASE WHEN {v} IS NULL OR isnan({v}) THEN 0.0 ELSE {v} END)"


def feature_sql(f: str, *, columns: Sequence[str], grain: str, resolution: float) -> str:
    """The SQL of one model feature, as :func:`pipelines.models.design.design` computes it
    (float32), rounded as :func:`pipelines.models.design.build_cells` rounds it."""
    dark = f"(CASE WHEN {_num('dark', columns)} > 0 THEN 1.0 ELSE 0.0 END)"
    if f == "dark":
        v = dark
    elif f == "dark_lamps_out":
        lamps, out = _num("lamps", columns), _num("lamps_out", columns)
        share = f"(CASE WHEN {lamps} > 0 THEN least({out}, {lamps}) / {lamps} ELSE 0.0 END)"
        v = f"(10.0 * {share} * {dark if grain == '1h' else '1.0'})"
    elif f == "event_k":
        v = f"({_num('event_attendance', columns)} / 1000.0)"
    elif f == "rain":
        v = f"(CASE WHEN {_num('precipitation_mm', columns)} >= 1.0 THEN 1.0 ELSE 0.0 END)"
    elif f == "transit_k":
        v = f"({_num('ridership_entries', columns)} / 1000.0)"
    else:  # holiday, school_holiday
        v = f"(CASE WHEN {_num(f, columns)} > 0 THEN 1.0 ELSE 0.0 END)"
    v = f"CAST(CAST({v} AS FLOAT) AS DOUBLE)"
    if f in CONTINUOUS and resolution > 0:
        v = f"(round_even({v} / {resolution!r}, 0) * {resolution!r})"
    return v


def _count_sql(cats: Sequence[str] | None, columns: Sequence[str]) -> str:
    """The incidents of a group per row (``None``: every incident), missing as 0."""
    if cats is None and "incidents" in columns:
        return 'coalesce(CAST("incidents" AS DOUBLE), 0.0)'
    cats = [c[4:] for c in columns if c.startswith("inc_")] if cats is None else cats
    parts = [f'coalesce(CAST("inc_{c}" AS DOUBLE), 0.0)' for c in cats]
    return " + ".join(parts) or "0.0"


def _source(files: Sequence[str]) -> str:
    """DuckDB's read of the cube files ``files`` (quotes in their paths escaped)."""
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"


def cells_query(
    files: Sequence[str],
    *,
    columns: Sequence[str],
    grain: str,
    features: Sequence[str],
    groups: Mapping[str, Sequence[str] | None],
    resolution: float,
) -> str:
    """The SQL aggregating the cells of the cube files ``files``."""
    lh = "0" if grain == "1d" else "CAST(coalesce(local_hour, 0) AS INTEGER)"
    keys = [f"{lh} AS local_hour", "CAST(coalesce(dow, 0) AS INTEGER) AS dow"]
    keys += [f'{feature_sql(f, columns=columns, grain=grain, resolution=resolution)} AS "{f}"'
             for f in features]  # fmt: skip
    names = ["local_hour", "dow", *(f'"{f}"' for f in features)]
    sums = ["sum(e) AS E", "sum(e * e) AS E2", "count(*) AS rows"]
    ys = [f'{_count_sql(c, columns)} AS "y_{g}"' for g, c in groups.items()]
    sums += [f'sum("y_{g}") AS "y_{g}"' for g in groups]
    src = _source(files)
    e = 'CAST("present" AS DOUBLE)'
    return (
        f"SELECT {', '.join(names)}, {', '.join(sums)} FROM ("
        f"SELECT {', '.join(keys)}, {e} AS e, {', '.join(ys)} FROM {src} "
        f"WHERE {e} > 0 AND isfinite({e})) GROUP BY ALL"
    )


def dropped_query(files: Sequence[str]) -> str:
    """Rows without exposure: presence missing, presence zero (``fit_glm``'s ``dropped``)."""
    src = _source(files)
    e = 'CAST("present" AS DOUBLE)'
    return (
        f"SELECT count(*) FILTER (WHERE {e} IS NULL OR NOT isfinite({e})) AS missing_presence, "
        f"count(*) FILTER (WHERE isfinite({e}) AND {e} <= 0) AS zero_presence FROM {src}"
    )


def _connect(threads: int | None):
    import duckdb  # loaded only on this path

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def sql_cells(
    files: Sequence[str],
    *,
    columns: Sequence[str],
    grain: str,
    features: Sequence[str],
    groups: Mapping[str, Sequence[str] | None],
    resolution: float,
    threads: int | None = None,
) -> pd.DataFrame:
    """The cells of the cube files ``files`` (unsorted): local_hour and dow (int8), the features
    (float64), ``E``, ``E2`` (float64), ``rows`` (int64) and ``y_<group>`` (float64)."""
    q = cells_query(
        files, columns=columns, grain=grain, features=features, groups=groups,
        resolution=resolution,
    )  # fmt: skip
    con = _connect(threads)
    try:
        out = con.execute(q).df()
    finally:
        con.close()
    out["local_hour"] = out["local_hour"].astype(np.int8)
    out["dow"] = out["dow"].astype(np.int8)
    out["rows"] = out["rows"].astype(np.int64)
    for c in out.columns:
        if c not in ("local_hour", "dow", "rows"):
            out[c] = out[c].astype(np.float64)
    return out


def sql_dropped(files: Sequence[str], *, threads: int | None = None) -> dict[str, int]:
    """Rows of ``files`` whose presence is missing, and whose presence is zero."""
    con = _connect(threads)
    try:
        row = con.execute(dropped_query(files)).fetchone()
    finally:
        con.close()
    return {"missing_presence": int(row[0] or 0), "zero_presence": int(row[1] or 0)}
