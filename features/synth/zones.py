"""The synthetic city's zones: a jittered grid of IRIS-like quadrilaterals, typed and peopled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features import zones as fz
from features.synth.scales import CENTRE, ScaleSpec, rng_stream


@dataclass
class Zones:
    """The zones, indexed 0..Z-1 in the order of their ids."""

    ids: np.ndarray
    names: list[str]
    types: np.ndarray
    population: np.ndarray
    quads: np.ndarray  # (Z, 4, 2) lon/lat vertices
    lat: np.ndarray  # centroid (cube's definition)
    lon: np.ndarray
    neighbours: list[list[int]]
    attract: np.ndarray  # movers' attractiveness
    attract_vis: np.ndarray  # outside visitors' attractiveness
    is_2h: np.ndarray
    gdf: Any


QUARTIERS = (
    "Saint-Martin", "Les Halles", "Bellevue", "La Roquette", "Les Tanneurs", "Le Marais",
    "Montbrun", "Les Acacias", "Gare du Nord", "Le Port", "Les Lilas", "La Butte", "Beaugrenelle",
    "Les Rives", "Clos-Fleuri", "Le Moulin", "Sainte-Anne", "La Chapelle", "Les Peupliers",
    "Le Faubourg", "La Fontaine", "Les Vignes", "Le Bourg", "Les Remparts", "La Glacière",
)  # fmt: skip
_POP_FACTOR = {"residential": 1.3, "centre": 0.8, "business": 0.3, "nightlife": 0.9,
               "park": 0.05, "stadium": 0.1, "venue": 0.4}  # fmt: skip
_ATTRACT = {"residential": 0.15, "centre": 2.0, "business": 2.5, "nightlife": 1.2, "park": 0.8,
            "stadium": 0.1, "venue": 0.3}  # fmt: skip
_ATTRACT_VIS = {"residential": 0.05, "centre": 1.5, "business": 1.0, "nightlife": 1.2,
                "park": 0.6, "stadium": 0.05, "venue": 0.2}  # fmt: skip


def make_zones(spec: ScaleSpec, *, seed: int) -> Zones:
    """The zones of a city of size ``spec`` (random stream 1).

    The draws happen in a fixed order (grid jitter, types, people, names, 2-hour delivery), so a
    seed always gives the same city.
    """
    rng = rng_stream(seed, 1)
    quads = _grid_quads(spec, rng)
    n = len(quads)
    ids = np.array([f"75056{k + 1:04d}" for k in range(n)], dtype=object)
    types = _zone_types(spec, quads, rng)
    pop = np.array([_POP_FACTOR[t] for t in types]) * spec.mean_pop * rng.lognormal(0, 0.25, n)
    pop = np.round(pop).astype(int)
    attract = np.array([_ATTRACT[t] for t in types]) * rng.lognormal(0, 0.3, n) * spec.mean_pop
    attract_vis = np.array([_ATTRACT_VIS[t] for t in types]) * rng.lognormal(0, 0.3, n)
    names = [
        f"{QUARTIERS[k % len(QUARTIERS)]} {k // len(QUARTIERS) + 1}" for k in rng.permutation(n)
    ]
    gdf, lat, lon, neighbours = _geometry(ids, names, quads)
    resid = np.flatnonzero(types == "residential")
    n2 = round(spec.share_2h * len(resid))
    is_2h = np.zeros(n, dtype=bool)
    is_2h[rng.choice(resid, size=n2, replace=False)] = True
    return Zones(
        ids=ids,
        names=names,
        types=types,
        population=pop,
        quads=quads,
        lat=lat,
        lon=lon,
        neighbours=neighbours,
        attract=attract,
        attract_vis=attract_vis,
        is_2h=is_2h,
        gdf=gdf,
    )


def _grid_quads(spec: ScaleSpec, rng: np.random.Generator) -> np.ndarray:
    """(Z, 4, 2) lon/lat vertices of a grid around :data:`CENTRE` with jittered inner nodes."""
    nx, ny = spec.nx, spec.ny
    dlat, dlon = spec.cell_deg
    lon0 = CENTRE[1] - nx * dlon / 2
    lat0 = CENTRE[0] - ny * dlat / 2
    gx, gy = np.meshgrid(
        np.arange(nx + 1, dtype=float), np.arange(ny + 1, dtype=float), indexing="ij"
    )
    jx = rng.uniform(-0.2, 0.2, gx.shape)
    jy = rng.uniform(-0.2, 0.2, gy.shape)
    jx[[0, -1], :] = 0.0  # straight outer border
    jy[:, [0, -1]] = 0.0
    vx = lon0 + (gx + jx) * dlon
    vy = lat0 + (gy + jy) * dlat
    quads = []
    for j in range(ny):
        for i in range(nx):
            quads.append(
                [(vx[i, j], vy[i, j]), (vx[i + 1, j], vy[i + 1, j]),
                 (vx[i + 1, j + 1], vy[i + 1, j + 1]), (vx[i, j + 1], vy[i, j + 1])]
            )  # fmt: skip
    return np.round(np.asarray(quads), 7)


def _zone_types(spec: ScaleSpec, quads: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zone types: centre in the middle, business and nightlife around it, stadiums and venues
    in the outer half, a few parks, residential elsewhere."""
    n = len(quads)
    dlat, dlon = spec.cell_deg
    cx = quads[:, :, 0].mean(axis=1)
    cy = quads[:, :, 1].mean(axis=1)
    dist = np.hypot((cx - CENTRE[1]) / dlon, (cy - CENTRE[0]) / dlat)
    order = np.argsort(dist, kind="stable")
    types = np.full(n, "residential", dtype=object)
    n_centre = max(2, round(0.08 * n))
    types[order[:n_centre]] = "centre"
    inner = [z for z in order[n_centre : max(n_centre + 4, round(0.4 * n))]]
    pick = rng.permutation(inner)
    n_bus = max(3, round(0.12 * n))
    n_night = max(2, round(0.06 * n))
    types[pick[:n_bus]] = "business"
    types[pick[n_bus : n_bus + n_night]] = "nightlife"
    rest = [z for z in order if types[z] == "residential"]
    outer = rng.permutation([z for z in rest if dist[z] >= np.median(dist)])
    types[outer[: spec.n_stadiums]] = "stadium"
    k = spec.n_stadiums
    types[outer[k : k + spec.n_venues]] = "venue"
    n_park = max(2, round(0.06 * n))
    parks = rng.permutation([z for z in order if types[z] == "residential"])
    types[parks[:n_park]] = "park"
    return types


