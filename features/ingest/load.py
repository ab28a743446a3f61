"""Loading a source: each file read, mapped, parsed and checked, then the files stacked.

Only the rows flagged along the way keep their values as read (for the quarantine file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features import schemas
from features.config import SourceSpec
from features.ingest.location import _project_xy, _zones_from_file
from features.ingest.mapping import _read_file
from features.ingest.rows import _codes, _Rows
from features.ingest.times import _parse_time, _placeholders, _rerank_ambiguous
from features.ingest.validation import (
    _check_file_keys,
    _check_order,
    _check_slots,
    _validate,
)
from features.ingest.values import _parse_bool, _parse_float, _parse_int, _parse_str
from features.readers import FILE, ROW
from features.zones import assign_codes

#: sources whose points keep, from reading to _assign, the coordinates they were read with
_POINTS = {
    "incidents": ("latitude", "longitude"),
    "events": ("latitude", "longitude"),
    "lamps": ("latitude", "longitude"),
    "stops": ("stop_lat", "stop_lon"),
}

#: sources of time slots, whose slot length is checked
_SLOTTED = {"presence", "presence_origin", "ridership", "weather"}


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
    for name, unit in spec.units.items():  # documented in SourceSpec.units
        if name in rows.frame.columns:
            v = rows.frame[name]
            rows.frame[name] = (v - 32.0) * 5.0 / 9.0 if unit == "fahrenheit" else v * 25.4
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


def _load_file(name: str, spec: SourceSpec, path: str, tz: str, *, pool=None, zones=None) -> _Rows:
    """Read, map, parse and validate one file of a source; only flagged rows keep their raw text.
    With a ``pool`` and polygon ``zones``, points read as numbers are placed in zones in the
    pool while the main thread parses the other columns."""
    frame, info, mapping, ignored = _read_file(name, spec, path)
    ahead = _zones_ahead(name, frame, pool=pool, zones=zones)
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
    if name in _SLOTTED and "start" in rows.frame.columns:
        _check_slots(rows, spec)
    _validate(rows)
    _check_order(rows)
    # nonexistent local times keep their text too: they may turn out to be placeholders
    keep = rows.bad
    for gap in rows.nonexistent.values():
        keep = keep | gap
    bad = np.flatnonzero(keep)
    rows.raw = pd.DataFrame(
        {
            c: v.iloc[bad].astype("string") if len(bad) else pd.Series([], dtype="string")
            for c, v in as_read.items()
        },
        index=bad,
    )  # (an empty selection of a few million Arrow-backed rows still costs 0.1 s a file)
    return rows


def _zones_ahead(name: str, frame: pd.DataFrame, *, pool, zones):
    """A Future of the zone of each point read as numbers (None when there is no pool, no polygon
    zones, or no such points)."""
    cols = _POINTS.get(name)
    if pool is None or zones is None or not cols or not all(c in frame for c in cols):
        return None
    if not all(pd.api.types.is_float_dtype(frame[c]) for c in cols):
        return None
    lat, lon = (frame[c].to_numpy() for c in cols)
    return pool.submit(assign_codes, lat, lon, zones)


def _load_source(
    name: str, spec: SourceSpec, files: list[str], tz: str, *, pool=None, zones=None
) -> _Rows:
    """Every file of a source, parsed one at a time and stacked; then the repeated local times
    of a fall-back day are ranked across the files, and the placeholders at nonexistent local
    times that a real row of another file may hold are found."""
    parts = [_load_file(name, spec, path, tz, pool=pool, zones=zones) for path in files]
    rows = parts[0] if len(parts) == 1 else _stack(name, parts)
    if len(parts) > 1:
        _rerank_ambiguous(rows)
    _placeholders(rows)
    _check_file_keys(rows)
    return rows


def _stack(name: str, parts: list[_Rows]) -> _Rows:
    """The files of a source as one: frames, values as read, flags, DST counts and warnings."""
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
    for col in dict.fromkeys(c for p in parts for c in p.nonexistent):
        out.nonexistent[col] = np.concatenate(
            [p.nonexistent.get(col, np.zeros(len(p.frame), dtype=bool)) for p in parts]
        )
    for col in dict.fromkeys(c for p in parts for c in p.ambiguous):
        out.ambiguous[col] = pd.concat(
            [
                p.ambiguous[col].assign(__at=p.ambiguous[col]["__at"] + off)
                for p, off in zip(parts, offsets)
                if col in p.ambiguous
            ],
            ignore_index=True,
        )
    if all(p.zone_codes is not None for p in parts):
        out.zone_codes = np.concatenate([_codes(p.zone_codes) for p in parts])
    out.warnings = list(dict.fromkeys(w for p in parts for w in p.warnings))
    return out
