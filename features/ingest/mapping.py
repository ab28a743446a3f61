"""Reading a file and mapping its columns to a source's canonical columns.

Mapping errors name the closest column (``did you mean``) and notice a file whose first line
looks like data (no header row).
"""

from __future__ import annotations

import re

import pandas as pd

from features import schemas
from features.config import SourceSpec, closest
from features.errors import InputError
from features.readers import FILE, ROW, read_any

_LOCATION_COLS = {"latitude", "longitude", "x", "y", "zone_id", "lamp_id"}


def _map_columns(
    source: str, spec: SourceSpec, columns: list[str], path: str
) -> tuple[dict[str, str], list[str]]:
    """canonical -> file column, and the file's columns that are left out."""
    file_cols = [c for c in columns if c not in (ROW, FILE) and c != "geometry"]
    canon = schemas.columns(source)
    extra = {"x", "y"} if source in schemas.LOCATED else set()
    _check_mapped_names(source, spec, canon, extra, path)
    mapping = _match_columns(source, spec, file_cols, canon, extra, path)
    used = set(mapping.values())
    ignored = [c for c in file_cols if c not in used]
    _check_required(source, spec, mapping, file_cols, path)
    if source in schemas.LOCATED:
        _check_location(source, spec, mapping, file_cols, path)
    return mapping, ignored


def _check_mapped_names(
    source: str, spec: SourceSpec, canon: dict, extra: set[str], path: str
) -> None:
    """Every name on the left of sources.yaml's ``columns:`` is a canonical column."""
    for name in spec.columns:
        if name not in canon and name not in extra:
            hint = closest(name, list(canon))
            raise InputError(
                f"{source}: the column mapping names {name!r}, which is not a canonical column of {source}"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; canonical columns are {', '.join(canon)}.",
                file=path,
                column=name,
            )


def _match_columns(
    source: str, spec: SourceSpec, file_cols: list[str], canon: dict, extra: set[str], path: str
) -> dict[str, str]:
    """canonical -> file column: the mapped ones, else the file's column of the same name
    (case and surrounding spaces aside)."""
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
                hint = closest(target, file_cols)
                raise InputError(
                    f"{source}: {path} has no column {target!r} (mapped to {name}); its columns are "
                    f"{', '.join(file_cols)}" + (f"; closest match {hint!r}" if hint else "") + ".",
                    file=path,
                    column=target,
                )
            mapping[name] = target
        elif name in lower:
            mapping[name] = lower[name]
    return mapping


def _check_required(
    source: str, spec: SourceSpec, mapping: dict[str, str], file_cols: list[str], path: str
) -> None:
    """Every required column is mapped or given as a constant."""
    missing = [
        c
        for c in schemas.required(source)
        if c not in mapping and c not in spec.constants and c != "geometry"
    ]
    if not missing:
        return
    name = missing[0]
    hint = closest(name, file_cols)
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


def _check_location(
    source: str, spec: SourceSpec, mapping: dict[str, str], file_cols: list[str], path: str
) -> None:
    """A located source gives latitude/longitude, x/y with a crs, a zone_id (or a lamp_id)."""
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
    # copy=False: the columns as read, not consolidated into one block (a copy of every column)
    out = pd.DataFrame({canon: df[col] for canon, col in m.items()}, index=df.index, copy=False)
    if source == "zones":
        import geopandas as gpd

        out = gpd.GeoDataFrame(out, geometry=df.geometry.values, crs=df.crs)
    out[ROW] = df[ROW].to_numpy()
    out[FILE] = df[FILE].array
    for name, value in spec.constants.items():
        out[name] = value
    return out.reset_index(drop=True), info, m, ign
