"""H3 cells of many points at once, equal to ``h3.latlng_to_cell`` (:func:`h3_ints`).

The H3 C library's Python binding assigns one point per call (about 1 us each with Python's
overhead). Here a grid of boxes finer than a cell gives most points their cell from one lookup
and a containment test with a margin; the rest, near cell edges, go to h3ronpy (the Rust
``h3o`` port of H3, vectorised over Arrow arrays).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

#: points per chunk of the vectorised H3 assignment: its temporaries (a few MB) stay in cache
H3_CHUNK = 1 << 16
#: chunks assigned at once, in threads (the grid's numpy work and h3ronpy release the GIL)
H3_THREADS = min(2, os.cpu_count() or 1)
#: at most this many boxes in the grid of candidate cells (its lookup table: 4 MB)
_H3_BOXES = 1 << 20
#: a point is given its candidate cell without the exact computation only when it lies inside
#: it by a margin of 1 - this share of the cell's inradius (a band near its edges is computed
#: exactly)
_H3_SAFE = 0.99
#: the shortcut is used from this resolution on and below this latitude (elsewhere every point
#: is computed exactly). Cell edges are great-circle arcs (straight in H3's gnomonic faces);
#: drawn straight in the plane tangent at the cell's centre, an edge of length L at latitude phi
#: is off by at most about L^2 tan(phi) / 8: at resolution 5 (L = 8.5 km) and 80 degrees,
#: 0.1 % of the inradius, a tenth of the 1 % margin (finer cells: less)
_H3_FAST_RES = 5
_H3_FAST_LAT = 80.0


def h3_ints(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell of each point as a uint64 H3 index, 0 where a coordinate is not finite.

    Equal to ``h3.latlng_to_cell`` (the H3 C library) for every point, vectorised. A grid of
    boxes several times finer than a cell is laid over the points and the cell of each occupied
    box's centre is found once (h3ronpy, the Rust ``h3o`` port of H3, vectorised over Arrow
    arrays). A point is given its box's cell when it lies inside that cell with a margin of
    1 % of the cell's inradius: first within the inscribed circle, else within every edge of
    the hexagon (both in the plane tangent at the cell's centre, from the cell's own boundary).
    Every other point (near a cell edge: about a tenth of them; near a pole; at a coarse
    resolution; or spread too wide for the grid) is computed exactly by h3ronpy. Points go in
    chunks of :data:`H3_CHUNK`, so memory stays bounded. Checked against ``h3.latlng_to_cell``
    on random points world-wide, at the poles and along the antimeridian (tests/test_zones.py).

    References
    ----------
    Uber Technologies (2018). H3: a hexagonal hierarchical geospatial indexing system.
    https://h3geo.org/docs/core-library/latLngToCellDesc
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.shape != lon.shape or lat.ndim != 1:
        raise ValueError(
            f"lat and lon should be 1-D arrays of one length, got {lat.shape}, {lon.shape}"
        )
    res = int(resolution)
    if not 0 <= res <= 15:
        raise ValueError(f"H3 resolution must be an integer in [0, 15], got {resolution!r}")
    chunks = [slice(lo, lo + H3_CHUNK) for lo in range(0, len(lat), H3_CHUNK)]
    grid = _H3Grid.over(lat, lon, res, chunks)
    out = np.zeros(len(lat), dtype=np.uint64)

    def one(sl: slice) -> None:
        la, lo, part = lat[sl], lon[sl], out[sl]
        if grid is None:
            rest = np.flatnonzero(np.isfinite(la) & np.isfinite(lo))
        else:
            rest = grid.shortcut(la, lo, part)
        if len(rest):
            part[rest] = _h3_exact(la[rest], lo[rest], res)

    if len(chunks) > 1 and H3_THREADS > 1:  # numpy and h3ronpy release the GIL
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(H3_THREADS, len(chunks))) as pool:
            list(pool.map(one, chunks))
    else:
        for sl in chunks:
            one(sl)
    return out


def _h3_exact(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    """h3ronpy's cells of finite points (uint64)."""
    import pyarrow as pa
    from h3ronpy import vector

    cells = vector.coordinates_to_cells(pa.array(lat), pa.array(lon), res)
    return np.asarray(cells, dtype=np.uint64)


