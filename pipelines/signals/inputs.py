"""The runner's inputs: the cube rows of a period with its look-back, zone neighbours, the panel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.store import Store
from pipelines.signals.panel import Panel, aggregate_days
from pipelines.signals.period import Period, local_days
from pipelines.signals.scan import knn_neighbours

#: the cube columns a run reads (when no model needs the others).
CUBE_COLUMNS = [
    "local_hour", "dow", "local_date", "present", "present_baseline", "present_ratio",
    "incidents", "lamps", "lamps_out", "dark", "ridership_entries", "events_active",
    "event_attendance", "holiday", "school_holiday", "precipitation_mm", "temperature_c",
    "visitors", "resident_ratio",
]  # fmt: skip


def read_cube_rows(
    st: Store,
    period: Period,
    *,
    timezone: str,
    history_days: int,
    columns: list[str] | None,
    zones: list[str] | None = None,
) -> pd.DataFrame:
    """Cube rows of the local dates ``period.first - history_days`` .. ``period.last`` (of
    ``zones``, default all), ``local_date`` as dates, ``incidents`` numeric when present."""
    ps, pe = period.bounds(timezone)
    frame = st.cube(
        columns=columns,
        start=ps - pd.Timedelta(days=history_days + 1),
        end=pe + pd.Timedelta(days=1),
        zones=zones,
    )
    frame["local_date"] = pd.to_datetime(frame["local_date"]).dt.date
    first_hist = period.first - dt.timedelta(days=history_days)
    frame = frame[(frame["local_date"] >= first_hist) & (frame["local_date"] <= period.last)]
    frame = frame.reset_index(drop=True)
    if "incidents" in frame.columns:
        frame["incidents"] = pd.to_numeric(frame["incidents"], errors="coerce")
    return frame


def read_cube_rows_by_block(
    st: Store,
    period: Period,
    *,
    timezone: str,
    history_days: int,
    columns: list[str],
    block_rows: int,
) -> pd.DataFrame:
    """:func:`read_cube_rows` of every zone, read one zone block of about ``block_rows`` rows
    after the other, in Arrow (filtered by hour, local date and the block's zone range, so row
    groups are pruned by their statistics), converted to pandas once at the end column by
    column: the peak is the frame and one block, not the two or three copies of a whole read
    and sort. Local dates are shared ``datetime.date`` objects (one per day, not per row).
    The same rows, order, columns and values as :func:`read_cube_rows`."""
    import pyarrow as pa  # the store's engine
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    ps, pe = period.bounds(timezone)
    first = period.first - dt.timedelta(days=history_days)
    data = ds.dataset(st.cube_dir, format="parquet", partitioning="hive")
    if "local_date" not in data.schema.names or not pa.types.is_date(
        data.schema.field("local_date").type
    ):  # a cube without Arrow dates: the whole read, which parses them
        return read_cube_rows(st, period, timezone=timezone, history_days=history_days,
                              columns=columns)  # fmt: skip
    when = (ds.field("hour") >= pa.scalar(ps - pd.Timedelta(days=history_days + 1))) & (
        ds.field("hour") < pa.scalar(pe + pd.Timedelta(days=1))
    )
    when &= (ds.field("local_date") >= pa.scalar(first)) & (
        ds.field("local_date") <= pa.scalar(period.last)
    )
    zones = sorted(set(pc.unique(data.to_table(["zone_id"], filter=when).column("zone_id"))
                       .to_pylist()))  # fmt: skip
    per_zone = max(1, int(data.count_rows(filter=when)) // max(1, len(zones)))
    have = set(data.schema.names)  # columns the cube lacks are left out, as a whole read does
    cols = [c for c in dict.fromkeys(["zone_id", "hour", *columns]) if c in have]
    parts = []
    for block in np.array_split(np.asarray(zones, dtype=object), max(1, -(-len(zones) * per_zone
                                                                        // block_rows))):  # fmt: skip
        if not len(block):
            continue
        flt = when & (ds.field("zone_id") >= block[0]) & (ds.field("zone_id") <= block[-1])
        t = data.to_table(cols, filter=flt & ds.field("zone_id").isin(list(block)))
        parts.append(t.sort_by([("zone_id", "ascending"), ("hour", "ascending")]))
    table = pa.concat_tables(parts)
    del parts
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    frame["zone_id"] = frame["zone_id"].astype(str)
    codes, days = pd.factorize(frame["local_date"])
    frame["local_date"] = np.asarray(pd.to_datetime(pd.Series(days)).dt.date, dtype=object)[codes]
    if "incidents" in frame.columns:
        frame["incidents"] = pd.to_numeric(frame["incidents"], errors="coerce")
    return frame


def zone_neighbours(st: Store, zones: Sequence[str], *, k: int) -> np.ndarray:
    """The ``k`` nearest zones of each of ``zones`` (itself first), by representative point.

    Raises
    ------
    ValueError
        When some of ``zones`` are not in the store's zones file (no geometry to place them).
    StoreError
        When the store has no zones file.
    """
    zg = st.zones()
    pts = zg.to_crs(4326).geometry.representative_point()
    pos = {str(z): (p.x, p.y) for z, p in zip(zg["zone_id"].astype(str), pts, strict=True)}
    missing = [z for z in zones if z not in pos]
    if missing:
        raise ValueError(
            f"{len(missing)} zone(s) of the cube are not in the zones file, e.g. {missing[:3]}"
        )
    xy = np.array([pos[z] for z in zones])
    return knn_neighbours(xy[:, 0], xy[:, 1], k=k)


def build_panel(
    frame: pd.DataFrame, *, zones: Sequence[str], period: Period, timezone: str, history_days: int
) -> Panel:
    """Daily panel of incidents and expectation (columns ``incidents`` and ``expected``).

    Only slots whose expectation is known count on both sides.
    """
    dates = [period.first - dt.timedelta(days=history_days - i) for i in range(history_days)]
    dates += [period.first + dt.timedelta(days=i) for i in range(period.days)]
    f = frame.assign(
        _obs=np.where(np.isfinite(frame["expected"]), frame["incidents"].astype(float), np.nan)
    )
    days = local_days(dates, timezone)
    arr = aggregate_days(f, {"o": "_obs", "e": "expected"}, zones=zones, days=days)
    return Panel(
        zones=np.asarray(zones, dtype=object),
        days=days,
        observed=arr["o"],
        expected=arr["e"],
        period=(history_days, history_days + period.days),
    )
