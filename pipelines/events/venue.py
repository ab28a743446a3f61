"""The venue: its zone from coordinates or a zone id, and the zones' centroids and rings.

The ring of a zone is its touching polygons (:func:`features.zones.neighbours`) or, without
zone polygons, its H3 ring.
"""

from __future__ import annotations

from typing import Any

import h3
import numpy as np

from features import zones as fz
from features.errors import InputError
from features.store import Store


def locate(
    store: Store, lat: Any, lon: Any, zone: str | None, where: str
) -> tuple[str, float, float]:
    """The venue's zone and coordinates from lat/lon or a zone_id."""
    info = store_zones(store)
    zones = info.gdf
    if lat is not None and lon is not None:
        try:
            lat, lon = float(lat), float(lon)
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: latitude and longitude must be numbers, got {lat!r}, {lon!r}.",
                file=where,
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InputError(
                f"{where}: latitude must be in [-90, 90] and longitude in [-180, 180], got {lat}, {lon}.",
                file=where,
            )
        if zone is None:
            if zones is not None and len(zones) and not fz.is_h3(zones["zone_id"].astype(str)):
                zone = fz.assign_points(np.array([lat]), np.array([lon]), zones)[0]
            else:
                res = int(store.study().get("area", {}).get("h3_resolution", 8))
                zone = h3.latlng_to_cell(lat, lon, res)
            if zone is None:
                raise InputError(
                    f"{where}: the venue ({lat}, {lon}) is outside every zone of the study.",
                    file=where,
                )
        return str(zone), lat, lon
    if zone is None:
        raise InputError(
            f"{where}: the venue needs latitude and longitude, or a zone_id.", file=where
        )
    if zones is not None and zone not in set(zones["zone_id"].astype(str)):
        raise InputError(f"{where}: zone_id {zone!r} is not a zone of the study.", file=where)
    cent = info.centroid(zone)
    return zone, cent[0], cent[1]


class ZoneInfo:
    """A store's zones with their centroids and neighbour rings, computed once per file."""

    def __init__(self, gdf: Any) -> None:
        self.gdf = gdf
        self.ids = set(gdf["zone_id"].astype(str)) if gdf is not None else set()
        self._cent: dict[str, tuple[float, float]] | None = None
        self._nbrs: dict[str, list[str]] | None = None

    def centroid(self, zone_id: str) -> tuple[float, float]:
        if self.gdf is not None and len(self.gdf):
            if self._cent is None:
                c = fz.centroids(self.gdf)
                self._cent = dict(
                    zip(
                        c["zone_id"],
                        zip(c["latitude"].astype(float), c["longitude"].astype(float), strict=True),
                        strict=True,
                    )
                )
            if zone_id in self._cent:
                return self._cent[zone_id]
        try:
            if h3.is_valid_cell(zone_id):
                lat, lon = h3.cell_to_latlng(zone_id)
                return float(lat), float(lon)
        except (TypeError, ValueError):  # not an H3 id
            pass
        return (float("nan"), float("nan"))

    def ring(self, zone_id: str) -> list[str]:
        if self.gdf is not None and len(self.gdf):
            if self._nbrs is None:
                self._nbrs = fz.neighbours(self.gdf)
            return fz.ring(zone_id, self._nbrs)
        try:
            return sorted(h3.grid_ring(zone_id, 1)) if h3.is_valid_cell(zone_id) else []
        except (TypeError, ValueError):
            return []


_ZONE_CACHE: dict[tuple[str, float], ZoneInfo] = {}


def store_zones(store: Store) -> ZoneInfo:
    """The store's zones (cached while the file is unchanged); ``gdf`` is None without zones."""
    path = store.validated_path("zones")
    if not path.exists():
        return ZoneInfo(None)
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _ZONE_CACHE:
        _ZONE_CACHE.clear()
        _ZONE_CACHE[key] = ZoneInfo(store.zones())
    return _ZONE_CACHE[key]
