"""Scales, the incident model's constants and the random streams of the synthetic city.

Everything here is data: the sizes of the three cities (:data:`SCALES`), the incident
categories with their base rates and hour-of-day profiles (:data:`CATEGORIES`), the day-of-week
multipliers (:data:`DOW`) and the planted effects (:data:`EFFECTS`, one IRR per unit of a model
feature, with the unit in :data:`UNITS`). See the package docstring for the model they define.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.synth.realism import Realism

TIMEZONE = "Europe/Paris"
CENTRE = (48.85, 2.35)  # lat, lon
#: the end of every synthetic study: Sunday 2026-11-15 24:00 local (last full ISO week 2026-W46)
END_LOCAL = "2026-11-16 00:00"
#: chunked outputs (removed before writing, so a rerun in the same folder leaves no stale chunk)
CHUNKED = (
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
    #: the realistic incident process (features.synth.realism), None for the models' own process
    realism: Realism | None = None


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(6, 5, 8, 6000.0, (0.0075, 0.011), 80, 1, 1, "csv", 0.25),
    "city": ScaleSpec(20, 15, 104, 3200.0, (0.0045, 0.0068), 70, 1, 2, "parquet", 0.15, Realism()),
    "metropolis": ScaleSpec(
        40, 25, 104, 2500.0, (0.0045, 0.0068), 60, 2, 4, "parquet", 0.15, Realism()
    ),
    #: a region's worth of IRIS zones (5 000, ~88 M zone-hours) on the metropolis' cell size, so
    #: that darkness needs ~75 sun-grid cells (features.calendar.SUN_GRID) rather than ~1 000
    "region": ScaleSpec(
        100, 50, 104, 2000.0, (0.0045, 0.0068), 40, 4, 10, "parquet", 0.15, Realism()
    ),
}

ZONE_TYPES = ("centre", "business", "residential", "nightlife", "park", "stadium", "venue")


def profile(points: list[tuple[float, float]]) -> np.ndarray:
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
STREET = ["vol", "atteinte_personne", "trouble_ordre_public"]
#: planted effects: IRR per unit of the model feature (docs/architecture.md "Model features").
EFFECTS: list[dict[str, Any]] = [
    {"name": "dark", "feature": "dark", "irr": 1.3, "categories": _ALL},
    {"name": "dark_lamps_out", "feature": "dark_lamps_out", "irr": 1.15, "categories": _ALL},
    {"name": "event_k", "feature": "event_k", "irr": 1.02, "categories": _ALL},
    {"name": "rain_street", "feature": "rain", "irr": 0.85, "categories": STREET},
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


def effects_for(extra: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """:data:`EFFECTS` with the ``extra`` categories (the realism's sparse ones) added: to every
    effect on all categories, and to the rain effect each names (its ``rain`` key)."""
    out = []
    for eff in EFFECTS:
        cats = list(eff["categories"])
        if eff["categories"] is _ALL:
            cats += list(extra)
        cats += [c for c, spec in extra.items() if spec.get("rain") == eff["name"]]
        out.append(dict(eff, categories=cats))
    return out


FEATURES = ("dark", "dark_lamps_out", "event_k", "rain", "transit_k", "holiday", "school_holiday")

#: unit of each model feature, as truth.json states it next to the planted effects
UNITS = {
    "dark": "sun below the horizon at the slot midpoint (0/1)",
    "dark_lamps_out": "per 10 % of the zone's lamps out, at night",
    "event_k": "per 1 000 expected attendees of events active in the zone",
    "rain": "precipitation_mm >= 1 (0/1)",
    "transit_k": "per 1 000 entries at the zone's stops in the hour",
    "holiday": "public holiday (0/1)",
    "school_holiday": "school holiday, zone C (0/1)",
}


def rng_stream(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream for (seed, component, chunk...), stable across chunking."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))
