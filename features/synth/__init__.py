"""The synthetic city: raw files that look like real exports, with a known truth.

``generate(scale, out, seed=...)`` writes into ``out``:

* ``zones_iris.geojson``: polygons of a distorted grid around a centre (lat 48.85, lon 2.35),
  French column names (``code_iris``, ``nom``, ``population``, ``type_zone``);
* ``presence/``: Flux-Vision-like exports (``id_zone``, ``date_heure`` in naive local time,
  ``duree_min``, ``volume_present``, ``residents``, ``visiteurs``), most zones in hourly files
  written by 4-week chunk, a subset of residential zones in ONE file of 2-hour slots, and the daily
  origins file ``flux_vision_origines``;
* ``incidents/main_courante_*``: one row per incident (``numero``, ``date_heure`` as
  ``dd/mm/YYYY HH:MM:SS+hhmm``, Lambert-93 ``x_l93``/``y_l93``, ``nature``, ``service``,
  ``priorite``) plus a few deliberately bad rows;
* ``eclairage/lampadaires.csv`` (lat/lon) and ``eclairage/pannes.csv`` (faults, ISO times with
  offset, empty repair = still out);
* ``transport/gtfs.zip`` (stops, agency, routes) and ``transport/validations_*`` (entries per
  stop and hour, naive local time);
* ``meteo_horaire.csv`` (UTC), ``evenements.csv`` (past and upcoming events);
* one planted gap in the presence export (six hours of one zone absent; ``presence_gaps``);
* ``sources.yaml`` mapping all of it onto vigie's canonical names, and ``truth.json``.

The statistical model (the one ``docs/architecture.md`` "Model features" says the models
estimate): for zone z, UTC hour t and category c, incidents are Poisson with mean

    present[z, t] * base_rate[c] * hod[c][local hour] * dow[local weekday]
    * exp(sum_f beta[f, c] * x_f[z, t]) * signal multipliers

with ``hod[c][12] == 1`` and ``dow[Monday] == 1`` (the models' reference levels), ``present`` the
value the presence files deliver for that zone and hour (for 2-hour zones, the slot average, which
the cube applies to both hours), and the features exactly as the cube and
``pipelines.models.design`` define them: ``dark`` from :func:`features.calendar.dark_mask` at the
zone centroid of :func:`features.zones.centroids`; ``dark_lamps_out = dark * 10 * lamps_out /
lamps`` with a lamp out when a fault is open at the slot midpoint; ``event_k`` = expected
attendance / 1000 of events whose ``[start, end)`` overlaps the slot in the zone; ``rain`` =
precipitation_mm >= 1; ``transit_k`` = entries of the zone's stops / 1000; ``holiday`` and
``school_holiday`` from :mod:`features.calendar` (France, school zone C) on the local date.

References
----------
Chalfin, A., Hansen, B., Weisburst, E. K., & Williams, M. C. (2022). Reducing crime through
environmental design: evidence from a randomized experiment of street lighting in New York City.
*Journal of Quantitative Criminology*, 38, 127-157 (the size of the lighting effect).
Orange Business, *Flux Vision* product documentation (present volumes, residents/visitors, origins).
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError
from features.timeutil import iso_week

log = logging.getLogger(__name__)

TIMEZONE = "Europe/Paris"
CENTRE = (48.85, 2.35)  # lat, lon
#: the end of every synthetic study: Sunday 2026-11-15 24:00 local (last full ISO week 2026-W46)
END_LOCAL = "2026-11-16 00:00"
#: chunked outputs (removed before writing, so a rerun in the same folder leaves no stale chunk)
_CHUNKED = (
    "presence/flux_vision_horaire_*.*",
    "incidents/main_courante_*.*",
    "transport/validations_*.*",
)
CHUNK_HOURS = 672  # 4 weeks; even, so 2-hour slots never straddle two chunks
UPCOMING_DAYS = 28


@dataclass(frozen=True)
class ScaleSpec:
    """Size of a synthetic city."""

    nx: int
    ny: int
    weeks: int
    mean_pop: float
    cell_deg: tuple[float, float]  # (dlat, dlon) of one grid cell
    lamps_per_zone: int
    n_stadiums: int
    n_venues: int
    fmt: str  # file format of the big tables: csv or parquet
    share_2h: float  # share of residential zones delivered in 2-hour slots


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(6, 5, 8, 6000.0, (0.0075, 0.011), 80, 1, 1, "csv", 0.25),
    "city": ScaleSpec(20, 15, 104, 3200.0, (0.0045, 0.0068), 70, 1, 2, "parquet", 0.15),
    "metropolis": ScaleSpec(40, 25, 104, 2500.0, (0.0045, 0.0068), 60, 2, 4, "parquet", 0.15),
}

ZONE_TYPES = ("centre", "business", "residential", "nightlife", "park", "stadium", "venue")


def _profile(points: list[tuple[float, float]]) -> np.ndarray:
    """24 hourly values interpolated from (hour, value) anchors (cyclic)."""
    h, v = zip(*points, strict=True)
    return np.interp(np.arange(24), h, v)


#: incident categories: French label -> base rate (per person-hour at local 12:00 on a Monday,
#: features at zero), hour-of-day profile (hod[12] == 1), services that answer.
CATEGORIES: dict[str, dict[str, Any]] = {
    "vol": {
        "base_rate": 3.0e-5,
        "hod": [0.5, 0.4, 0.3, 0.25, 0.2, 0.2, 0.3, 0.5, 0.8, 0.9, 0.95, 1.0,
                1.0, 1.0, 1.05, 1.1, 1.2, 1.3, 1.35, 1.3, 1.1, 0.9, 0.7, 0.6],
        "services": {"police": 1.0},
    },
    "atteinte_personne": {
        "base_rate": 1.2e-5,
        "hod": [2.0, 2.2, 2.2, 1.8, 1.2, 0.8, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9,
                1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9],
        "services": {"police": 1.0},
    },
    "trouble_ordre_public": {
        "base_rate": 1.0e-5,
        "hod": [3.0, 3.2, 3.0, 2.4, 1.5, 0.8, 0.4, 0.4, 0.5, 0.6, 0.7, 0.8,
                1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.9, 2.2, 2.5, 2.8],
        "services": {"police": 1.0},
    },
    "incendie": {
        "base_rate": 0.6e-5,
        "hod": [1.0, 0.9, 0.9, 0.8, 0.7, 0.7, 0.7, 0.8, 0.9, 0.9, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.3, 1.3, 1.2, 1.1, 1.1],
        "services": {"pompiers": 1.0},
    },
    "secours_a_personne": {
        "base_rate": 2.4e-5,
        "hod": [0.9, 0.8, 0.8, 0.7, 0.7, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9],
        "services": {"pompiers": 0.6, "samu": 0.4},
    },
    "accident_circulation": {
        "base_rate": 1.6e-5,
        "hod": [0.4, 0.3, 0.3, 0.3, 0.3, 0.5, 0.9, 1.4, 1.6, 1.1, 0.9, 0.9,
                1.0, 1.0, 1.0, 1.1, 1.3, 1.6, 1.7, 1.4, 1.0, 0.8, 0.6, 0.5],
        "services": {"police": 0.5, "pompiers": 0.5},
    },
}  # fmt: skip
CAT_NAMES = tuple(CATEGORIES)
#: day-of-week multipliers (Monday = reference), common to every category
DOW = (1.0, 0.98, 1.0, 1.03, 1.12, 1.2, 1.05)

_ALL = list(CAT_NAMES)
_STREET = ["vol", "atteinte_personne", "trouble_ordre_public"]
#: planted effects: IRR per unit of the model feature (docs/architecture.md "Model features").
EFFECTS: list[dict[str, Any]] = [
    {"name": "dark", "feature": "dark", "irr": 1.3, "categories": _ALL},
    {"name": "dark_lamps_out", "feature": "dark_lamps_out", "irr": 1.15, "categories": _ALL},
    {"name": "event_k", "feature": "event_k", "irr": 1.02, "categories": _ALL},
    {"name": "rain_street", "feature": "rain", "irr": 0.85, "categories": _STREET},
    {"name": "rain_road", "feature": "rain", "irr": 1.3, "categories": ["accident_circulation"]},
    {
        "name": "rain_none",
        "feature": "rain",
        "irr": 1.0,
        "categories": ["incendie", "secours_a_personne"],
    },
    {"name": "transit_k", "feature": "transit_k", "irr": 1.08, "categories": _ALL},
    {"name": "holiday", "feature": "holiday", "irr": 1.2, "categories": _ALL},
    {"name": "school_holiday", "feature": "school_holiday", "irr": 1.0, "categories": _ALL},
]
FEATURES = ("dark", "dark_lamps_out", "event_k", "rain", "transit_k", "holiday", "school_holiday")

#: (services) -> file label
_SERVICE_PREFIX = {"police": "PN", "pompiers": "SP", "samu": "SA"}
_ORIGINS = ("zone_etude", "petite_couronne", "grande_couronne", "autres_departements", "etranger")

_EVENT_KINDS: dict[str, dict[str, Any]] = {
    # DPS grid values (arrêté du 7 novembre 2006): P2 activity, E1 environment, E2 delay
    "match": {"indoor": False, "p2": 0.35, "e1": 0.25, "arrive_h": 2.0, "leave_h": 1.0, "peak": 1.0},
    "concert": {"indoor": True, "p2": 0.35, "e1": 0.25, "arrive_h": 1.5, "leave_h": 1.0, "peak": 1.0},
    "marche": {"indoor": False, "p2": 0.30, "e1": 0.25, "arrive_h": 0.5, "leave_h": 0.5, "peak": 0.5},
    "festival": {"indoor": False, "p2": 0.40, "e1": 0.30, "arrive_h": 1.5, "leave_h": 1.0, "peak": 0.7},
    "manifestation": {"indoor": False, "p2": 0.40, "e1": 0.25, "arrive_h": 1.0, "leave_h": 1.0, "peak": 1.0},
}  # fmt: skip


@dataclass(frozen=True)
class SynthResult:
    """What :func:`generate` wrote.

    Attributes
    ----------
    out
        The folder.
    scale, seed
        As asked.
    sources_yaml, truth_json
        Paths of the study description and of the planted truth.
    files
        Source name -> files written for it (relative to ``out``).
    rows
        Source name -> rows written (incidents include the deliberately bad rows).
    seconds
        Wall time of the generation.
    """

    out: Path
    scale: str
    seed: int
    sources_yaml: Path
    truth_json: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# helpers


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream for (seed, component, chunk...), stable across chunking."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _period(weeks: int) -> tuple[pd.Timestamp, pd.Timestamp, pd.DatetimeIndex]:
    """Local start, local end and the UTC hours of the study period."""
    end_naive = pd.Timestamp(END_LOCAL)
    start = (end_naive - pd.Timedelta(weeks=weeks)).tz_localize(TIMEZONE)
    end = end_naive.tz_localize(TIMEZONE)
    hours = pd.date_range(
        start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h", inclusive="left"
    )
    return start, end, hours.as_unit("ns")


def _utc_iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Calendar:
    """Per-hour calendar of a span of UTC hours."""

    hours: pd.DatetimeIndex
    local: pd.DatetimeIndex
    local_hour: np.ndarray
    dow: np.ndarray
    doy: np.ndarray
    day_index: np.ndarray  # local day number since the period start
    holiday: np.ndarray
    school: np.ndarray
    offset_s: np.ndarray  # local - UTC, seconds

    def rows(self, a: int, b: int) -> _Calendar:
        """The calendar of hours a to b (exclusive)."""
        return _Calendar(**{f.name: getattr(self, f.name)[a:b] for f in fields(self)})


def _day_flags(
    first: pd.Timestamp, last: pd.Timestamp
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Public and school holidays (France, zone C) of every local date in [first, last]
    (:func:`features.calendar.day_flags`, cached there)."""
    from features import calendar

    days = pd.date_range(first.normalize(), last.normalize(), freq="D")
    day0 = int(days[0].value // 86_400_000_000_000)
    hol, sch = calendar.day_flags(day0, day0 + len(days), country="FR", school_zone="C")
    return days, hol, sch


def _calendar(hours: pd.DatetimeIndex, day0: pd.Timestamp) -> _Calendar:
    local = hours.tz_convert(TIMEZONE)
    dates = local.tz_localize(None).normalize()
    d0 = day0.tz_localize(None).normalize()
    days, hol, sch = _day_flags(d0, d0 + pd.Timedelta(weeks=104 + 8))
    pos = ((dates - d0).days).to_numpy()
    if pos.min() < 0 or pos.max() >= len(days):  # pragma: no cover - outside the cached span
        days, hol, sch = _day_flags(min(d0, dates.min()), dates.max())
        pos = days.get_indexer(dates)
    return _Calendar(
        hours=hours,
        local=local,
        local_hour=local.hour.to_numpy(),
        dow=local.dayofweek.to_numpy(),
        doy=local.dayofyear.to_numpy(),
        day_index=((dates - d0).days).to_numpy(),
        holiday=hol[pos],
        school=sch[pos],
        offset_s=(
            (local.tz_localize(None) - hours.tz_localize(None))
            .total_seconds()
            .to_numpy()
            .astype(int)
        ),
    )


def _dark(hours: pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """dark[t, z] with :func:`features.calendar.dark_mask`, the cube's own definition.

    dark_mask rounds locations to a grid internally; zones sharing a grid cell share one call.
    """
    from features import calendar

    grid = calendar.SUN_GRID
    out = np.zeros((len(hours), len(lat)), dtype=bool)
    keys = np.stack([np.round(lat / grid), np.round(lon / grid)], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, z0 in enumerate(first):
        col = calendar.dark_mask(hours, float(lat[z0]), float(lon[z0]))
        out[:, inverse == k] = col[:, None]
    return out


def _local_strings(cal: _Calendar, fmt: str) -> np.ndarray:
    """Naive local time of each hour as text (e.g. ``%Y-%m-%d %H:%M:%S``)."""
    return np.asarray(cal.local.strftime(fmt), dtype=object)


# ---------------------------------------------------------------------------------------------
# zones


@dataclass
class _Zones:
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


_QUARTIERS = (
    "Saint-Martin", "Les Halles", "Bellevue", "La Roquette", "Les Tanneurs", "Le Marais",
    "Montbrun", "Les Acacias", "Gare du Nord", "Le Port", "Les Lilas", "La Butte", "Beaugrenelle",
    "Les Rives", "Clos-Fleuri", "Le Moulin", "Sainte-Anne", "La Chapelle", "Les Peupliers",
    "Le Faubourg", "La Fontaine", "Les Vignes", "Le Bourg", "Les Remparts", "La Glacière",
)  # fmt: skip


def _make_zones(spec: ScaleSpec, seed: int) -> _Zones:
    import geopandas as gpd
    from shapely import Polygon

    from features import zones as fz

    rng = _rng(seed, 1)
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
    quads_a = np.round(np.asarray(quads), 7)
    n = len(quads_a)
    ids = np.array([f"75056{k + 1:04d}" for k in range(n)], dtype=object)
    cx = quads_a[:, :, 0].mean(axis=1)
    cy = quads_a[:, :, 1].mean(axis=1)
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
    k += spec.n_venues
    n_park = max(2, round(0.06 * n))
    rest = rng.permutation([z for z in order if types[z] == "residential"])
    types[rest[:n_park]] = "park"
    pop_factor = {"residential": 1.3, "centre": 0.8, "business": 0.3, "nightlife": 0.9,
                  "park": 0.05, "stadium": 0.1, "venue": 0.4}  # fmt: skip
    pop = np.array([pop_factor[t] for t in types]) * spec.mean_pop * rng.lognormal(0, 0.25, n)
    pop = np.round(pop).astype(int)
    att = {"residential": 0.15, "centre": 2.0, "business": 2.5, "nightlife": 1.2, "park": 0.8,
           "stadium": 0.1, "venue": 0.3}  # fmt: skip
    att_vis = {"residential": 0.05, "centre": 1.5, "business": 1.0, "nightlife": 1.2, "park": 0.6,
               "stadium": 0.05, "venue": 0.2}  # fmt: skip
    attract = np.array([att[t] for t in types]) * rng.lognormal(0, 0.3, n) * spec.mean_pop
    attract_vis = np.array([att_vis[t] for t in types]) * rng.lognormal(0, 0.3, n)
    names = [
        f"{_QUARTIERS[k % len(_QUARTIERS)]} {k // len(_QUARTIERS) + 1}" for k in rng.permutation(n)
    ]
    gdf = gpd.GeoDataFrame(
        {"zone_id": ids, "name": names},
        geometry=[Polygon(q) for q in quads_a],
        crs=4326,
    )
    cent = fz.centroids(gdf)
    nb = fz.neighbours(gdf)
    index = {z: i for i, z in enumerate(ids)}
    neighbours = [[index[m] for m in nb[z]] for z in ids]
    resid = np.flatnonzero(types == "residential")
    n2 = round(spec.share_2h * len(resid))
    is_2h = np.zeros(n, dtype=bool)
    is_2h[rng.choice(resid, size=n2, replace=False)] = True
    return _Zones(
        ids=ids,
        names=names,
        types=types,
        population=pop,
        quads=quads_a,
        lat=cent["latitude"].to_numpy(),
        lon=cent["longitude"].to_numpy(),
        neighbours=neighbours,
        attract=attract,
        attract_vis=attract_vis,
        is_2h=is_2h,
        gdf=gdf,
    )


def _points_in_zones(zone_idx: np.ndarray, quads: np.ndarray, rng: np.random.Generator):
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


# ---------------------------------------------------------------------------------------------
# presence

_HOME_WORK = _profile([(0, 0.95), (6, 0.95), (7, 0.85), (8, 0.6), (9, 0.45), (17, 0.45),
                       (18, 0.6), (20, 0.8), (22, 0.9), (23, 0.95)])  # fmt: skip
_HOME_OFF = _profile([(0, 0.92), (8, 0.93), (10, 0.8), (12, 0.7), (16, 0.65), (19, 0.75),
                      (21, 0.82), (23, 0.9)])  # fmt: skip
# destination profiles per zone type: (workday, day off)
_DEST: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "centre": (_profile([(0, 0.2), (6, 0.2), (9, 0.9), (11, 1.0), (19, 1.0), (21, 0.6), (23, 0.3)]),
               _profile([(0, 0.3), (7, 0.2), (10, 0.9), (12, 1.2), (19, 1.1), (21, 0.8), (23, 0.4)])),
    "business": (_profile([(0, 0.03), (6, 0.05), (8, 0.7), (9, 1.0), (17, 1.0), (19, 0.3), (21, 0.08), (23, 0.04)]),
                 _profile([(0, 0.03), (8, 0.05), (11, 0.15), (17, 0.15), (20, 0.05), (23, 0.03)])),
    "residential": (_profile([(0, 0.02), (8, 0.05), (12, 0.08), (18, 0.1), (21, 0.06), (23, 0.03)]),
                    _profile([(0, 0.03), (10, 0.1), (14, 0.15), (19, 0.12), (23, 0.05)])),
    "nightlife": (_profile([(0, 0.8), (2, 0.5), (4, 0.1), (7, 0.1), (12, 0.4), (18, 0.5), (20, 0.9), (22, 1.0)]),
                  _profile([(0, 1.3), (2, 1.1), (4, 0.3), (7, 0.1), (12, 0.5), (18, 0.7), (20, 1.2), (22, 1.5)])),
    "park": (_profile([(0, 0.01), (6, 0.02), (9, 0.2), (12, 0.4), (17, 0.4), (20, 0.1), (23, 0.02)]),
             _profile([(0, 0.01), (7, 0.05), (10, 0.6), (13, 1.0), (17, 1.0), (20, 0.2), (23, 0.02)])),
    "stadium": (_profile([(0, 0.02), (9, 0.1), (17, 0.1), (23, 0.02)]),
                _profile([(0, 0.02), (10, 0.15), (17, 0.15), (23, 0.02)])),
    "venue": (_profile([(0, 0.05), (9, 0.3), (17, 0.3), (20, 0.4), (23, 0.1)]),
              _profile([(0, 0.05), (10, 0.4), (17, 0.4), (20, 0.5), (23, 0.1)])),
}  # fmt: skip
_COMMUTE = _profile(
    [(0, 0.02), (6, 0.1), (8, 0.8), (9, 1.0), (16, 1.0), (18, 0.5), (20, 0.1), (23, 0.03)]
)
_TOURIST = _profile([(0, 0.15), (5, 0.05), (9, 0.5), (11, 0.9), (15, 1.0), (19, 0.9), (22, 0.5)])
_TRANSIT = _profile([(0, 0.1), (1, 0.0), (5, 0.0), (6, 0.3), (8, 1.0), (9, 0.7), (12, 0.5),
                     (17, 0.9), (18, 1.0), (20, 0.5), (23, 0.2)])  # fmt: skip


def _season(doy: np.ndarray) -> np.ndarray:
    """Tourist season: summer peak and Christmas markets."""
    return (
        1.0
        + 0.6 * np.exp(-(((doy - 200) / 35.0) ** 2))
        + 0.3 * np.exp(-(((doy - 355) / 10.0) ** 2))
    )


def _away(doy: np.ndarray, school: np.ndarray) -> np.ndarray:
    """Share of residents out of town: August exodus, school holidays."""
    return np.maximum(0.25 * np.exp(-(((doy - 218) / 14.0) ** 2)), np.where(school, 0.08, 0.0))


@dataclass
class _Presence:
    residents: np.ndarray  # (H, Z) float
    visitors: np.ndarray


def _base_presence(
    cal: _Calendar, zones: _Zones, day_noise: np.ndarray, rng: np.random.Generator
) -> _Presence:
    """People present per zone and hour, without events: residents at home, movers, visitors.

    ``day_noise[day_index, z]`` is a multiplicative noise per local day and zone (drawn once for
    the whole study, so chunking does not change it); ``rng`` draws the hour-level noise.
    """
    off = (cal.dow >= 5) | cal.holiday
    h = cal.local_hour
    home = np.where(off, _HOME_OFF[h], _HOME_WORK[h])  # (H,)
    away = _away(cal.doy, cal.school)
    pop = zones.population.astype(float)  # (Z,)
    in_town = pop[None, :] * (1 - away[:, None])
    at_home = in_town * home[:, None]
    movers = (in_town * (1 - home[:, None])).sum(axis=1) * 0.85  # the rest leave the area
    types = zones.types
    w = np.empty((len(h), len(types)))
    for t in ZONE_TYPES:
        m = types == t
        if m.any():
            prof = np.where(off, _DEST[t][1][h], _DEST[t][0][h])
            w[:, m] = prof[:, None] * zones.attract[m][None, :]
    w /= w.sum(axis=1, keepdims=True)
    residents = at_home + movers[:, None] * w
    total = pop.sum()
    commuters = 0.3 * total * np.where(off, 0.1, 1.0) * _COMMUTE[h]
    tourists = 0.06 * total * _season(cal.doy) * _TOURIST[h] * np.where(off, 1.4, 1.0)
    wv = np.empty_like(w)
    for t in ZONE_TYPES:
        m = types == t
        if m.any():
            prof = np.where(off, _DEST[t][1][h], _DEST[t][0][h])
            wv[:, m] = prof[:, None] * zones.attract_vis[m][None, :]
    wv /= wv.sum(axis=1, keepdims=True)
    visitors = (commuters + tourists)[:, None] * wv
    noise = day_noise[np.clip(cal.day_index, 0, len(day_noise) - 1)] * rng.lognormal(
        0, 0.04, residents.shape
    )
    return _Presence(residents * noise, visitors * noise)


# ---------------------------------------------------------------------------------------------
# events


@dataclass
class _Event:
    event_id: str
    name: str
    kind: str
    zone: int
    start: pd.Timestamp  # UTC
    end: pd.Timestamp
    expected: int
    actual: int
    lat: float
    lon: float
    upcoming: bool


def _make_events(
    zones: _Zones, start: pd.Timestamp, end: pd.Timestamp, seed: int, avoid: set[int]
) -> list[_Event]:
    """A season of matches, concerts, markets, festivals and demonstrations, past and upcoming."""
    rng = _rng(seed, 2)
    days = pd.date_range(
        start.tz_localize(None),
        end.tz_localize(None) + pd.Timedelta(days=UPCOMING_DAYS - 1),
        freq="D",
    )
    stadiums = np.flatnonzero(zones.types == "stadium")
    venues = np.flatnonzero(zones.types == "venue")
    centres = [z for z in np.flatnonzero(zones.types == "centre") if z not in avoid]
    parks = [z for z in np.flatnonzero(zones.types == "park") if z not in avoid]
    raw: list[
        tuple[str, int, pd.Timestamp, float, int]
    ] = []  # kind, zone, local start, hours, attendance
    for i, day in enumerate(days):
        dow = day.dayofweek
        for s in stadiums:  # a home match every weekend: Saturday 21:00 or Sunday 17:00
            if (dow == 5 and (i // 7 + s) % 2 == 0) or (dow == 6 and (i // 7 + s) % 2 == 1):
                hour = 21 if dow == 5 else 17
                raw.append(
                    (
                        "match",
                        s,
                        day + pd.Timedelta(hours=hour),
                        2.0,
                        int(rng.uniform(18_000, 40_000)),
                    )
                )
        for v in venues:
            if dow in (3, 4, 5) and rng.random() < 0.6:
                raw.append(
                    (
                        "concert",
                        v,
                        day + pd.Timedelta(hours=20),
                        3.0,
                        int(rng.uniform(1_500, 9_000)),
                    )
                )
        if dow == 6 and centres:
            z = centres[i // 7 % len(centres)]
            raw.append(
                ("marche", z, day + pd.Timedelta(hours=8), 5.0, int(rng.uniform(1_500, 4_000)))
            )
        if dow == 5 and (i // 7) % 2 == 1 and centres:
            z = centres[(i // 14) % len(centres)]
            raw.append(
                (
                    "manifestation",
                    z,
                    day + pd.Timedelta(hours=14),
                    4.0,
                    int(rng.uniform(3_000, 20_000)),
                )
            )
        if dow == 6 and parks and (day.month in (5, 6, 7, 8, 9) or (i // 7) % 4 == 2):
            z = parks[(i // 7) % len(parks)]
            raw.append(
                ("festival", z, day + pd.Timedelta(hours=14), 8.0, int(rng.uniform(5_000, 15_000)))
            )
    names = {"match": "Match de football", "concert": "Concert", "marche": "Marché",
             "festival": "Festival", "manifestation": "Manifestation"}  # fmt: skip
    events = []
    for k, (kind, z, local_start, dur, att) in enumerate(raw):
        s = local_start.tz_localize(TIMEZONE).tz_convert("UTC")
        e = (local_start + pd.Timedelta(hours=dur)).tz_localize(TIMEZONE).tz_convert("UTC")
        lon, lat = _points_in_zones(np.array([z]), zones.quads, rng)
        events.append(
            _Event(
                event_id=f"EVT{k + 1:05d}",
                name=f"{names[kind]} – {zones.names[z]} ({local_start:%d/%m/%Y})",
                kind=kind,
                zone=int(z),
                start=s,
                end=e,
                expected=int(round(att, -2)),
                actual=int(att * rng.uniform(0.85, 1.1)),
                lat=float(lat[0]),
                lon=float(lon[0]),
                upcoming=bool(local_start >= end.tz_localize(None)),
            )
        )
    return events


def _event_curves(ev: _Event, hours: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Average attendees in the venue zone and in its ring over each hour of ``hours``.

    Arrivals spread linearly over ``arrive_h`` hours before the start, departures over
    ``leave_h`` hours after the end; people walking in or out are in the ring meanwhile
    (half of them at any time of the arrival and departure phases).
    """
    kind = _EVENT_KINDS[ev.kind]
    a, d, peak = kind["arrive_h"] * 3600, kind["leave_h"] * 3600, kind["peak"]
    base = hours.as_unit("ns").asi8 // 10**9
    t0 = int(ev.start.value // 10**9)
    t1 = int(ev.end.value // 10**9)
    # minute grid within each hour
    mins = (base[:, None] + 60 * np.arange(60)[None, :] + 30).astype(float)
    venue = np.clip((mins - (t0 - a)) / a, 0, 1)
    venue = np.where(mins >= t1, np.clip(1 - (mins - t1) / d, 0, 1), venue)
    arriving = (mins >= t0 - a) & (mins < t0)
    leaving = (mins >= t1) & (mins < t1 + d)
    ring = 0.5 * (arriving | leaving)
    return ev.actual * peak * venue.mean(axis=1), ev.actual * ring.mean(axis=1)


def _event_window(ev: _Event) -> pd.DatetimeIndex:
    """UTC hours around an event where its attendees are present (its truth window)."""
    kind = _EVENT_KINDS[ev.kind]
    lo = (ev.start - pd.Timedelta(hours=kind["arrive_h"])).floor("h")
    hi = (ev.end + pd.Timedelta(hours=kind["leave_h"])).ceil("h")
    return pd.date_range(lo, hi, freq="h", inclusive="left")


# ---------------------------------------------------------------------------------------------
# lamps and faults


@dataclass
class _Lighting:
    lamps: pd.DataFrame  # lamp_id, zone, lat, lon, wattage, cabinet
    faults: pd.DataFrame  # fault_id, lamp, reported (UTC ns, whole minutes), repaired (or NaT)
    per_zone: np.ndarray  # lamps per zone


def _make_lighting(zones: _Zones, spec: ScaleSpec, start: pd.Timestamp, end: pd.Timestamp, seed: int,
                   planted: list[tuple[int, pd.Timestamp, pd.Timestamp, float]]) -> _Lighting:  # fmt: skip
    """Lamps grouped in cabinets; single-lamp faults, cabinet faults and sector outages.

    Faults are Poisson processes (single lamp: 1 per 500 lamp-days, repair log-normal with median
    4 days; cabinet: 1 per 150 cabinet-days, median 1.5 days; sector outage hitting 40-90 % of a
    zone's lamps: 1 per 250 zone-days, median 1 day). ``planted`` adds the signal outages
    (zone, reported, repaired, share). A lamp's later fault that overlaps an earlier open one is
    dropped (the lamp is already reported out), so a lamp is never counted out twice.
    """
    rng = _rng(seed, 3)
    Z = len(zones.ids)
    n_l = rng.poisson(spec.lamps_per_zone, Z).clip(20)
    zone_of = np.repeat(np.arange(Z), n_l)
    lon, lat = _points_in_zones(zone_of, zones.quads, rng)
    # cabinets: lamps of a zone ordered west->east, cut into groups of ~15
    order = np.lexsort((lon, zone_of))
    zone_of, lon, lat = zone_of[order], lon[order], lat[order]
    rank = np.concatenate([np.arange(n) for n in n_l])
    cabinet = zone_of * 1000 + rank // 15
    lamps = pd.DataFrame(
        {
            "lamp_id": [f"LP{i + 1:06d}" for i in range(len(zone_of))],
            "zone": zone_of,
            "lat": np.round(lat, 6),
            "lon": np.round(lon, 6),
            "wattage": rng.choice(
                [35, 50, 70, 100, 150], len(zone_of), p=[0.2, 0.3, 0.25, 0.15, 0.1]
            ),
            "cabinet": cabinet,
        }
    )
    t_lo = (start - pd.Timedelta(days=30)).value // 60_000_000_000  # minutes
    t_hi = end.value // 60_000_000_000
    span = t_hi - t_lo
    days = span / 1440
    rows_lamp, rows_rep, rows_fix = [], [], []
    n_lamps = len(lamps)
    # single-lamp faults
    k = rng.poisson(days / 500, n_lamps)
    lamp_idx = np.repeat(np.arange(n_lamps), k)
    rep = t_lo + rng.integers(0, span, len(lamp_idx))
    rows_lamp.append(lamp_idx)
    rows_rep.append(rep)
    rows_fix.append(
        rep + np.round(rng.lognormal(np.log(4 * 1440), 0.8, len(lamp_idx))).astype(np.int64)
    )
    # cabinet faults
    cabs, cab_start = np.unique(lamps["cabinet"].to_numpy(), return_index=True)
    cab_count = np.diff(np.append(cab_start, n_lamps))
    k = rng.poisson(days / 150, len(cabs))
    ci = np.repeat(np.arange(len(cabs)), k)
    rep_c = t_lo + rng.integers(0, span, len(ci))
    fix_c = rep_c + np.round(rng.lognormal(np.log(1.5 * 1440), 0.7, len(ci))).astype(np.int64)
    cnt = cab_count[ci]
    rows_lamp.append(
        np.repeat(cab_start[ci], cnt) + np.concatenate([np.arange(c) for c in cnt])
        if len(ci)
        else np.zeros(0, int)
    )
    rows_rep.append(np.repeat(rep_c, cnt))
    rows_fix.append(np.repeat(fix_c, cnt))
    # sector outages and planted outages
    zone_first = np.concatenate([[0], np.cumsum(n_l)[:-1]])
    k = rng.poisson(days / 250, Z)
    sectors = [(z, t_lo + int(rng.integers(0, span)), None, float(rng.uniform(0.4, 0.9)))
               for z in range(Z) for _ in range(k[z])]  # fmt: skip
    for z, rs, rp, share in planted:
        sectors.append((z, rs.value // 60_000_000_000, rp.value // 60_000_000_000, share))
    for z, rs, rp, share in sectors:
        m = int(round(share * n_l[z]))
        first = int(rng.integers(0, n_l[z] - m + 1))
        fix = rp if rp is not None else rs + int(round(rng.lognormal(np.log(1440), 0.6)))
        rows_lamp.append(zone_first[z] + first + np.arange(m))
        rows_rep.append(np.full(m, rs, dtype=np.int64))
        rows_fix.append(np.full(m, fix, dtype=np.int64))
    f = pd.DataFrame(
        {
            "lamp": np.concatenate(rows_lamp).astype(np.int64),
            "rep": np.concatenate(rows_rep).astype(np.int64),
            "fix": np.concatenate(rows_fix).astype(np.int64),
        }
    )
    # planted outages first among equal report times so they are kept
    f = f.sort_values(["lamp", "rep"], kind="stable").reset_index(drop=True)
    prev_fix = f.groupby("lamp")["fix"].cummax().groupby(f["lamp"]).shift(1)
    keep = prev_fix.isna() | (f["rep"] >= prev_fix)
    f = f[keep.to_numpy()]
    f = f[f["rep"] < t_hi]  # nothing reported after the end
    f = f[f["fix"] > t_lo + 30 * 1440]  # faults repaired before the start are history
    f = f.sort_values(["rep", "lamp"], kind="stable").reset_index(drop=True)
    reported = pd.to_datetime(f["rep"].to_numpy() * 60_000_000_000, utc=True)
    fixed = f["fix"].to_numpy()
    repaired = pd.to_datetime(np.where(fixed < t_hi, fixed, 0) * 60_000_000_000, utc=True)
    repaired = repaired.where(fixed < t_hi)
    faults = pd.DataFrame(
        {
            "fault_id": [f"PAN{i + 1:07d}" for i in range(len(f))],
            "lamp": f["lamp"].to_numpy(),
            "reported": reported,
            "repaired": repaired,
            "rep_ns": f["rep"].to_numpy() * 60_000_000_000,
            "fix_ns": np.where(fixed < t_hi, fixed * 60_000_000_000, np.iinfo(np.int64).max),
        }
    )
    return _Lighting(lamps=lamps, faults=faults, per_zone=n_l)


def _lamps_out(light: _Lighting, hours: pd.DatetimeIndex, Z: int) -> np.ndarray:
    """lamps_out[t, z]: lamps with a fault open at the slot midpoint (reported <= mid < repaired)."""
    mids = (hours + pd.Timedelta(minutes=30)).as_unit("ns").asi8
    f = light.faults
    zone = light.lamps["zone"].to_numpy()[f["lamp"].to_numpy()]
    i0 = np.searchsorted(mids, f["rep_ns"].to_numpy(), side="left")
    i1 = np.searchsorted(mids, f["fix_ns"].to_numpy(), side="left")
    diff = np.zeros((len(hours) + 1, Z), dtype=np.int32)
    np.add.at(diff, (i0, zone), 1)
    np.add.at(diff, (i1, zone), -1)
    return np.cumsum(diff[:-1], axis=0)


# ---------------------------------------------------------------------------------------------
# weather, stops


def _make_weather(cal: _Calendar, seed: int) -> pd.DataFrame:
    """Hourly temperature and rain: seasonal and daily cycles, rain spells as a Markov chain."""
    rng = _rng(seed, 4)
    n = len(cal.hours)
    wet_season = 1 + 0.3 * np.cos(2 * np.pi * (cal.doy - 15) / 365.25)
    raining = np.zeros(n, dtype=bool)
    state = False
    u = rng.random(n)
    for i in range(n):
        state = (u[i] > 0.2) if state else (u[i] < 0.03 * wet_season[i])
        raining[i] = state
    amount = np.where(raining, rng.gamma(1.2, 1.6, n), 0.0)
    temp = (
        12.5
        - 8 * np.cos(2 * np.pi * (cal.doy - 20) / 365.25)
        - 4 * np.cos(2 * np.pi * (cal.local_hour - 4) / 24)
        - 2 * raining
    )
    ar = np.zeros(n)
    e = rng.normal(0, 0.35, n)
    for i in range(1, n):
        ar[i] = 0.97 * ar[i - 1] + e[i]
    return pd.DataFrame(
        {"temperature_c": np.round(temp + ar, 1), "precipitation_mm": np.round(amount, 1)}
    )


def _make_stops(zones: _Zones, seed: int) -> pd.DataFrame:
    """Stops: hubs in the centre and business zones, one stop in most other zones."""
    rng = _rng(seed, 5)
    rows = []
    for z, t in enumerate(zones.types):
        if t in ("centre", "business"):
            n, k = 2, (0.06, 0.02)
        elif t in ("stadium", "venue", "nightlife"):
            n, k = 1, (0.03, 0.01)
        else:
            n, k = (1 if rng.random() < 0.6 else 0), (0.02, 0.008)
        for _ in range(n):
            rows.append((z, rng.uniform(*k[::-1])))
    zone = np.array([r[0] for r in rows])
    lon, lat = _points_in_zones(zone, zones.quads, rng)
    return pd.DataFrame(
        {
            "stop_id": [f"ARR{i + 1:05d}" for i in range(len(rows))],
            "stop_name": [f"{zones.names[z]} – quai {i % 2 + 1}" for i, z in enumerate(zone)],
            "zone": zone,
            "lat": np.round(lat, 6),
            "lon": np.round(lon, 6),
            "rate": np.array([r[1] for r in rows]),
        }
    )


# ---------------------------------------------------------------------------------------------
# signals


@dataclass
class _Signal:
    type: str
    zones: list[int]
    start: pd.Timestamp  # UTC
    end: pd.Timestamp
    params: dict[str, Any]


def _plan_signals(zones: _Zones, end: pd.Timestamp, seed: int) -> list[_Signal]:
    """The four planted weak signals, in the last three ISO weeks of the study.

    Zones are taken among hourly-delivered zones, far from each other, never a venue.
    """
    rng = _rng(seed, 6)
    Z = len(zones.ids)
    ok = ~zones.is_2h & np.isin(zones.types, ["residential", "centre", "nightlife", "business"])
    used: set[int] = set()  # zones a signal already acts on
    near: set[int] = set()  # those and their neighbours

    def pick(types: tuple[str, ...], need_nb: int = 0) -> int:
        """A zone of one of ``types``; best away from earlier signals, else just not on them."""
        order = [int(z) for z in rng.permutation(Z) if ok[z]]

        def free_nbs(z: int) -> int:
            return sum(bool(ok[m]) and m not in used for m in zones.neighbours[z])

        tiers = [
            [z for z in order if zones.types[z] in types and z not in near
             and not set(zones.neighbours[z]) & near and free_nbs(z) >= need_nb],
            [z for z in order if zones.types[z] in types and z not in near
             and not set(zones.neighbours[z]) & used and free_nbs(z) >= need_nb],
            [z for z in order if z not in used and not set(zones.neighbours[z]) & used],
            [z for z in order if z not in used],
        ]  # fmt: skip
        return next(t for t in tiers if t)[0]

    def mark(zs: list[int]) -> None:
        used.update(zs)
        near.update(zs)
        for z in zs:
            near.update(zones.neighbours[z])

    def local(s: str) -> pd.Timestamp:
        return pd.Timestamp(s).tz_localize(TIMEZONE).tz_convert("UTC")

    end_l = end.tz_localize(None)
    w44 = end_l - pd.Timedelta(weeks=3)  # Monday of the third-last week
    signals = []
    z = pick(("residential", "centre"))
    mark([z])
    signals.append(_Signal("emerging", [z], local(str(w44 + pd.Timedelta(weeks=1))), end,
                           {"multiplier_start": 1.0, "multiplier_end": 3.0, "shape": "linear ramp",
                            "categories": list(CAT_NAMES)}))  # fmt: skip
    z = pick(("residential", "centre", "nightlife"), need_nb=2)
    nbs = [m for m in zones.neighbours[z] if ok[m] and m not in used][:2]
    mark([z, *nbs])
    signals.append(_Signal("cluster", [z, *nbs], local(str(w44 + pd.Timedelta(days=8))),
                           local(str(w44 + pd.Timedelta(days=12))),
                           {"multiplier": 3.0, "categories": list(_STREET)}))  # fmt: skip
    z = pick(("business",))
    mark([z])
    night = w44 + pd.Timedelta(days=6)  # Sunday of the third-last week, 01:00-04:00
    signals.append(_Signal("gathering", [z], local(str(night + pd.Timedelta(hours=1))),
                           local(str(night + pd.Timedelta(hours=4))), {"extra_people": None}))  # fmt: skip
    z = pick(("residential", "centre"), need_nb=2)
    mark([z, *zones.neighbours[z]])
    rs = local(str(w44 + pd.Timedelta(weeks=2, hours=18, minutes=7)))
    rp = local(str(w44 + pd.Timedelta(weeks=2, days=4, hours=10, minutes=41)))
    signals.append(_Signal("outage_spillover", [z], rs, rp,
                           {"outage_share": 0.9, "neighbours": [int(m) for m in zones.neighbours[z]],
                            "multiplier": 2.5, "applies_to": "dark hours of the neighbours",
                            "categories": list(CAT_NAMES)}))  # fmt: skip
    return signals


# ---------------------------------------------------------------------------------------------
# writing


class _Table:
    """Appends chunks to one CSV or Parquet file, deterministically."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.rows = 0
        self._writer = None
        self._first = True
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()

    def write(self, df: pd.DataFrame) -> None:
        self.rows += len(df)
        if self.fmt == "csv":
            df.to_csv(
                self.path,
                mode="w" if self._first else "a",
                header=self._first,
                index=False,
                lineterminator="\n",
            )
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._writer.write_table(table)
        self._first = False

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self._first and self.fmt == "csv":
            self.path.write_text("", encoding="utf-8")


def _lambert(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True)
    x, y = tr.transform(lon, lat)
    return np.round(x, 2), np.round(y, 2)


def _write_zones(zones: _Zones, path: Path) -> None:
    feats = []
    for z in range(len(zones.ids)):
        ring = [[float(x), float(y)] for x, y in zones.quads[z]]
        ring.append(ring[0])
        feats.append(
            {
                "type": "Feature",
                "properties": {
                    "code_iris": zones.ids[z],
                    "nom": zones.names[z],
                    "population": int(zones.population[z]),
                    "type_zone": zones.types[z],
                },
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": feats,
    }
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def _write_gtfs(stops: pd.DataFrame, path: Path) -> None:
    files = {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nVSS,Transports de Vigie-sur-Seine,https://example.org,Europe/Paris\n",
        "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\nL1,VSS,1,Ligne 1,1\nB2,VSS,42,Bus 42,3\n",
        "stops.txt": stops.rename(columns={"lat": "stop_lat", "lon": "stop_lon"})
        .assign(location_type=0)[["stop_id", "stop_name", "stop_lat", "stop_lon", "location_type"]]
        .to_csv(index=False, lineterminator="\n"),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 16, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text.encode("utf-8"))


_MMSS = np.array([f"{s // 60:02d}:{s % 60:02d}" for s in range(3600)], dtype=object)


def _incident_time_strings(cal: _Calendar, hidx: np.ndarray, sec: np.ndarray) -> np.ndarray:
    """``dd/mm/YYYY HH:MM:SS+hhmm`` local time with its offset."""
    off = cal.offset_s // 60
    sign = np.where(off >= 0, "+", "-")
    suffix = np.array(
        [f"{s}{abs(o) // 60:02d}{abs(o) % 60:02d}" for s, o in zip(sign, off, strict=True)],
        dtype=object,
    )
    prefix = np.asarray(cal.local.strftime("%d/%m/%Y %H:"), dtype=object)
    return prefix[hidx] + _MMSS[sec] + suffix[hidx]


# ---------------------------------------------------------------------------------------------
# the generator


def generate(scale: str, out: str | Path, *, seed: int = 0) -> SynthResult:
    """Write a synthetic city's raw files, its ``sources.yaml`` and its ``truth.json``.

    Parameters
    ----------
    scale
        ``tiny`` (30 zones, 8 weeks; seconds), ``city`` (300 zones, 104 weeks) or
        ``metropolis`` (1 000 zones, 104 weeks).
    out
        Folder to write into (created; files of an earlier run are overwritten).
    seed
        Random seed; the same seed gives byte-identical files.

    Returns
    -------
    SynthResult

    Raises
    ------
    InputError
        For an unknown scale or a negative seed.

    References
    ----------
    The model is the log-linear Poisson rate model with exposure of McCullagh & Nelder (1989),
    *Generalized Linear Models*, 2nd ed., ch. 6; see the module docstring for its terms.

    Examples
    --------
    >>> res = generate("tiny", "/tmp/tiny_city", seed=1)  # doctest: +SKIP
    >>> res.truth_json.name  # doctest: +SKIP
    'truth.json'
    """
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}: expected one of {', '.join(SCALES)}.")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}.")
    seed = int(seed)
    t_start = time.perf_counter()
    spec = SCALES[scale]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for pattern in _CHUNKED:  # chunk files of an earlier run would be caught by the globs
        for old in out.glob(pattern):
            old.unlink()
    start, end, hours = _period(spec.weeks)
    H = len(hours)
    cal = _calendar(hours, start)
    zones = _make_zones(spec, seed)
    Z = len(zones.ids)
    signals = _plan_signals(zones, end, seed)
    sig_zones = {z for s in signals for z in s.zones}
    events = _make_events(zones, start, end, seed, avoid=sig_zones)
    spill = next(s for s in signals if s.type == "outage_spillover")
    light = _make_lighting(zones, spec, start, end, seed,
                           planted=[(spill.zones[0], spill.start, spill.end, spill.params["outage_share"])])  # fmt: skip
    weather = _make_weather(cal, seed)
    stops = _make_stops(zones, seed)
    log.info("synth %s: %d zones, %d hours, %d events, %d lamps, %d faults", scale, Z, H, len(events),
             len(light.lamps), len(light.faults))  # fmt: skip

    dark = _dark(hours, zones.lat, zones.lon)  # (H, Z)
    lamps_out = _lamps_out(light, hours, Z)
    dlo = dark * 10.0 * lamps_out / light.per_zone[None, :]
    rain = weather["precipitation_mm"].to_numpy() >= 1.0
    day_noise = _rng(seed, 7).lognormal(0, 0.05, (int(cal.day_index.max()) + 2, Z))

    # event attendance per (hour, zone) (expected, for event_k) and presence additions
    ev_k = np.zeros((H, Z))
    ev_add = np.zeros((H, Z))
    past = [e for e in events if not e.upcoming]
    for ev in past:
        active = (hours < ev.end) & (hours + pd.Timedelta(hours=1) > ev.start)
        ev_k[active, ev.zone] += ev.expected / 1000.0
        win = _event_window(ev)
        win = win[(win >= hours[0]) & (win <= hours[-1])]
        if len(win) == 0:
            continue
        idx = hours.get_indexer(win)
        v, r = _event_curves(ev, win)
        ev_add[idx, ev.zone] += v
        ring = zones.neighbours[ev.zone]
        if ring:
            ev_add[np.ix_(idx, ring)] += (r / len(ring))[:, None]

    # signal multipliers
    gathering = next(s for s in signals if s.type == "gathering")
    g_idx = np.flatnonzero((hours >= gathering.start) & (hours < gathering.end))
    cat_idx = {c: i for i, c in enumerate(CAT_NAMES)}

    # effect coefficients per category
    beta = np.zeros((len(FEATURES), len(CAT_NAMES)))
    for eff in EFFECTS:
        f = FEATURES.index(eff["feature"])
        for c in eff["categories"]:
            beta[f, cat_idx[c]] = np.log(eff["irr"])
    base = np.array([CATEGORIES[c]["base_rate"] for c in CAT_NAMES])
    hod = np.array([CATEGORIES[c]["hod"] for c in CAT_NAMES]).T  # (24, C)
    dow = np.asarray(DOW)
    services = {c: (list(CATEGORIES[c]["services"]), np.array(list(CATEGORIES[c]["services"].values())))
                for c in CAT_NAMES}  # fmt: skip

    fmt = spec.fmt
    ext = "csv" if fmt == "csv" else "parquet"
    files: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    hourly_z = np.flatnonzero(~zones.is_2h)
    # a gap in the presence export: one quiet residential zone, 6 hours on the 10th night
    busy = (
        sig_zones
        | {e.zone for e in events}
        | {m for s in signals for m in s.params.get("neighbours", [])}
    )
    quiet = [int(z) for z in hourly_z if z not in busy]
    gap_zone = next(
        (z for z in quiet if zones.types[z] == "residential"), (quiet or [int(hourly_z[0])])[0]
    )
    gap_start = (start.tz_localize(None) + pd.Timedelta(days=10, hours=3)).tz_localize(TIMEZONE)
    gap_end = gap_start + pd.Timedelta(hours=6)
    gap_mask = np.asarray((hours >= gap_start) & (hours < gap_end))
    twoh_z = np.flatnonzero(zones.is_2h)
    pres_2h = _Table(out / "presence" / f"flux_vision_2h_secteur_est.{ext}", fmt)
    origins = _Table(out / "presence" / f"flux_vision_origines.{ext}", fmt)
    chunk_files: dict[str, list[str]] = {"presence": [], "incidents": [], "ridership": []}
    n_rows = {"presence": 0, "incidents": 0, "ridership": 0}

    def write_chunk(source: str, path: Path, df: pd.DataFrame) -> None:
        """One chunk's own file of an hourly source (incidents, presence, ridership)."""
        t = _Table(path, fmt)
        t.write(df)
        t.close()
        chunk_files[source].append(str(path.relative_to(out)))
        n_rows[source] += len(df)

    local_txt = _local_strings(cal, "%Y-%m-%d %H:%M:%S")
    truth_present: dict[str, dict[str, float]] = {e.event_id: {} for e in events}
    totals = np.zeros(len(CAT_NAMES), dtype=np.int64)
    next_id = 0
    chunks = list(range(0, H, CHUNK_HOURS))
    if len(chunks) > 1 and H - chunks[-1] < CHUNK_HOURS:
        chunks = chunks[:-1]
    bounds = list(zip(chunks, [*chunks[1:], H], strict=True))
    bad_chunk = len(bounds) - 1
    extra_people = 0.0
    transit_all = np.zeros((H, Z))
    n_days = int(cal.day_index.max()) + 1
    venue_zones = sorted({e.zone for e in past})
    venue_exposure = np.zeros((H, len(venue_zones)))
    day_sum = np.zeros((n_days, Z))
    day_res = np.zeros((n_days, Z))
    for ci, (a, b) in enumerate(bounds):
        rng = _rng(seed, 10, ci)
        ccal = cal.rows(a, b)
        pres = _base_presence(ccal, zones, day_noise, rng)
        res = pres.residents + 0.3 * ev_add[a:b]
        vis = pres.visitors + 0.7 * ev_add[a:b]
        gi = g_idx[(g_idx >= a) & (g_idx < b)] - a
        if len(gi):
            gz = gathering.zones[0]
            extra_people = float(round(max(1500.0, 4 * (res[gi, gz] + vis[gi, gz]).mean()), -2))
            vis[gi, gz] += extra_people
        res_i = np.maximum(np.round(res), 0).astype(np.int64)
        vis_i = np.maximum(np.round(vis), 0).astype(np.int64)
        present = np.maximum(res_i + vis_i, 1)
        # 2-hour zones: average over the slot, applied to both hours
        n_h = b - a
        pairs = np.arange(n_h) // 2
        n_s = pairs[-1] + 1
        cnt = np.bincount(pairs, minlength=n_s).astype(float)

        p2 = np.maximum(np.round(_slot_mean(present[:, twoh_z], pairs, cnt)), 1).astype(np.int64)
        r2 = np.minimum(np.round(_slot_mean(res_i[:, twoh_z], pairs, cnt)).astype(np.int64), p2)
        exposure = present.astype(float)
        exposure[:, twoh_z] = p2[pairs]
        venue_exposure[a:b] = exposure[:, venue_zones]
        # ridership
        st_zone = stops["zone"].to_numpy()
        mu_r = (
            stops["rate"].to_numpy()[None, :]
            * exposure[:, st_zone]
            * _TRANSIT[ccal.local_hour][:, None]
        )
        entries = rng.poisson(mu_r)
        transit = np.zeros((n_h, Z))
        np.add.at(transit.T, st_zone, entries.T)
        transit_all[a:b] = transit
        # incidents
        x = np.stack(
            [
                dark[a:b],
                dlo[a:b],
                ev_k[a:b],
                np.broadcast_to(rain[a:b, None], (n_h, Z)),
                transit / 1000.0,
                np.broadcast_to(ccal.holiday[:, None], (n_h, Z)),
                np.broadcast_to(ccal.school[:, None], (n_h, Z)),
            ],
            axis=-1,
        ).astype(float)  # (h, Z, F)
        mu = (
            exposure[:, :, None]
            * base[None, None, :]
            * hod[ccal.local_hour][:, None, :]
            * dow[ccal.dow][:, None, None]
            * np.exp(x @ beta)
        )
        mu *= _signal_multipliers(signals, hours[a:b], dark[a:b], Z)
        counts = rng.poisson(mu)
        totals += counts.sum(axis=(0, 1))
        hz, zz, cc = np.nonzero(counts)
        rep = counts[hz, zz, cc]
        hz, zz, cc = np.repeat(hz, rep), np.repeat(zz, rep), np.repeat(cc, rep)
        sec = rng.integers(0, 3600, len(hz))
        order = np.lexsort((zz, sec, hz))
        hz, zz, cc, sec = hz[order], zz[order], cc[order], sec[order]
        lon, lat = _points_in_zones(zz, zones.quads, rng)
        xl, yl = _lambert(lon, lat)
        svc = np.empty(len(cc), dtype=object)
        for k, c in enumerate(CAT_NAMES):
            m = cc == k
            names, p = services[c]
            svc[m] = np.asarray(names, dtype=object)[rng.choice(len(names), m.sum(), p=p)]
        ids = np.array([f"MC{next_id + i + 1:09d}" for i in range(len(hz))], dtype=object)
        next_id += len(hz)
        inc = pd.DataFrame(
            {
                "numero": ids,
                "date_heure": _incident_time_strings(ccal, hz, sec),
                "x_l93": xl,
                "y_l93": yl,
                "nature": np.asarray(CAT_NAMES, dtype=object)[cc],
                "service": svc,
                "priorite": rng.choice(["P1", "P2", "P3"], len(hz), p=[0.15, 0.5, 0.35]),
            }
        )
        if ci == bad_chunk:
            inc, bad = _bad_rows(inc, rng)
        tag = f"{ccal.local[0]:%Y%m%d}"
        write_chunk("incidents", out / "incidents" / f"main_courante_{tag}.{ext}", inc)
        # presence files
        hh = np.repeat(np.arange(n_h), len(hourly_z))
        zh = np.tile(hourly_z, n_h)
        delivered = ~((zh == gap_zone) & gap_mask[a + hh])  # the export's gap: rows absent
        hh, zh = hh[delivered], zh[delivered]
        pr = pd.DataFrame(
            {
                "id_zone": zones.ids[zh],
                "date_heure": local_txt[a + hh],
                "duree_min": np.full(len(hh), 60, dtype=np.int64),
                "volume_present": present[hh, zh],
                "residents": res_i[hh, zh],
                "visiteurs": present[hh, zh] - res_i[hh, zh],
            }
        )
        write_chunk("presence", out / "presence" / f"flux_vision_horaire_{tag}.{ext}", pr)
        first_h = np.flatnonzero(np.diff(np.r_[-1, pairs]) > 0)
        ss = np.repeat(np.arange(n_s), len(twoh_z))
        zs = np.tile(np.arange(len(twoh_z)), n_s)
        pres_2h.write(
            pd.DataFrame(
                {
                    "id_zone": zones.ids[twoh_z[zs]],
                    "date_heure": local_txt[a + first_h[ss]],
                    "duree_min": (60 * cnt[ss]).astype(np.int64),
                    "volume_present": p2[ss, zs],
                    "residents": r2[ss, zs],
                    "visiteurs": p2[ss, zs] - r2[ss, zs],
                }
            )
        )
        # ridership file
        sh = np.repeat(np.arange(n_h), len(stops))
        sk = np.tile(np.arange(len(stops)), n_h)
        rid = pd.DataFrame(
            {
                "id_arret": stops["stop_id"].to_numpy()[sk],
                "date_heure": local_txt[a + sh],
                "nb_validations": entries[sh, sk],
            }
        )
        write_chunk("ridership", out / "transport" / f"validations_{tag}.{ext}", rid)
        # daily sums for the origins file
        np.add.at(day_sum, ccal.day_index, present)
        np.add.at(day_res, ccal.day_index, res_i)
    pres_2h.close()
    # truth for past events: the delivered presence of the venue zone (as the cube will hold it)
    hour_txt = np.asarray(hours.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for ev in past:
        win = _event_window(ev)
        idx = hours.get_indexer(win)
        idx = idx[idx >= 0]
        col = venue_zones.index(ev.zone)
        truth_present[ev.event_id] = {hour_txt[i]: float(venue_exposure[i, col]) for i in idx}
    day_cnt = np.bincount(cal.day_index, minlength=n_days)
    day_first = np.searchsorted(cal.day_index, np.arange(n_days))
    origins.write(_origins(day_sum, day_res, day_cnt, list(cal.local[day_first].strftime("%Y-%m-%d")),
                           cal.doy[day_first], zones))  # fmt: skip
    origins.close()
    files["presence"] = chunk_files["presence"] + [str(pres_2h.path.relative_to(out))]
    rows["presence"] = n_rows["presence"] + pres_2h.rows
    files["presence_origin"] = [str(origins.path.relative_to(out))]
    rows["presence_origin"] = origins.rows
    for source in ("incidents", "ridership"):
        files[source] = chunk_files[source]
        rows[source] = n_rows[source]

    # static files
    _write_zones(zones, out / "zones_iris.geojson")
    files["zones"] = ["zones_iris.geojson"]
    rows["zones"] = Z
    (out / "eclairage").mkdir(exist_ok=True)
    lamps = light.lamps
    pd.DataFrame(
        {
            "id_lampadaire": lamps["lamp_id"],
            "lat": lamps["lat"],
            "lon": lamps["lon"],
            "puissance_w": lamps["wattage"],
            "armoire": [f"ARM{c:07d}" for c in lamps["cabinet"]],
        }
    ).to_csv(out / "eclairage" / "lampadaires.csv", index=False, lineterminator="\n")
    files["lamps"] = ["eclairage/lampadaires.csv"]
    rows["lamps"] = len(lamps)
    fl = light.faults
    rep_local = fl["reported"].dt.tz_convert(TIMEZONE)
    fix_local = fl["repaired"].dt.tz_convert(TIMEZONE)
    pd.DataFrame(
        {
            "id_panne": fl["fault_id"],
            "id_lampadaire": lamps["lamp_id"].to_numpy()[fl["lamp"].to_numpy()],
            "date_signalement": _iso_offset(rep_local),
            "date_reparation": _iso_offset(fix_local),
        }
    ).to_csv(out / "eclairage" / "pannes.csv", index=False, lineterminator="\n")
    files["lighting_faults"] = ["eclairage/pannes.csv"]
    rows["lighting_faults"] = len(fl)
    (out / "transport").mkdir(exist_ok=True)
    _write_gtfs(stops, out / "transport" / "gtfs.zip")
    files["stops"] = ["transport/gtfs.zip"]
    rows["stops"] = len(stops)
    pd.DataFrame(
        {
            "date": [_utc_iso(h) for h in hours],
            "t": weather["temperature_c"].map(lambda v: f"{v:.1f}"),
            "rr1": weather["precipitation_mm"].map(lambda v: f"{v:.1f}"),
        }
    ).to_csv(out / "meteo_horaire.csv", index=False, lineterminator="\n")
    files["weather"] = ["meteo_horaire.csv"]
    rows["weather"] = H
    _write_events(events, zones, out / "evenements.csv")
    files["events"] = ["evenements.csv"]
    rows["events"] = len(events)

    # upcoming events: truth presence from the same model (not delivered in the presence files)
    for ev in events:
        if not ev.upcoming:
            continue
        win = _event_window(ev)
        ucal = _calendar(win, start)
        urng = _rng(seed, 20, int(ev.event_id[3:]))
        pres = _base_presence(
            ucal,
            zones,
            _rng(seed, 21, int(ev.event_id[3:])).lognormal(
                0, 0.05, (int(ucal.day_index.max()) + 1, Z)
            ),
            urng,
        )
        add = np.zeros((len(win), Z))
        for other in events:
            if other.upcoming:
                v, r = _event_curves(other, win)
                if v.any() or r.any():
                    add[:, other.zone] += v
                    ring = zones.neighbours[other.zone]
                    if ring:
                        add[:, ring] += (r / len(ring))[:, None]
        tot = np.maximum(
            np.round(pres.residents + 0.3 * add) + np.round(pres.visitors + 0.7 * add), 1
        )
        truth_present[ev.event_id] = {
            _utc_iso(h): float(tot[i, ev.zone]) for i, h in enumerate(win)
        }

    gathering.params["extra_people"] = extra_people
    sources = _sources_yaml(files, fmt)
    (out / "sources.yaml").write_text(sources, encoding="utf-8")
    truth = _truth(scale, seed, start, end, zones, signals, events, truth_present, light, spill,
                   bad, totals, rows, dark, lamps_out, rain, transit_all, ev_k, cal)  # fmt: skip
    truth["presence_gaps"] = [
        {"zone_id": zones.ids[gap_zone], "start": _utc_iso(gap_start), "end": _utc_iso(gap_end),
         "hours": int(gap_mask.sum()), "note": "rows absent from the export; incidents still occur"}
    ]  # fmt: skip
    (out / "truth.json").write_text(
        json.dumps(truth, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    seconds = time.perf_counter() - t_start
    log.info("synth %s written to %s in %.1f s", scale, out, seconds)
    return SynthResult(out=out, scale=scale, seed=seed, sources_yaml=out / "sources.yaml",
                       truth_json=out / "truth.json", files=files, rows=rows, seconds=seconds)  # fmt: skip


def _slot_mean(x: np.ndarray, pairs: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Mean of hourly rows ``x`` over the 2-hour slots ``pairs`` (slot index of each hour)."""
    s = np.zeros((len(cnt), x.shape[1]))
    np.add.at(s, pairs, x)
    return s / cnt[:, None]


def _iso_offset(t: pd.Series) -> pd.Series:
    """ISO 8601 local times with their offset (``2026-10-25T02:15:00+02:00``); NaT gives ''."""
    txt = t.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return (txt.str[:-2] + ":" + txt.str[-2:]).fillna("")


def _signal_multipliers(
    signals: list[_Signal], hours: pd.DatetimeIndex, dark: np.ndarray, Z: int
) -> np.ndarray:
    """Multiplier (h, Z, C) of the planted signals over a chunk of hours."""
    m = np.ones((len(hours), Z, len(CAT_NAMES)))
    cat_idx = {c: i for i, c in enumerate(CAT_NAMES)}
    for s in signals:
        inside = (hours >= s.start) & (hours < s.end)
        if not inside.any():
            continue
        if s.type == "emerging":
            frac = (hours[inside] - s.start) / (s.end - s.start)
            lo, hi = s.params["multiplier_start"], s.params["multiplier_end"]
            ci = [cat_idx[c] for c in s.params["categories"]]
            for c in ci:
                m[inside, s.zones[0], c] *= lo + (hi - lo) * np.asarray(frac, dtype=float)
        elif s.type == "cluster":
            ci = [cat_idx[c] for c in s.params["categories"]]
            for z in s.zones:
                for c in ci:
                    m[inside, z, c] *= s.params["multiplier"]
        elif s.type == "outage_spillover":
            ci = [cat_idx[c] for c in s.params["categories"]]
            for z in s.params["neighbours"]:
                mult = np.where(dark[inside, z], s.params["multiplier"], 1.0)
                for c in ci:
                    m[inside, z, c] *= mult
    return m


def _bad_rows(inc: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, int]]:
    """Insert deliberately bad rows: unparseable times, points outside the area, duplicate ids.

    Each bad row sits next to a good row (file order stays chronological). Duplicates are exact
    copies of the row before them.
    """
    n = len(inc)
    spots = rng.choice(np.arange(1, max(n, 2)), size=min(12, max(n - 1, 1)), replace=False)
    kinds = ["unparseable_time"] * 3 + ["outside_area"] * 4 + ["duplicate_id"] * 5
    parts, last = [], 0
    for pos, kind in sorted(zip(spots, kinds, strict=False)):
        parts.append(inc.iloc[last:pos])
        row = inc.iloc[[pos - 1]].copy()
        if kind == "unparseable_time":
            row["numero"] = row["numero"] + "-X"
            row["date_heure"] = "31/02/2026 25:61:00+0100"
        elif kind == "outside_area":
            row["numero"] = row["numero"] + "-L"
            row["x_l93"] = 842_000.0  # Lyon, 400 km away
            row["y_l93"] = 6_519_000.0
        parts.append(row)
        last = pos
    parts.append(inc.iloc[last:])
    counts = {k: kinds.count(k) for k in ("unparseable_time", "outside_area", "duplicate_id")}
    return pd.concat(parts, ignore_index=True), counts


def _origins(day_sum: np.ndarray, day_res: np.ndarray, day_cnt: np.ndarray, day_label: list[str],
             day_doy: np.ndarray, zones: _Zones) -> pd.DataFrame:  # fmt: skip
    """Daily mean presence per zone split by origin (Flux Vision 'origines').

    ``zone_etude`` are residents of the study area; visitors are split between the inner and
    outer suburbs, other departments and abroad (more foreigners in the tourist season).
    """
    cnt = np.maximum(day_cnt, 1)[:, None]
    tot = day_sum / cnt
    res = day_res / cnt
    vis = tot - res
    foreign = np.clip(0.15 * _season(day_doy), 0, 0.4)
    rest = 1 - foreign
    shares = np.stack([0.4 * rest, 0.3 * rest, 0.3 * rest, foreign], axis=1)  # (D, 4)
    D, Z = tot.shape
    d = np.repeat(np.arange(D), Z)
    z = np.tile(np.arange(Z), D)
    frames = [pd.DataFrame({"id_zone": zones.ids[z], "jour": np.asarray(day_label, dtype=object)[d],
                            "origine": _ORIGINS[0], "volume": np.round(res[d, z]).astype(np.int64)})]  # fmt: skip
    for k, o in enumerate(_ORIGINS[1:]):
        frames.append(pd.DataFrame({"id_zone": zones.ids[z], "jour": np.asarray(day_label, dtype=object)[d],
                                    "origine": o,
                                    "volume": np.round(vis[d, z] * shares[d, k]).astype(np.int64)}))  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    df["_o"] = df["origine"].map({o: i for i, o in enumerate(_ORIGINS)})
    return (
        df.sort_values(["jour", "id_zone", "_o"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def _write_events(events: list[_Event], zones: _Zones, path: Path) -> None:
    pd.DataFrame(
        {
            "id_evenement": [e.event_id for e in events],
            "intitule": [e.name for e in events],
            "debut": [e.start.tz_convert(TIMEZONE).strftime("%Y-%m-%d %H:%M") for e in events],
            "fin": [e.end.tz_convert(TIMEZONE).strftime("%Y-%m-%d %H:%M") for e in events],
            "latitude": [round(e.lat, 6) for e in events],
            "longitude": [round(e.lon, 6) for e in events],
            "jauge": [e.expected for e in events],
            "type": [e.kind for e in events],
            "interieur": ["oui" if _EVENT_KINDS[e.kind]["indoor"] else "non" for e in events],
            "dps_activite": [_EVENT_KINDS[e.kind]["p2"] for e in events],
            "dps_environnement": [_EVENT_KINDS[e.kind]["e1"] for e in events],
            "dps_delai": [0.25 for _ in events],
        }
    ).to_csv(path, index=False, lineterminator="\n")


def _sources_yaml(files: dict[str, list[str]], fmt: str) -> str:
    ext = "csv" if fmt == "csv" else "parquet"
    return f"""# Synthetic city written by `vigie synth`: raw exports mapped onto vigie's canonical names.
area: {{name: Vigie-sur-Seine (synthetique), timezone: {TIMEZONE}, grain: 1h, country: FR, school_zone: C}}
suppression_k: 10
zones:
  path: zones_iris.geojson
  columns: {{zone_id: code_iris, name: nom, population: population}}
presence:
  # hourly exports by 4-week chunk, plus one file of 2-hour slots (duree_min: 120)
  path: [presence/flux_vision_horaire_*.{ext}, presence/flux_vision_2h_secteur_est.{ext}]
  columns: {{zone_id: id_zone, start: date_heure, slot_minutes: duree_min, present: volume_present,
            residents: residents, visitors: visiteurs}}
presence_origin:
  path: presence/flux_vision_origines.{ext}
  columns: {{zone_id: id_zone, start: jour, origin: origine, count: volume}}
  slot_minutes: 1440
incidents:
  path: incidents/main_courante_*.{ext}
  columns: {{incident_id: numero, occurred_at: date_heure, x: x_l93, y: y_l93, category: nature,
            source: service, priority: priorite}}
  crs: EPSG:2154
  time_format: "%d/%m/%Y %H:%M:%S%z"
lamps:
  path: eclairage/lampadaires.csv
  columns: {{lamp_id: id_lampadaire, latitude: lat, longitude: lon, wattage: puissance_w}}
lighting_faults:
  path: eclairage/pannes.csv
  columns: {{fault_id: id_panne, lamp_id: id_lampadaire, reported_at: date_signalement,
            repaired_at: date_reparation}}
stops:
  path: transport/gtfs.zip
  format: gtfs
ridership:
  path: transport/validations_*.{ext}
  columns: {{stop_id: id_arret, start: date_heure, entries: nb_validations}}
  slot_minutes: 60
events:
  path: evenements.csv
  columns: {{event_id: id_evenement, name: intitule, start: debut, end: fin, latitude: latitude,
            longitude: longitude, expected_attendance: jauge, category: type, indoor: interieur,
            dps_activity: dps_activite, dps_environment: dps_environnement, dps_delay: dps_delai}}
weather:
  path: meteo_horaire.csv
  columns: {{start: date, temperature_c: t, precipitation_mm: rr1}}
  slot_minutes: 60
"""


def _truth(scale, seed, start, end, zones, signals, events, truth_present, light, spill, bad, totals,
           rows, dark, lamps_out, rain, transit, ev_k, cal) -> dict[str, Any]:  # fmt: skip
    """truth.json (docs/architecture.md "truth.json")."""
    ids = zones.ids
    sig = []
    for s in signals:
        params = dict(s.params)
        if "neighbours" in params:
            params["neighbours"] = [ids[m] for m in params["neighbours"]]
        sig.append(
            {
                "type": s.type,
                "zones": [ids[z] for z in s.zones],
                "start": _utc_iso(s.start),
                "end": _utc_iso(s.end),
                "local_start": s.start.tz_convert(TIMEZONE).isoformat(),
                "local_end": s.end.tz_convert(TIMEZONE).isoformat(),
                "week": iso_week((s.end - pd.Timedelta(seconds=1)).tz_convert(TIMEZONE))
                if s.type == "emerging"
                else iso_week(s.start.tz_convert(TIMEZONE)),
                "params": params,
            }
        )
    good = rows["incidents"] - bad["unparseable_time"] - bad["outside_area"] - bad["duplicate_id"]
    return {
        "seed": seed,
        "scale": scale,
        "timezone": TIMEZONE,
        "start": _utc_iso(start),
        "end": _utc_iso(end),
        "local_start": start.isoformat(),
        "local_end": end.isoformat(),
        "last_week": iso_week(end - pd.Timedelta(days=1)),
        "zones": len(ids),
        "hours": int(len(cal.hours)),
        "zone_types": {ids[z]: zones.types[z] for z in range(len(ids))},
        "presence_2h_zones": [ids[z] for z in np.flatnonzero(zones.is_2h)],
        "base_rates": {c: CATEGORIES[c]["base_rate"] for c in CAT_NAMES},
        "hour_of_day": {c: list(CATEGORIES[c]["hod"]) for c in CAT_NAMES},
        "day_of_week": list(DOW),
        "reference": {"hour": 12, "dow": 0, "exposure": "present (2-hour zones: slot average)"},
        "effects": [dict(e, unit=_UNITS[e["feature"]]) for e in EFFECTS],
        "signals": sig,
        "events": [
            {
                "event_id": e.event_id,
                "zone_id": ids[e.zone],
                "kind": e.kind,
                "start": _utc_iso(e.start),
                "end": _utc_iso(e.end),
                "expected_attendance": e.expected,
                "attendance": e.actual,
                "upcoming": e.upcoming,
                "truth_present": truth_present[e.event_id],
            }
            for e in events
        ],
        "incidents": {
            "by_category": {c: int(totals[i]) for i, c in enumerate(CAT_NAMES)},
            "total": int(totals.sum()),
        },
        "expected_ingest": {
            "incidents": {
                "rows_read": rows["incidents"],
                "rows_kept": good,
                "rows_quarantined": rows["incidents"] - good,
                "reasons": bad,
            },
            **{
                k: {"rows_read": v, "rows_kept": v, "rows_quarantined": 0}
                for k, v in rows.items()
                if k != "incidents"
            },
        },
        "features_summary": {
            "dark_share": float(dark.mean()),
            "rain_share": float(rain.mean()),
            "lamps_out_share": float(lamps_out.sum() / (light.per_zone.sum() * len(cal.hours))),
            "transit_k_max": float(transit.max() / 1000),
            "event_hours": int((ev_k > 0).sum()),
            "holiday_hours": int(cal.holiday.sum()),
            "school_holiday_hours": int(cal.school.sum()),
        },
        "planted_outage": {
            "zone_id": ids[spill.zones[0]],
            "reported_at": _utc_iso(spill.start),
            "repaired_at": _utc_iso(spill.end),
        },
    }


_UNITS = {
    "dark": "sun below the horizon at the slot midpoint (0/1)",
    "dark_lamps_out": "per 10 % of the zone's lamps out, at night",
    "event_k": "per 1 000 expected attendees of events active in the zone",
    "rain": "precipitation_mm >= 1 (0/1)",
    "transit_k": "per 1 000 entries at the zone's stops in the hour",
    "holiday": "public holiday (0/1)",
    "school_holiday": "school holiday, zone C (0/1)",
}
