"""The large sources read one file at a time: each file parsed, checked, placed in zones and its
kept rows appended to the validated Parquet before the next file is read (issue 18).

Memory holds one file's rows, the quarantined rows, and 9 bytes per kept row (a 64-bit hash of
its key and whether the key is complete) for the search of keys repeated across files; a city's
two years of hourly presence (5 M zone-hours) and a region's (87 M) are read in the memory of
their largest file.

Within a file, everything is decided as on a source read whole: parsing, the schema, zones, the
placeholders of spring-forward hours (:func:`features.ingest.times._placeholders`) and repeated
keys (:func:`features.ingest.validation._duplicates`). Across files, once every file is written:

0. a repeated local time of a fall-back day ranked first in its file, whose series and local
   time an earlier file holds (and no file holds both passages), is a later copy: it takes
   its winter-time instant
   (:func:`features.ingest.across._ambiguous_across`, written over the stored time);
1. a kept nonexistent local time whose shifted instant a real row of another file holds is a
   placeholder (quarantined, the real row kept);
2. a row whose key an earlier kept row (file order) holds is a duplicate: rows whose key hash
   repeats are read back from the written file and compared exactly.

Only when one of these finds rows is the written file rewritten (a second pass).
A row quarantined across files shows, in the quarantine file, its stored values (columns read
but not stored, such as x/y, are empty); a placeholder shows its values as read.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import schemas
from features.config import SourceSpec
from features.ingest.across import _FI, _Acc, _across_files, _ambiguous_record, _rewrite_without
from features.ingest.keys import _hash_keys, _zone_hashes
from features.ingest.load import _load_file
from features.ingest.location import _assign
from features.ingest.memory import put_table, reused_memory, shared_dir, take_table
from features.ingest.results import SourceResult
from features.ingest.rows import _Rows
from features.ingest.times import PLACEHOLDER, _placeholders
from features.ingest.validation import _duck, _duplicates
from features.ingest.writing import (
    _dictionary_columns,
    _file_entries,
    _quarantine_frame,
    _stored_frame,
    _write_quarantine_frame,
)
from features.readers import FILE as FILE_COL
from features.readers import ROW
from features.store import Store, atomic_file, temp_sibling

#: sources read file by file when the zones are polygons (H3 zones are made over every row)
STREAMED = ("presence", "presence_origin", "incidents")


def streamable(name: str, zone_kind: str) -> bool:
    """Whether ``name`` is read file by file (:data:`STREAMED`, with a zones file)."""
    return name in STREAMED and zone_kind == "polygons"


def _stream_source(
    name: str,
    spec: SourceSpec,
    files: list[str],
    tz: str,
    *,
    st: Store,
    zones,
    pool=None,
    base: Path,
    digests: dict,
) -> SourceResult:
    """Read, check, locate and write a source file by file (module docstring); its result (the
    fingerprint is set by the caller)."""
    acc = _Acc(name)
    path = st.validated_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, reused_memory(), shared_dir() as shm:
        writer = None
        procs = _worker_pool(files, zones, shm)
        try:
            # the Parquet writing (C++, without the GIL) runs in this thread while the next
            # file is read and parsed: at most two files' rows in memory
            acc.io = ThreadPoolExecutor(max_workers=1)
            for part in _parts(procs, name, spec, files, tz, zones=zones, pool=pool):
                writer = _add(acc, part, tmp, writer)
        finally:
            if writer is not None:
                acc.pending.append(acc.io.submit(writer.close))
            acc.io.shutdown(wait=True)
            if procs is not None:
                procs.shutdown(wait=True, cancel_futures=True)
            for fut in acc.pending:
                fut.result()  # a write that failed fails the source
        _merge_parts(acc, tmp)
        late = _across_files(acc, tmp)
        if late or acc.shifted:
            _rewrite_without(tmp, np.array(sorted(late), dtype=np.int64), acc.shifted)
    q = pd.concat(acc.quarantine, ignore_index=True)
    q = q.sort_values([_FI, "row"], kind="stable").drop(columns=[_FI])
    _write_quarantine_frame(st, name, q)
    n_bad = len(q)
    for info in acc.infos:
        info.sha256 = digests[info.path].result()
    dst = {k: v for k, v in acc.dst.items() if v or k != "nonexistent_placeholder"}
    return SourceResult(
        name,
        acc.read,
        acc.read - n_bad,
        n_bad,
        {k: v for k, v in acc.counts.items() if v},
        _file_entries(acc.infos, base),
        sorted(set(acc.ignored)),
        acc.mapped,
        dst if any(dst.values()) else {},
        list(dict.fromkeys(acc.warnings)),
        "ingested",
        "",
    )


def _key_hashes(name: str, rows: _Rows, zones) -> np.ndarray | None:
    """A 64-bit hash of each row's key (None: the source has no key columns); the file's
    repeated keys are quarantined (:func:`~features.ingest.validation._duplicates`) when two
    rows kept so far share a hash (the exact search runs only then)."""
    key = [k for k in schemas.KEYS[name] if k in rows.frame.columns]
    if not key:
        return None
    f = rows.frame
    h = _hash_keys(f, key, _zone_hashes(rows, zones))
    ok = ~rows.bad & f[key].notna().all(axis=1).to_numpy()
    hs = np.sort(h[ok])  # a sort is several times faster than pandas' hash table here
    if bool((hs[1:] == hs[:-1]).any()):
        _duplicates(rows)
    return h


def _summary(table: pa.Table, key: list[str]) -> list[tuple]:
    """Per key column of the rows written from one file: (min, max, the set of values when
    there are at most :data:`_SET_MAX` and they are not times); two files can share a key
    only where every column's ranges overlap and their sets meet."""
    out = []
    for k in key:
        uniq = pc.unique(table.column(k))  # one hash pass; the range is taken on its values
        mm = pc.min_max(uniq)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        small = len(uniq) <= _SET_MAX and not pa.types.is_temporal(uniq.type)
        out.append((lo, hi, set(uniq.to_pylist()) if small else None))
    return out


