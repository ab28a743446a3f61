"""Zones: polygons from a file, or H3 cells; point assignment, centroids and neighbour rings.

Points are assigned to the polygon that contains them (:func:`assign_codes`: a raster
pre-classification, exact tests near borders; a point on a shared border goes to the first zone in
file order, so nothing is doubled). Without a zones
file, zones are H3 cells (Uber H3, resolution from the study's ``area.h3_resolution``) and a
point's zone is its cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.h3index import h3_ints

if TYPE_CHECKING:  # annotations only: geopandas is imported where it is used
    import geopandas


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
    """H3 cell of each point (object array of str; None where a coordinate is not finite).

    The same cells as ``h3.latlng_to_cell`` (:func:`h3_ints`, as strings).
    """
    return h3_strings(h3_ints(lat, lon, resolution))


def h3_strings(cells: np.ndarray) -> np.ndarray:
    """H3 cells given as integers (0: none) as an object array of str (None for 0)."""
    import h3

    codes, uniq = pd.factorize(np.asarray(cells, dtype=np.uint64))
    names = np.array([h3.int_to_str(int(c)) if c else None for c in uniq] + [None], dtype=object)
    return names[codes]


def h3_codes(lat: np.ndarray, lon: np.ndarray, resolution: int, zone_ids) -> np.ndarray:
    """Position in ``zone_ids`` (H3 cells as str, unique) of each point's cell, -1 when it is not
    one of them or a coordinate is not finite (:func:`h3_ints`, matched as integers)."""
    import h3

    def as_int(i: int, z) -> int:  # an id that is not an H3 cell as h3 spells it: i + 1,
        try:  # which no cell is (cells have their mode bits set: >= 2**59)
            c = h3.str_to_int(str(z))
        except (TypeError, ValueError):
            return i + 1
        return c if h3.is_valid_cell(z) and h3.int_to_str(c) == z else i + 1

    ints = np.array([as_int(i, z) for i, z in enumerate(zone_ids)], dtype=np.uint64)
    pos = pd.Index(ints).get_indexer(h3_ints(lat, lon, resolution))
    return pos.astype(np.int64, copy=False)


def h3_unique(lat: np.ndarray, lon: np.ndarray, resolution: int) -> list[str]:
    """The distinct H3 cells of the points with finite coordinates, as str."""
    import h3

    cells = pd.unique(h3_ints(lat, lon, resolution))
    return [h3.int_to_str(int(c)) for c in cells if c]


def h3_zones(cells) -> geopandas.GeoDataFrame:
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
    ``shapely.intersects_xy`` on prepared polygons, against the zones touching their cell only;
    zones in file order, a point keeps the first zone that contains it or has it on its edge (a
    point on a shared border is not doubled).
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
    cell_code, zi, n_touch, first_pair = _classify_cells(geoms, x0, y0, dx, dy, grid)
    # the points' cells, with as few full-length temporaries as possible (NaN compares False)
    ok = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
    every = bool(ok.all())
    idx = None if every else np.flatnonzero(ok)
    cell = _grid_index(lon if every else lon[idx], x0, dx, grid)
    cell *= grid
    cell += _grid_index(lat if every else lat[idx], y0, dy, grid)
    code = cell_code[cell]
    del cell
    border = np.flatnonzero(code == -2)
    if every:
        out[:] = code
        cell_of = None
    else:
        out[idx] = code
        cell_of = idx
    del code
    if len(border) == 0:
        return out
    exact = border if cell_of is None else cell_of[border]
    out[exact] = -1
    c = _grid_index(lon[exact], x0, dx, grid) * grid + _grid_index(lat[exact], y0, dy, grid)
    # border points: one (point, zone) pair per zone touching the point's cell, grouped by zone;
    # zones in file order, a point keeps the first zone that contains it (or has it on its edge)
    cnt = n_touch[c]
    rep = np.repeat(np.arange(len(exact)), cnt)
    k = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pz = zi[first_pair[c][rep] + k]
    pp = exact[rep]
    by_zone = np.argsort(pz.astype(np.int16) if len(geoms) < 2**15 else pz, kind="stable")
    pz, pp = pz[by_zone], pp[by_zone]
    cuts = np.flatnonzero(np.diff(pz)) + 1
    shapely.prepare(geoms)
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(pz)]):
        pts = pp[lo:hi]
        pts = pts[out[pts] < 0]
        if len(pts):
            out[pts[shapely.intersects_xy(geoms[pz[lo]], lon[pts], lat[pts])]] = pz[lo]
    return out


def _classify_cells(geoms: np.ndarray, x0: float, y0: float, dx: float, dy: float, grid: int):
    """The raster's cells classified: -1 no zone touches it, a zone's position when the cell lies
    within that zone and touches no other, -2 when a border crosses it (points tested exactly).
    Also the (cell, zone) pairs' zones by cell then zone in file order (``zi``), the number of
    zones touching each cell and where each cell's zones start in ``zi``."""
    import shapely

    cx, cy = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    cells = shapely.box(
        x0 + cx.ravel() * dx,
        y0 + cy.ravel() * dy,
        x0 + (cx.ravel() + 1) * dx,
        y0 + (cy.ravel() + 1) * dy,
    )
    tree = shapely.STRtree(geoms)
    ci, zi = tree.query(cells, predicate="intersects")
    order = np.lexsort((zi, ci))  # by cell, then zone in file order
    ci, zi = ci[order], zi[order]
    n_touch = np.bincount(ci, minlength=grid * grid)
    first_pair = np.cumsum(n_touch) - n_touch  # where each cell's zones start in zi
    cell_code = np.where(n_touch > 0, -2, -1).astype(np.int32)
    # a cell touched by one zone and by no zone outline lies inside that zone
    crossed = np.zeros(grid * grid, dtype=bool)
    crossed[shapely.STRtree(shapely.boundary(geoms)).query(cells, predicate="intersects")[0]] = True
    alone = (n_touch == 1) & ~crossed
    cell_code[alone] = zi[first_pair[alone]]
    return cell_code, zi, n_touch, first_pair


def _grid_index(v: np.ndarray, origin: float, step: float, grid: int) -> np.ndarray:
    """Column (or row) of the raster each coordinate falls in (int32; the far edge belongs to
    the last cell)."""
    g = v - origin
    g /= step
    out = g.astype(np.int32)
    np.minimum(out, grid - 1, out=out)
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
