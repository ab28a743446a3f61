"""Distances on the Earth, one formula each: great-circle metres and a local flat projection."""

from __future__ import annotations

from typing import Any

import numpy as np

#: mean Earth radius (IUGG), metres
EARTH_RADIUS_M = 6_371_000.0


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in metres (haversine; arrays broadcast).

    Examples
    --------
    >>> round(float(haversine_m(48.8566, 2.3522, 45.7640, 4.8357)) / 1000)  # Paris - Lyon
    392
    """
    lat1, lon1, lat2, lon2 = (
        np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def local_xy_m(lat: Any, lon: Any, *, lat0: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular metres around latitude ``lat0`` (default: the points' mean latitude).

    Good to a fraction of a percent over a city; used where a flat plane is enough (kernel
    densities, nearest neighbours).
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    phi0 = np.radians(np.nanmean(lat) if lat0 is None else lat0)
    return np.radians(lon) * EARTH_RADIUS_M * np.cos(phi0), np.radians(lat) * EARTH_RADIUS_M
