"""The large sources read one file at a time: each file parsed, checked, placed in zones and its
kept rows appended to the validated Parquet before the next file is read (issue 18).

Memory holds one file's rows, the quarantined rows, and 9 bytes per kept row (a 64-bit hash of
its key and whether the key is complete) for the search of keys repeated across files; a city's
two years of hourly presence (5 M zone-hours) and a region's (87 M) are read in the memory of
their largest file.

Within a file, everything is decided as on a source read whole: parsing, the schema, zones, the
placeholders of spring-forward hours (:func:`features.ingest.times._placeholders`) and repeated
keys (:func:`features.ingest.validation._duplicates`). Across files, once every file is written:

1. a kept nonexistent local time whose shifted instant a real row of another file holds is a
   placeholder (quarantined, the real row kept);
2. a row whose key an earlier kept row (file order) holds is a duplicate: rows whose key hash
   repeats are read back from the written file and compared exactly.

Only when one of these finds rows is the written file rewritten without them (a second pass).
A row quarantined across files shows, in the quarantine file, its stored values (columns read
but not stored, such as x/y, are empty); a placeholder shows its values as read.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import schemas
from features.config import SourceSpec
from features.ingest.load import _load_file
from features.ingest.location import _assign
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

#: the file index of a quarantined row (for the final order), dropped before writing
_FI = "__fi"


def streamable(name: str, zone_kind: str) -> bool:
    """Whether ``name`` is read file by file (:data:`STREAMED`, with a zones file)."""
    return name in STREAMED and zone_kind == "polygons"


@dataclass
class _Gaps:
    """Kept rows at a nonexistent local time (shifted one hour), that a real row of another file
    may hold: their output positions, keys (with the time) and quarantine rows."""

    keys: list[pd.DataFrame] = field(default_factory=list)
    quarantine: list[pd.DataFrame] = field(default_factory=list)


@dataclass
class _Acc:
    """What the files of a streamed source add up to."""

    name: str
    read: int = 0
    out: int = 0  # rows written
    counts: dict[str, int] = field(default_factory=dict)
    dst: dict[str, int] = field(default_factory=dict)
    quarantine: list[pd.DataFrame] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)
    complete: list[np.ndarray] = field(default_factory=list)
    summaries: list[list[tuple]] = field(default_factory=list)  # per file, see _summary
    offsets: list[int] = field(default_factory=list)  # first output position of each file
    file_rows: list[np.ndarray | None] = field(default_factory=list)  # None: rows 1..n
    file_names: list[str] = field(default_factory=list)
    gaps: _Gaps = field(default_factory=_Gaps)
    infos: list = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mapped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    schema: pa.Schema | None = None
    parts: list[Path] = field(default_factory=list)  # a new part when a file adds columns
    io: Any = None  # the thread that writes (a ThreadPoolExecutor)
    pending: list[Future] = field(default_factory=list)


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
    with atomic_file(path) as tmp:
        writer = None
        try:
            # the Parquet writing (C++, without the GIL) runs in this thread while the next
            # file is read and parsed: at most two files' rows in memory
            acc.io = ThreadPoolExecutor(max_workers=1)
            for i, file in enumerate(files):
                rows = _load_file(name, spec, file, tz, pool=pool, zones=zones)
                _placeholders(rows)
                _assign(rows, zones, "polygons", 0)
                h = _key_hashes(acc.name, rows)
                writer = _add(acc, rows, i, tmp, writer, h)
        finally:
            if writer is not None:
                acc.pending.append(acc.io.submit(writer.close))
            acc.io.shutdown(wait=True)
            for fut in acc.pending:
                fut.result()  # a write that failed fails the source
        _merge_parts(acc, tmp)
        late = _across_files(acc, tmp)
        if late:
            _rewrite_without(tmp, np.array(sorted(late), dtype=np.int64))
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


def _key_hashes(name: str, rows: _Rows) -> np.ndarray | None:
    """A 64-bit hash of each row's key (None: the source has no key columns); the file's
    repeated keys are quarantined (:func:`~features.ingest.validation._duplicates`) when two
    rows kept so far share a hash (the exact search runs only then)."""
    key = [k for k in schemas.KEYS[name] if k in rows.frame.columns]
    if not key:
        return None
    f = rows.frame
    h = pd.util.hash_pandas_object(f[key], index=False).to_numpy()
    ok = ~rows.bad & f[key].notna().all(axis=1).to_numpy()
    if pd.Series(h[ok]).duplicated().any():
        _duplicates(rows)
    return h


def _summary(table: pa.Table, key: list[str]) -> list[tuple]:
    """Per key column of the rows written from one file: (min, max, the set of values when
    there are at most :data:`_SET_MAX` and they are not times); two files can share a key only where every column's
    ranges overlap and their sets meet."""
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


def _may_share(a: list[tuple], b: list[tuple]) -> bool:
    for (alo, ahi, aset), (blo, bhi, bset) in zip(a, b):
        if alo is None or blo is None:  # no complete key in one of the files
            return False
        if ahi < blo or bhi < alo:
            return False
        if aset is not None and bset is not None and aset.isdisjoint(bset):
            return False
    return True


def _add(acc: _Acc, rows: _Rows, i: int, tmp: Path, writer, h: np.ndarray | None):
    """One file's rows: counts and quarantine kept, the kept rows appended to the output."""
    f = rows.frame
    bad = rows.bad
    acc.read += len(f)
    for code, m in rows.codes.items():
        acc.counts[code] = acc.counts.get(code, 0) + int(m.sum())
    for k, v in rows.dst.items():
        acc.dst[k] = acc.dst.get(k, 0) + v
    q = _quarantine_frame(rows, bad)
    q[_FI] = i
    acc.quarantine.append(q)
    acc.infos.extend(rows.files)
    acc.ignored.extend(rows.ignored)
    acc.mapped.update(rows.mapped)
    acc.warnings.extend(rows.warnings)
    ok = ~bad
    acc.offsets.append(acc.out)
    acc.file_names.append(str(f[FILE_COL].iloc[0]) if len(f) else "")
    row_no = f[ROW].to_numpy()
    acc.file_rows.append(None if ok.all() and _is_range(row_no) else row_no[ok])
    kept = f.loc[ok] if not ok.all() else f
    _remember_gaps(acc, rows, ok)
    key = [k for k in schemas.KEYS[acc.name] if k in kept.columns]
    table = pa.Table.from_pandas(_stored_frame(acc.name, kept.copy()), preserve_index=False)
    if key and h is not None:
        acc.hashes.append(h[ok] if not ok.all() else h)
        acc.complete.append(kept[key].notna().all(axis=1).to_numpy())
        acc.summaries.append(_summary(table.filter(pa.array(acc.complete[-1])), key))
    acc.out += table.num_rows
    return _write_table(acc, table, tmp, writer)


