"""Reports at region scale: the maps draw districts, the tables their top rows.

A map of every zone reads well, and its page stays small, up to about a thousand zones; a region
has several thousand (5 000 IRIS zones in ``vigie synth --scale region``), and a page drawing
each of them is tens of megabytes that no one can read. Above :data:`MAX_MAP_ZONES` zones the
weekly report's maps draw *districts* instead: groups of neighbouring zones, found in this order

1. the commune of IRIS codes (9 digits: the first 5 are the commune's INSEE code) when the
   zones are IRIS and their communes number between 2 and :data:`MAX_MAP_ZONES`;
2. the H3 parent of H3 zones, the finest resolution with at most :data:`DISTRICTS` cells;
3. otherwise squares of a grid over the zones' centroids (in metres), at most :data:`DISTRICTS`
   of them,

each drawn as the union of its zones (simplified to a thousandth of the area's extent), with
figures recomputed from the cube for the district (:func:`pipelines.reports.weekly.
zone_period_figures` with ``groups``: incidents and expectations summed, presence summed over
the zones and its ratio taken over the district's zone-hours). Signals are ringed at the district
holding the flagged zone (the signals table names the zone); lamps out and transit stops beyond
:data:`MAX_POINTS` become counts per district in the tooltips. A brief's map draws the zones
nearest the venue (:func:`near`). Tables list their :data:`TOP_ROWS` first rows and a line
saying how many others there are and what they hold (:func:`top_rows`).

The page of the weekly report is then bounded whatever the number of zones: at most
:data:`DISTRICTS` grid districts (or :data:`MAX_MAP_ZONES` communes) per map, at most
:data:`MAX_POINTS` points per layer, :data:`TOP_ROWS` + 1 rows per long table.

References
----------
INSEE, *IRIS* (Ilots Regroupés pour l'Information Statistique): the code is the commune's
5-digit code followed by 4 digits. Uber H3: ``cell_to_parent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

#: zones a map draws one by one; above, it draws districts
MAX_MAP_ZONES = 1000
#: at most this many grid squares or H3 parents on a map of districts
DISTRICTS = 256
#: points (lamps out, stops) a layer draws one by one; above, counts per district
MAX_POINTS = 500
#: rows of a long table before its "others" line
TOP_ROWS = 15


def _iris_keys(ids: pd.Series, most: int) -> pd.Series | None:
    if not ids.str.fullmatch(r"\d{9}").all():
        return None
    communes = ids.str[:5]
    return "commune " + communes if 2 <= communes.nunique() <= most else None


def _h3_keys(ids: pd.Series, most: int) -> pd.Series | None:
    import h3

    if not all(h3.is_valid_cell(z) for z in ids.head(50)) or not ids.map(h3.is_valid_cell).all():
        return None
    res = h3.get_resolution(ids.iloc[0])
    for r in range(res - 1, -1, -1):
        parents = ids.map(lambda z, r=r: h3.cell_to_parent(z, r))
        if parents.nunique() <= most:
            return parents
    return None


def _grid_keys(gz: gpd.GeoDataFrame, most: int) -> pd.Series:
    """Squares of side max(width, height) / n over the centroids (n² <= most)."""
    metric = gz.to_crs(gz.estimate_utm_crs()) if gz.crs is not None else gz
    c = metric.geometry.centroid
    x, y = c.x.to_numpy(), c.y.to_numpy()
    n = max(1, int(np.sqrt(most)))
    side = max(np.ptp(x), np.ptp(y)) / n or 1.0
    col = np.minimum(((x - x.min()) / side).astype(int), n - 1)
    row = np.minimum(((y - y.min()) / side).astype(int), n - 1)
    return pd.Series([f"D{r:02d}-{q:02d}" for r, q in zip(row, col, strict=True)], index=gz.index)


def district_keys(zones: gpd.GeoDataFrame, *, most: int = DISTRICTS) -> pd.Series:
    """The district of each zone (indexed by zone_id as text): commune, H3 parent or grid square
    (see the module docstring)."""
    gz = zones.reset_index(drop=True)
    ids = gz["zone_id"].astype(str)
    keys = _iris_keys(ids, MAX_MAP_ZONES)
    if keys is None:
        keys = _h3_keys(ids, most)
    if keys is None:
        keys = _grid_keys(gz, most)
    return pd.Series(keys.to_numpy(), index=pd.Index(ids, name="zone_id"), name="district")


def district_frame(zones: gpd.GeoDataFrame, keys: pd.Series) -> gpd.GeoDataFrame:
    """One row per district: ``zone_id`` (the district's key), ``name`` (its largest zone's name
    and its number of zones) and the union of its zones, simplified."""
    gz = zones.assign(zone_id=zones["zone_id"].astype(str)).to_crs(4326)
    gz["district"] = gz["zone_id"].map(keys)
    weight = gz["population"] if "population" in gz else gz.geometry.area
    gz["_w"] = pd.to_numeric(weight, errors="coerce").fillna(0.0)
    names = gz["name"].astype(str) if "name" in gz else gz["zone_id"]
    gz["_name"] = names
    top = gz.sort_values("_w", ascending=False).drop_duplicates("district").set_index("district")
    size = gz.groupby("district").size()
    out = gz[["district", "geometry"]].dissolve(by="district")
    minx, miny, maxx, maxy = out.total_bounds
    out["geometry"] = out.geometry.simplify(max(maxx - minx, maxy - miny) / 1000)
    label = top["_name"].reindex(out.index) + " and around (" + size.astype(str) + " zones)"
    return gpd.GeoDataFrame(
        {"zone_id": out.index.astype(str), "name": label.to_numpy()},
        geometry=out.geometry.to_numpy(),
        crs=4326,
    )


def _points_per_district(
    points: pd.DataFrame | None, districts: gpd.GeoDataFrame, lat: str, lon: str
) -> pd.Series | None:
    if points is None or len(points) == 0:
        return None
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(points[lon], points[lat]), crs=4326)
    hit = gpd.sjoin(pts, districts[["zone_id", "geometry"]], predicate="within", how="inner")
    return hit.groupby("zone_id").size()


@dataclass(frozen=True)
class MapView:
    """What a report's map draws: zones or districts, their figures, rings and points."""

    zones: gpd.GeoDataFrame
    values: pd.DataFrame
    signals: list[str]
    lamps_out: pd.DataFrame | None
    stops: pd.DataFrame | None
    note: str  # a sentence saying what the map draws ("" for every zone)