#: the most distinct values of a key column kept per file for the search across files
_SET_MAX = 20_000


@dataclass
class _Part:
    """One file read, checked and located (in a worker process or in this one): what the
    source's result and the cross-file search need, and the table of its kept rows."""

    index: int
    read: int
    counts: dict[str, int]
    dst: dict[str, int]
    quarantine: pd.DataFrame
    rows: _Rows  # its frame emptied: files, ignored and mapped columns, warnings
    file_name: str
    file_rows: np.ndarray | None  # the kept rows' numbers in the file (None: 1..n)
    hashes: np.ndarray | None
    complete: np.ndarray | None
    summary: list[tuple] | None
    gap_keys: list[pd.DataFrame]  # __pos: position among the file's kept rows
    gap_quarantine: list[pd.DataFrame]
    ambiguous: dict[str, pd.DataFrame]  # repeated local times (across._ambiguous_record)
    table: pa.Table | None  # None while it travels from a worker as an IPC file (``shared``)
    shared: str | None = None


def _read_part(
    name: str, spec: SourceSpec, path: str, i: int, tz: str, *, zones, pool=None
) -> _Part:
    """Read, check and locate one file; its kept rows as an Arrow table (stored columns)."""
    rows = _load_file(name, spec, path, tz, pool=pool, zones=zones)
    _placeholders(rows)
    _assign(rows, zones, "polygons", 0)
    h = _key_hashes(name, rows, zones)
    f = rows.frame
    bad = rows.bad
    ok = ~bad
    q = _quarantine_frame(rows, bad)
    q[_FI] = i
    row_no = f[ROW].to_numpy()
    kept = f.loc[ok] if not ok.all() else f
    gap_keys, gap_q = _gaps(name, rows, ok, i)
    key = [k for k in schemas.KEYS[name] if k in kept.columns]
    # the stored columns are taken from the file's frame, no longer needed (no copy: copying
    # a frame of several million rows makes pandas consolidate its blocks, seconds a file)
    table = pa.Table.from_pandas(_stored_frame(name, kept), preserve_index=False)
    complete = summary = None
    if key and h is not None:
        h = h[ok] if not ok.all() else h
        complete = kept[key].notna().all(axis=1).to_numpy()
        summary = _summary(table if complete.all() else table.filter(pa.array(complete)), key)
    part = _Part(
        i, len(f), {c: int(m.sum()) for c, m in rows.codes.items()}, dict(rows.dst), q, rows,
        str(f[FILE_COL].iloc[0]) if len(f) else "",
        None if ok.all() and _is_range(row_no) else row_no[ok],
        h, complete, summary, gap_keys, gap_q, _ambiguous_record(name, rows, ok, h, zones), table,
    )  # fmt: skip
    rows.frame = rows.frame.iloc[:0]  # the rows travel as the table only
    rows.raw = rows.raw.iloc[:0]
    rows.codes, rows.details, rows.nonexistent, rows.zone_codes = {}, {}, {}, None
    rows.ambiguous, rows.zone_pos = {}, None
    return part


