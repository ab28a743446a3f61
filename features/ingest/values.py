"""Parsing values: numbers (a decimal comma accepted), whole numbers, yes/no values and text.

Each parser replaces a column of a :class:`~features.ingest.rows._Rows` by its parsed values and
flags the rows whose value it cannot read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.ingest.rows import _Rows

_TRUE = {"true", "t", "1", "yes", "y", "oui", "o", "vrai", "v"}
_FALSE = {"false", "f", "0", "no", "n", "non", "faux"}


def _as_str(s: pd.Series) -> pd.Series:
    """Text without surrounding spaces; Arrow-backed text is trimmed in place of a copy."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        return s.str.strip()
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return s.astype("string").str.strip()
    return s.astype("string")


#: the largest magnitude a whole number may have (floats hold every integer up to 2**53)
_MAX_INT = float(2**53)


def _parse_float(rows: _Rows, name: str) -> None:
    s = rows.frame[name]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        rows.frame[name] = s.astype(float)
        _flag_infinite(rows, name, None)
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
    _flag_infinite(rows, name, txt)


def _flag_infinite(rows: _Rows, name: str, txt: pd.Series | None) -> None:
    """Quarantine infinite values ("inf", 1e999) and make them missing: no sum, mean or ratio
    downstream may become infinite. ``txt`` is the column as read (None: the values as read
    were numbers, shown as such)."""
    v = rows.frame[name].to_numpy(dtype=float, na_value=np.nan)
    inf = np.isinf(v)
    if inf.any():
        if txt is None:
            txt = pd.Series(v[inf].astype(str), index=np.flatnonzero(inf))
        rows.flag(inf, f"{name}: not a finite number", txt)
        rows.frame[name] = rows.frame[name].where(~inf)


def _parse_int(rows: _Rows, name: str) -> None:
    s = rows.frame[name]
    if pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s):
        # whole numbers read as such (Parquet, JSON): no round trip through floats when none
        # is above 2**53 (the general path below flags those)
        lo, hi = (s.min(), s.max()) if s.notna().any() else (0, 0)
        if -_MAX_INT <= float(lo) and float(hi) <= _MAX_INT:
            rows.frame[name] = s.astype("Int64")
            return
    _parse_float(rows, name)
    v = rows.frame[name]
    frac = v.notna() & ((v != np.round(v)) | (v.abs() > _MAX_INT))
    rows.flag(frac.to_numpy(), f"{name}: not a whole number", v)
    rows.frame[name] = v.where(~frac).round().astype("Int64")


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
    """Text, trimmed, a blank made missing. A byte-order mark (U+FEFF, invisible) is removed
    wherever it sits, so "\ufeffA" and "A" are one id; a value holding a NUL byte is
    quarantined (no id or name carries one into the store, a file name or a report)."""
    s = rows.frame[name]
    if pd.api.types.is_float_dtype(s):
        # ids read from Parquet/JSON as numbers: 12.0 -> "12"
        txt = s.map(
            lambda v: (
                None
                if pd.isna(v)
                else (str(int(v)) if np.isfinite(v) and float(v).is_integer() else str(v))
            )
        )
        rows.frame[name] = txt.astype(object)
        return
    if _clean_repeated_text(s):
        rows.frame[name] = s  # nothing to trim, remove or quarantine: the column as read
        return
    txt = _as_str(s)
    if txt.str.contains("\ufeff", regex=False).any():
        txt = txt.str.replace("\ufeff", "", regex=False).str.strip()
    nul = txt.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
    if nul.any():
        rows.flag(nul, f"{name}: holds a NUL byte", txt.str.replace("\x00", "\\0", regex=False))
        txt = txt.where(~nul)
    rows.frame[name] = txt.where(txt != "", pd.NA)


def _clean_repeated_text(s: pd.Series) -> bool:
    """Whether ``s``, Arrow-backed text with few distinct values (zone ids over millions of
    time slots), needs none of :func:`_parse_str`'s work: every distinct value already trimmed,
    not blank, without a byte-order mark or a NUL byte. Decided on the distinct values (one
    hash pass) rather than on every row; False sends the column through the general path."""
    arr = getattr(s.array, "_pa_array", None)
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return False
    d = _few_values(arr)
    if d is None:
        return False
    d = d.drop_null()
    return len(d) == 0 or bool(
        pc.all(pc.equal(pc.utf8_trim_whitespace(d), d)).as_py()
        and not pc.any(pc.equal(d, "")).as_py()
        and not pc.any(pc.match_substring(d, "\ufeff")).as_py()
        and not pc.any(pc.match_substring(d, "\x00")).as_py()
    )


def _few_values(arr) -> pa.Array | None:
    """The distinct values of ``arr`` when it is long and they are at most a tenth of its rows
    (None otherwise: then working on every value costs less than looking each up). An even
    sample whose values are nearly all different (ids, times of incidents) says so first."""
    n = len(arr)
    if n < 100_000:
        return None
    at = pa.array(np.linspace(0, n - 1, 10_000).astype(np.int64))
    if pc.count_distinct(arr.take(at)).as_py() > 9_000:
        return None
    uniq = pc.unique(arr)
    return uniq if len(uniq) <= n // 10 else None
