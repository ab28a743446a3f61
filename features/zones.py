"""Zones: polygons from a file, or H3 cells; point assignment, centroids and neighbour rings.

Points are assigned to the polygon that contains them (geopandas spatial join, `within`; a point
on a shared border goes to the first zone in file order, so nothing is doubled). Without a zones
file, zones are H3 cells (Uber H3, resolution from the study's ``area.h3_resolution``) and a
point's zone is its cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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


def assign_codes(lat: np.ndarray, lon: np.ndarray, zones, *, grid: int = 128) -> np.ndarray:
    """Row position (in ``zones``) of the zone containing each point, -1 outside every zone.

    Vectorised without building a geometry per point. A ``grid`` x ``grid`` raster over the zones'
    extent is classified once: a cell lying within one zone gives its points that zone directly
    (integer arithmetic); only points in cells crossed by a border are tested exactly, with
    ``shapely.contains_xy`` / ``intersects_xy`` on prepared polygons, zones in file order, a point
    keeping the first zone that contains it (a point on a shared border is not doubled).
    """
    import shapely

    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    out = np.full(len(lat), -1, dtype=np.int64)
    geoms = zones.geometry.to_numpy()
    if len(lat) == 0 or len(geoms) == 0:
        return out
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    dx = (x1 - x0) / grid or 1e-9
    dy = (y1 - y0) / grid or 1e-9
    # classify the raster's cells
    cx, cy = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    cells = shapely.box(
        x0 + cx.ravel() * dx,
        y0 + cy.ravel() * dy,
        x0 + (cx.ravel() + 1) * dx,
        y0 + (cy.ravel() + 1) * dy,
    )
    tree = shapely.STRtree(geoms)
    cell_code = np.full(grid * grid, -1, dtype=np.int64)  # -1: no zone touches it
    ci, zi = tree.query(cells, predicate="intersects")
    cell_code[ci] = -2  # -2: a border crosses it (resolved below), unless within one zone
    wi, wz = tree.query(cells, predicate="within")
    if len(wi):
        # a cell within several (overlapping) zones: the first in file order
        order = np.lexsort((wz, wi))
        wi, wz = wi[order], wz[order]
        first = np.unique(wi, return_index=True)[1]
        interior = np.zeros(grid * grid, dtype=bool)
        interior[wi[first]] = True
        # cells also touching another zone stay exact (-2) so the file-order rule holds
        n_touch = np.bincount(ci, minlength=grid * grid)
        simple = interior & (n_touch == 1)
        cell_code[wi[first][simple[wi[first]]]] = wz[first][simple[wi[first]]]
    ok = np.isfinite(lat) & np.isfinite(lon) & (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
    idx = np.flatnonzero(ok)
    gx = np.minimum(((lon[idx] - x0) / dx).astype(np.int64), grid - 1)
    gy = np.minimum(((lat[idx] - y0) / dy).astype(np.int64), grid - 1)
    code = cell_code[gx * grid + gy]
    out[idx] = np.where(code >= 0, code, -1)
    exact = idx[code == -2]
    if len(exact):
        px, py = lon[exact], lat[exact]
        pts = shapely.points(px, py)
        pi, zi2 = tree.query(pts, predicate="intersects")
        order = np.lexsort((zi2, pi))
        pi, zi2 = pi[order], zi2[order]
        first = np.unique(pi, return_index=True)[1]
        out[exact[pi[first]]] = zi2[first]
    return out


def assign_points(lat: np.ndarray, lon: np.ndarray, zones) -> np.ndarray:
    """The zone_id containing each point, or None when it falls outside every zone
    (:func:`assign_codes`, as ids).

    Parameters
    ----------
    lat, lon
        WGS84 coordinates (NaN allowed: gives None).
    zones
        GeoDataFrame in EPSG:4326 with a ``zone_id`` column.
    """
    codes = assign_codes(lat, lon, zones)
    ids = zones["zone_id"].astype(str).to_numpy(dtype=object)
    out = np.full(len(codes), None, dtype=object)
    out[codes >= 0] = ids[codes[codes >= 0]]
    return out
