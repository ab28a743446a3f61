"""Checks on parsed rows: the pandera schema, slot lengths, the order of two times and repeated
keys (searched by DuckDB on large sources, in a helper thread while zones are assigned)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors as pe
import pyarrow as pa

from features import schemas
from features.config import SourceSpec
from features.errors import InputError
from features.ingest.rows import _Rows
from features.paths import MAX_KEY, file_key
from features.readers import FILE, ROW


def _validate(rows: _Rows) -> None:
    """The source's pandera schema: nullability of required columns and value ranges.

    Each rule of :data:`features.schemas.SOURCES` is first applied column by column (a few
    vectorised comparisons), flagging the rows that break it with the reason pandera gives;
    pandera then validates the rows left, so the rows kept are those the schema accepts.
    (pandera's own report of many failures costs tens of milliseconds per check: a file of a
    few rows would spend most of its ingest there.) Above :data:`_PANDERA_ROWS` rows, pandera
    validates an even sample of them: every row went through the same rules column by column."""
    present = [c for c in rows.frame.columns if c not in (ROW, FILE)]
    cols = schemas.columns(rows.source)
    for name in present:
        col = cols.get(name)
        if col is not None and col.kind != "geometry":
            _check_column(rows, col)
    schema = schemas.pandera_schema(rows.source, present)
    frame = rows.frame.drop(columns=[c for c in ("geometry",) if c in rows.frame.columns])
    ok = np.flatnonzero(~rows.bad)
    if len(ok) > _PANDERA_ROWS:
        # the rules were applied to every row above; pandera checks an even sample (its own
        # pass over a million rows costs a third of a file's ingest)
        ok = ok[np.linspace(0, len(ok) - 1, _PANDERA_ROWS).astype(np.int64)]
    try:
        schema.validate(pd.DataFrame(frame if len(ok) == len(frame) else frame.iloc[ok]), lazy=True)
    except pe.SchemaErrors as exc:
        _flag_failures(rows, exc.failure_cases)


#: the most rows of a file pandera validates itself, evenly spread (see _validate)
_PANDERA_ROWS = 50_000


def _check_column(rows: _Rows, col: schemas.Col) -> None:
    """One column's rules, as :func:`features.schemas.pandera_schema` states them."""
    s = rows.frame[col.name]
    if col.required:
        own = np.zeros(len(s), dtype=bool)
        for code, m in rows.codes.items():
            if code.startswith(f"{col.name}:"):
                own |= m  # a value that failed to parse was already flagged, with a better reason
        rows.flag(s.isna().to_numpy() & ~own, f"{col.name}: missing required value")
    if col.min is None and col.max is None:
        return
    v = pd.to_numeric(s, errors="coerce").astype(float).to_numpy()
    with np.errstate(invalid="ignore"):
        for bound, mask, word in ((col.min, v < col.min if col.min is not None else None, ">="),
                                  (col.max, v > col.max if col.max is not None else None, "<=")):  # fmt: skip
            if mask is not None and mask.any():
                # the values shown are those of the rows flagged only (a whole column made
                # text costs more than the rest of the file's checks)
                sel = np.flatnonzero(mask)
                detail = s.iloc[sel].astype(str)
                rows.flag(mask, f"{col.name}: {col.name} must be {word} {bound:g}", detail)


def _flag_failures(rows: _Rows, fc: pd.DataFrame) -> None:
    """Flag the failure cases pandera reports (by the frame's row positions)."""
    fc = fc[fc["index"].notna()]
    for (column, check), grp in fc.groupby(["column", "check"], sort=True):
        idx = grp["index"].astype(int).to_numpy()
        mask = np.zeros(len(rows.frame), dtype=bool)
        mask[idx] = True
        if check == "not_nullable":
            rows.flag(mask, f"{column}: missing required value")
        else:
            detail = pd.Series(grp["failure_case"].astype(str).to_numpy(), index=idx)
            rows.flag(mask, f"{column}: {check}", detail)


