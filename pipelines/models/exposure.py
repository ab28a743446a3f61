"""Exposure where presence is missing, and the zones' true areas.

Presence (people present per zone and slot) is the best exposure of an incident rate, not a
precondition of a forecast. :func:`exposure_plan` decides, zone by zone, what stands in for it:

``presence``
    The zone has presence. A slot of the zone without it (a gap, or the period after the
    presence product ends) takes the zone's mean presence over the slots that have it, and the
    models know the slot is imputed (the ``presence_imputed`` term of
    :mod:`pipelines.models.zone_glm`).
``population``
    No presence for the zone, but its resident population is known: the population, scaled to
    presence units by the median ratio presence / population of the zones that have both (1 when
    none has).
``none``
    Neither: a constant exposure (the median of the other zones', 1 when none has any). The
    zone's own level is then carried by its zone effect and its recent rate, which the
    forecasting model estimates (:mod:`pipelines.models.zone_glm`).

The plan is written, per zone, in ``models.json`` and summarised by ``vigie fit``.

PAI flags the zones with most forecast incidents per unit area; :func:`zone_areas` gives the
areas of the zones' polygons in km², computed in an equal-area projection (EPSG:6933, the
global cylindrical equal-area EASE-Grid 2.0), so a large zone is not flagged for its size.

References
----------
Brodzik, M. J. et al. (2012). EASE-Grid 2.0: incremental but significant improvements for
Earth-gridded data sets. *ISPRS Int. J. Geo-Inf.* 1(1), 32-45.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: the equal-area projection of :func:`zone_areas`
EQUAL_AREA_CRS = "EPSG:6933"

SOURCE_WORDS = {
    "presence": "presence (its zone mean where a slot lacks it)",
    "population": "resident population, scaled to presence units",
    "none": "no exposure (constant): the zone effect and its recent rate carry its level",
}


@dataclass(frozen=True)
class ExposurePlan:
    """What each zone uses as exposure (see the module docstring).

    Attributes
    ----------
    source
        Zone -> ``presence``, ``population`` or ``none``.
    fill
        Zone -> the exposure of its slots without presence.
    presence_share
        Zone -> share of its slots with observed presence.
    default
        Exposure of a zone the plan does not know (a constant, as ``none``).
    """

    source: Mapping[str, str]
    fill: Mapping[str, float]
    presence_share: Mapping[str, float] = field(default_factory=dict)
    default: float = 1.0

    @property
    def has_presence(self) -> bool:
        """Whether any zone has presence."""
        return any(s == "presence" for s in self.source.values())

    def counts(self) -> dict[str, int]:
        """Zones per source."""
        out: dict[str, int] = {}
        for s in self.source.values():
            out[s] = out.get(s, 0) + 1
        return out

    def apply(self, zone_id: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exposure of rows (presence where known and positive, else the zone's fill) and
        whether each row's presence was imputed (float 0/1)."""
        e = np.asarray(present, dtype=np.float64)
        known = np.isfinite(e) & (e > 0)
        # each zone's fill looked up once (a map over 14 M string rows took minutes)
        ids = np.asarray(zone_id)
        codes, zones = pd.factorize(ids)
        table = np.array([self.fill.get(str(z), self.default) for z in zones], dtype=np.float64)
        fill = table[codes] if len(codes) else np.empty(0)
        na = codes < 0  # missing ids, keyed as str() gives them (None, <NA>, nan)
        fill[na] = [self.fill.get(str(z), self.default) for z in ids[na]]
        fill = np.nan_to_num(fill, nan=self.default)
        return np.where(known, e, fill), (~known).astype(np.float64)

    def summary(self) -> str:
        """One line: zones per source."""
        c = self.counts()
        parts = [f"{n} zone(s) {SOURCE_WORDS.get(s, s)}" for s, n in sorted(c.items())]
        return "exposure: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The plan as written in models.json (``zones``: one entry per zone)."""
        return {
            "rule": SOURCE_WORDS,
            "counts": self.counts(),
            "default": self.default,
            "zones": {
                z: {
                    "source": s,
                    "fill": float(self.fill.get(z, self.default)),
                    "presence_share": float(self.presence_share.get(z, 0.0)),
                }
                for z, s in self.source.items()
            },
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> ExposurePlan | None:
        """The inverse of :meth:`to_json` (None stays None)."""
        if not d or "zones" not in d:
            return None
        zones = d["zones"]
        return cls(
            source={z: str(v["source"]) for z, v in zones.items()},
            fill={z: float(v["fill"]) for z, v in zones.items()},
            presence_share={z: float(v.get("presence_share", 0.0)) for z, v in zones.items()},
            default=float(d.get("default", 1.0)),
        )


def exposure_plan(
    zone_id: np.ndarray, present: np.ndarray, *, population: Mapping[str, float] | None = None
) -> ExposurePlan:
    """Choose each zone's exposure (module docstring) from its rows' presence.

    Parameters
    ----------
    zone_id, present
        Zone and presence per cube row (NaN or 0: no presence).
    population
        Zone -> resident population (zones' ``population`` column), when known.
    """
    e = np.asarray(present, dtype=np.float64)
    known = np.isfinite(e) & (e > 0)
    df = pd.DataFrame({"z": np.asarray(zone_id).astype(str), "e": np.where(known, e, np.nan)})
    g = df.groupby("z", sort=True)["e"]
    mean, share = g.mean(), g.count() / g.size()
    pop = {str(k): float(v) for k, v in (population or {}).items() if v is not None and v > 0}
    both = [z for z in mean.index if np.isfinite(mean[z]) and z in pop]
    scale = float(np.median([mean[z] / pop[z] for z in both])) if both else 1.0
    source: dict[str, str] = {}
    fill: dict[str, float] = {}
    for z in mean.index:
        if np.isfinite(mean[z]):
            source[z], fill[z] = "presence", float(mean[z])
        elif z in pop:
            source[z], fill[z] = "population", pop[z] * scale
    default = float(np.median(list(fill.values()))) if fill else 1.0
    for z in mean.index:
        if z not in source:
            source[z], fill[z] = "none", default
    return ExposurePlan(
        source=source,
        fill=fill,
        presence_share={z: float(share[z]) for z in mean.index},
        default=default,
    )


def zone_population(zones: Any) -> dict[str, float]:
    """Zone -> resident population from the zones table (empty when it has none)."""
    if zones is None or "population" not in getattr(zones, "columns", ()):
        return {}
    p = pd.to_numeric(zones["population"], errors="coerce")
    return {
        str(z): float(v)
        for z, v in zip(zones["zone_id"].astype(str), p, strict=True)
        if np.isfinite(v) and v > 0
    }


def zone_areas(zones: Any) -> dict[str, float]:
    """Zone -> area in km² of its polygon, in the equal-area projection EPSG:6933.

    Zones without a polygon (points, empty geometries) are left out: PAI then counts them
    with the median area of the others (:func:`pipelines.models.scoring.evaluate`).
    """
    if zones is None or len(zones) == 0:
        return {}
    metric = zones.to_crs(EQUAL_AREA_CRS)
    km2 = metric.geometry.area.to_numpy(np.float64) / 1e6
    return {
        str(z): float(a)
        for z, a in zip(zones["zone_id"].astype(str), km2, strict=True)
        if np.isfinite(a) and a > 0
    }
