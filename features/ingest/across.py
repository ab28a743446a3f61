"""The search across the files of a streamed source (:mod:`features.ingest.stream`), once
every file is written: placeholders whose real hour is in another file, then repeated keys
(hashes compared first, rows whose hash repeats read back and compared exactly); and the
output written again without them when there are any."""

from __future__ import annotations

import os
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import schemas
from features.ingest.keys import _hash_keys, _zone_hashes
from features.ingest.rows import _Rows
from features.ingest.times import PLACEHOLDER, _later_copies
from features.ingest.validation import _duck
from features.store import temp_sibling

#: the file index of a quarantined row (for the final order), dropped before writing
_FI = "__fi"


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
    # per time column, the records of repeated local times of every file (_ambiguous_record)
    ambiguous: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    # per time column, the output positions (sorted) of later copies of a repeated local time
    # and their winter-time instants (int64 ns, UTC), written over the stored values
    shifted: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    schema: pa.Schema | None = None
    parts: list[Path] = field(default_factory=list)  # a new part when a file adds columns
    io: Any = None  # the thread that writes (a ThreadPoolExecutor)
    pending: list[Future] = field(default_factory=list)


def _may_share(a: list[tuple], b: list[tuple]) -> bool:
    for (alo, ahi, aset), (blo, bhi, bset) in zip(a, b):
        if alo is None or blo is None:  # no complete key in one of the files
            return False
        if ahi < blo or bhi < alo:
            return False
        if aset is not None and bset is not None and aset.isdisjoint(bset):
            return False
    return True


def _rewrite_without(
    tmp: Path, drop: np.ndarray, shifted: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
) -> None:
    """``tmp`` written again without the rows at positions ``drop`` (sorted), the times of
    ``shifted`` (:attr:`_Acc.shifted`) written over the stored ones first."""
    src = temp_sibling(tmp)
    os.replace(tmp, src)
    try:
        pf = pq.ParquetFile(src)
        with pq.ParquetWriter(tmp, pf.schema_arrow) as w:
            at = 0
            for batch in pf.iter_batches(batch_size=1 << 20):
                n = batch.num_rows
                table = _shift(pa.Table.from_batches([batch]), at, shifted or {})
                lo, hi = np.searchsorted(drop, [at, at + n])
                keep = np.ones(n, dtype=bool)
                keep[drop[lo:hi] - at] = False
                w.write_table(table.filter(pa.array(keep)))
                at += n
    finally:
        src.unlink(missing_ok=True)


def _shift(table: pa.Table, at: int, shifted: dict[str, tuple[np.ndarray, np.ndarray]]):
    """``table`` (output rows from position ``at``) with the times of ``shifted`` set."""
    for col, (pos, val) in shifted.items():
        lo, hi = np.searchsorted(pos, [at, at + table.num_rows])
        if hi == lo or col not in table.column_names:
            continue
        old = table.column(col).combine_chunks()
        v = pc.cast(old, pa.int64()).to_numpy(zero_copy_only=False).copy()
        mask = np.zeros(len(v), dtype=bool)
        mask[pos[lo:hi] - at] = True
        v[pos[lo:hi] - at] = val[lo:hi]
        new = pc.if_else(pa.array(mask), pa.array(v).cast(old.type), old)
        table = table.set_column(table.column_names.index(col), col, new)
    return table


def _ambiguous_record(
    name: str, rows: _Rows, ok: np.ndarray, hashes, zones
) -> dict[str, pd.DataFrame]:
    """A file's repeated local times (:attr:`_Rows.ambiguous`) for the ranking across files:
    ``__pos``, the position among the file's kept rows (-1: quarantined), and when the time is
    part of the source's key, ``__hash``: the key's hash with the winter-time instant (as
    :func:`features.ingest.stream._key_hashes` computes it), and ``__ki``, the time's place in
    the key (for the file's summary)."""
    out = {}
    f = rows.frame
    key = [k for k in schemas.KEYS[name] if k in f.columns]
    kept_pos = np.cumsum(ok) - 1
    for col, rec in rows.ambiguous.items():
        at = rec["__at"].to_numpy()
        rec = rec.drop(columns=["__at"])
        rec["__pos"] = np.where(ok[at], kept_pos[at], -1)
        rec["__ki"] = key.index(col) if col in key and hashes is not None else -1
        rec["__hash"] = np.zeros(len(rec), dtype=np.uint64)
        if col in key and hashes is not None:
            sub = f.iloc[at][key].reset_index(drop=True)
            winter = pd.DatetimeIndex(rec["__winter"].to_numpy().view("datetime64[ns]"))
            sub[col] = pd.Series(winter.tz_localize("UTC"), index=sub.index)
            zh = _zone_hashes(rows, zones)
            rec["__hash"] = _hash_keys(sub, key, None if zh is None else zh[at])
        out[col] = rec
    return out


def _ambiguous_across(acc: _Acc) -> None:
    """The later copies of a repeated local time (:func:`~features.ingest.times._later_copies`:
    ranked first in their file, an earlier file holds the same series and local time) take
    their winter-time instant: recorded in :attr:`_Acc.shifted` (written over the stored
    times), their key hashes and their files' ranges updated, counted as ambiguous_second."""
    for col, recs in acc.ambiguous.items():
        rec = pd.concat(recs, ignore_index=True)
        later = _later_copies(rec.drop(columns=["__fi"]))
        n = int(later.sum())
        if not n:
            continue
        acc.dst["ambiguous_first"] = acc.dst.get("ambiguous_first", 0) - n
        acc.dst["ambiguous_second"] = acc.dst.get("ambiguous_second", 0) + n
        sel = rec[later & (rec["__pos"].to_numpy() >= 0)].sort_values("__pos")
        pos = sel["__pos"].to_numpy(dtype=np.int64)
        val = sel["__winter"].to_numpy(dtype=np.int64)
        acc.shifted[col] = (pos, val)
        for p, v, ki, h in zip(pos, val, sel["__ki"], sel["__hash"].to_numpy(dtype=np.uint64)):
            i = int(np.searchsorted(acc.offsets, p, side="right") - 1)
            if ki < 0:
                continue
            if not acc.hashes[i].flags.writeable:
                acc.hashes[i] = acc.hashes[i].copy()
            acc.hashes[i][p - acc.offsets[i]] = h
            lo, hi, vals = acc.summaries[i][ki]
            t = pd.Timestamp(int(v), tz="UTC").to_pydatetime()
            acc.summaries[i][ki] = (lo, t if hi is None or t > hi else hi, vals)


def _across_files(acc: _Acc, tmp: Path) -> set[int]:
    """The output positions quarantined across files: placeholders, then duplicates (once the
    later copies of a repeated local time have their winter-time instant)."""
    _ambiguous_across(acc)
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
    names = acc.schema.names if acc.schema is not None else []
    key = [k for k in schemas.KEYS[acc.name] if k in names]
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
    for col, (spos, sval) in acc.shifted.items():  # the times to be written over the stored
        if col in back.columns:
            i = np.minimum(np.searchsorted(spos, back["__pos"].to_numpy()), len(spos) - 1)
            hit = spos[i] == back["__pos"].to_numpy()
            if hit.any():
                v = pd.DatetimeIndex(back[col]).asi8.copy()
                v[hit] = sval[i[hit]]
                utc = pd.DatetimeIndex(v.view("datetime64[ns]")).tz_localize("UTC")
                back[col] = pd.Series(utc, index=back.index)
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
