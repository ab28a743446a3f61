"""`vigie ingest`: read every source of a study, validate it, and load the store.

Contract (DESIGN.md, "Canonical sources"): every row read is either kept in
``store/validated/<source>.parquet`` (canonical columns only, times in UTC) or written to
``store/quarantine/<source>.csv`` with its reason; ``store/ingest_report.json`` reconciles
``rows_read == rows_kept + rows_quarantined`` per source, lists the ignored columns, the reasons
with counts, the DST resolutions and each input file's SHA-256.

Rules decided here (also in the README):

* Times without an offset are local times of the study's time zone (``area.timezone``, or the
  source's ``timezone``). Offset-aware times (``Z``, ``+01:00``) are taken as they are.
  Without ``time_format`` only ISO 8601 is accepted (a date alone means midnight).
* A local time that does not exist (the skipped hour of a spring-forward day) is moved forward by
  one hour, the usual DST gap (02:30 -> 03:30 in Europe/Paris: the writer's clock had not
  changed yet) and counted as ``nonexistent_shifted``.
* A local time that exists twice (the repeated hour of a fall-back day) is read as the first
  (summer-time) instant; when the same series key (zone, stop, zone+origin...) or, for
  sources without series, the same timestamp appears again, the second occurrence in file order
  is the second (winter-time) instant. Both are counted (``ambiguous_first``/``ambiguous_second``);
  a third occurrence is a duplicate and is quarantined.
* Rows with the same key (incident_id, zone_id+start...) after the first are quarantined as
  duplicates; the first is kept.
* A point outside every zone is quarantined (``outside every zone``).
* Numbers may use a decimal comma; booleans accept true/false, 1/0, yes/no, oui/non, vrai/faux.
* A time whose year a nanosecond timestamp cannot hold (before 1678 or after 2261: typos such as
  0225 or 9999) is quarantined as out of range.

Speed (``make bench``: a million incident rows within 2x of a plain ``read_csv`` +
``to_parquet``): the main thread reads and parses; helper threads hash the input files (first
ingest), place each file's points in zones while its other columns are parsed, and search a
loaded source for repeated keys (DuckDB) while the next one is read. Rows quarantined after
that search began are accounted for in :func:`_duplicates`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import schemas
from features.config import SOURCE_NAMES, SourceSpec, _closest, load_study
from features.errors import InputError
from features.readers import FILE, ROW, FileInfo, expand, read_any
from features.store import Store

log = logging.getLogger(__name__)

INGEST_VERSION = "1"

_TRUE = {"true", "t", "1", "yes", "y", "oui", "o", "vrai", "v"}
_FALSE = {"false", "f", "0", "no", "n", "non", "faux"}
_LOCATION_COLS = {"latitude", "longitude", "x", "y", "zone_id", "lamp_id"}
_OFFSET_RE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"


@dataclass
class SourceResult:
    """What ingest did with one source."""

    source: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    files: list[dict[str, Any]]
    ignored_columns: list[str]
    columns_mapped: dict[str, str]
    dst: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: str = "ingested"
    fingerprint: str = ""

    def as_dict(self) -> dict[str, Any]:
        # the report describes the store, not the run: a re-run on unchanged inputs writes the
        # same bytes (whether a source was re-read is `status`, printed by the CLI)
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "reconciled": self.rows_read == self.rows_kept + self.rows_quarantined,
            "reasons": dict(sorted(self.reasons.items())),
            "ignored_columns": self.ignored_columns,
            "columns_mapped": self.columns_mapped,
            "dst": self.dst,
            "warnings": self.warnings,
            "files": self.files,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class IngestResult:
    """The outcome of :func:`ingest`: the store and the per-source results."""

    store: Store
    sources: dict[str, SourceResult]
    report_path: Path

    @property
    def reconciled(self) -> bool:
        return all(r.rows_read == r.rows_kept + r.rows_quarantined for r in self.sources.values())


class _Rows:
    """A parsed source: canonical columns plus per-row quarantine reasons."""

    def __init__(
        self,
        source: str,
        frame: pd.DataFrame,
        files: list[FileInfo],
        ignored: list[str],
        mapped: dict[str, str],
        raw: pd.DataFrame,
    ):
        self.source = source
        self.frame = frame
        self.raw = raw  # the mapped columns as read (strings), for the quarantine file
        self.files = files
        self.ignored = ignored
        self.mapped = mapped
        self.codes: dict[str, np.ndarray] = {}
        self.details: dict[str, pd.Series] = {}
        self.dst: dict[str, int] = {
            "nonexistent_shifted": 0,
            "ambiguous_first": 0,
            "ambiguous_second": 0,
        }
        self.warnings: list[str] = []
        # zone of each row's point, computed ahead in a thread (a Future, or an array once
        # several files are stacked); None when _assign must compute it
        self.zone_codes: Any = None

    def flag(self, mask, code: str, detail: pd.Series | None = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        prev = self.codes.get(code)
        self.codes[code] = mask if prev is None else (prev | mask)
        if detail is not None:
            self.details[code] = detail

    @property
    def bad(self) -> np.ndarray:
        out = np.zeros(len(self.frame), dtype=bool)
        for m in self.codes.values():
            out |= m
        return out

    def reasons(self) -> pd.Series:
        """One reason string per quarantined row (several joined by '; ')."""
        bad = self.bad
        idx = np.flatnonzero(bad)
        out = pd.Series([""] * len(idx), index=idx, dtype=object)
        for code, mask in self.codes.items():
            sel = np.flatnonzero(mask)
            text = pd.Series(code, index=sel, dtype=object)
            det = self.details.get(code)
            if det is not None:
                d = det.reindex(sel).astype(str)
                text = text + " (" + d + ")"
            out.loc[sel] = np.where(out.loc[sel] == "", text, out.loc[sel] + "; " + text)
        return out


# ---------------------------------------------------------------------------------------------
# reading and mapping


def _map_columns(
    source: str, spec: SourceSpec, columns: list[str], path: str
) -> tuple[dict[str, str], list[str]]:
    """canonical -> file column, and the file's columns that are left out."""
    file_cols = [c for c in columns if c not in (ROW, FILE) and c != "geometry"]
    canon = schemas.columns(source)
    extra = {"x", "y"} if source in schemas.LOCATED else set()
    for name in spec.columns:
        if name not in canon and name not in extra:
            hint = _closest(name, list(canon))
            raise InputError(
                f"{source}: the column mapping names {name!r}, which is not a canonical column of {source}"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; canonical columns are {', '.join(canon)}.",
                file=path,
                column=name,
            )
    mapping: dict[str, str] = {}
    lower = {c.lower().strip(): c for c in file_cols}
    for name in list(canon) + sorted(extra):
        if name == "geometry":
            continue
        if name in spec.columns:
            target = spec.columns[name]
            if target not in file_cols and source in schemas.LOCATED and name in _LOCATION_COLS:
                continue  # another file of the source may locate by other columns; checked below
            if target not in file_cols:
                hint = _closest(target, file_cols)
                raise InputError(
                    f"{source}: {path} has no column {target!r} (mapped to {name}); its columns are "
                    f"{', '.join(file_cols)}" + (f"; closest match {hint!r}" if hint else "") + ".",
                    file=path,
                    column=target,
                )
            mapping[name] = target
        elif name in lower:
            mapping[name] = lower[name]
    used = set(mapping.values())
    ignored = [c for c in file_cols if c not in used]
    # required columns
    missing = [
        c
        for c in schemas.required(source)
        if c not in mapping and c not in spec.constants and c != "geometry"
    ]
    if missing:
        name = missing[0]
        hint = _closest(name, file_cols)
        looks_headerless = _looks_headerless(file_cols)
        raise InputError(
            f"{source}: {path} lacks the required column {name!r}"
            + (f" (all missing: {', '.join(missing)})" if len(missing) > 1 else "")
            + f"; its columns are {', '.join(file_cols) or '(none)'}"
            + (
                f"; closest match {hint!r} — map it in sources.yaml with columns: {{{name}: {hint}}}"
                if hint
                else ""
            )
            + (
                "; the first line looks like data: does the file have a header row?"
                if looks_headerless
                else ""
            )
            + ".",
            file=path,
            column=name,
        )
    if source in schemas.LOCATED:
        has_ll = "latitude" in mapping and "longitude" in mapping
        has_xy = "x" in mapping and "y" in mapping
        has_zone = "zone_id" in mapping or "zone_id" in spec.constants
        has_lamp = source == "lighting_faults" and "lamp_id" in mapping
        if has_xy and not spec.crs:
            raise InputError(
                f"{source}: {path} gives x/y coordinates but sources.yaml names no crs (e.g. crs: EPSG:2154).",
                file=path,
                column="x",
            )
        if not (has_ll or has_xy or has_zone or has_lamp):
            need = "lamp_id, " if source == "lighting_faults" else ""
            raise InputError(
                f"{source}: {path} has no location: expected {need}latitude and longitude, x and y with a crs, or zone_id; "
                f"its columns are {', '.join(file_cols)}.",
                file=path,
                column="latitude",
            )
    return mapping, ignored