def _is_range(row_no: np.ndarray) -> bool:
    return len(row_no) == 0 or (
        int(row_no[0]) == 1
        and int(row_no[-1]) == len(row_no)
        and bool(np.all(np.diff(row_no) == 1))
    )


def _remember_gaps(acc: _Acc, rows: _Rows, ok: np.ndarray) -> None:
    """The kept rows at a nonexistent local time, with their keys and quarantine rows."""
    if not rows.nonexistent:
        return
    f = rows.frame
    cols = schemas.columns(acc.name)
    keys = [
        k
        for k in dict.fromkeys(schemas.SERIES_KEYS.get(acc.name, []) + schemas.KEYS[acc.name])
        if k in f.columns and not (k in cols and cols[k].kind == "time")
    ]
    kept_pos = np.cumsum(ok) - 1 + acc.offsets[-1]
    for name, gap in rows.nonexistent.items():
        m = gap & ok
        if not m.any():
            continue
        k = f.loc[m, [*keys, name]].reset_index(drop=True)
        k = k.rename(columns={name: "__t"})
        k["__time_col"] = name
        k["__pos"] = kept_pos[m]
        acc.gaps.keys.append(k)
        idx = np.flatnonzero(m)
        q = _quarantine_frame(rows, m, reasons=pd.Series(PLACEHOLDER, index=idx, dtype=object))
        q[_FI] = len(acc.offsets) - 1
        q["__pos"] = kept_pos[m]
        acc.gaps.quarantine.append(q)


def _write_table(acc: _Acc, table: pa.Table, tmp: Path, writer):
    """Append ``table`` to the output: cast to the output's schema (columns a file lacks are
    written empty); a file that brings new columns starts a new part, merged at the end."""
    if writer is not None and not set(table.column_names) <= set(acc.schema.names):
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


def _rewrite_without(tmp: Path, drop: np.ndarray) -> None:
    """``tmp`` written again without the rows at positions ``drop`` (sorted)."""
    src = temp_sibling(tmp)
    os.replace(tmp, src)
    try:
        pf = pq.ParquetFile(src)
        with pq.ParquetWriter(tmp, pf.schema_arrow) as w:
            at = 0
            for batch in pf.iter_batches(batch_size=1 << 20):
                n = batch.num_rows
                lo, hi = np.searchsorted(drop, [at, at + n])
                keep = np.ones(n, dtype=bool)
                keep[drop[lo:hi] - at] = False
                w.write_table(pa.Table.from_batches([batch]).filter(pa.array(keep)))
                at += n
    finally:
        src.unlink(missing_ok=True)


def _across_files(acc: _Acc, tmp: Path) -> set[int]:
    """The output positions quarantined across files: placeholders, then duplicates."""
    late = _placeholders_across(acc, tmp)
    late |= _duplicates_across(acc, tmp, late)
    return late