def _add(acc: _Acc, part: _Part, tmp: Path, writer):
    """One file's part: counts and quarantine kept, its kept rows appended to the output."""
    table = part.table
    assert table is not None
    acc.read += part.read
    for code, n in part.counts.items():
        acc.counts[code] = acc.counts.get(code, 0) + n
    for k, v in part.dst.items():
        acc.dst[k] = acc.dst.get(k, 0) + v
    acc.quarantine.append(part.quarantine)
    acc.infos.extend(part.rows.files)
    acc.ignored.extend(part.rows.ignored)
    acc.mapped.update(part.rows.mapped)
    acc.warnings.extend(part.rows.warnings)
    acc.offsets.append(acc.out)
    acc.file_names.append(part.file_name)
    acc.file_rows.append(part.file_rows)
    for k in part.gap_keys:
        k["__pos"] += acc.out
        acc.gaps.keys.append(k)
    for q in part.gap_quarantine:
        q["__pos"] += acc.out
        acc.gaps.quarantine.append(q)
    for col, rec in part.ambiguous.items():
        pos = rec["__pos"].to_numpy()
        rec["__pos"] = np.where(pos >= 0, pos + acc.out, -1)
        rec["__fi"] = part.index
        acc.ambiguous.setdefault(col, []).append(rec)
    if part.hashes is not None and part.complete is not None and part.summary is not None:
        acc.hashes.append(part.hashes)
        acc.complete.append(part.complete)
        acc.summaries.append(part.summary)
    else:  # a file without the key's columns: its rows take part in no search (aligned by file)
        n = table.num_rows
        acc.hashes.append(np.zeros(n, dtype=np.uint64))
        acc.complete.append(np.zeros(n, dtype=bool))
        acc.summaries.append([(None, None, None)])
    acc.out += table.num_rows
    return _write_table(acc, table, tmp, writer)


#: sources of at least this many bytes in two files or more are read by two worker processes
POOL_BYTES = 64 << 20

_WORKER: dict[str, Any] = {}


def _worker_pool(files: list[str], zones, shm: Path):
    """Two worker processes (forked: they inherit the zones) when the source is large; None
    otherwise (the files are read in this process)."""
    import multiprocessing

    if len(files) < 2 or sum(os.path.getsize(f) for f in files) < POOL_BYTES:
        return None
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    _WORKER["zones"] = zones
    _WORKER["shm"] = shm
    procs = ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
    )
    for fut in [procs.submit(int, 0) for _ in range(2)]:  # fork now, before the writing thread
        fut.result()
    return procs


def _init_worker() -> None:
    """A forked worker opens its own DuckDB connection (the parent's is kept, never used)."""
    if _duck.cache_info().currsize:
        _WORKER["parent_duck"] = _duck()  # kept alive: closing it here could wait on threads
    _duck.cache_clear()


def _read_in_worker(name: str, spec: SourceSpec, path: str, i: int, tz: str) -> _Part:
    """One file's part, its table handed over in shared memory (:mod:`.memory`)."""
    part = _read_part(name, spec, path, i, tz, zones=_WORKER["zones"])
    assert part.table is not None
    part.shared, part.table = put_table(part.table, _WORKER["shm"]), None
    return part


def _received(part: _Part) -> _Part:
    if part.shared is not None:
        part.table, part.shared = take_table(part.shared), None
    return part


def _parts(procs, name, spec, files, tz, *, zones, pool):
    """Each file's part in file order: read in the worker processes (at most three files in
    flight), or here one after the other."""
    if procs is None:
        for i, path in enumerate(files):
            yield _read_part(name, spec, path, i, tz, zones=zones, pool=pool)
        return
    ahead: deque = deque()
    todo = iter(enumerate(files))
    for i, path in todo:
        ahead.append(procs.submit(_read_in_worker, name, spec, path, i, tz))
        if len(ahead) >= 3:
            yield _received(ahead.popleft().result())
    while ahead:
        yield _received(ahead.popleft().result())


def _is_range(row_no: np.ndarray) -> bool:
    return len(row_no) == 0 or (
        int(row_no[0]) == 1
        and int(row_no[-1]) == len(row_no)
        and bool(np.all(np.diff(row_no) == 1))
    )


