"""The DuckDB engine: per-source hourly aggregates in SQL over the validated Parquet files.

Each source has its own small SQL builder; :class:`DuckStage` runs them once over the whole
period and each month reads its hours back. The result follows the engines' contract (see
:mod:`features.cube`): source -> dict of numpy arrays, ``zi`` an index into the plan's zones and
``eh`` an epoch hour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.cube.period import DAY, HOUR, MonthSpec
from features.cube.plan import Plan


class _Sql:
    """What every source's SQL needs: the connection, the hours, quoting and time literals.

    Hours [a0, a1) are the target hours; presence and events start at w0 (the reference
    value's past).
    """

    def __init__(self, con: Any, plan: Plan, a0: int, a1: int, w0: int) -> None:
        self.con, self.plan = con, plan
        self.a0, self.a1, self.w0 = a0, a1, w0
        self.paths = {k: v.replace("'", "''") for k, v in plan.paths.items()}
        self.tz = plan.tz.replace("'", "''")
        self._types: dict[tuple[str, str], str] = {}

    def read(self, source: str) -> str:
        return f"read_parquet('{self.paths[source]}')"

    def slot_end(self, start: str, minutes: str) -> str:
        """End of a slot in epoch seconds: start + minutes, or local days for 1 440 minutes."""
        tz = self.tz
        return (
            f"CASE WHEN {minutes} % 1440 = 0 THEN epoch(timezone('{tz}', timezone('{tz}', "
            f"{start}::TIMESTAMPTZ) + to_days(({minutes} // 1440)::INTEGER))) "
            f"ELSE epoch({start}::TIMESTAMPTZ) + 60 * {minutes} END"
        )

    def overlaps(self, lo: int) -> str:
        """CTEs ``ex``, ``ov`` after ``src`` (slots [s, e) in epoch seconds): each slot against
        the hours k in [lo, a1) it overlaps, with the overlap w in seconds."""
        return f"""ex AS (
              SELECT *, unnest(range(greatest(floor(s / 3600), {lo})::BIGINT,
                                     least(ceil(e / 3600), {self.a1})::BIGINT)) AS k
              FROM src
            ), ov AS (
              SELECT *, least(e, (k + 1) * 3600.0) - greatest(s, k * 3600.0) AS w FROM ex
            )"""

    def pieces(self, lo: int, cols: str) -> str:
        """CTEs ``one``, ``gen``, ``ex``, ``pc`` after ``src`` (``zi``, ``t`` the slot start as
        TIMESTAMPTZ, ``s`` its epoch seconds, ``m`` its minutes, then ``cols``): each slot's
        pieces ``(zi, k, w, d, cols)`` over the hours k in [lo, a1), w the overlap and d the
        slot's length in seconds. An hourly slot starting on the hour is its hour whole (no
        expansion: most slots of most sources); the others are spread over the hours they
        overlap, with the same arithmetic."""
        aligned = "m = 60 AND s % 3600 = 0"
        return f"""one AS (
              SELECT zi, floor(s / 3600)::BIGINT AS k, 3600.0::DOUBLE AS w,
                     3600.0::DOUBLE AS d, {cols}
              FROM src WHERE {aligned}
            ), gen AS (
              SELECT *, {self.slot_end("t", "m")} AS e FROM src WHERE NOT ({aligned})
            ), ex AS (
              SELECT *, unnest(range(greatest(floor(s / 3600), {lo})::BIGINT,
                                     least(ceil(e / 3600), {self.a1})::BIGINT)) AS k
              FROM gen
            ), pc AS (
              SELECT zi, k, w, d, {cols} FROM one WHERE k >= {lo} AND k < {self.a1}
              UNION ALL
              SELECT zi, k, least(e, (k + 1) * 3600.0) - greatest(s, k * 3600.0) AS w,
                     e - s AS d, {cols}
              FROM ex
            )"""

    def lit(self, source: str, col: str, seconds: int) -> str:
        """A time literal of the column's own type (so DuckDB pushes the filter down)."""
        if (source, col) not in self._types:
            rows = self.con.execute(f"DESCRIBE SELECT {col} FROM {self.read(source)}").fetchall()
            self._types[(source, col)] = rows[0][1]
        return f"to_timestamp({int(seconds)})::{self._types[(source, col)]}"


