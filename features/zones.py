"""Zones: polygons from a file, or H3 cells; point assignment, centroids and neighbour rings.

Points are assigned to the polygon that contains them (geopandas spatial join, `within`; a point
on a shared border goes to the first zone in file order, so nothing is doubled). Without a zones
file, zones are H3 cells (Uber H3, resolution from the study's ``area.h3_resolution``) and a
point's zone is its cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

H3_PREFIX = ""


def centroids(zones) -> pd.DataFrame:
    """Zone centroids as a DataFrame (zone_id, latitude, longitude), computed in a metric CRS."""
    gdf = zones
    if len(gdf) == 0:
        return pd.DataFrame({"zone_id": [], "latitude": [], "longitude": []})
    metric = gdf.to_crs(gdf.estimate_utm_crs())
    cent = metric.geometry.centroid.to_crs(4326)
    return pd.DataFrame(
        {
            "zone_id": gdf["zone_id"].astype(str).to_numpy(),
            "latitude": cent.y.to_numpy(),
            "longitude": cent.x.to_numpy(),
        }
    )


def neighbours(zones) -> dict[str, list[str]]:
    """First ring of neighbours of every zone: polygons that touch or overlap (queen contiguity).

    For H3 zones the ring is ``h3.grid_ring(cell, 1)`` restricted to the study's cells.
    """
    ids = zones["zone_id"].astype(str).tolist()
    if is_h3(ids):
        import h3

        present = set(ids)
        return {z: sorted(c for c in h3.grid_ring(z, 1) if c in present) for z in ids}
    geoms = zones.geometry.buffer(0)
    sindex = geoms.sindex
    left, right = sindex.query(geoms, predicate="intersects")
    out: dict[str, list[str]] = {z: [] for z in ids}
    for i, j in zip(left, right):
        if i != j:
            out[ids[i]].append(ids[j])
    return {z: sorted(set(v)) for z, v in out.items()}


def ring(zone_id: str, nbrs: dict[str, list[str]], *, order: int = 1) -> list[str]:
    """Zones within ``order`` steps of ``zone_id`` (not including it)."""
    seen = {zone_id}
    frontier = {zone_id}
    for _ in range(order):
        frontier = {n for z in frontier for n in nbrs.get(z, [])} - seen
        seen |= frontier
    return sorted(seen - {zone_id})


def is_h3(ids) -> bool:
    """Whether every id is a valid H3 cell."""
    import h3

    ids = list(ids)
    return bool(ids) and all(isinstance(z, str) and h3.is_valid_cell(z) for z in ids[:50])


def h3_cells(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell of each point (object array of str)."""
    import h3

    return np.array([h3.latlng_to_cell(a, o, resolution) for a, o in zip(lat, lon)], dtype=object)


def h3_zones(cells) -> geopandas.GeoDataFrame:  # noqa: F821
    """A zones GeoDataFrame made of H3 cells."""
    import geopandas as gpd
    import h3
    from shapely.geometry import Polygon

    cells = sorted(set(cells))
    polys = [Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in cells]
    return gpd.GeoDataFrame({"zone_id": pd.array(cells, dtype=object)}, geometry=polys, crs=4326)


def assign_codes(lat: np.ndarray, lon: np.ndarray, zones) -> np.ndarray:
    """Row position (in ``zones``) of the zone containing each point, -1 outside every zone.

    Vectorised without building point geometries: points are sorted by longitude once, each
    zone takes the slab of its bounding box by binary search, and ``shapely.contains_xy`` on a
    prepared polygon tests the candidates. Zones are visited in file order and a point keeps the
    first zone that contains it (a point on a shared border is not doubled).
    """
    import shapely

    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    out = np.full(len(lat), -1, dtype=np.int64)
    ok = np.flatnonzero(np.isfinite(lat) & np.isfinite(lon))
    if len(ok) == 0 or len(zones) == 0:
        return out
    order = ok[np.argsort(lon[ok], kind="stable")]
    xs = lon[order]
    geoms = zones.geometry.to_numpy()
    bounds = shapely.bounds(geoms)
    for k, g in enumerate(geoms):
        if g is None or g.is_empty:
            continue
        x0, y0, x1, y1 = bounds[k]
        a, b = np.searchsorted(xs, [x0, x1], side="left")[0], np.searchsorted(xs, x1, side="right")
        if a >= b:
            continue
        cand = order[a:b]
        cy = lat[cand]
        cand = cand[(cy >= y0) & (cy <= y1) & (out[cand] < 0)]
        if len(cand) == 0:
            continue
        shapely.prepare(g)
        inside = shapely.contains_xy(g, lon[cand], lat[cand]) | shapely.intersects_xy(
            g, lon[cand], lat[cand]
        )
        out[cand[inside]] = k
    return out


def assign_points(lat: np.ndarray, lon: np.ndarray, zones) -> np.ndarray:
    """The zone_id containing each point, or None when it falls outside every zone.

    Parameters
    ----------
    lat, lon
        WGS84 coordinates (NaN allowed: gives None).
    zones
        GeoDataFrame in EPSG:4326 with a ``zone_id`` column.
    """
    import geopandas as gpd

    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    out = np.full(len(lat), None, dtype=object)
    ok = np.isfinite(lat) & np.isfinite(lon)
    if not ok.any() or len(zones) == 0:
        return out
    pts = gpd.GeoSeries(gpd.points_from_xy(lon[ok], lat[ok]), crs=4326)
    tree = zones.geometry.sindex
    pidx, zidx = tree.query(pts, predicate="intersects")
    # first zone in file order for points on a shared border
    order = np.lexsort((zidx, pidx))
    pidx, zidx = pidx[order], zidx[order]
    first = np.unique(pidx, return_index=True)[1]
    zone_ids = zones["zone_id"].astype(str).to_numpy()
    sub = np.full(ok.sum(), None, dtype=object)
    sub[pidx[first]] = zone_ids[zidx[first]]
    out[ok] = sub
    return out