def _placeholders_across(acc: _Acc, tmp: Path) -> set[int]:
    """Kept nonexistent local times whose shifted instant a real row of another file holds."""
    if not acc.gaps.keys:
        return set()
    g = pd.concat(acc.gaps.keys, ignore_index=True)
    gap_pos = set(g["__pos"].tolist())
    found: set[int] = set()
    for tcol, gg in g.groupby("__time_col", sort=False):
        keys = [c for c in gg.columns if not c.startswith("__")]
        times = pa.array(gg["__t"].unique())
        con = _duck().cursor()
        try:
            con.register("times", pa.table({"t": times}))
            cols = ", ".join(f'"{c}"' for c in [*keys, tcol])
            real = _as_stored(
                con.sql(
                    f"SELECT file_row_number AS pos, {cols} FROM read_parquet('{tmp}', "
                    f'file_row_number=true) WHERE "{tcol}" IN (SELECT t FROM times)'
                ),
                tmp,
            )
        finally:
            con.close()
        real = real[~real["pos"].isin(gap_pos)].rename(columns={tcol: "__t"})
        hit = gg.merge(real[[*keys, "__t"]].drop_duplicates(), on=[*keys, "__t"], how="inner")
        found |= set(hit["__pos"].tolist())
    if found:
        q = pd.concat(acc.gaps.quarantine, ignore_index=True)
        acc.quarantine.append(q[q["__pos"].isin(found)].drop(columns=["__pos"]))
        n = len(found)
        acc.counts[PLACEHOLDER] = acc.counts.get(PLACEHOLDER, 0) + n
        acc.dst["nonexistent_shifted"] = acc.dst.get("nonexistent_shifted", 0) - n
        acc.dst["nonexistent_placeholder"] = acc.dst.get("nonexistent_placeholder", 0) + n
    return found


def _duplicates_across(acc: _Acc, tmp: Path, placeholders: set[int]) -> set[int]:
    """Kept rows whose key an earlier kept row holds (after the placeholders are set aside):
    the rows whose key hash repeats are read back and compared exactly."""
    if not acc.hashes:
        return set()
    n = len(acc.summaries)
    meet = [
        i
        for i in range(n)
        if any(j != i and _may_share(acc.summaries[i], acc.summaries[j]) for j in range(n))
    ]
    if not meet:  # no two files can share a key: nothing to search
        return set()
    h = np.concatenate(acc.hashes)
    ok = np.zeros(len(h), dtype=bool)
    for i in meet:  # only the files that may share a key with another
        ok[acc.offsets[i] : acc.offsets[i] + len(acc.hashes[i])] = acc.complete[i]
    if placeholders:
        ok[np.fromiter(placeholders, dtype=np.int64)] = False
    pos = np.flatnonzero(ok)
    cand = pos[pd.Series(h[pos]).duplicated(keep=False).to_numpy()]
    if len(cand) == 0:
        return set()
    key = [k for k in schemas.KEYS[acc.name] if k in acc.schema.names]
    con = _duck().cursor()
    try:
        con.register("cand", pa.table({"p": pa.array(cand)}))
        back = _as_stored(
            con.sql(
                f"SELECT file_row_number AS __pos, * FROM read_parquet('{tmp}', "
                "file_row_number=true) WHERE file_row_number IN (SELECT p FROM cand) "
                "ORDER BY file_row_number"
            ),
            tmp,
        )
    finally:
        con.close()
    dup = back[back.duplicated(subset=key, keep="first")]
    if dup.empty:
        return set()
    code = f"duplicate {'+'.join(key)}"
    detail = dup[key].astype(str).agg("|".join, axis=1)
    q = pd.DataFrame(
        {
            "file": [_file_of(acc, p) for p in dup["__pos"]],
            "row": [_row_of(acc, p) for p in dup["__pos"]],
            "reason": [f"{code} ({d})" for d in detail],
        }  # fmt: skip
    )
    for c in acc.quarantine[0].columns:
        if c not in ("file", "row", "reason", _FI):
            q[c] = dup[c].astype("string").to_numpy() if c in dup.columns else pd.NA
    q[_FI] = [int(np.searchsorted(acc.offsets, p, side="right") - 1) for p in dup["__pos"]]
    acc.quarantine.append(q)
    acc.counts[code] = acc.counts.get(code, 0) + len(dup)
    return set(dup["__pos"].astype(int).tolist())


def _as_stored(rel, tmp: Path) -> pd.DataFrame:
    """A DuckDB answer over the written file as pandas, each column of the file in its stored
    type (DuckDB hands times back in microseconds, in its session's time zone)."""
    table = rel.arrow()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    stored = pq.read_schema(tmp)
    cols = [
        c.cast(stored.field(n).type) if n in stored.names else c
        for n, c in zip(table.column_names, table.columns)
    ]
    return pa.Table.from_arrays(cols, names=table.column_names).to_pandas()


def _file_of(acc: _Acc, p: int) -> str:
    return acc.file_names[int(np.searchsorted(acc.offsets, p, side="right") - 1)]


def _row_of(acc: _Acc, p: int) -> int:
    """The row number in its file of the kept row at output position ``p``."""
    i = int(np.searchsorted(acc.offsets, p, side="right") - 1)
    rows = acc.file_rows[i]
    at = int(p) - acc.offsets[i]
    return at + 1 if rows is None else int(rows[at])
