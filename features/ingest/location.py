"""Where rows are: projection of x/y, the zones file, point-in-zone assignment, H3 zones, and the
lamps and stops that place lighting faults and ridership."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import InputError
from features.ingest.rows import _codes, _Rows
from features.ingest.validation import _duplicates
from features.readers import FILE, ROW
from features.store import Store
from features.zones import assign_codes, centroids, h3_codes, h3_unique, h3_zones


def _project_xy(rows: _Rows, crs: str | None) -> None:
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


def _point_columns(source: str) -> tuple[str, str]:
    """The latitude and longitude columns of a source (stops have their GTFS names)."""
    return ("stop_lat", "stop_lon") if source == "stops" else ("latitude", "longitude")


def _assign(rows: _Rows, zones, zone_kind: str, h3_res: int) -> None:
    """Each row's zone: its zone_id when given (an unknown one is flagged), else the zone holding
    its point (outside every zone is flagged); events and lamps placed by zone only get the
    zone's centroid as their point."""
    f = rows.frame
    lat_col, lon_col = _point_columns(rows.source)
    has_pt = lat_col in f.columns and lon_col in f.columns
    zid = zones["zone_id"].astype(str).to_numpy()
    codes = _given_zone_codes(rows, zid)
    if has_pt:
        codes = _point_zone_codes(rows, codes, zones, zid, zone_kind, h3_res)
    zone = _take_ids(zid, codes, f.index)
    f["zone_id"] = zone
    rows.zone_pos = codes
    if rows.source != "lighting_faults":
        noloc = (codes < 0) & ~rows.bad
        rows.flag(noloc, "no location (neither coordinates nor zone_id)")
    # a zone_id without a point: place it at the zone's centroid (events, lamps) for maps and radii
    if rows.source in {"events", "lamps"}:
        _place_at_centroids(f, zones, zone, has_pt=has_pt, cols=(lat_col, lon_col))


def _given_zone_codes(rows: _Rows, zid: np.ndarray) -> np.ndarray:
    """Position in the zones of each row's given zone_id (-1: none given, or unknown: flagged)."""
    f = rows.frame
    if "zone_id" not in f.columns:
        return np.full(len(f), -1, dtype=np.int64)
    given = f["zone_id"]
    # Arrow's hash look-up in C (a pandas Categorical of a million Arrow strings costs 0.2 s)
    arr = pa.array(
        given.astype(object) if given.dtype == object else given,
        type=pa.large_string(),
        from_pandas=True,
    )
    gcodes = pc.index_in(arr, value_set=pa.array(zid, type=pa.large_string()))
    gcodes = gcodes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    unknown = given.notna().to_numpy() & (gcodes < 0)
    sel = np.flatnonzero(unknown)
    rows.flag(unknown, "zone_id: unknown zone", given.iloc[sel])
    return gcodes


def _point_zone_codes(
    rows: _Rows, codes: np.ndarray, zones, zid: np.ndarray, zone_kind: str, h3_res: int
) -> np.ndarray:
    """``codes`` completed by the zone holding each point of a row without a zone yet (its H3
    cell, the look-ahead's answer, or :func:`features.zones.assign_codes`)."""
    f = rows.frame
    lat_col, lon_col = _point_columns(rows.source)
    pt = (f[lat_col].notna() & f[lon_col].notna()).to_numpy() & (codes < 0)
    if rows.codes.get("zone_id: unknown zone") is not None:
        pt &= ~rows.codes["zone_id: unknown zone"]
    if not pt.any():
        return codes
    every = bool(pt.all())  # the usual case: no copies of the coordinates
    lat = f[lat_col].to_numpy(dtype=float)
    lon = f[lon_col].to_numpy(dtype=float)
    if not every:
        lat, lon = lat[pt], lon[pt]
    if zone_kind == "h3":
        z = h3_codes(lat, lon, h3_res, zid)
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
    return codes


def _place_at_centroids(
    f: pd.DataFrame, zones, zone: pd.Series, *, has_pt: bool, cols: tuple[str, str]
) -> None:
    """Rows with a zone but no point get their zone's centroid as their point."""
    lat_col, lon_col = cols
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
    taken = pc.take(
        pa.array([str(i) for i in ids], type=pa.string()), pa.array(codes, mask=codes < 0)
    )
    return pd.Series(pd.array(taken, dtype=pd.StringDtype("pyarrow")), index=index)


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
        _locate_faults(
            parsed["lighting_faults"], _kept(parsed, st, "lamps"), zones, zone_kind, h3_res
        )
    if "ridership" in parsed:
        _locate_ridership(parsed["ridership"], _kept(parsed, st, "stops"))


def _locate_faults(
    r: _Rows, lamps: pd.DataFrame | None, zones, zone_kind: str, h3_res: int
) -> None:
    """Lighting faults: the zone and point of their lamp, else their own coordinates; a fault
    without an id gets ``<file>:<row>``."""
    if lamps is not None and "lamp_id" in r.frame.columns:
        _place_at_lamps(r, lamps)
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


def _place_at_lamps(r: _Rows, lamps: pd.DataFrame) -> None:
    """A fault of a known lamp takes the lamp's zone, and its point where the fault has none; an
    unknown lamp without coordinates is flagged."""
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


def _locate_ridership(r: _Rows, stops: pd.DataFrame | None) -> None:
    """Ridership rows take their stop's zone (an unknown stop, or no stops at all, is flagged)."""
    if stops is None:
        r.flag(
            np.ones(len(r.frame), dtype=bool),
            "no stops source: cannot place the stop in a zone",
        )
        r.frame["zone_id"] = None
        return
    sz = stops.drop_duplicates("stop_id").set_index("stop_id")["zone_id"]
    known = r.frame["stop_id"].isin(sz.index)
    r.flag(
        (r.frame["stop_id"].notna() & ~known).to_numpy(),
        "stop_id: unknown stop",
        r.frame["stop_id"],
    )
    r.frame["zone_id"] = r.frame["stop_id"].map(sz).astype(object)


def _h3_zones_from(parsed: dict[str, _Rows], res: int, st: Store):
    """H3 cells at resolution ``res`` over every kept point and every H3 zone_id given."""
    import h3

    cells: set[str] = set()
    for name, rows in parsed.items():
        f = rows.frame
        ok = ~rows.bad
        lat_col, lon_col = _point_columns(name)
        if lat_col in f.columns and lon_col in f.columns:
            m = ok & f[lat_col].notna().to_numpy() & f[lon_col].notna().to_numpy()
            cells |= set(h3_unique(f.loc[m, lat_col].to_numpy(), f.loc[m, lon_col].to_numpy(), res))
        if "zone_id" in f.columns:
            z = f.loc[ok & f["zone_id"].notna().to_numpy(), "zone_id"].astype(str).unique()
            valid = [c for c in z if h3.is_valid_cell(c)]
            cells |= set(valid)
    if not cells:
        raise InputError(
            "sources.yaml: no zones file and no row with usable coordinates or H3 zone_id to make "
            "H3 cells from (every row quarantined, or none given); give a zones source or point "
            "coordinates."
        )
    return h3_zones(cells)