# ------------------------------------------------------------------------------------------
# one SQL builder per source
# ------------------------------------------------------------------------------------------
def _presence_sql(q: _Sql) -> str:
    """Pieces (zi, eh, w, stocks...) of the presence slots; :class:`DuckStage` averages them
    per (zone, hour), weighted by w (:func:`_weighted`)."""
    cols = ", ".join(("present", *q.plan.presence_cols))
    extra = "".join(f", p.{c}" for c in ("present", *q.plan.presence_cols))
    return f"""
            WITH src AS (
              SELECT z.zi, p.start::TIMESTAMPTZ AS t, epoch(p.start::TIMESTAMPTZ) AS s,
                     coalesce(p.slot_minutes, 60) AS m{extra}
              FROM {q.read("presence")} p JOIN zmap z ON z.zone_id = p.zone_id
              WHERE p.start >= {q.lit("presence", "start", q.w0 * HOUR - 2 * DAY)}
                AND p.start < {q.lit("presence", "start", q.a1 * HOUR)}
            ), {q.pieces(q.w0, cols)}
            SELECT zi, k AS eh, w, {cols} FROM pc WHERE w > 0
            """


def _incidents_sql(q: _Sql) -> str:
    cmap = pa.table(
        {
            "category": pa.array(list(q.plan.category_map), pa.string()),
            "ci": pa.array(list(q.plan.category_map.values()), pa.int32()),
        }
    )
    q.con.register("cmap", cmap)
    return f"""
            SELECT z.zi, floor(epoch(i.occurred_at::TIMESTAMPTZ) / 3600)::BIGINT AS eh, c.ci
            FROM {q.read("incidents")} i
            JOIN zmap z ON z.zone_id = i.zone_id JOIN cmap c ON c.category = i.category
            WHERE i.occurred_at >= {q.lit("incidents", "occurred_at", q.a0 * HOUR)}
              AND i.occurred_at < {q.lit("incidents", "occurred_at", q.a1 * HOUR)}
            """


def _ridership_sql(q: _Sql) -> str:
    """Pieces (zi, eh, entries) of the ridership slots, each slot's entries split over its
    hours by time; :class:`DuckStage` sums them per (zone, hour)."""
    return f"""
            WITH src AS (
              SELECT z.zi, r.start::TIMESTAMPTZ AS t, epoch(r.start::TIMESTAMPTZ) AS s,
                     coalesce(r.slot_minutes, 60) AS m, r.entries
              FROM {q.read("ridership")} r JOIN zmap z ON z.zone_id = r.zone_id
              WHERE r.start >= {q.lit("ridership", "start", q.a0 * HOUR - 2 * DAY)}
                AND r.start < {q.lit("ridership", "start", q.a1 * HOUR)} AND r.entries IS NOT NULL
            ), {q.pieces(q.a0, "entries")}
            SELECT zi, k AS eh, entries * w / d AS entries FROM pc WHERE w > 0
            """


def _events_sql(q: _Sql) -> str:
    return f"""
            WITH src AS (
              SELECT z.zi, e.event_id AS ev, epoch(e.start::TIMESTAMPTZ) AS s,
                     greatest(epoch(e."end"::TIMESTAMPTZ), epoch(e.start::TIMESTAMPTZ) + 1) AS e,
                     coalesce(e.expected_attendance, 0.0) AS att
              FROM {q.read("events")} e JOIN zmap z ON z.zone_id = e.zone_id
              WHERE e.start < {q.lit("events", "start", q.a1 * HOUR)}
            )
            SELECT DISTINCT zi, ev, att,
                   unnest(range(greatest(floor(s / 3600), {q.w0})::BIGINT,
                                least(ceil(e / 3600), {q.a1})::BIGINT)) AS eh
            FROM src
            """