def weekly_view(
    st: Any,
    zone_figs: pd.DataFrame,
    *,
    start: Any,
    end: Any,
    reference_weeks: int,
    signals: list[str],
    lamps_out: pd.DataFrame | None = None,
    stops: pd.DataFrame | None = None,
) -> MapView:
    """The weekly report's maps: every zone up to :data:`MAX_MAP_ZONES`, else districts with
    their figures recomputed from the cube (see the module docstring)."""
    from pipelines.reports.weekly import zone_period_figures

    zones = st.zones()
    if len(zones) <= MAX_MAP_ZONES:
        return MapView(zones, zone_figs, list(signals), lamps_out, stops, "")
    keys = district_keys(zones)
    frame = district_frame(zones, keys)
    values = zone_period_figures(
        st, start=start, end=end, reference_weeks=reference_weeks, groups=keys
    ).reset_index()
    counts = {
        "lamps_out": (lamps_out, "latitude", "longitude"),
        "transit_stops": (stops, "stop_lat", "stop_lon"),
    }
    kept: dict[str, pd.DataFrame | None] = {}
    for col, (pts, lat, lon) in counts.items():
        kept[col] = pts if pts is None or len(pts) <= MAX_POINTS else None
        n = None if kept[col] is not None else _points_per_district(pts, frame, lat, lon)
        if n is not None:
            values[col] = values["zone_id"].map(n).fillna(0).astype(int)
    flagged = list(dict.fromkeys(keys.get(str(z)) for z in signals if str(z) in keys.index))
    note = (
        f"{len(zones):,} zones: the maps draw {len(frame):,} districts ({_kind(keys)}), "
        "their figures summed over their zones; the signals table names the zones."
    )
    return MapView(frame, values, flagged, kept["lamps_out"], kept["transit_stops"], note)


def _kind(keys: pd.Series) -> str:
    first = str(keys.iloc[0])
    if first.startswith("commune "):
        return "communes of the IRIS codes"
    if first.startswith("D") and "-" in first:
        return "squares of a grid over the zones"
    return "H3 parent cells"


def near(zones: gpd.GeoDataFrame, focus: list[str], *, most: int = MAX_MAP_ZONES) -> Any:
    """The zones a map centred on ``focus`` draws: all up to ``most``, else the focus zones and
    the zones whose centroids are nearest to theirs (``most`` in all)."""
    if len(zones) <= most:
        return zones
    metric = zones.to_crs(zones.estimate_utm_crs()) if zones.crs is not None else zones
    c = metric.geometry.centroid
    ids = zones["zone_id"].astype(str)
    at = ids.isin([str(z) for z in focus]).to_numpy()
    cx, cy = (c.x[at].mean(), c.y[at].mean()) if at.any() else (c.x.mean(), c.y.mean())
    dist = np.hypot(c.x.to_numpy() - cx, c.y.to_numpy() - cy)
    dist[at] = -1.0
    return zones.iloc[np.sort(np.argsort(dist, kind="stable")[:most])]


def top_rows(
    df: pd.DataFrame | None, *, by: str | None = None, top: int = TOP_ROWS, what: str = "rows"
) -> pd.DataFrame | None:
    """The ``top`` first rows of ``df`` (largest ``by`` first when given) and, when more, one
    line "N other <what>" holding the sum of their numeric columns."""
    if df is None or len(df) <= top:
        return df
    ranked = df.sort_values(by, ascending=False, kind="stable") if by else df
    head, rest = ranked.iloc[:top], ranked.iloc[top:]
    line: dict[str, Any] = {c: None for c in df.columns}
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            line[c] = rest[c].sum(min_count=1)
    line[df.columns[0]] = f"{len(rest):,} other {what}"
    return pd.concat([head, pd.DataFrame([line])], ignore_index=True)
