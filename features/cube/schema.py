"""The cube's output: its columns and types, its pandera contract, and what a build returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.cube.indicators import VISITOR_KINDS, indicator_columns
from features.cube.plan import Plan


@dataclass(frozen=True)
class CubeResult:
    """What :func:`build_cube` made.

    Attributes
    ----------
    path
        The cube folder (``store/cube``), hive partitioned by ``month=YYYY-MM``.
    meta
        The content of ``cube_meta.json``.
    rows
        Rows written (zones x slots).
    columns
        Column names, in order.
    months
        Partition labels written.
    engine
        Engine used.
    seconds
        Wall-clock build time.
    """

    path: Path
    meta: dict[str, Any]
    rows: int
    columns: tuple[str, ...]
    months: tuple[str, ...]
    engine: str
    seconds: float


def cube_schema(columns: list[str] | tuple[str, ...]):
    """The cube's data contract as a pandera ``DataFrameSchema`` (for the columns present).

    Pins types, ranges and the cross-column rules: ``present_missing`` is exactly
    ``present.isna()``, presence is never 0-filled (NaN or >= 0), ``lamps_out <= lamps``,
    ``incidents`` is the sum of the ``inc_*`` columns, one row per (zone_id, hour). Downstream
    steps can run it on the slice they read (``schema.validate(df, lazy=True)``).

    Parameters
    ----------
    columns
        The cube's columns (``cube_meta.json["columns"]``).

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    import pandera.pandas as pa_  # heavy (0.2 s): loaded only when the contract is asked for

    counts = {"incidents", "lamps", "lamps_out", "events_active"}
    spec: dict[str, Any] = {
        "zone_id": pa_.Column(str, nullable=False),
        "hour": pa_.Column("datetime64[ns, UTC]", nullable=False),
        "local_hour": pa_.Column("int8", pa_.Check.in_range(0, 23)),
        "dow": pa_.Column("int8", pa_.Check.in_range(0, 6)),
        "local_date": pa_.Column(object, nullable=False),
        "present": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "present_missing": pa_.Column(bool),
        "present_baseline": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "present_ratio": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "residents": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "visitors": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        **{c: pa_.Column(float, pa_.Check.ge(0), nullable=True) for c in VISITOR_KINDS},
        "visitor_share": pa_.Column(float, pa_.Check.in_range(0, 1), nullable=True),
        "resident_ratio": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "dark": pa_.Column(bool),
        "ridership_entries": pa_.Column(float, pa_.Check.ge(0)),
        "event_attendance": pa_.Column(float, pa_.Check.ge(0)),
        "holiday": pa_.Column(bool),
        "school_holiday": pa_.Column(bool),
        "temperature_c": pa_.Column(float, pa_.Check.in_range(-80, 70), nullable=True),
        "precipitation_mm": pa_.Column(float, pa_.Check.ge(0), nullable=True),
    }
    cols = {}
    for c in columns:
        if c in counts or c.startswith("inc_"):
            cols[c] = pa_.Column("int32", pa_.Check.ge(0))
        elif c in spec:
            cols[c] = spec[c]
    checks = []
    if "present" in columns:
        checks.append(
            pa_.Check(
                lambda d: d["present_missing"] == d["present"].isna(),
                error="present_missing must equal present.isna()",
            )
        )
    if "lamps_out" in columns:
        checks.append(pa_.Check(lambda d: d["lamps_out"] <= d["lamps"], error="lamps_out <= lamps"))
    cats = [c for c in columns if c.startswith("inc_")]
    if cats:
        checks.append(
            pa_.Check(
                lambda d: d[cats].sum(axis=1) == d["incidents"],
                error="incidents must be the sum of the inc_* columns",
            )
        )
    return pa_.DataFrameSchema(
        cols, checks=checks, unique=["zone_id", "hour"], strict=True, name="cube"
    )


def output_columns(plan: Plan) -> list[str]:
    """The cube's columns, in order, for the sources and grain of a plan."""
    cols = ["zone_id", "hour", "local_hour", "dow", "local_date"]
    if "presence" in plan.paths:
        cols += ["present", "present_missing", "present_baseline", "present_ratio"]
        cols += list(plan.presence_cols)
        cols += indicator_columns(plan.presence_cols, has_population=plan.population is not None)
    if "incidents" in plan.paths:
        cols += ["incidents"] + [f"inc_{c}" for c in plan.categories]
    if plan.lamps is not None:
        cols.append("lamps")
        if "lighting_faults" in plan.paths:
            cols.append("lamps_out")
    if plan.grain == "1h":
        cols.append("dark")
    if "ridership" in plan.paths:
        cols.append("ridership_entries")
    if "events" in plan.paths:
        cols += ["events_active", "event_attendance"]
    cols += ["holiday", "school_holiday"]
    if "weather" in plan.paths:
        cols += ["temperature_c", "precipitation_mm"]
    return cols


_TYPES: dict[str, pa.DataType] = {
    "zone_id": pa.string(),
    "hour": pa.timestamp("ns", tz="UTC"),
    "local_hour": pa.int8(),
    "dow": pa.int8(),
    "local_date": pa.date32(),
    "present_missing": pa.bool_(),
    "incidents": pa.int32(),
    "lamps": pa.int32(),
    "lamps_out": pa.int32(),
    "dark": pa.bool_(),
    "events_active": pa.int32(),
    "holiday": pa.bool_(),
    "school_holiday": pa.bool_(),
}


def arrow_schema(columns: list[str]) -> pa.Schema:
    """The Arrow schema of the cube's Parquet partitions for these columns."""
    return pa.schema(
        [(c, _TYPES.get(c, pa.int32() if c.startswith("inc_") else pa.float64())) for c in columns]
    )


def arrow_column(values: Any, typ: pa.DataType) -> pa.Array:
    """A numpy column as an Arrow array of the cube's type."""
    if pa.types.is_string(typ):
        return pa.array(np.asarray(values, dtype=object), typ)
    if pa.types.is_timestamp(typ):
        return pa.array(np.asarray(values, dtype=np.int64), pa.int64()).cast(typ)
    if pa.types.is_date32(typ):
        return pa.array(np.asarray(values, dtype=np.int32), pa.int32()).cast(typ)
    return pa.array(np.asarray(values).astype(typ.to_pandas_dtype()), typ)