def _lamps_out_sql(q: _Sql) -> str:
    reported = q.lit("lighting_faults", "reported_at", q.a1 * HOUR)
    repaired = q.lit("lighting_faults", "repaired_at", q.a0 * HOUR)
    return f"""
            WITH lz AS (
              SELECT l.lamp_id, z.zi FROM {q.read("lamps")} l
              JOIN zmap z ON z.zone_id = l.zone_id
            ), f AS (
              SELECT lz.zi, f.lamp_id, epoch(f.reported_at::TIMESTAMPTZ) AS r,
                     coalesce(epoch(f.repaired_at::TIMESTAMPTZ), 1e18) AS q
              FROM {q.read("lighting_faults")} f JOIN lz ON lz.lamp_id = f.lamp_id
              WHERE f.reported_at < {reported}
                AND (f.repaired_at IS NULL OR f.repaired_at > {repaired})
            ), iv AS (  -- hours whose midpoint is in [reported_at, repaired_at)
              SELECT zi, lamp_id, ceil((r - 1800) / 3600)::BIGINT AS k0,
                     least(ceil((q - 1800) / 3600), {q.a1})::BIGINT AS k1
              FROM f
            ), o AS (  -- merge each lamp's overlapping faults (gaps and islands)
              SELECT *, max(k1) OVER (PARTITION BY lamp_id ORDER BY k0, k1
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
              FROM iv WHERE k0 < k1
            ), g AS (
              SELECT *, sum(CASE WHEN prev_end >= k0 THEN 0 ELSE 1 END)
                          OVER (PARTITION BY lamp_id ORDER BY k0, k1 ROWS UNBOUNDED PRECEDING) AS grp
              FROM o
            )
            SELECT zi, min(k0) AS k0, max(k1) AS k1 FROM g GROUP BY lamp_id, zi, grp
            """


def _weather_sql(q: _Sql) -> str:
    return f"""
            WITH src AS (
              SELECT epoch(start::TIMESTAMPTZ) AS s,
                     {q.slot_end("start", "coalesce(slot_minutes, 60)")} AS e,
                     temperature_c, precipitation_mm
              FROM {q.read("weather")}
              WHERE start >= {q.lit("weather", "start", q.a0 * HOUR - 2 * DAY)}
                AND start < {q.lit("weather", "start", q.a1 * HOUR)}
            ), {q.overlaps(q.a0)}
            SELECT k AS eh,
              sum(temperature_c * w)
                / sum(CASE WHEN temperature_c IS NOT NULL THEN w END) AS temperature_c,
              sum(precipitation_mm * w / (e - s)) AS precipitation_mm
            FROM ov WHERE w > 0 GROUP BY k
            """


#: (source file, staged table, SQL builder), in staging order.
_SOURCES: tuple[tuple[str, str, Callable[[_Sql], str]], ...] = (
    ("presence", "presence", _presence_sql),
    ("incidents", "incidents", _incidents_sql),
    ("ridership", "ridership", _ridership_sql),
    ("events", "events", _events_sql),
    ("lighting_faults", "lamps_out", _lamps_out_sql),
    ("weather", "weather", _weather_sql),
)


def duckdb_sql(con: Any, plan: Plan, a0: int, a1: int, w0: int) -> dict[str, str]:
    """SQL per staged table for hours [a0, a1) (presence and events from w0), on ``con``.

    Registers the zone map ``zmap`` (and ``cmap`` for incidents) on the connection.
    """
    zmap = pa.table(
        {
            "zone_id": pa.array(plan.zone_ids.astype(str), pa.string()),
            "zi": pa.array(np.arange(len(plan.zone_ids), dtype=np.int32)),
        }
    )
    con.register("zmap", zmap)
    q = _Sql(con, plan, a0, a1, w0)
    return {name: build(q) for source, name, build in _SOURCES if source in plan.paths}


def _np(tbl: pa.Table, name: str) -> np.ndarray:
    return tbl.column(name).to_numpy(zero_copy_only=False)


