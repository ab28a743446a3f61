"""Incidents: Poisson draws of the rate model, their times and places, and the bad rows.

For zone z, hour t and category c the mean is ``exposure[t, z] * base_rate[c] * hod[c][local
hour] * dow[weekday] * exp(x[t, z] @ beta[:, c]) * signal multiplier`` (the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.synth.realism import SPARSE_CATEGORIES, Realism
from features.synth.scales import CATEGORIES, DOW, FEATURES, effects_for
from features.synth.timeline import Calendar
from features.synth.zones import Zones, points_in_zones


@dataclass(frozen=True)
class RateModel:
    """The incident model's terms per category (columns in ``names`` order).

    Attributes
    ----------
    names
        The categories: :data:`CAT_NAMES`, then the realism's sparse ones when it has them.
    effects
        The planted effects on these categories (:func:`~features.synth.scales.effects_for`).
    beta
        (F, C) log IRR of each feature of :data:`FEATURES` (from :data:`EFFECTS`).
    base
        (C,) base rates; ``hod`` (24, C) hour-of-day and ``dow`` (7,) day-of-week multipliers.
    services
        Category -> (services answering, their probabilities).
    """

    names: tuple[str, ...]
    effects: list[dict[str, Any]]
    beta: np.ndarray
    base: np.ndarray
    hod: np.ndarray
    dow: np.ndarray
    services: dict[str, tuple[list[str], np.ndarray]]


def rate_model(realism: Realism | None = None) -> RateModel:
    """The :class:`RateModel` of :data:`CATEGORIES` (and the realism's sparse categories),
    :data:`DOW` and :data:`EFFECTS`."""
    extra = SPARSE_CATEGORIES if realism is not None and realism.sparse else {}
    specs = {**CATEGORIES, **extra}
    names = tuple(specs)
    effects = effects_for(extra)
    cat_idx = {c: i for i, c in enumerate(names)}
    beta = np.zeros((len(FEATURES), len(names)))
    for eff in effects:
        f = FEATURES.index(eff["feature"])
        for c in eff["categories"]:
            beta[f, cat_idx[c]] = np.log(eff["irr"])
    return RateModel(
        names=names,
        effects=effects,
        beta=beta,
        base=np.array([specs[c]["base_rate"] for c in names]),
        hod=np.array([specs[c]["hod"] for c in names]).T,
        dow=np.asarray(DOW),
        services={
            c: (list(specs[c]["services"]), np.array(list(specs[c]["services"].values())))
            for c in names
        },  # fmt: skip
    )


def incident_means(
    model: RateModel, cal: Calendar, *, exposure: np.ndarray, x: np.ndarray, multiplier: np.ndarray
) -> np.ndarray:
    """(h, Z, C) Poisson means for the hours of ``cal``; ``x`` (h, Z, F) the features."""
    mu = (
        exposure[:, :, None]
        * model.base[None, None, :]
        * model.hod[cal.local_hour][:, None, :]
        * model.dow[cal.dow][:, None, None]
        * np.exp(x @ model.beta)
    )
    mu *= multiplier
    return mu


def draw_incidents(
    model: RateModel,
    *,
    cal: Calendar,
    zones: Zones,
    mu: np.ndarray,
    first_id: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``(rows, counts per category)``: the incidents of one chunk of hours, in time order.

    Draws, in this order: counts, seconds within the hour, places, answering services,
    priorities. Ids run from ``first_id + 1``.
    """
    counts = rng.poisson(mu)
    hz, zz, cc = np.nonzero(counts)
    rep = counts[hz, zz, cc]
    hz, zz, cc = np.repeat(hz, rep), np.repeat(zz, rep), np.repeat(cc, rep)
    sec = rng.integers(0, 3600, len(hz))
    order = np.lexsort((zz, sec, hz))
    hz, zz, cc, sec = hz[order], zz[order], cc[order], sec[order]
    lon, lat = points_in_zones(zz, quads=zones.quads, rng=rng)
    xl, yl = lambert(lon, lat)
    svc = np.empty(len(cc), dtype=object)
    for k, c in enumerate(model.names):
        m = cc == k
        names, p = model.services[c]
        svc[m] = np.asarray(names, dtype=object)[rng.choice(len(names), m.sum(), p=p)]
    ids = np.array([f"MC{first_id + i + 1:09d}" for i in range(len(hz))], dtype=object)
    inc = pd.DataFrame(
        {
            "numero": ids,
            "date_heure": incident_time_strings(cal, hidx=hz, sec=sec),
            "x_l93": xl,
            "y_l93": yl,
            "nature": np.asarray(model.names, dtype=object)[cc],
            "service": svc,
            "priorite": rng.choice(["P1", "P2", "P3"], len(hz), p=[0.15, 0.5, 0.35]),
        }
    )
    return inc, counts.sum(axis=(0, 1))


def lambert(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lambert-93 (EPSG:2154) x, y in metres, to the centimetre."""
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True)
    x, y = tr.transform(lon, lat)
    return np.round(x, 2), np.round(y, 2)


_MMSS = np.array([f"{s // 60:02d}:{s % 60:02d}" for s in range(3600)], dtype=object)


def incident_time_strings(cal: Calendar, *, hidx: np.ndarray, sec: np.ndarray) -> np.ndarray:
    """``dd/mm/YYYY HH:MM:SS+hhmm`` local time with its offset."""
    off = cal.offset_s // 60
    sign = np.where(off >= 0, "+", "-")
    suffix = np.array(
        [f"{s}{abs(o) // 60:02d}{abs(o) % 60:02d}" for s, o in zip(sign, off, strict=True)],
        dtype=object,
    )
    prefix = np.asarray(cal.local.strftime("%d/%m/%Y %H:"), dtype=object)
    return prefix[hidx] + _MMSS[sec] + suffix[hidx]


def bad_rows(inc: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, int]]:
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