def _check_slots(rows: _Rows, spec: SourceSpec) -> None:
    f = rows.frame
    if "slot_minutes" not in f.columns or f["slot_minutes"].isna().all():
        if spec.slot_minutes:
            f["slot_minutes"] = spec.slot_minutes
        elif "end" in f.columns and rows.source == "presence":
            mins = (f["end"] - f["start"]).dt.total_seconds() / 60
            f["slot_minutes"] = mins.round().astype("Int64")
        else:
            f["slot_minutes"] = _infer_slot(f, rows.source)
            rows.warnings.append(
                f"slot length not given: inferred {int(f['slot_minutes'].iloc[0]) if len(f) else 60} minutes from the spacing of start times"
            )
    sm = pd.to_numeric(f["slot_minutes"], errors="coerce")
    if len(sm) > 10_000 and _good_slots(sm.drop_duplicates()):
        f["slot_minutes"] = sm.astype("int32")  # every distinct length good (the usual case)
        return
    bad = sm.isna() | (sm < 15) | (sm > 1440) | ((1440 % sm.fillna(1)) != 0)
    rows.flag(
        bad.to_numpy() & f["start"].notna().to_numpy(),
        "slot_minutes: must divide a day, 15 to 1440 minutes",
        sm,
    )
    f["slot_minutes"] = sm.fillna(60).astype("int32")


def _good_slots(lengths: pd.Series) -> bool:
    """Whether every slot length of ``lengths`` is a whole number of minutes dividing a day,
    15 to 1440 (none missing)."""
    v = lengths.to_numpy(dtype=float, na_value=np.nan)
    return bool(
        np.isfinite(v).all() and ((v >= 15) & (v <= 1440) & (v == np.round(v))).all()
        and (1440 % v == 0).all()
    )  # fmt: skip


def _infer_slot(f: pd.DataFrame, source: str) -> int:
    keys = [k for k in schemas.SERIES_KEYS.get(source, []) if k in f.columns]
    t = f[["start", *keys]].dropna().drop_duplicates().sort_values([*keys, "start"])
    if len(t) < 2:
        return 60
    d = t.groupby(keys)["start"].diff() if keys else t["start"].diff()
    d = d.dropna().dt.total_seconds() / 60
    d = d[d > 0]
    if d.empty:
        return 60
    m = int(d.mode().iloc[0])
    return m if (15 <= m <= 1440 and 1440 % m == 0) else 60


def _duplicates_early(rows: _Rows, pool) -> tuple[np.ndarray, Any] | None:
    """Start looking for repeated keys in ``pool`` (a thread: DuckDB runs without the GIL) while
    the main thread assigns zones; :func:`_duplicates` finishes the job. The rows considered are
    those not quarantined so far (``ok``, returned with the future)."""
    key = [k for k in schemas.KEYS[rows.source] if k in rows.frame.columns]
    if not key:
        return None
    f = rows.frame
    ok = ~rows.bad & f[key].notna().all(axis=1).to_numpy()
    return ok, pool.submit(_repeated, f[key] if ok.all() else f.loc[ok, key])


def _duplicates(rows: _Rows, early: tuple[np.ndarray, Any] | None = None) -> None:
    """Quarantine rows whose key was already seen higher up among the rows kept so far.

    With ``early`` (from :func:`_duplicates_early`, computed before the zone assignment
    quarantined more rows), its answer stands unless a row quarantined since then held the
    first occurrence of a repeated key; then the check is run again on the rows kept now."""
    key = [k for k in schemas.KEYS[rows.source] if k in rows.frame.columns]
    if not key:
        return
    f = rows.frame
    ok = ~rows.bad & f[key].notna().all(axis=1).to_numpy()
    mask = None
    if early is not None:
        ok0, future = early
        mask = np.zeros(len(f), dtype=bool)
        mask[np.flatnonzero(ok0)[future.result()]] = True
        mask &= ok
        lost = ok0 & ~ok  # quarantined since the early look
        if lost.any() and mask.any():
            a = f.loc[lost, key].drop_duplicates()
            b = f.loc[mask, key].drop_duplicates()
            if len(a.merge(b, on=key, how="inner")):
                mask = None
    if mask is None:
        mask = np.zeros(len(f), dtype=bool)
        mask[np.flatnonzero(ok)[_repeated(f[key] if ok.all() else f.loc[ok, key])]] = True
    sel = np.flatnonzero(mask)
    detail = f[key].iloc[sel].astype(str).agg("|".join, axis=1) if mask.any() else None
    rows.flag(mask, f"duplicate {'+'.join(key)}", detail)