def _gaps(name: str, rows: _Rows, ok: np.ndarray, i: int) -> tuple[list, list]:
    """The kept rows at a nonexistent local time: their keys (with the time; ``__pos``, their
    position among the file's kept rows) and their quarantine rows, should a real row of
    another file hold that instant."""
    if not rows.nonexistent:
        return [], []
    f = rows.frame
    cols = schemas.columns(name)
    keys = [
        k
        for k in dict.fromkeys(schemas.SERIES_KEYS.get(name, []) + schemas.KEYS[name])
        if k in f.columns and not (k in cols and cols[k].kind == "time")
    ]
    kept_pos = np.cumsum(ok) - 1
    out_k, out_q = [], []
    for tcol, gap in rows.nonexistent.items():
        m = gap & ok
        if not m.any():
            continue
        k = f.loc[m, [*keys, tcol]].reset_index(drop=True)
        k = k.rename(columns={tcol: "__t"})
        k["__time_col"] = tcol
        k["__pos"] = kept_pos[m]
        out_k.append(k)
        idx = np.flatnonzero(m)
        q = _quarantine_frame(rows, m, reasons=pd.Series(PLACEHOLDER, index=idx, dtype=object))
        q[_FI] = i
        q["__pos"] = kept_pos[m]
        out_q.append(q)
    return out_k, out_q


def _write_table(acc: _Acc, table: pa.Table, tmp: Path, writer):
    """Append ``table`` to the output: cast to the output's schema (columns a file lacks are
    written empty); a file that brings new columns starts a new part, merged at the end."""
    if writer is not None and not set(table.column_names) <= set(_names(acc.schema)):
        acc.pending.append(acc.io.submit(writer.close))
        writer = None
    if writer is None:
        acc.schema = _typed(
            acc.name, table.schema if acc.schema is None else _widen(acc.schema, table.schema)
        )
        part = tmp if not acc.parts else temp_sibling(tmp)
        acc.parts.append(part)
        key = schemas.KEYS[acc.name]
        unique = key[0] if len(key) == 1 else None
        writer = pq.ParquetWriter(
            part, acc.schema, use_dictionary=_dictionary_columns(table, unique)
        )
    acc.pending = [f for f in acc.pending if not f.done() or f.result() is not None]
    acc.pending.append(acc.io.submit(writer.write_table, _conform(table, acc.schema)))
    return writer


def _names(schema: pa.Schema | None) -> list[str]:
    return [] if schema is None else schema.names


#: the Arrow type of a column whose first file gave no value (pandas wrote it as null)
_KIND_TYPES = {
    "str": pa.large_string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "time": pa.timestamp("ns", tz="UTC"),
}


def _typed(name: str, schema: pa.Schema) -> pa.Schema:
    """``schema`` with its null-typed columns given their canonical type."""
    cols = schemas.columns(name)
    return pa.schema(
        [
            pa.field(
                f.name,
                _KIND_TYPES.get(cols[f.name].kind if f.name in cols else "str", pa.large_string()),
            )
            if pa.types.is_null(f.type)
            else f
            for f in schema
        ],
        metadata=schema.metadata,  # pandas' dtypes (nullable text, Int64) as the other sources
    )


def _widen(old: pa.Schema, new: pa.Schema) -> pa.Schema:
    return pa.schema([*old, *(f for f in new if f.name not in old.names)], metadata=new.metadata)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns and types (missing columns empty)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            c = table.column(f.name)
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _merge_parts(acc: _Acc, tmp: Path) -> None:
    """The parts written before a file brought new columns, joined into ``tmp`` (rare: the
    files of a source usually give the same columns). With no row at all, an empty file."""
    if not acc.parts:
        table = pa.Table.from_pandas(_stored_frame(acc.name, pd.DataFrame()), preserve_index=False)
        pq.write_table(_typed(acc.name, table.schema).empty_table(), tmp)
        return
    if len(acc.parts) == 1:
        return
    assert acc.schema is not None
    first = temp_sibling(tmp)
    os.replace(tmp, first)
    parts = [first, *acc.parts[1:]]
    try:
        with pq.ParquetWriter(tmp, acc.schema) as w:
            for part in parts:
                for batch in pq.ParquetFile(part).iter_batches(batch_size=1 << 20):
                    w.write_table(_conform(pa.Table.from_batches([batch]), acc.schema))
    finally:
        for part in parts:
            Path(part).unlink(missing_ok=True)