def _looks_headerless(cols: list[str]) -> bool:
    if not cols:
        return False
    numeric = sum(
        bool(re.fullmatch(r"[-+]?\d+([.,]\d+)?", str(c).strip()))
        or bool(re.match(r"\d{4}-\d{2}-\d{2}", str(c)))
        for c in cols
    )
    return numeric >= max(1, len(cols) // 2)


def _read_file(source: str, spec: SourceSpec, path: str):
    """One file as canonical columns (+ __row, __file), its FileInfo, mapping and ignored columns."""
    cols = schemas.columns(source)
    numeric = {spec.columns.get(c, c) for c, col in cols.items() if col.kind in {"float", "int"}}
    if source in schemas.LOCATED:
        numeric |= {spec.columns.get("x", "x"), spec.columns.get("y", "y")}

    def keep(header: list[str]) -> set[str]:
        # the columns worth reading: the mapped ones (unknown columns are not even parsed)
        return set(_map_columns(source, spec, header, path)[0].values())

    df, info = read_any(
        path,
        fmt=spec.format,
        encoding=spec.encoding,
        delimiter=spec.delimiter,
        layer=spec.layer,
        source=source,
        numeric=numeric,
        keep=keep,
    )
    m, ign = _map_columns(source, spec, info.columns or list(df.columns), path)
    out = pd.DataFrame({canon: df[col] for canon, col in m.items()}, index=df.index)
    if source == "zones":
        import geopandas as gpd

        out = gpd.GeoDataFrame(out, geometry=df.geometry.values, crs=df.crs)
    out[ROW] = df[ROW].to_numpy()
    out[FILE] = df[FILE].array
    for name, value in spec.constants.items():
        out[name] = value
    return out.reset_index(drop=True), info, m, ign


# ---------------------------------------------------------------------------------------------
# parsing


def _as_str(s: pd.Series) -> pd.Series:
    """Text without surrounding spaces; Arrow-backed text is trimmed in place of a copy."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        return s.str.strip()
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return s.astype("string").str.strip()
    return s.astype("string")


def _parse_float(rows: _Rows, name: str) -> None:
    s = rows.frame[name]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        rows.frame[name] = s.astype(float)
        return
    txt = _as_str(s)
    num = pd.to_numeric(txt, errors="coerce")
    retry = num.isna() & txt.notna() & txt.str.contains(",", regex=False)
    if retry.any():
        num = num.where(
            ~retry,
            pd.to_numeric(
                txt[retry].str.replace(r"\s", "", regex=True).str.replace(",", ".", regex=False),
                errors="coerce",
            ),
        )
    badm = (num.isna() & txt.notna()).to_numpy()
    rows.flag(badm, f"{name}: not a number", txt)
    rows.frame[name] = num.astype(float)


def _parse_int(rows: _Rows, name: str) -> None:
    _parse_float(rows, name)
    v = rows.frame[name]
    frac = v.notna() & (v != np.round(v))
    rows.flag(frac.to_numpy(), f"{name}: not a whole number", v)
    rows.frame[name] = v.round().astype("Int64")


def _parse_bool(rows: _Rows, name: str) -> None:
    s = rows.frame[name]
    if pd.api.types.is_bool_dtype(s):
        rows.frame[name] = s.astype("boolean")
        return
    txt = _as_str(s).str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[txt.isin(_TRUE).fillna(False).to_numpy()] = True
    out[txt.isin(_FALSE).fillna(False).to_numpy()] = False
    badm = (out.isna() & txt.notna()).to_numpy()
    rows.flag(badm, f"{name}: not a yes/no value", txt)
    rows.frame[name] = out


def _parse_str(rows: _Rows, name: str) -> None:
    s = rows.frame[name]
    if pd.api.types.is_float_dtype(s):
        # ids read from Parquet/JSON as numbers: 12.0 -> "12"
        txt = s.map(
            lambda v: None if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v))
        )
        rows.frame[name] = txt.astype(object)
        return
    txt = _as_str(s)
    rows.frame[name] = txt.where(txt != "", pd.NA)


_DAY_NS = 86_400 * 10**9


def _day_offsets(ns: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """For naive local times (int64 ns, no NaT): UTC minus local time (ns) on each row's local
    date, and whether that date lies within a day of a change of offset (the only rows that can
    be nonexistent or ambiguous; their offset is left to pandas). One offset per day of the
    span, so a million rows over two years cost 730 look-ups, then a binary search per row."""
    # every day from the first to the last (nanosecond times span 213 000 days at most)
    ud = np.arange(int(ns.min()) // _DAY_NS, int(ns.max()) // _DAY_NS + 1, dtype=np.int64)
    x = pd.DatetimeIndex(ud * _DAY_NS)

    def offset(at: pd.DatetimeIndex) -> np.ndarray:
        loc = at.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        return np.asarray((loc.tz_convert("UTC").tz_localize(None) - at).asi8)

    nat = np.iinfo(np.int64).min
    before = offset(x - pd.Timedelta(hours=12))
    after = offset(x + pd.Timedelta(hours=36))
    unsure = (before == nat) | (after == nat) | (before != after)
    off = np.where(unsure, 0, before)
    # runs of consecutive days with the same offset: a row finds its run by binary search
    run = np.r_[True, (off[1:] != off[:-1]) | (unsure[1:] != unsure[:-1])]
    k = np.searchsorted(ud[run] * _DAY_NS, ns, side="right") - 1
    return off[run][k], unsure[run][k]


#: ISO 8601 layouts tried in C (pyarrow) before pandas' general ISO parser takes the rest
_ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def _arrow(txt: pd.Series):
    import pyarrow as pa

    arr = getattr(txt.array, "_pa_array", None)
    return (
        arr
        if arr is not None
        else pa.chunked_array([pa.array(txt.astype(object), type=pa.string(), from_pandas=True)])
    )


def _has_offset(txt: pd.Series) -> np.ndarray:
    """Whether each time string ends with a UTC offset (Z, +01, +0100, +01:00) after a time of
    day (so that the day of a bare date, 2026-01-01, is not read as an offset)."""
    hit = txt.str.contains(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*" + _OFFSET_RE, regex=True)
    return hit.fillna(False).to_numpy(dtype=bool)


def _strptime(txt: pd.Series, formats, *, fallback: str | None) -> pd.Series:
    """Naive timestamps (datetime64[us]) from text: each format in turn with pyarrow's C
    strptime, on what is still unparsed; pandas (``fallback``: a format or ISO8601; None: no
    fallback) takes whatever remains (fractions of seconds, unusual layouts). Unparseable values
    come back as NaT."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow(txt)
    res = None
    for f in formats:
        if any(d in f for d in ("%z", "%Z", "%f", "%p", "%b", "%B", "%a", "%A", "%j", "%U")):
            continue  # layouts pyarrow does not parse like pandas: leave them to pandas
        try:
            got = pc.strptime(arr, format=f, unit="us", error_is_null=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        res = got if res is None else pc.coalesce(res, got)
        if pc.sum(pc.and_(pc.is_null(res), pc.is_valid(arr))).as_py() in (0, None):
            break
    out = (
        pd.Series(pd.NaT, index=txt.index, dtype="datetime64[us]")
        if res is None
        else pd.Series(res.to_numpy(zero_copy_only=False), index=txt.index).astype("datetime64[us]")
    )
    if fallback is not None:
        todo = out.isna() & txt.notna()
        if todo.any():
            out.loc[todo] = pd.to_datetime(txt[todo], format=fallback, errors="coerce").astype(
                "datetime64[us]"
            )
    return out


def _iso_cast(s: pd.Series) -> pd.Series | None:
    """Naive datetime64[ns] when every value is a naive ISO 8601 time (Arrow's cast: one pass
    in C, all or nothing: any other value, or one out of the nanosecond range, gives None)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pd.api.types.is_string_dtype(s):
        return None
    try:
        res = pc.cast(_arrow(s), pa.timestamp("ns"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return pd.Series(res.to_numpy(zero_copy_only=False), index=s.index)


def _to_ns(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Datetimes of any unit (naive, or aware: then in UTC, naive) in nanoseconds, the unit of
    the store. Values a nanosecond timestamp cannot hold (before 1678, after 2261: typos such
    as 0225 or 9999) become NaT and are returned in a mask."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    v = values.to_numpy()
    unit = np.datetime_data(v.dtype)[0]
    if unit == "ns":
        return values, np.zeros(len(v), dtype=bool)
    lo = np.datetime64("1678-01-01", unit).astype(np.int64)
    hi = np.datetime64("2262-01-01", unit).astype(np.int64)
    vi = v.view(np.int64)
    nat = np.iinfo(np.int64).min
    if len(vi) == 0 or (vi.max() < hi and np.min(vi, where=vi != nat, initial=hi) >= lo):
        return pd.Series(v.astype("datetime64[ns]"), index=values.index), np.zeros(len(v), bool)
    oob = (vi != nat) & ((vi < lo) | (vi >= hi))
    v = np.where(oob, np.datetime64("NaT", unit), v).astype("datetime64[ns]")
    return pd.Series(v, index=values.index), oob


def _parse_iso(txt: pd.Series) -> tuple[pd.Series, pd.Series | None, np.ndarray]:
    """ISO 8601 text: naive times (datetime64[us]), times with an offset (datetime64[us, UTC],
    or None when there are none) and which rows have an offset. The common layouts are parsed
    in C first; offsets and other ISO forms are looked for only in what is left."""
    naive = _strptime(txt, _ISO_FORMATS, fallback=None)
    is_aware = np.zeros(len(txt), dtype=bool)
    aware = None
    left = np.flatnonzero((naive.isna() & txt.notna()).to_numpy())
    if len(left):
        part = txt.iloc[left]
        has = _has_offset(part)
        if has.any():
            is_aware[left[has]] = True
            aware = pd.Series(pd.NaT, index=txt.index, dtype="datetime64[us, UTC]")
            aware.iloc[left[has]] = pd.to_datetime(
                part[has], format="ISO8601", errors="coerce", utc=True
            ).astype("datetime64[us, UTC]")
        if (~has).any():
            naive.iloc[left[~has]] = pd.to_datetime(
                part[~has], format="ISO8601", errors="coerce"
            ).astype("datetime64[us]")
    return naive, aware, is_aware


def _parse_time(
    rows: _Rows, name: str, *, fmt: str | None, tz: str, series_keys: list[str]
) -> None:
    """Text, naive or aware datetimes to UTC (datetime64[ns, UTC]). Naive values are local
    times of ``tz`` (:func:`_localize`); values with an offset are taken as they are."""
    s = rows.frame[name]
    n = len(s)
    txt = None
    naive = None  # local times
    aware = None  # times with an offset
    is_aware = np.zeros(n, dtype=bool)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        aware, is_aware = s, np.ones(n, dtype=bool)
    elif pd.api.types.is_datetime64_dtype(s):
        naive = s
    elif not fmt and (naive := _iso_cast(s)) is not None:
        pass  # every value a naive ISO 8601 time: no trimming, no other layout to try
    else:
        txt = _as_str(s)
        if fmt and ("%z" in fmt or "%Z" in fmt):
            aware = pd.to_datetime(txt, format=fmt, errors="coerce", utc=True)
            is_aware = np.ones(n, dtype=bool)
        elif fmt:
            naive = _strptime(txt, [fmt], fallback=fmt)
        else:
            naive, aware, is_aware = _parse_iso(txt)
    shown = txt if txt is not None else s
    out = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)  # UTC ns, NaT
    oob = np.zeros(n, dtype=bool)
    if is_aware.any():
        a, oob[is_aware] = _to_ns(aware if is_aware.all() else aware[is_aware])
        out[is_aware] = a.to_numpy().view(np.int64)
    local = ~is_aware
    if local.any():
        t, oob[local] = _to_ns(naive if local.all() else naive[local])
        out[local] = _localize(rows, t, np.flatnonzero(local), tz, series_keys)
    utc = pd.Series(pd.DatetimeIndex(out.view("datetime64[ns]")).tz_localize("UTC"), index=s.index)
    rows.flag(oob, f"{name}: time out of range (expected a year from 1678 to 2261)", shown)
    failed = (utc.isna() & s.notna()).to_numpy() & ~oob
    if txt is not None:
        failed &= txt.notna().to_numpy()
    hint = (
        f"expected {fmt}"
        if fmt
        else "expected ISO 8601 such as 2026-11-15T14:00; set time_format in sources.yaml otherwise"
    )
    rows.flag(failed, f"{name}: unparseable time ({hint})", shown)
    rows.frame[name] = utc


def _localize(
    rows: _Rows, t: pd.Series, pos: np.ndarray, tz: str, series_keys: list[str]
) -> np.ndarray:
    """Naive local times (``t``, datetime64[ns], at frame positions ``pos``) to UTC nanoseconds
    (int64, NaT's integer where missing) under the DST rule of the module docstring. Rows away
    from an offset change take their day's offset (integer arithmetic); only rows within a day
    of a change go through pandas' tz_localize."""
    raw = t.to_numpy().view(np.int64)
    nat = np.iinfo(np.int64).min
    valid = raw != nat
    if valid.all():
        off, near = _day_offsets(raw, tz)
        out = raw + off  # rows near a change (offset 0 here) are replaced below
    else:
        out = np.full(len(t), nat, dtype=np.int64)
        near = np.zeros(len(t), dtype=bool)
        if valid.any():
            off, near[valid] = _day_offsets(raw[valid], tz)
            out[valid] = raw[valid] + off
    if near.any():
        tn = t[near]
        strict = tn.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        gap = tn.dt.tz_localize(tz, ambiguous=np.ones(len(tn), dtype=bool), nonexistent="NaT")
        nonexistent = (gap.isna() & tn.notna()).to_numpy()
        ambiguous = (strict.isna() & tn.notna()).to_numpy() & ~nonexistent
        is_dst = np.ones(len(tn), dtype=bool)
        if ambiguous.any():
            at = pos[np.flatnonzero(near)[ambiguous]]
            sub = (
                rows.frame.iloc[at][series_keys].reset_index(drop=True)
                if series_keys
                else pd.DataFrame(index=range(len(at)))
            )
            sub["__t"] = tn[ambiguous].to_numpy()
            rank = sub.groupby(list(sub.columns), sort=False, dropna=False).cumcount().to_numpy()
            is_dst[ambiguous] = rank == 0
            rows.dst["ambiguous_first"] += int((rank == 0).sum())
            rows.dst["ambiguous_second"] += int((rank >= 1).sum())
        rows.dst["nonexistent_shifted"] += int(nonexistent.sum())
        loc = tn.dt.tz_localize(tz, ambiguous=is_dst, nonexistent=pd.Timedelta(hours=1))
        out[near] = loc.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().view(np.int64)
    return out


def _parse(rows: _Rows, spec: SourceSpec, tz: str) -> None:
    cols = schemas.columns(rows.source)
    for name in list(rows.frame.columns):
        if name in (ROW, FILE, "geometry"):
            continue
        if name in ("x", "y"):
            _parse_float(rows, name)
            continue
        c = cols[name]
        if c.kind == "float":
            _parse_float(rows, name)
        elif c.kind == "int":
            _parse_int(rows, name)
        elif c.kind == "bool":
            _parse_bool(rows, name)
        elif c.kind == "str":
            _parse_str(rows, name)
    for name in rows.frame.columns:
        if name in cols and cols[name].kind == "time":
            _parse_time(
                rows,
                name,
                fmt=spec.time_format,
                tz=spec.timezone or tz,
                series_keys=[
                    k for k in schemas.SERIES_KEYS.get(rows.source, []) if k in rows.frame.columns
                ],
            )


def _validate(rows: _Rows) -> None:
    """pandera, lazily: nullability of required columns and value ranges."""
    import pandera.errors as pe

    present = [c for c in rows.frame.columns if c not in (ROW, FILE)]
    schema = schemas.pandera_schema(rows.source, present)
    frame = rows.frame.drop(columns=[c for c in ("geometry",) if c in rows.frame.columns])
    try:
        schema.validate(pd.DataFrame(frame), lazy=True)
    except pe.SchemaErrors as exc:
        fc = exc.failure_cases
        fc = fc[fc["index"].notna()]
        for (column, check), grp in fc.groupby(["column", "check"], sort=True):
            idx = grp["index"].astype(int).to_numpy()
            mask = np.zeros(len(rows.frame), dtype=bool)
            mask[idx] = True
            if check == "not_nullable":
                # a value that failed to parse was already flagged with a better reason
                own = np.zeros(len(rows.frame), dtype=bool)
                for code, m in rows.codes.items():
                    if code.startswith(f"{column}:"):
                        own |= m
                mask &= ~own
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
    bad = sm.isna() | (sm < 15) | (sm > 1440) | ((1440 % sm.fillna(1)) != 0)
    rows.flag(
        bad.to_numpy() & f["start"].notna().to_numpy(),
        "slot_minutes: must divide a day, 15 to 1440 minutes",
        sm,
    )
    f["slot_minutes"] = sm.fillna(60).astype("int32")


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


# ---------------------------------------------------------------------------------------------
# locations and zones


def _project_xy(rows: _Rows, crs: str) -> None:
    from pyproj import CRS, Transformer

    try:
        src = CRS.from_user_input(crs)
    except Exception as exc:
        raise InputError(f"{rows.source}: unknown crs {crs!r} ({exc}).", column="x") from None
    tr = Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    f = rows.frame
    ok = f["x"].notna() & f["y"].notna()
    lon, lat = tr.transform(f.loc[ok, "x"].to_numpy(), f.loc[ok, "y"].to_numpy())
    for name, vals in (("latitude", lat), ("longitude", lon)):
        if name not in f.columns:
            f[name] = np.nan
        f.loc[ok, name] = np.where(f.loc[ok, name].isna(), vals, f.loc[ok, name])
    bad = ok & ~(np.isfinite(f["latitude"]) & np.isfinite(f["longitude"]))
    rows.flag(bad.to_numpy(), f"x/y: cannot be projected from {crs}")
    # x and y stay in the frame (they are not stored): a row quarantined later (outside every
    # zone, a duplicate) still shows its coordinates as read


def _zones_from_file(rows: _Rows) -> None:
    import geopandas as gpd
    from shapely.validation import make_valid

    g: gpd.GeoDataFrame = rows.frame
    if g.crs is None:
        b = g.total_bounds if len(g) else np.zeros(4)
        if np.all(np.abs(b[[0, 2]]) <= 180) and np.all(np.abs(b[[1, 3]]) <= 90):
            g = g.set_crs(4326)
            rows.warnings.append(
                "zones file has no CRS: coordinates look like WGS84 longitude/latitude, read as EPSG:4326"
            )
        else:
            raise InputError(
                "zones: the zones file has no CRS and its coordinates are not longitude/latitude; give it a CRS (e.g. save it with EPSG:2154).",
                column="geometry",
            )
    g = g.to_crs(4326)
    empty = (g.geometry.isna() | g.geometry.is_empty).to_numpy()
    rows.flag(empty, "geometry: missing or empty")
    gtype = g.geometry.geom_type.fillna("").to_numpy()
    notpoly = ~np.isin(gtype, ["Polygon", "MultiPolygon"]) & ~empty
    rows.flag(notpoly, "geometry: not a polygon", pd.Series(gtype))
    invalid = (~g.geometry.is_valid).to_numpy() & ~empty & ~notpoly
    if invalid.any():
        g.loc[invalid, "geometry"] = g.geometry[invalid].apply(make_valid)
        rows.warnings.append(
            f"{int(invalid.sum())} invalid polygons repaired with shapely make_valid"
        )
    rows.frame = g


def _assign(rows: _Rows, zones, zone_kind: str, h3_res: int) -> None:
    from features.zones import assign_codes, h3_cells

    f = rows.frame
    n = len(f)
    lat_col, lon_col = (
        ("stop_lat", "stop_lon") if rows.source == "stops" else ("latitude", "longitude")
    )
    has_pt = lat_col in f.columns and lon_col in f.columns
    zid = zones["zone_id"].astype(str).to_numpy()
    codes = np.full(n, -1, dtype=np.int64)
    if "zone_id" in f.columns:
        given = f["zone_id"]
        gcodes = pd.Categorical(given, categories=pd.Index(zid)).codes.astype(np.int64)
        codes = gcodes
        unknown = given.notna().to_numpy() & (gcodes < 0)
        sel = np.flatnonzero(unknown)
        rows.flag(unknown, "zone_id: unknown zone", given.iloc[sel])
    if has_pt:
        pt = (f[lat_col].notna() & f[lon_col].notna()).to_numpy() & (codes < 0)
        if rows.codes.get("zone_id: unknown zone") is not None:
            pt &= ~rows.codes["zone_id: unknown zone"]
        if pt.any():
            every = bool(pt.all())  # the usual case: no copies of the coordinates
            lat = f[lat_col].to_numpy(dtype=float)
            lon = f[lon_col].to_numpy(dtype=float)
            if not every:
                lat, lon = lat[pt], lon[pt]
            if zone_kind == "h3":
                cells = h3_cells(lat, lon, h3_res)
                z = pd.Categorical(cells, categories=pd.Index(zid)).codes.astype(np.int64)
            elif rows.zone_codes is not None:  # computed while the file was parsed
                z = _codes(rows.zone_codes)
                z = z if every else z[pt]
            else:
                z = assign_codes(lat, lon, zones)
            if every:
                codes = z
            else:
                codes[pt] = z
            outside = pt & (codes < 0)
            sel = np.flatnonzero(outside)
            rows.flag(
                outside,
                "outside every zone",
                f[lat_col].iloc[sel].astype(str) + "," + f[lon_col].iloc[sel].astype(str),
            )
    zone = _take_ids(zid, codes, f.index)
    f["zone_id"] = zone
    if rows.source != "lighting_faults":
        noloc = (codes < 0) & ~rows.bad
        rows.flag(noloc, "no location (neither coordinates nor zone_id)")
    # a zone_id without a point: place it at the zone's centroid (events, lamps) for maps and radii
    if rows.source in {"events", "lamps"}:
        from features.zones import centroids

        if not has_pt:
            f[lat_col] = np.nan
            f[lon_col] = np.nan
        cen = centroids(zones).set_index("zone_id")
        need = f[lat_col].isna() & zone.notna() & zone.isin(cen.index)
        if need.any():
            f.loc[need, lat_col] = cen.loc[zone[need], "latitude"].to_numpy()
            f.loc[need, lon_col] = cen.loc[zone[need], "longitude"].to_numpy()


def _take_ids(ids: np.ndarray, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """``ids[codes]`` as Arrow-backed text, missing where the code is -1 (a take in C, not a
    per-row Python string)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    taken = pc.take(
        pa.array([str(i) for i in ids], type=pa.string()), pa.array(codes, mask=codes < 0)
    )
    return pd.Series(pd.array(taken, dtype=pd.StringDtype("pyarrow")), index=index)


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
    import pyarrow as pa

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


# ---------------------------------------------------------------------------------------------
# the driver


#: sources whose points keep, from reading to _assign, the coordinates they were read with
_POINTS = {
    "incidents": ("latitude", "longitude"),
    "events": ("latitude", "longitude"),
    "lamps": ("latitude", "longitude"),
    "stops": ("stop_lat", "stop_lon"),
}


def _codes(z) -> np.ndarray:
    return z.result() if hasattr(z, "result") else z


def _load_file(name: str, spec: SourceSpec, path: str, tz: str, *, pool=None, zones=None) -> _Rows:
    """Read, map, parse and validate one file of a source; only flagged rows keep their raw text.
    With a ``pool`` and polygon ``zones``, points read as numbers are placed in zones in the
    pool while the main thread parses the other columns."""
    frame, info, mapping, ignored = _read_file(name, spec, path)
    ahead = None
    cols = _POINTS.get(name)
    if pool is not None and zones is not None and cols and all(c in frame for c in cols):
        if all(pd.api.types.is_float_dtype(frame[c]) for c in cols):
            from features.zones import assign_codes

            lat, lon = (frame[c].to_numpy() for c in cols)
            ahead = pool.submit(assign_codes, lat, lon, zones)
    # the columns as read, kept by reference (parsing replaces the frame's columns, not these)
    # until the rows to quarantine are known: only theirs are copied
    as_read = {c: frame[c] for c in frame.columns if c not in (ROW, FILE, "geometry")}
    rows = _Rows(name, frame, [info], ignored, mapping, pd.DataFrame())
    rows.zone_codes = ahead
    if len(frame) == 0:
        rows.warnings.append(f"{Path(path).name}: no data rows (header only)")
    _parse(rows, spec, tz)
    if "x" in rows.frame.columns:
        _project_xy(rows, spec.crs)
    if name == "zones":
        _zones_from_file(rows)
    if (
        name in {"presence", "presence_origin", "ridership", "weather"}
        and "start" in rows.frame.columns
    ):
        _check_slots(rows, spec)
    _validate(rows)
    f = rows.frame
    if name == "lighting_faults" and "repaired_at" in f.columns:
        rows.flag(
            (
                f["repaired_at"].notna()
                & f["reported_at"].notna()
                & (f["repaired_at"] < f["reported_at"])
            ).to_numpy(),
            "repaired_at before reported_at",
        )
    if name == "events":
        rows.flag(
            (f["end"].notna() & f["start"].notna() & (f["end"] <= f["start"])).to_numpy(),
            "end not after start",
        )
    bad = np.flatnonzero(rows.bad)
    rows.raw = pd.DataFrame(
        {c: v.iloc[bad].astype("string") for c, v in as_read.items()}, index=bad
    )
    return rows


def _load_source(
    name: str, spec: SourceSpec, files: list[str], tz: str, *, pool=None, zones=None
) -> _Rows:
    """Every file of a source, parsed one at a time and stacked."""
    parts = [_load_file(name, spec, path, tz, pool=pool, zones=zones) for path in files]
    if len(parts) == 1:
        return parts[0]
    sizes = [len(p.frame) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if name == "zones":
        import geopandas as gpd

        frame = gpd.GeoDataFrame(pd.concat([p.frame for p in parts], ignore_index=True), crs=4326)
    else:
        frame = pd.concat([p.frame.drop(columns=[FILE]) for p in parts], ignore_index=True)
        frame[FILE] = pd.api.types.union_categoricals([p.frame[FILE].array for p in parts])
    raw = pd.concat([p.raw.set_axis(p.raw.index + off) for p, off in zip(parts, offsets)])
    mapping: dict[str, str] = {}
    for p in parts:
        mapping.update(p.mapped)
    ignored = sorted({c for p in parts for c in p.ignored})
    out = _Rows(name, frame, [i for p in parts for i in p.files], ignored, mapping, raw)
    for code in dict.fromkeys(c for p in parts for c in p.codes):
        out.codes[code] = np.concatenate(
            [p.codes.get(code, np.zeros(len(p.frame), dtype=bool)) for p in parts]
        )
        dets = [
            p.details[code].set_axis(p.details[code].index + off)
            for p, off in zip(parts, offsets)
            if code in p.details
        ]
        if dets:
            out.details[code] = pd.concat(dets)
    for key in out.dst:
        out.dst[key] = sum(p.dst.get(key, 0) for p in parts)
    if all(p.zone_codes is not None for p in parts):
        out.zone_codes = np.concatenate([_codes(p.zone_codes) for p in parts])
    out.warnings = list(dict.fromkeys(w for p in parts for w in p.warnings))
    return out


def _fingerprint(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rel(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base))
    except ValueError:
        return str(path)


def ingest(
    sources_yaml: str | Path, store: str | Path | Store, *, force: bool = False
) -> IngestResult:
    """Validate and load every source of a study into a store.

    Parameters
    ----------
    sources_yaml
        The study's sources.yaml.
    store
        The store folder (created when missing).
    force
        Re-read every source even when its files, mapping and dependencies are unchanged.

    Returns
    -------
    IngestResult

    Raises
    ------
    ConfigError, InputError
        When a file or the sources.yaml cannot be used at all.
    """
    study = load_study(sources_yaml)
    st = store if isinstance(store, Store) else Store(store)
    st.root.mkdir(parents=True, exist_ok=True)
    base = study.base_dir
    specs = study.sources()
    if not specs:
        raise InputError(
            f"{sources_yaml}: the study lists no source; expected at least one of {', '.join(SOURCE_NAMES)}.",
            file=str(sources_yaml),
        )

    previous = {}
    rp = st.root / "ingest_report.json"
    if rp.exists() and not force:
        try:
            previous = json.loads(rp.read_text()).get("sources", {})
        except json.JSONDecodeError:
            previous = {}

    # every input file is hashed in a background thread (hashlib runs without the GIL): the
    # hashes are waited for at once only to compare with a previous ingest; on a first ingest,
    # or with force, the files are read and parsed meanwhile
    from features.readers import sha256

    files_of = {name: expand(spec.paths(base), name) for name, spec in specs.items()}
    hasher = ThreadPoolExecutor(max_workers=1)
    digests = {}
    for files in files_of.values():
        for path in files:
            if path not in digests:
                digests[path] = hasher.submit(sha256, path)
    try:
        return _ingest(study, st, specs, files_of, digests, previous)
    finally:
        hasher.shutdown(wait=False, cancel_futures=True)


def _ingest(study, st: Store, specs, files_of, digests, previous) -> IngestResult:
    base = study.base_dir
    tz = study.area.timezone
    zone_kind = "polygons" if "zones" in specs else "h3"
    file_hashes: dict[str, list[dict[str, str]]] = {}

    def fingerprints() -> dict[str, str]:
        """own files + spec + area; plus what each source depends on"""
        own: dict[str, str] = {}
        for name, spec in specs.items():
            file_hashes[name] = [
                {"path": _rel(p, base), "sha256": digests[p].result()} for p in files_of[name]
            ]
            own[name] = _fingerprint(
                [
                    INGEST_VERSION,
                    name,
                    spec.model_dump(),
                    file_hashes[name],
                    study.area.model_dump(),
                ]
            )
        zones_fp = _fingerprint(sorted(own.items())) if zone_kind == "h3" else own["zones"]
        deps = {
            "zones": [zones_fp],
            "presence": [own.get("presence"), zones_fp],
            "presence_origin": [own.get("presence_origin"), zones_fp],
            "incidents": [own.get("incidents"), zones_fp],
            "lamps": [own.get("lamps"), zones_fp],
            "lighting_faults": [own.get("lighting_faults"), own.get("lamps"), zones_fp],
            "stops": [own.get("stops"), zones_fp],
            "ridership": [own.get("ridership"), own.get("stops"), zones_fp],
            "events": [own.get("events"), zones_fp],
            "weather": [own.get("weather")],
        }
        out = {name: _fingerprint(deps[name]) for name in specs}
        if zone_kind == "h3":
            out["zones"] = zones_fp
        return out

    fps = fingerprints() if previous else None

    def unchanged(name: str) -> bool:
        prev = previous.get(name)
        return (
            bool(prev) and prev.get("fingerprint") == fps[name] and st.validated_path(name).exists()
        )

    todo = [
        n
        for n in SOURCE_NAMES
        if (n in specs or (n == "zones" and zone_kind == "h3")) and not unchanged(n)
    ]
    results: dict[str, SourceResult] = {}
    parsed: dict[str, _Rows] = {}

    # 1. read + parse every source that changed, file by file (memory: one file's text at a
    # time). Two helper threads: with polygon zones, one places a file's points in zones while
    # its other columns are parsed (one file at a time: the zones' prepared geometries are used
    # by one thread only); the other searches a loaded source for repeated keys while the next
    # is read (lighting faults may get generated ids in _locate: they are checked after).
    h3_res = study.area.h3_resolution
    zones = None
    early: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=1) as pool, ThreadPoolExecutor(max_workers=1) as zoner:
        for name in SOURCE_NAMES:
            if name not in specs or name not in todo:
                continue
            if zones is None and zone_kind == "polygons" and name != "zones":
                zones = _polygon_zones(parsed, st)
            log.info("reading %s", name)
            parsed[name] = _load_source(
                name, specs[name], files_of[name], tz, pool=zoner, zones=zones
            )
            if name not in ("zones", "lighting_faults"):
                early[name] = _duplicates_early(parsed[name], pool)

        # 2. zones (file, or H3 cells over the data)
        if zones is None:
            if zone_kind == "polygons":
                zones = _polygon_zones(parsed, st)
            elif "zones" in todo or any(n in todo for n in specs):
                zones = _h3_zones_from(parsed, h3_res, st)
            else:
                zones = st.zones()

        # 3. locate and check references; then the repeated keys
        _locate(parsed, zones, zone_kind, h3_res, st)
        for name, rows in parsed.items():
            if name != "zones":
                _duplicates(rows, early.get(name))

    # 4. write
    if fps is None:
        fps = fingerprints()
    for rows in parsed.values():
        for info in rows.files:
            info.sha256 = digests[info.path].result()
    st.validated_dir.mkdir(parents=True, exist_ok=True)
    st.quarantine_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in parsed.items():
        results[name] = _write(st, rows, base, fps[name])
    if zone_kind == "h3" and "zones" in todo:
        _write_h3_zones(st, zones)
        results["zones"] = SourceResult(
            "zones",
            len(zones),
            len(zones),
            0,
            {},
            [],
            [],
            {},
            warnings=[f"no zones file: {len(zones)} H3 cells at resolution {h3_res} over the data"],
            fingerprint=fps["zones"],
        )
    for name in list(specs) + (["zones"] if zone_kind == "h3" else []):
        if name not in results:
            prev = dict(previous[name])
            results[name] = SourceResult(
                name,
                prev["rows_read"],
                prev["rows_kept"],
                prev["rows_quarantined"],
                prev["reasons"],
                prev["files"],
                prev["ignored_columns"],
                prev["columns_mapped"],
                prev.get("dst", {}),
                prev.get("warnings", []),
                "unchanged",
                prev["fingerprint"],
            )
    # sources dropped from the study leave the store
    for name in SOURCE_NAMES:
        if name not in results:
            for p in (st.validated_path(name), st.quarantine_dir / f"{name}.csv"):
                if p.exists():
                    p.unlink()

    study_json = {
        "area": study.area.model_dump(),
        "suppression_k": study.suppression_k,
        "zones_kind": zone_kind,
        "sources": {n: {"files": file_hashes.get(n, [])} for n in results},
    }
    if study_json["area"].get("country") is None:
        from features.config import default_country

        study_json["area"]["country"] = default_country(tz)
    if study_json["area"].get("school_zone") is None and study_json["area"]["country"] == "FR":
        study_json["area"]["school_zone"] = "C" if tz == "Europe/Paris" else None
    st.write_json("study.json", study_json)
    report = {
        "study": study.area.name,
        "timezone": tz,
        "reconciled": all(
            r.rows_read == r.rows_kept + r.rows_quarantined for r in results.values()
        ),
        "sources": {n: results[n].as_dict() for n in SOURCE_NAMES if n in results},
    }
    path = st.write_json("ingest_report.json", report)
    return IngestResult(
        store=st, sources={n: results[n] for n in SOURCE_NAMES if n in results}, report_path=path
    )


def _polygon_zones(parsed: dict[str, _Rows], st: Store):
    """The zones of this run's zones file (its repeated ids quarantined), or of the store."""
    if "zones" in parsed:
        zr = parsed["zones"]
        _duplicates(zr)
        return zr.frame.loc[~zr.bad, ["zone_id", "geometry"]].reset_index(drop=True)
    return st.zones()


def _kept(parsed: dict[str, _Rows], st: Store, name: str) -> pd.DataFrame | None:
    """A source's rows kept so far: this run's, or the store's when the source did not change."""
    if name in parsed:
        return parsed[name].frame.loc[~parsed[name].bad]
    return st.validated(name)


def _locate(parsed: dict[str, _Rows], zones, zone_kind: str, h3_res: int, st: Store) -> None:
    """Zones for every located source; lamps for lighting faults and stops for ridership (from
    this run, or from the store when unchanged)."""
    for rows in parsed.values():  # every look-ahead done before the zones are used here
        if rows.zone_codes is not None:
            rows.zone_codes = _codes(rows.zone_codes)
    for name in ("presence", "presence_origin", "incidents", "lamps", "stops", "events"):
        if name in parsed:
            _assign(parsed[name], zones, zone_kind, h3_res)
    if "lighting_faults" in parsed:
        r = parsed["lighting_faults"]
        lamps = _kept(parsed, st, "lamps")
        if lamps is not None and "lamp_id" in r.frame.columns:
            lamps_zone = lamps.drop_duplicates("lamp_id").set_index("lamp_id")
            known = r.frame["lamp_id"].isin(lamps_zone.index)
            f = r.frame
            if "zone_id" not in f.columns:
                f["zone_id"] = None
            for c in ("latitude", "longitude"):
                if c not in f.columns:
                    f[c] = np.nan
            f.loc[known, "zone_id"] = lamps_zone.loc[f.loc[known, "lamp_id"], "zone_id"].to_numpy()
            f.loc[known & f["latitude"].isna(), "latitude"] = lamps_zone.loc[
                f.loc[known & f["latitude"].isna(), "lamp_id"], "latitude"
            ].to_numpy()
            f.loc[known & f["longitude"].isna(), "longitude"] = lamps_zone.loc[
                f.loc[known & f["longitude"].isna(), "lamp_id"], "longitude"
            ].to_numpy()
            has_loc = f["latitude"].notna() & f["longitude"].notna()
            r.flag(
                (f["lamp_id"].notna() & ~known & ~has_loc).to_numpy(),
                "lamp_id: unknown lamp",
                f["lamp_id"],
            )
        _assign(r, zones, zone_kind, h3_res)
        f = r.frame
        r.flag(
            (f["zone_id"].isna() & ~pd.Series(r.bad, index=f.index)).to_numpy(),
            "no location (neither a known lamp_id nor coordinates)",
        )
        if "fault_id" not in f.columns or f["fault_id"].isna().any():
            gen = f[FILE].astype(str) + ":" + f[ROW].astype(str)
            f["fault_id"] = (
                f["fault_id"].where(f["fault_id"].notna(), gen) if "fault_id" in f.columns else gen
            )
    if "ridership" in parsed:
        r = parsed["ridership"]
        stops = _kept(parsed, st, "stops")
        if stops is None:
            r.flag(
                np.ones(len(r.frame), dtype=bool),
                "no stops source: cannot place the stop in a zone",
            )
            r.frame["zone_id"] = None
        else:
            sz = stops.drop_duplicates("stop_id").set_index("stop_id")["zone_id"]
            known = r.frame["stop_id"].isin(sz.index)
            r.flag(
                (r.frame["stop_id"].notna() & ~known).to_numpy(),
                "stop_id: unknown stop",
                r.frame["stop_id"],
            )
            r.frame["zone_id"] = r.frame["stop_id"].map(sz).astype(object)


def _h3_zones_from(parsed: dict[str, _Rows], res: int, st: Store):
    import h3

    from features.zones import h3_cells, h3_zones

    cells: set[str] = set()
    for name, rows in parsed.items():
        f = rows.frame
        ok = ~rows.bad
        lat_col, lon_col = (
            ("stop_lat", "stop_lon") if name == "stops" else ("latitude", "longitude")
        )
        if lat_col in f.columns and lon_col in f.columns:
            m = ok & f[lat_col].notna().to_numpy() & f[lon_col].notna().to_numpy()
            cells |= set(h3_cells(f.loc[m, lat_col].to_numpy(), f.loc[m, lon_col].to_numpy(), res))
        if "zone_id" in f.columns:
            z = f.loc[ok & f["zone_id"].notna().to_numpy(), "zone_id"].astype(str).unique()
            valid = [c for c in z if h3.is_valid_cell(c)]
            cells |= set(valid)
    if not cells:
        raise InputError(
            "no zones file and no coordinates to make H3 cells from; give a zones source or point coordinates."
        )
    return h3_zones(cells)


def _write_h3_zones(st: Store, zones) -> None:
    g = zones.copy()
    g["name"] = None
    g["population"] = np.nan
    g = g[["zone_id", "name", "population", "geometry"]]
    _atomic_parquet(g, st.validated_path("zones"))
    q = st.quarantine_dir / "zones.csv"
    if not q.exists():
        pd.DataFrame(columns=["file", "row", "reason"]).to_csv(q, index=False)


def _dictionary_columns(table, unique: str | None, *, sample: int = 10_000) -> list[str]:
    """The columns worth dictionary-encoding in Parquet: all but the near-unique ones (more than
    nine values in ten all different in an evenly spread sample: ids, times of incidents,
    coordinates). On those Arrow's writer builds a dictionary until it outgrows its page and then
    gives up, which costs a third of the writing time for nothing; counts and slot times, which
    repeat over millions of rows, keep their dictionary (it halves their size)."""
    import pyarrow.compute as pc

    n = table.num_rows
    if n <= sample:
        return [c for c in table.column_names if c != unique]
    at = np.linspace(0, n - 1, sample).astype(np.int64)
    out = []
    for c in table.column_names:
        if c == unique:
            continue
        if pc.count_distinct(table.column(c).take(at)).as_py() <= 0.9 * sample:
            out.append(c)
    return out


def _atomic_parquet(df: pd.DataFrame, path: Path, *, unique: str | None = None) -> None:
    """Write ``df`` to ``path`` through a temporary file (a reader never sees half a file); the
    file is left untouched when the bytes are the same. ``unique`` names a column whose values
    are all different (the source's key): it is not dictionary-encoded, which could only fail."""
    tmp = path.with_suffix(".parquet.tmp")
    if hasattr(df, "geometry"):
        df.to_parquet(tmp, index=False)  # GeoParquet
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp, use_dictionary=_dictionary_columns(table, unique))
    if path.exists() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
        return
    tmp.replace(path)


def _write(st: Store, rows: _Rows, base: Path, fp: str) -> SourceResult:
    name = rows.source
    f = rows.frame
    bad = rows.bad
    reasons = rows.reasons()
    # quarantine: the mapped columns as read, with the file, row and reason
    bad_idx = np.flatnonzero(bad)
    q = pd.DataFrame(
        {
            "file": f[FILE].iloc[bad_idx].to_numpy(),
            "row": f[ROW].iloc[bad_idx].to_numpy(),
            "reason": reasons.to_numpy(),
        }
    )
    # values as read for rows flagged while parsing; the parsed value for rows flagged later
    for c in rows.raw.columns:
        if len(bad_idx) == 0:
            q[c] = pd.Series([], dtype="string")  # the header still names the columns
            continue
        parsed = f[c].iloc[bad_idx] if c in f.columns else pd.Series(pd.NA, index=bad_idx)
        shown = parsed.astype("string").set_axis(bad_idx)
        as_read = rows.raw[c].reindex(bad_idx)
        q[c] = as_read.where(as_read.index.isin(rows.raw.index), shown).to_numpy()
    qpath = st.quarantine_dir / f"{name}.csv"
    tmpq = qpath.with_suffix(".csv.tmp")
    q.to_csv(tmpq, index=False)
    tmpq.replace(qpath)
    kept = f.loc[~bad] if bad.any() else f
    cols = [c for c in schemas.STORED[name] if c in kept.columns]
    # required stored columns that the file did not give are added empty, so readers see one shape
    for c in ("zone_id",) if name in schemas.LOCATED or name in {"stops", "ridership"} else ():
        if c not in cols:
            kept[c] = None
            cols.append(c)
    kept = kept[cols].reset_index(drop=True)
    if name == "zones":
        import geopandas as gpd

        kept["zone_id"] = kept["zone_id"].astype(str)
        if "name" not in kept.columns:
            kept["name"] = None
        if "population" not in kept.columns:
            kept["population"] = np.nan
        kept = gpd.GeoDataFrame(
            kept[["zone_id", "name", "population", "geometry"]], geometry="geometry", crs=4326
        )
        _atomic_parquet(kept, st.validated_path(name))
    else:
        for c in kept.columns:
            if (
                c.endswith("_id")
                or c in {"category", "name", "origin", "source", "priority", "stop_name"}
            ) and not pd.api.types.is_string_dtype(kept[c]):
                kept[c] = kept[c].astype("string")
        # rows stay in file order (deterministic: files are read in sorted order)
        key = schemas.KEYS[name]
        _atomic_parquet(
            kept.reset_index(drop=True),
            st.validated_path(name),
            unique=key[0] if len(key) == 1 else None,
        )
    counts: dict[str, int] = {code: int(m.sum()) for code, m in rows.codes.items()}
    files = [
        {
            "path": _rel(i.path, base),
            "sha256": i.sha256,
            "rows": i.rows,
            "encoding": i.encoding,
            "delimiter": i.delimiter,
        }
        for i in rows.files
    ]
    return SourceResult(
        name,
        len(f),
        int((~bad).sum()),
        int(bad.sum()),
        counts,
        files,
        rows.ignored,
        rows.mapped,
        rows.dst if any(rows.dst.values()) else {},
        rows.warnings,
        "ingested",
        fp,
    )


def summary_lines(result: IngestResult) -> list[str]:
    """Human-readable lines for the CLI."""
    lines = []
    for name, r in result.sources.items():
        extra = f", {r.rows_quarantined} quarantined" if r.rows_quarantined else ""
        status = " (unchanged)" if r.status == "unchanged" else ""
        lines.append(
            f"{name:16s} {r.rows_read:>10,d} read, {r.rows_kept:>10,d} kept{extra}{status}"
        )
        for code, n in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"{'':16s}   {n:>8,d} × {code}")
        if r.ignored_columns:
            lines.append(
                f"{'':16s}   left out: {', '.join(r.ignored_columns[:8])}{'…' if len(r.ignored_columns) > 8 else ''}"
            )
    return lines
