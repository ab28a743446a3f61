"""Calendar features: darkness (per slot, or as sunrise/sunset tables), public and school holidays.

Darkness is astral's solar elevation at the middle of the slot: the slot is *dark* when the sun's
upper limb is below the horizon there, i.e. the geometric (refraction-free) elevation of the sun's
centre is below -0.833° (standard refraction 0.567° plus the solar radius 0.267°: the same
convention as astral's sunrise and sunset, so dark starts at astral's sunset). Locations are grouped on a
0.05° grid (about 5 km, i.e. under 20 s of sunrise time), so a city needs only a few thousand
astral calls per year of hours. The cube takes darkness from :func:`sun_table` (sunrise and
sunset per location cell and local date, the same lattice).

References
----------
Meeus, J. (1998). *Astronomical Algorithms*, 2nd ed. (the algorithm astral implements).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd
from astral import Observer
from astral.sun import elevation, sunrise, sunset
from vacances_scolaires_france import SchoolHolidayDates

#: the sun's upper limb at the horizon, with standard refraction (astral's sunrise/sunset).
DARK_ELEVATION = -0.833
#: lattice step (degrees) on which locations share one sun computation (under 20 s of sunrise time).
SUN_GRID = 0.05


def _as_utc_index(hours: Iterable) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(hours)
    if idx.tz is None:
        raise TypeError("hours must be timezone-aware UTC timestamps, got naive ones")
    return idx.tz_convert("UTC")


def dark_mask(
    hours_utc: pd.DatetimeIndex | pd.Series,
    lat: float | np.ndarray,
    lon: float | np.ndarray,
    *,
    slot_minutes: int = 60,
) -> np.ndarray:
    """Whether the sun is down at the middle of each slot.

    Parameters
    ----------
    hours_utc
        Slot starts, timezone-aware.
    lat, lon
        WGS84 location, scalars or arrays of the same length as ``hours_utc``.
    slot_minutes
        Slot length; the sun is taken at ``start + slot_minutes / 2``.

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> import pandas as pd
    >>> h = pd.DatetimeIndex(["2026-06-21 01:00", "2026-06-21 12:00"], tz="UTC")
    >>> dark_mask(h, 48.85, 2.35).tolist()
    [True, False]
    """
    idx = _as_utc_index(hours_utc)
    n = len(idx)
    lat_a = np.broadcast_to(np.asarray(lat, dtype=float), (n,))
    lon_a = np.broadcast_to(np.asarray(lon, dtype=float), (n,))
    if n == 0:
        return np.zeros(0, dtype=bool)
    if np.any(np.abs(lat_a) > 90) or np.any(np.abs(lon_a) > 180):
        raise ValueError("latitude must be within [-90, 90] and longitude within [-180, 180]")
    mid = idx + pd.Timedelta(minutes=slot_minutes / 2)
    glat = np.round(lat_a / SUN_GRID) * SUN_GRID
    glon = np.round(lon_a / SUN_GRID) * SUN_GRID
    frame = pd.DataFrame({"lat": glat, "lon": glon, "t": mid.as_unit("ns").asi8})
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(frame))
    out = np.empty(len(uniques), dtype=bool)
    observers: dict[tuple[float, float], Observer] = {}
    for i, (la, lo, t) in enumerate(uniques):
        obs = observers.get((la, lo))
        if obs is None:
            obs = observers[(la, lo)] = Observer(latitude=la, longitude=lo)
        when = dt.datetime.fromtimestamp(t / 1e9, tz=dt.UTC)
        out[i] = elevation(obs, when, with_refraction=False) < DARK_ELEVATION
    return out[codes]


def sun_table(
    lat: np.ndarray,
    lon: np.ndarray,
    days: np.ndarray,
    *,
    timezone: str,
    grid: float = SUN_GRID,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sunrise and sunset for each location cell and local date (astral).

    Locations are grouped on a ``grid``-degree lattice (0.05 degree: under 20 s of sunrise
    time), so a city needs a few thousand astral calls per year instead of one per zone-hour.

    Parameters
    ----------
    lat, lon
        WGS84 coordinates of the zones (centroids).
    days
        Local calendar days as integers (days since 1970-01-01).
    timezone
        IANA time zone of the local calendar.
    grid
        Lattice step in degrees.

    Returns
    -------
    rise, set, cell
        ``rise`` and ``set`` are ``(cells, days)`` arrays of UTC epoch seconds; on a polar night
        rise = +inf and set = -inf (always dark), on a polar day rise = -inf and set = +inf.
        ``cell`` gives each location's row.

    References
    ----------
    NOAA solar calculator / Meeus (1998), as implemented by astral (``astral.sun.sunrise``,
    upper limb with 0.833 degree of refraction and radius).
    """
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise ValueError("latitude must be within [-90, 90] and longitude within [-180, 180]")
    keys = np.stack([np.round(lat / grid) * grid, np.round(lon / grid) * grid], axis=1)
    cells, cell = np.unique(keys, axis=0, return_inverse=True)
    tzinfo = ZoneInfo(timezone)
    rise = np.empty((len(cells), len(days)))
    sets = np.empty((len(cells), len(days)))
    for c, (la, lo) in enumerate(cells):
        obs = Observer(latitude=float(la), longitude=float(lo))
        for j, d in enumerate(days):
            date = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
            try:
                rise[c, j] = sunrise(obs, date, tzinfo=tzinfo).timestamp()
                sets[c, j] = sunset(obs, date, tzinfo=tzinfo).timestamp()
            except ValueError:  # the sun does not rise or does not set that day
                noon = dt.datetime.combine(date, dt.time(12), tzinfo=tzinfo)
                up = elevation(obs, noon) > -0.833
                rise[c, j] = -np.inf if up else np.inf
                sets[c, j] = np.inf if up else -np.inf
    return rise, sets, np.asarray(cell, dtype=np.int64).ravel()


