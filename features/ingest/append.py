"""Appending one new presence file to a store, for `vigie live`: only that file is read.

The file goes through the same steps as in `vigie ingest` (:func:`features.ingest.load._load_source`:
mapping, parsing, DST rules, slot lengths, the pandera schema; then the repeated keys of the file
and the zone check of :func:`features.ingest.location._locate`), and one more: a row whose slot
(``zone_id``, ``start``) the store already holds is quarantined as a duplicate of a stored slot,
or replaces it when the study declares corrections (``corrections=True``). The rows kept are
written to ``live/presence/<seq>-<sha>.parquet`` (atomic); the rows quarantined, with their
reason, to ``live/quarantine/<seq>-<sha>.csv``. Rows read = rows kept + rows quarantined.

DST: a file holding one slot cannot tell a repeated local time (the night summer time ends) the
first time from the second. The rule of the design ("the summer-time instant the first time a
series shows it, the winter-time instant the second time") is applied to the stored series: a
repeated local time read as summer time whose slot the store already holds is the second one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import schemas
from features.config import SourceSpec
from features.ingest.load import _load_source
from features.ingest.location import _locate
from features.ingest.rows import _Rows
from features.ingest.validation import _duplicates
from features.ingest.writing import _TEXT_COLUMNS
from features.readers import FILE, ROW
from features.store import Store, atomic_file

#: the live partition of presence, under the store
LIVE_PRESENCE = "live/presence"
LIVE_QUARANTINE = "live/quarantine"
#: reason of a row repeating a stored slot
STORED_DUPLICATE = "duplicate of a stored slot (zone_id+start)"


@dataclass(frozen=True)
class AppendResult:
    """What appending one file did: rows read, kept, quarantined (with the reasons' counts),
    the slots it brought (UTC) and where its rows went."""

    file: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    slots: list[str]
    replaced: int = 0
    dst: dict[str, int] = field(default_factory=dict)
    partition: str | None = None

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.rows_kept + self.rows_quarantined

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "reconciled": self.reconciled,
            "reasons": self.reasons,
            "slots": self.slots,
            "replaced": self.replaced,
            "dst": self.dst,
            "partition": self.partition,
        }


def live_partitions(st: Store) -> list[Path]:
    """The live presence partitions, in the order they were appended (sequence number first)."""
    folder = st.root / LIVE_PRESENCE
    return sorted(folder.glob("[0-9]*.parquet")) if folder.is_dir() else []


def stored_presence(
    st: Store,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    columns: list[str] | None = None,
    exclude: Path | None = None,
) -> pd.DataFrame:
    """The store's presence (validated, then the live partitions in order; a later row of a
    slot replaces an earlier one) with ``start <= start < end`` (UTC)."""
    cols = columns or ["zone_id", "start", "present"]
    filters = []
    if start is not None:
        filters.append(("start", ">=", start))
    if end is not None:
        filters.append(("start", "<", end))
    parts = []
    paths = [st.validated_path("presence")] if st.has("presence") else []
    paths += [p for p in live_partitions(st) if p != exclude]
    for p in paths:
        df = pd.read_parquet(p, columns=cols, filters=filters or None)
        if len(df):
            df["zone_id"] = df["zone_id"].astype(str)
            parts.append(df)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    out = pd.concat(parts, ignore_index=True)
    return out.drop_duplicates(["zone_id", "start"], keep="last").reset_index(drop=True)


def _second_ambiguous(rows: _Rows, st: Store, tz: str, stored: pd.DataFrame) -> None:
    """Repeated local times read as summer time whose slot is already stored: the winter-time
    instant (one hour later)."""
    if not rows.dst.get("ambiguous_first"):
        return
    f = rows.frame
    t = pd.DatetimeIndex(f["start"])
    local = t.tz_convert(tz).tz_localize(None)
    amb = pd.isna(local.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")) & t.notna()
    summer = amb & (t.tz_convert(tz).map(lambda x: x.dst() != pd.Timedelta(0)).to_numpy())
    if not summer.any():
        return
    have = pd.MultiIndex.from_frame(stored[["zone_id", "start"]])
    keys = pd.MultiIndex.from_arrays([f["zone_id"].astype(str), t])
    second = summer & keys.isin(have)
    f.loc[second, "start"] = t[second] + pd.Timedelta(hours=1)
    rows.dst["ambiguous_first"] -= int(second.sum())
    rows.dst["ambiguous_second"] += int(second.sum())


def append_presence(
    path: str | Path,
    st: Store,
    *,
    spec: SourceSpec,
    tz: str,
    seq: int,
    sha: str,
    corrections: bool = False,
    stored: pd.DataFrame | None = None,
    zones: pd.DataFrame | None = None,
) -> AppendResult:
    """Validate one presence file and append its rows to the store's live partition.

    Parameters
    ----------
    path
        The new file (the study's own presence format).
    st
        The store (with its zones).
    spec
        The study's presence source (mapping, time format, slot length).
    tz
        The study's time zone (naive times are local).
    seq, sha
        The ledger's sequence number and the file's SHA-256: they name the partition, so a
        file processed again after a crash rewrites its own partition, never a second one.
    corrections
        Rows repeating a stored slot replace it (True) or are quarantined (False).
    stored
        The store's rows (zone_id, start) around the file's slots, when the caller holds them
        (`vigie live`'s window); None reads them from the store.
    zones
        The store's zones, when the caller holds them; None reads them.

    Returns
    -------
    AppendResult

    Raises
    ------
    InputError
        When the file cannot be used at all (unreadable, a required column missing).
    """
    name = f"{seq:08d}-{sha[:16]}"
    part = st.root / LIVE_PRESENCE / f"{name}.parquet"
    rows = _load_source("presence", spec, [str(path)], tz)
    study = st.study()
    kind = study.get("zones_kind", "polygons")
    zones = st.zones() if zones is None else zones
    _locate({"presence": rows}, zones, kind, int(study["area"].get("h3_resolution", 8)), st)
    _duplicates(rows)
    f = rows.frame
    replaced = _stored_repeats(rows, st, tz, exclude=part, corrections=corrections, stored=stored)
    bad = rows.bad
    kept = f.loc[~bad]
    _write_quarantine(st, rows, bad, name)
    if len(kept):
        _write_partition(kept, part)
    slots = sorted({t.isoformat() for t in pd.DatetimeIndex(kept["start"])})
    return AppendResult(
        file=Path(path).name,
        rows_read=len(f),
        rows_kept=int((~bad).sum()),
        rows_quarantined=int(bad.sum()),
        reasons={code: int(m.sum()) for code, m in rows.codes.items()},
        slots=slots,
        replaced=replaced,
        dst={k: v for k, v in rows.dst.items() if v},
        partition=part.relative_to(st.root).as_posix() if len(kept) else None,
    )


def _stored_repeats(
    rows: _Rows,
    st: Store,
    tz: str,
    *,
    exclude: Path,
    corrections: bool,
    stored: pd.DataFrame | None = None,
) -> int:
    """Rows repeating a slot the store holds: flagged as duplicates, or counted as replacing
    it with ``corrections``; how many replace."""
    f = rows.frame
    ok = ~rows.bad & f["start"].notna().to_numpy()
    if not ok.any():
        return 0
    lo, hi = f.loc[ok, "start"].min(), f.loc[ok, "start"].max()
    lo, hi = lo - pd.Timedelta(hours=1), hi + pd.Timedelta(hours=2)
    if stored is None:
        stored = stored_presence(
            st, start=lo, end=hi, columns=["zone_id", "start"], exclude=exclude
        )
    else:
        stored = stored[(stored["start"] >= lo) & (stored["start"] < hi)]
    _second_ambiguous(rows, st, tz, stored)
    have = pd.MultiIndex.from_frame(stored[["zone_id", "start"]].astype({"zone_id": str}))
    keys = pd.MultiIndex.from_arrays([f["zone_id"].astype(str), pd.DatetimeIndex(f["start"])])
    repeat = keys.isin(have) & ~rows.bad
    if corrections:
        return int(repeat.sum())
    rows.flag(repeat, STORED_DUPLICATE)
    return 0


def _write_partition(kept: pd.DataFrame, part: Path) -> None:
    cols = [c for c in schemas.STORED["presence"] if c in kept.columns]
    out = kept[cols].reset_index(drop=True)
    for c in out.columns:
        if (c.endswith("_id") or c in _TEXT_COLUMNS) and not pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].astype("string")
    with atomic_file(part) as tmp:
        out.to_parquet(tmp, index=False)


def _write_quarantine(st: Store, rows: _Rows, bad: np.ndarray, name: str) -> None:
    """``live/quarantine/<seq>-<sha>.csv``: the quarantined rows with their file, row, reason
    and the mapped columns as read (or as parsed, for rows flagged after parsing)."""
    if not bad.any():
        return
    idx = np.flatnonzero(bad)
    f = rows.frame
    q = pd.DataFrame(
        {
            "file": f[FILE].iloc[idx].astype(str).to_numpy(),
            "row": f[ROW].iloc[idx].to_numpy(),
            "reason": rows.reasons().to_numpy(),
        }
    )
    for c in [c for c in schemas.STORED["presence"] if c in f.columns]:
        shown = f[c].iloc[idx].astype("string").set_axis(idx)
        if c in rows.raw.columns:
            shown = rows.raw[c].reindex(idx).where(pd.Index(idx).isin(rows.raw.index), shown)
        q[c] = shown.to_numpy()
    with atomic_file(st.root / LIVE_QUARANTINE / f"{name}.csv") as tmp:
        q.to_csv(tmp, index=False)