def _geometry(
    ids: np.ndarray, names: list[str], quads: np.ndarray
) -> tuple[Any, np.ndarray, np.ndarray, list[list[int]]]:
    """GeoDataFrame, centroid lat/lon and neighbour indices, as :mod:`features.zones` sees them."""
    import geopandas as gpd
    from shapely import Polygon

    gdf = gpd.GeoDataFrame(
        {"zone_id": ids, "name": names},
        geometry=[Polygon(q) for q in quads],
        crs=4326,
    )
    cent = fz.centroids(gdf)
    nb = fz.neighbours(gdf)
    index = {z: i for i, z in enumerate(ids)}
    neighbours = [[index[m] for m in nb[z]] for z in ids]
    return gdf, cent["latitude"].to_numpy(), cent["longitude"].to_numpy(), neighbours


def points_in_zones(
    zone_idx: np.ndarray, *, quads: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points inside each zone's quadrilateral shrunk by 3 % around its centre.

    The shrink keeps every point a few metres from the borders, so that rounding of the written
    coordinates never moves a point into a neighbour. Returns (lon, lat).
    """
    q = quads[zone_idx]  # (n, 4, 2)
    c = q.mean(axis=1, keepdims=True)
    q = c + 0.97 * (q - c)
    a, b, cc, d = q[:, 0], q[:, 1], q[:, 2], q[:, 3]

    def area(p, r, s):
        return 0.5 * np.abs(
            (r[:, 0] - p[:, 0]) * (s[:, 1] - p[:, 1]) - (s[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1])
        )

    a1 = area(a, b, cc)
    a2 = area(a, cc, d)
    first = rng.random(len(zone_idx)) < a1 / (a1 + a2)
    p1 = a
    p2 = np.where(first[:, None], b, cc)
    p3 = np.where(first[:, None], cc, d)
    u = rng.random(len(zone_idx))
    v = rng.random(len(zone_idx))
    flip = u + v > 1
    u = np.where(flip, 1 - u, u)
    v = np.where(flip, 1 - v, v)
    pts = p1 + u[:, None] * (p2 - p1) + v[:, None] * (p3 - p1)
    return pts[:, 0], pts[:, 1]