def _dates(dates: Iterable) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(
        pd.to_datetime(pd.Series(list(dates)) if not isinstance(dates, pd.Series) else dates)
    )
    return idx.tz_localize(None) if idx.tz is not None else idx


def public_holidays(
    dates: Iterable, *, country: str | None, subdivision: str | None = None
) -> np.ndarray:
    """Whether each local date is a public holiday (python-holidays).

    Parameters
    ----------
    dates
        Local calendar dates (date objects or naive timestamps).
    country
        ISO 3166 code (``FR``, ``US``...); None gives all False.
    subdivision
        Optional subdivision code understood by ``holidays`` (e.g. ``IL``).
    """
    idx = _dates(dates)
    if country is None or len(idx) == 0:
        return np.zeros(len(idx), dtype=bool)
    years = sorted(set(idx.year))
    try:
        cal = holidays.country_holidays(country, subdiv=subdivision, years=years)
    except NotImplementedError as exc:
        raise ValueError(f"holidays does not know country {country!r}") from exc
    days = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in cal.keys()))
    return np.asarray(idx.normalize().isin(days))


def school_holidays(dates: Iterable, *, zone: str | None) -> np.ndarray:
    """Whether each local date falls in French school holidays (vacances-scolaires-france).

    Parameters
    ----------
    dates
        Local calendar dates.
    zone
        French school zone ``A``, ``B`` or ``C``; None gives all False (outside France, school
        calendars are not known to vigie).
    """
    idx = _dates(dates)
    if zone is None or len(idx) == 0:
        return np.zeros(len(idx), dtype=bool)
    zone = zone.upper()
    if zone not in {"A", "B", "C"}:
        raise ValueError(f"school zone must be A, B or C, got {zone!r}")
    return np.asarray(idx.normalize().isin(_school_days(zone)))


@functools.lru_cache(maxsize=8)
def day_flags(
    day0: int,
    day1: int,
    *,
    country: str | None,
    subdivision: str | None = None,
    school_zone: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Public and school holidays of the local days ``day0`` to ``day1`` (exclusive), counted in
    days since 1970-01-01, as two read-only bool arrays; cached, since loading the school
    calendar takes about a second. Raises ValueError as :func:`public_holidays` and
    :func:`school_holidays` do."""
    days = pd.to_datetime(np.arange(day0, day1), unit="D")
    holiday = np.asarray(public_holidays(days, country=country, subdivision=subdivision), bool)
    school = np.asarray(school_holidays(days, zone=school_zone), bool)
    holiday.setflags(write=False)
    school.setflags(write=False)
    return holiday, school


@functools.lru_cache(maxsize=4)
def _school_days(zone: str) -> pd.DatetimeIndex:
    """Every school-holiday date of a French zone (the package's data file is read once)."""
    data = SchoolHolidayDates().data
    key = f"vacances_zone_{zone.lower()}"
    return pd.DatetimeIndex([pd.Timestamp(d) for d, row in data.items() if row.get(key)])