@functools.lru_cache(maxsize=1)
def _duck():
    """One in-memory DuckDB database per process (opening one costs tens of milliseconds)."""
    import duckdb

    return duckdb.connect()


def _repeated(keys: pd.DataFrame) -> np.ndarray:
    """Rows whose key (no missing value) was already seen higher up: ``duplicated(keep="first")``,
    computed by DuckDB on both cores (hashing a million text ids in pandas takes three times as
    long)."""
    if len(keys) < 50_000:
        return keys.duplicated(keep="first").to_numpy()
    names = [f"k{i}" for i in range(keys.shape[1])]
    tbl = pa.Table.from_pandas(keys.set_axis(names, axis=1), preserve_index=False)
    tbl = tbl.append_column("pos", pa.array(np.arange(len(keys), dtype=np.int64)))
    part = ", ".join(names)
    con = _duck().cursor()
    try:
        con.register("tbl", tbl)
        pos = con.sql(
            f"SELECT pos FROM tbl QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY pos) > 1"
        ).fetchnumpy()["pos"]
    finally:
        con.close()
    out = np.zeros(len(keys), dtype=bool)
    out[np.asarray(pos, dtype=np.int64)] = True
    return out


def _check_order(rows: _Rows) -> None:
    """A lighting fault repaired before it was reported, an event ending before it starts."""
    f = rows.frame
    if rows.source == "lighting_faults" and "repaired_at" in f.columns:
        rows.flag(
            (
                f["repaired_at"].notna()
                & f["reported_at"].notna()
                & (f["repaired_at"] < f["reported_at"])
            ).to_numpy(),
            "repaired_at before reported_at",
        )
    if rows.source == "events":
        rows.flag(
            (f["end"].notna() & f["start"].notna() & (f["end"] <= f["start"])).to_numpy(),
            "end not after start",
        )


def _check_file_keys(rows: _Rows) -> None:
    """An event id names its brief's file (:func:`features.paths.file_key`): an id that cannot
    (over :data:`~features.paths.MAX_KEY` characters, or a hidden file's name), and a second id
    whose file name another id already takes ("a/b" and "a?b" both make "a-b"; names compared
    without case), are quarantined, the reason naming the other id."""
    if rows.source != "events" or "event_id" not in rows.frame.columns:
        return
    ids = rows.frame["event_id"]
    ok = ~rows.bad & ids.notna().to_numpy()
    n = len(ids)
    unusable, clash = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    why: dict[int, str] = {}
    first: dict[str, str] = {}
    for i in np.flatnonzero(ok).tolist():
        value = str(ids.iloc[i])
        try:
            key = file_key(value, what="event id")
        except InputError:
            unusable[i] = True
            why[i] = f"over {MAX_KEY} characters" if len(value) > MAX_KEY else "hidden or empty"
            continue
        other = first.setdefault(key.lower(), value)
        if other != value:
            clash[i] = True
            why[i] = f"{key!r}, as event {other[:60]!r}"
    detail = pd.Series(why, dtype=object)
    rows.flag(unusable, "event_id: cannot name a file", detail)
    rows.flag(clash, "event_id: same file name as another event", detail)