def _cells(tbl: pa.Table, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """Flat (zone, hour) cell of each piece, hours [lo, hi), and the number of cells."""
    zi = _np(tbl, "zi").astype(np.int64)
    return zi * (hi - lo) + (_np(tbl, "eh").astype(np.int64) - lo), hi - lo


def _sparse(cell: np.ndarray, width: int, lo: int) -> dict[str, np.ndarray]:
    return {"zi": (cell // width).astype(np.int32), "eh": cell % width + lo}


def _weighted(tbl: pa.Table, lo: int, hi: int, n_zones: int) -> dict[str, np.ndarray]:
    """Per (zone, hour) the w-weighted mean of each stock over its pieces with a value (as
    ``sum(x * w) / sum(w)`` over the non-null pieces in SQL; NULL where none has one)."""
    cell, width = _cells(tbl, lo, hi)
    size = n_zones * width
    w = _np(tbl, "w").astype(float, copy=False)
    seen = np.flatnonzero(np.bincount(cell, minlength=size))
    out = _sparse(seen, width, lo)
    den_all = None  # sum(w) of the cells, shared by the stocks without nulls
    for c in tbl.column_names[3:]:
        col = tbl.column(c)
        v = col.to_numpy(zero_copy_only=False).astype(float, copy=False)
        if col.null_count:
            ok = col.is_valid().to_numpy(zero_copy_only=False)
            num = np.bincount(cell[ok], weights=v[ok] * w[ok], minlength=size)[seen]
            den = np.bincount(cell[ok], weights=w[ok], minlength=size)[seen]
        else:
            num = np.bincount(cell, weights=v * w, minlength=size)[seen]
            if den_all is None:
                den_all = np.bincount(cell, weights=w, minlength=size)[seen]
            den = den_all
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def _summed(tbl: pa.Table, lo: int, hi: int, n_zones: int) -> dict[str, np.ndarray]:
    """Per (zone, hour) the sum of the pieces' entries."""
    cell, width = _cells(tbl, lo, hi)
    size = n_zones * width
    seen = np.flatnonzero(np.bincount(cell, minlength=size))
    total = np.bincount(cell, weights=_np(tbl, "entries").astype(float), minlength=size)
    return {**_sparse(seen, width, lo), "entries": total[seen]}


def _counted(tbl: pa.Table, lo: int, hi: int, n_zones: int) -> dict[str, np.ndarray]:
    """Incidents per (zone, hour, category index): ``n`` for each (zi, eh, ci) seen."""
    cell, width = _cells(tbl, lo, hi)
    size = n_zones * width
    keys, n = np.unique(_np(tbl, "ci").astype(np.int64) * size + cell, return_counts=True)
    return {**_sparse(keys % size, width, lo), "ci": (keys // size).astype(np.int32), "n": n}


#: a source of more rows than this is staged sorted by hour: each month then reads only its
#: own blocks (DuckDB's zone maps) instead of scanning every piece (measured on a 5 000-zone
#: presence of 87 M rows: a month's scan 6.2 s unsorted, 0.6 s sorted, for a 37 s sort; on the
#: 300-zone city's 5 M rows, 0.04 s unsorted against a 1.5 s sort)
SORT_ROWS = 20_000_000
#: presence blocks (months) kept for the next months' windows (a window spans 3 months)
KEPT_BLOCKS = 5


def _present(plan: Plan) -> list[tuple[str, str, Callable[[_Sql], str]]]:
    return [s for s in _SOURCES if s[0] in plan.paths]


def _rows(path: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


class DuckStage:
    """Hourly pieces of every source over the whole period, staged once in DuckDB.

    One pass of SQL per source over the Parquet files (slot expansion, zone and category
    mapping, distinct lamps and events) writes tables in an in-memory DuckDB database (which
    spills to the build folder beyond DuckDB's ``memory_limit``); each month then reads its
    hours back by range and sums or averages its pieces per (zone, hour) in numpy
    (:func:`_weighted`, :func:`_summed`). The big files are scanned once, not once per month;
    the tables are not aggregated in SQL (a hash aggregate of millions of one-row groups
    costs more than summing them in numpy), and sorted by hour only for sources of more than
    :data:`SORT_ROWS` rows (below, reading them back unsorted costs less). :meth:`inputs` may
    be called from several threads (one cursor each).
    """

    def __init__(self, plan: Plan, specs: list[MonthSpec], workdir: Path) -> None:
        import duckdb  # heavy: loaded only when this engine runs

        self.plan = plan
        self.con = con = duckdb.connect(":memory:")
        con.execute("SET TimeZone='UTC'")
        con.execute(f"SET memory_limit='{plan.memory_limit}'")
        con.execute(f"SET temp_directory='{str(workdir / 'spill').replace(chr(39), chr(39) * 2)}'")
        if plan.threads:
            con.execute(f"SET threads={int(plan.threads)}")
        con.execute("SET preserve_insertion_order=false")
        a0 = min(s.a0 for s in specs)
        a1 = max(s.a1 for s in specs)
        w0 = min(s.w0 for s in specs)
        self.names = []
        for (source, name, _), sql in zip(
            _present(plan), duckdb_sql(con, plan, a0, a1, w0).values(), strict=True
        ):
            big = name != "lamps_out" and _rows(plan.paths[source]) > SORT_ROWS
            con.execute(f"CREATE TABLE s_{name} AS {sql}" + (" ORDER BY eh" if big else ""))
            self.names.append(name)
        self._local = threading.local()
        # presence blocks, contiguous from w0: the hours before the first month, then each
        # month's own hours (up to its a1)
        ends = sorted({sp.a1 for sp in specs} | {min(s.a0 for s in specs)})
        self._bounds = list(zip([w0, *ends[:-1]], ends, strict=True))
        self._bounds = [(b0, b1) for b0, b1 in self._bounds if b1 > b0]
        self._blocks: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _cursor(self) -> Any:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.con.cursor()
        return cur

    def inputs(self, spec: MonthSpec) -> dict[str, dict[str, np.ndarray]]:
        """The month's sparse hourly aggregates (the engines' contract, :mod:`features.cube`)."""
        out = {}
        n_zones = len(self.plan.zone_ids)
        for name in self.names:
            lo = spec.w0 if name in ("presence", "events") else spec.a0
            where = (
                f"k0 < {spec.a1} AND k1 > {spec.a0}"
                if name == "lamps_out"
                else f"eh >= {lo} AND eh < {spec.a1}"
            )
            if name == "presence":  # month blocks, each averaged once (the window spans 3)
                out[name] = self._presence(lo, spec.a1)
                continue
            tbl = self._cursor().sql(f"SELECT * FROM s_{name} WHERE {where}").to_arrow_table()
            if name == "ridership":
                out[name] = _summed(tbl, lo, spec.a1, n_zones)
            elif name == "incidents":
                out[name] = _counted(tbl, lo, spec.a1, n_zones)
            else:
                out[name] = {c: _np(tbl, c) for c in tbl.column_names}
        return out

    def _block(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Presence means of the hours [lo, hi) (kept for the next months' windows)."""
        with self._lock:
            if (lo, hi) in self._blocks:
                return self._blocks[(lo, hi)]
        sql = f"SELECT * FROM s_presence WHERE eh >= {lo} AND eh < {hi}"
        block = _weighted(self._cursor().sql(sql).to_arrow_table(), lo, hi, len(self.plan.zone_ids))
        with self._lock:
            self._blocks[(lo, hi)] = block
            for key in sorted(self._blocks)[:-KEPT_BLOCKS]:
                del self._blocks[key]
        return block

    def _presence(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Presence means of the hours [lo, hi) from the blocks that meet it. A (zone, hour)
        cell lies in one block, so the means are those of one aggregation over [lo, hi)."""
        parts = []
        for b0, b1 in self._bounds:
            if b0 < hi and b1 > lo:
                block = self._block(b0, b1)
                keep = (block["eh"] >= lo) & (block["eh"] < hi)
                parts.append({c: v[keep] for c, v in block.items()})
        return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}

    def close(self) -> None:
        """Close the DuckDB connection (the build folder is removed by the caller)."""
        self.con.close()
