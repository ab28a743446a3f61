"""The time parser: text or datetimes to UTC, under the DST rule of the package docstring.

Naive local times become UTC by their day's offset (integer arithmetic, one look-up per day of
the span); only rows within a day of an offset change go through pandas' ``tz_localize``, where
a nonexistent time moves one hour forward and a repeated time is read first in summer time, then
in winter time for the next occurrence of the same series key (in the same file, or in an
earlier file of the source: :func:`_later_copies`). Once a source's files are stacked,
:func:`_placeholders` quarantines a nonexistent time whose shifted instant is a real
slot of the same series. Common ISO 8601 layouts are parsed in C by pyarrow before pandas takes
what is left.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import schemas
from features.ingest.rows import _Rows
from features.ingest.values import _as_str

_OFFSET_RE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"

_DAY_NS = 86_400 * 10**9

#: the quarantine reason of a nonexistent local time that a real slot of its series already holds
PLACEHOLDER = "nonexistent local time (placeholder)"


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
    arr = _arrow(txt)
    res = None
    for f in formats:
        if any(d in f for d in ("%z", "%Z", "%f", "%p", "%b", "%B", "%a", "%A", "%j", "%U")):
            continue  # layouts pyarrow does not parse like pandas: leave them to pandas
        try:
            got = _checked_strptime(arr, f)
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


def _checked_strptime(arr, fmt: str):
    """pyarrow's C strptime, where it reads as pandas does. Arrow rolls an impossible date over
    (31/02 becomes 2 March: a day 1 to 3 of the next month) and takes "24" for the year 0024
    where pandas refuses both: the rows whose result falls on a day 1 to 3 or before the year
    1000 are written back in ``fmt`` and kept only when that gives the text read; the others
    come back null, for pandas to decide."""
    got = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
    odd = pc.fill_null(pc.or_(pc.less_equal(pc.day(got), 3), pc.less(pc.year(got), 1000)), False)
    at = np.flatnonzero(odd.to_numpy(zero_copy_only=False))
    if len(at) == 0:
        return got
    idx = pa.array(at)
    back = pc.strftime(pc.cast(got.take(idx), pa.timestamp("s"), safe=False), format=fmt)
    wrong = pc.not_equal(back, pc.cast(arr.take(idx), back.type)).to_numpy(zero_copy_only=False)
    mask = np.zeros(len(got), dtype=bool)
    mask[at[wrong]] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, got.type), got)


_AWARE_RE = r"^(?P<body>.*?)(?P<off>Z|[+-]\d{2}:?\d{2})$"


def _strptime_aware(txt: pd.Series, fmt: str) -> pd.Series:
    """Times with a UTC offset, ``fmt`` ending with ``%z`` (datetime64[us, UTC], NaT where
    unparseable). The time and the offset (Z, +0100, +01:00) are split and parsed in C
    (:func:`_checked_strptime`, then integer arithmetic); pandas' ``to_datetime`` takes what is
    left, so the result is the one pandas gives (a million such times cost it ~1.5 s, pyarrow
    a tenth of that)."""
    out = pd.Series(pd.NaT, index=txt.index, dtype="datetime64[us, UTC]")
    body_fmt = fmt[:-2]
    if fmt.endswith("%z") and "%z" not in body_fmt and "%Z" not in body_fmt and len(txt):
        parts = pc.extract_regex(_arrow(txt), _AWARE_RE)
        body = pc.struct_field(parts, "body")
        off = pc.struct_field(parts, "off")
        naive = _strptime(pd.Series(body.to_pandas(types_mapper=pd.ArrowDtype), index=txt.index),
                          [body_fmt], fallback=None)  # fmt: skip
        digits = pc.replace_substring(pc.replace_substring(off, ":", ""), "Z", "+0000")
        sign = np.where(pc.starts_with(digits, "-").to_numpy(zero_copy_only=False), -1, 1)
        hh, mm = (
            pc.cast(pc.utf8_slice_codeunits(digits, a, a + 2), pa.int64(), safe=False)
            .fill_null(0)
            .to_numpy(zero_copy_only=False)
            for a in (1, 3)
        )
        secs = sign * (hh * 3600 + mm * 60)
        ok = naive.notna().to_numpy() & pc.is_valid(off).to_numpy(zero_copy_only=False) & (mm < 60)
        utc = naive.to_numpy() - (secs * 1_000_000).astype("timedelta64[us]")
        out[ok] = pd.DatetimeIndex(utc[ok]).tz_localize("UTC")
    todo = out.isna() & txt.notna()
    if todo.any():
        out[todo] = pd.to_datetime(txt[todo], format=fmt, errors="coerce", utc=True).astype(
            "datetime64[us, UTC]"
        )
    return out


def _iso_cast(s: pd.Series) -> pd.Series | None:
    """Naive datetime64[ns] when every value is a naive ISO 8601 time (Arrow's cast: one pass
    in C, all or nothing: any other value, or one out of the nanosecond range, gives None)."""
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
    # a unit code such as "us"; numpy's stubs type datetime64's unit as a Literal
    unit: Any = np.datetime_data(v.dtype)[0]
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
            aware = _strptime_aware(txt, fmt)
            is_aware = np.ones(n, dtype=bool)
        elif fmt:
            naive = _strptime(txt, [fmt], fallback=fmt)
        else:
            naive, aware, is_aware = _parse_iso(txt)
    shown = txt if txt is not None else s
    out = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)  # UTC ns, NaT
    oob = np.zeros(n, dtype=bool)
    if is_aware.any():
        assert aware is not None  # is_aware is only set where times with an offset were parsed
        a, oob[is_aware] = _to_ns(aware if is_aware.all() else aware[is_aware])
        out[is_aware] = a.to_numpy().view(np.int64)
    local = ~is_aware
    if local.any():
        assert naive is not None  # every branch that leaves local times parses them into naive
        t, oob[local] = _to_ns(naive if local.all() else naive[local])
        gap = np.zeros(int(local.sum()), dtype=bool)
        amb: list[pd.DataFrame] = []
        out[local] = _localize(
            rows, t, np.flatnonzero(local), tz, series_keys, gap=gap, ambiguous_out=amb
        )
        if amb:
            rows.ambiguous[name] = amb[0]
        if gap.any():
            rows.nonexistent[name] = np.zeros(n, dtype=bool)
            rows.nonexistent[name][np.flatnonzero(local)[gap]] = True
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
    rows: _Rows,
    t: pd.Series,
    pos: np.ndarray,
    tz: str,
    series_keys: list[str],
    *,
    gap: np.ndarray | None = None,
    ambiguous_out: list[pd.DataFrame] | None = None,
) -> np.ndarray:
    """Naive local times (``t``, datetime64[ns], at frame positions ``pos``) to UTC nanoseconds
    (int64, NaT's integer where missing) under the DST rule of the module docstring. Rows away
    from an offset change take their day's offset (integer arithmetic); only rows within a day
    of a change go through pandas' tz_localize. ``gap`` (a boolean array as long as ``t``), when
    given, is set where the local time does not exist (shifted one hour forward here;
    :func:`_placeholders` decides later whether it is a placeholder). ``ambiguous_out``, when
    given, receives the record of the repeated local times (:attr:`_Rows.ambiguous`): they are
    ranked within this file here, and across the files of the source later."""
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
        summer = tn.dt.tz_localize(tz, ambiguous=np.ones(len(tn), dtype=bool), nonexistent="NaT")
        nonexistent = (summer.isna() & tn.notna()).to_numpy()
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
            if ambiguous_out is not None:
                winter = tn[ambiguous].dt.tz_localize(
                    tz, ambiguous=np.zeros(int(ambiguous.sum()), dtype=bool)
                )
                sub["__rank"] = rank
                sub["__winter"] = pd.DatetimeIndex(winter).tz_convert("UTC").asi8
                sub["__at"] = at
                ambiguous_out.append(sub)
            rows.dst["ambiguous_first"] += int((rank == 0).sum())
            rows.dst["ambiguous_second"] += int((rank >= 1).sum())
        rows.dst["nonexistent_shifted"] += int(nonexistent.sum())
        if gap is not None:
            gap[np.flatnonzero(near)[nonexistent]] = True
        loc = tn.dt.tz_localize(tz, ambiguous=is_dst, nonexistent=pd.Timedelta(hours=1))
        out[near] = loc.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().view(np.int64)
    return out


def _later_copies(rec: pd.DataFrame) -> np.ndarray:
    """Of the repeated local times of a source's files (the records of
    :attr:`_Rows.ambiguous`, files in order, rows in file order within each), those ranked first
    in their own file (read as the summer-time instant) whose series and local time an earlier
    file already holds: they are a later copy, the winter-time instant. So a fall-back hour
    split across two exports keeps both copies, as when it lies in one file.

    Unless some file holds both passages of that series and local time (a copy ranked >= 1):
    that file says which copy is which, and a single copy in another file (an overlapping
    re-export) stays the summer-time instant, left to the duplicate search. Shifting it would
    move a summer-time value onto the winter-time instant and quarantine the real winter-time
    row as its duplicate."""
    keys = [c for c in rec.columns if not c.startswith("__")] + ["__t"]
    groups = rec.groupby(keys, sort=False, dropna=False)
    overall = groups.cumcount().to_numpy()
    both_in_a_file = groups["__rank"].transform("max").to_numpy() >= 1
    return (rec["__rank"].to_numpy() == 0) & (overall >= 1) & ~both_in_a_file


def _rerank_ambiguous(rows: _Rows) -> None:
    """The files of a source stacked (:func:`features.ingest.load._stack`): the later copies of a
    repeated local time (:func:`_later_copies`) moved to their winter-time instant, and counted
    as ``ambiguous_second`` instead of ``ambiguous_first``."""
    for col, rec in rows.ambiguous.items():
        later = _later_copies(rec)
        if not later.any():
            continue
        v = pd.DatetimeIndex(rows.frame[col]).asi8.copy()
        v[rec["__at"].to_numpy()[later]] = rec["__winter"].to_numpy()[later]
        utc = pd.DatetimeIndex(v.view("datetime64[ns]")).tz_localize("UTC")
        rows.frame[col] = pd.Series(utc, index=rows.frame.index)
        n = int(later.sum())
        rows.dst["ambiguous_first"] -= n
        rows.dst["ambiguous_second"] += n


def _placeholders(rows: _Rows) -> None:
    """Quarantine the nonexistent local times whose shifted instant a real row already holds.

    Exporters write a row at the skipped hour of a spring-forward day (often a 0 with empty
    fields). Shifted one hour forward it would land on the real count of the next hour, which
    the duplicate check would then quarantine. A nonexistent time is a placeholder when another
    row of the same series (the source's series keys and the other columns of its key: zone_id,
    stop_id, incident_id...; the timestamp alone for weather), whose own time does exist and that
    is not quarantined, has the same UTC instant. The placeholder is quarantined (counted as
    ``nonexistent_placeholder`` instead of ``nonexistent_shifted``) and the real row is kept; a
    nonexistent time that collides with nothing stays shifted. Run on the stacked files of a
    source, before the duplicate check."""
    if not rows.nonexistent:
        return
    f = rows.frame
    cols = schemas.columns(rows.source)
    keys = [
        k
        for k in dict.fromkeys(schemas.SERIES_KEYS.get(rows.source, []) + schemas.KEYS[rows.source])
        if k in f.columns and not (k in cols and cols[k].kind == "time")
    ]
    ok = ~rows.bad
    found = np.zeros(len(f), dtype=bool)
    n = 0
    for name, gap in rows.nonexistent.items():
        real = ok & ~gap & _at_shifted(pd.DatetimeIndex(f[name]).asi8, gap)
        if not real.any():
            continue
        held = pd.MultiIndex.from_frame(f.loc[real, [*keys, name]])
        hit = pd.MultiIndex.from_frame(f.loc[gap, [*keys, name]]).isin(held)
        found[np.flatnonzero(gap)[hit]] = True
        rows.dst["nonexistent_shifted"] -= int(hit.sum())
        n += int(hit.sum())
    if n:
        rows.flag(found, PLACEHOLDER)
        # a key of its own only when there are placeholders: reports without any stay as they were
        rows.dst["nonexistent_placeholder"] = n


def _at_shifted(t: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """The rows whose time (int64 ns, UTC) is one of the shifted times (``gap``): the only ones
    that can collide with a placeholder. Looked for on the UTC days of those times first (a
    spring-forward day or two per year of data: two comparisons each, where an ``isin`` over a
    million rows costs ten times as much), then exactly."""
    near = np.zeros(len(t), dtype=bool)
    for day in np.unique(t[gap] // _DAY_NS):
        near |= (t >= day * _DAY_NS) & (t < (day + 1) * _DAY_NS)
    at = np.flatnonzero(near)
    out = np.zeros(len(t), dtype=bool)
    out[at[np.isin(t[at], t[gap])]] = True
    return out