def _h3_clean(lat: np.ndarray, lon: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether every point may take the grid (finite, away from the poles, longitude in
    [-180, 180]), found from four reductions; and the bounds (lat min, max, lon min, max)."""
    b = np.array([lat.min(), lat.max(), lon.min(), lon.max()]) if len(lat) else np.full(4, np.nan)
    clean = bool(np.isfinite(b).all() and -_H3_FAST_LAT <= b[0] and b[1] <= _H3_FAST_LAT)
    return clean and -180.0 <= b[2] and b[3] <= 180.0, b


def _h3_usable(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The points that may take the grid (NaN compares False)."""
    return (np.abs(lat) <= _H3_FAST_LAT) & (np.abs(lon) <= 180.0)


class _H3Grid:
    """The boxes over the points, the cell of each occupied box's centre (found when a chunk
    first lands in the box) and, per cell, its safe circle and edges in grid units."""

    def __init__(self, res: int, bounds: tuple[float, float, float], g: float, nx: int, ny: int):
        self.res, self.g, self.nx, self.ny = res, g, nx, ny
        self.lat0, self.lon0, self.c0 = bounds
        self.box_cell = np.full(nx * ny, -1, dtype=np.int32)  # -1: no point in the box
        self.cells = np.zeros(0, dtype=np.uint64)
        # per cell: centre x, y (grid units), x scale, safe radius²; hexagon edges' outward
        # normal x, y and safe offset (cells x 6 each); columns apart: np.take is fastest so
        self.disc = [np.zeros(0) for _ in range(4)]
        self.edges = [np.zeros((0, 6)) for _ in range(3)]

    @classmethod
    def over(cls, lat: np.ndarray, lon: np.ndarray, res: int, chunks: list[slice]):
        """The grid over the usable points with the cells of its occupied boxes, or None when
        it would not pay (coarse resolution, few points, or points spread too wide for
        :data:`_H3_BOXES` boxes). Two passes over the points: their bounds, then their boxes."""
        import h3

        if res < _H3_FAST_RES or len(lat) < 1000:
            return None
        bounds = []
        for sl in chunks:
            clean, b = _h3_clean(lat[sl], lon[sl])
            if not clean:
                u = _h3_usable(lat[sl], lon[sl])
                _, b = _h3_clean(lat[sl][u], lon[sl][u])
            bounds.append(b)
        bb = np.array(bounds)
        if np.isnan(bb).all(axis=1).all():
            return None
        lat0, lat1 = np.nanmin(bb[:, 0]), np.nanmax(bb[:, 1])
        lon0, lon1 = np.nanmin(bb[:, 2]), np.nanmax(bb[:, 3])
        c0 = float(np.cos(np.radians(0.5 * (lat0 + lat1))))
        ax, ay = (lon1 - lon0) * c0, lat1 - lat0
        r_deg = h3.average_hexagon_edge_length(res, unit="km") * 0.5 * np.sqrt(3) / 111.195
        boxes = min(_H3_BOXES, len(lat) / 8)  # a box's centre costs as much as 8 points
        g = max(r_deg / 8, np.sqrt(ax * ay / boxes), max(ax, ay) / 8192)
        if g > r_deg:
            return None
        # two spare rows and columns: a point on the far edge never falls out of the grid
        nx, ny = int(ax / g) + 2, int(ay / g) + 2
        grid = cls(res, (float(lat0), float(lon0), c0), float(g), nx, ny)
        seen = np.zeros(nx * ny, dtype=bool)
        for sl in chunks:
            la, lo, _ = grid._usable(lat[sl], lon[sl])
            seen[grid._box(la, lo)[0]] = True
        grid._learn(np.flatnonzero(seen))
        return grid

    def _usable(self, lat: np.ndarray, lon: np.ndarray):
        """The points that may take the grid, and their positions (None: all of them)."""
        if _h3_clean(lat, lon)[0]:
            return lat, lon, None
        idx = np.flatnonzero(_h3_usable(lat, lon))
        return lat[idx], lon[idx], idx

    def _box(self, lat: np.ndarray, lon: np.ndarray):
        """Each point's box, and its position in the grid (x, y in box units)."""
        fx = lon - self.lon0
        fx *= self.c0 / self.g
        fy = lat - self.lat0
        fy *= 1 / self.g
        box = fx.astype(np.int32)
        box *= self.ny
        box += fy.astype(np.int32)
        return box, fx, fy

    def shortcut(self, lat: np.ndarray, lon: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` with the cells of the points lying well inside their box's cell; return
        the positions of the other points with finite coordinates (to compute exactly). Reads
        the grid only: chunks may run in threads."""
        la, lo, idx = self._usable(lat, lon)
        box, fx, fy = self._box(la, lo)
        j = np.take(self.box_cell, box)
        del box
        cx, cy, sx, r2 = self.disc
        fx -= np.take(cx, j)
        fx *= np.take(sx, j)
        fy -= np.take(cy, j)
        d2 = fx * fx
        d2 += fy * fy
        inside = d2 < np.take(r2, j)
        del d2
        far = np.flatnonzero(~inside)
        jf = np.take(j, far)
        ex, ey, off = (np.take(e, jf, axis=0) for e in self.edges)
        ex *= np.take(fx, far)[:, None]
        ey *= np.take(fy, far)[:, None]
        ex += ey
        ex -= off
        inside[far[(ex <= 0).all(axis=1)]] = True
        self._across(far, ex, jf, fx, fy, j, inside)
        got = np.take(self.cells, j[inside])
        if idx is None:
            out[inside] = got
            return np.flatnonzero(~inside)
        out[idx[inside]] = got
        ok = np.isfinite(lat) & np.isfinite(lon)
        ok[idx[inside]] = False
        return np.flatnonzero(ok)

    def _across(self, far, excess, jf, fx, fy, j, inside) -> None:
        """Second chance for the points outside their box's cell: the cell across the edge
        they lie beyond (most often theirs, when their box straddles that edge), by the same
        test; ``j`` and ``inside`` updated in place."""
        miss = np.flatnonzero(excess.max(axis=1) > 0)
        if not len(miss):
            return
        k = np.take(self.across, np.take(jf, miss) * 6 + excess[miss].argmax(axis=1))
        keep = k >= 0
        p, k, jp = far[miss[keep]], k[keep], np.take(jf, miss[keep])
        cx, cy, sx, _ = self.disc
        # the points back in grid units, then around the cell across
        px = np.take(fx, p) / np.take(sx, jp) + np.take(cx, jp)
        py = np.take(fy, p) + np.take(cy, jp)
        px -= np.take(cx, k)
        px *= np.take(sx, k)
        py -= np.take(cy, k)
        ex, ey, off = (np.take(e, k, axis=0) for e in self.edges)
        ex *= px[:, None]
        ey *= py[:, None]
        ex += ey
        ok = (ex <= off).all(axis=1)
        j[p[ok]] = k[ok]
        inside[p[ok]] = True

    def _learn(self, new: np.ndarray) -> None:
        """The cells of the occupied boxes (their centres' cells) and the cells' shapes."""
        if not len(new):
            return
        clat = np.clip(self.lat0 + (new % self.ny + 0.5) * self.g, -90.0, 90.0)
        clon = np.clip(self.lon0 + (new // self.ny + 0.5) * self.g / self.c0, -180.0, 180.0)
        cells = _h3_exact(clat, clon, self.res)
        self.cells = pd.unique(cells)
        self.disc, self.edges, beyond = _h3_shapes(
            self.cells, self.res, self.lat0, self.lon0, self.c0, self.g
        )
        index = pd.Index(self.cells)
        self.box_cell[new] = index.get_indexer(cells)
        self.across = index.get_indexer(beyond.ravel()).astype(np.int32)  # -1: not in the grid


def _h3_shapes(cells: np.ndarray, res: int, lat0: float, lon0: float, c0: float, g: float):
    """Each cell's safe circle and edges, in the grid's units.

    The cell's boundary (h3ronpy) is drawn in the plane tangent at its centre, x = longitude x
    cos(latitude of the centre), y = latitude, divided by the box size ``g``. A grid point
    (fx, fy) is there at ((fx - cx) * sx, fy - cy). ``disc`` holds (cx, cy, sx, r²) with r =
    :data:`_H3_SAFE` x the inradius (least distance from the centre to an edge); ``edges`` the
    six edges' outward unit normals and offsets less the same 1 % margin (a point is inside
    when within every edge). Cells astride the antimeridian get r² = -1 and, like pentagons
    and cells with extra vertices where they cross an icosahedron edge, offsets of -inf (never
    used)."""
    import pyarrow as pa
    import shapely
    from h3ronpy import vector

    arr = pa.array(cells, type=pa.uint64())
    cen = pa.record_batch(vector.cells_to_coordinates(arr))
    cen_lat = cen.column("lat").to_numpy()
    cen_lon = cen.column("lng").to_numpy()
    cos_c = np.cos(np.radians(cen_lat))
    wkb = pa.array(vector.cells_to_wkb_polygons(arr)).to_numpy(zero_copy_only=False)
    xy, which = shapely.get_coordinates(shapely.from_wkb(wkb), return_index=True)
    same = which[1:] == which[:-1]  # ring edges: consecutive vertices of one cell (closed)
    w = which[:-1][same]
    wide = np.zeros(len(cells), dtype=bool)
    wide[w[np.abs(xy[1:, 0][same] - xy[:-1, 0][same]) > 180.0]] = True
    ax = (xy[:-1, 0][same] - cen_lon[w]) * cos_c[w] / g
    ay = (xy[:-1, 1][same] - cen_lat[w]) / g
    ex = (xy[1:, 0][same] - cen_lon[w]) * cos_c[w] / g - ax
    ey = (xy[1:, 1][same] - cen_lat[w]) / g - ay
    t = np.clip(-(ax * ex + ay * ey) / np.maximum(ex * ex + ey * ey, 1e-300), 0.0, 1.0)
    d2 = (ax + t * ex) ** 2 + (ay + t * ey) ** 2
    inr2 = np.full(len(cells), np.inf)
    np.minimum.at(inr2, w, d2)
    r2 = _H3_SAFE**2 * inr2
    r2[wide | ~np.isfinite(r2)] = -1.0
    disc = [(cen_lon - lon0) * c0 / g, (cen_lat - lat0) / g, cos_c / c0, r2]
    # edges: the normal (ey, -ex) / |e| points outward on a clockwise ring, inward otherwise
    norm = np.hypot(ex, ey)
    nx, ny = ey / np.maximum(norm, 1e-300), -ex / np.maximum(norm, 1e-300)
    off = nx * ax + ny * ay
    sign = np.where(off < 0, -1.0, 1.0)  # the centre is inside: flip normals to make off > 0
    nx, ny, off = nx * sign, ny * sign, off * sign
    edges = [
        np.zeros((len(cells), 6)),
        np.zeros((len(cells), 6)),
        np.full((len(cells), 6), -np.inf),
    ]
    n_edges = np.bincount(w, minlength=len(cells))
    hexa = (n_edges == 6) & ~wide & (r2 > 0)
    pick = hexa[w]
    k = np.arange(len(w)) - (np.cumsum(n_edges) - n_edges)[w]
    margin = (1 - _H3_SAFE) * np.sqrt(inr2)
    for e, v in zip(edges, (nx, ny, off - margin[w])):
        e[w[pick], k[pick]] = v[pick]
    # the cell across each edge: the cell of a point a fifth of the way past the edge's middle
    mid = 0.5 * (xy[:-1][same] + xy[1:][same])
    beyond = np.full((len(cells), 6), 0, dtype=np.uint64)
    if pick.any():
        out_lon = cen_lon[w] + 1.2 * (mid[:, 0] - cen_lon[w])
        out_lat = cen_lat[w] + 1.2 * (mid[:, 1] - cen_lat[w])
        beyond[w[pick], k[pick]] = _h3_exact(out_lat[pick], out_lon[pick], res)
    return disc, edges, beyond
