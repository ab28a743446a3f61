"""The event brief: presence, incidents, staffing and context for one event, hour by hour.

``make_brief(store, event)`` answers the planner's question "how many agents, rescuers, lanes and
metres of barrier, at what time" for an event of the store (its ``event_id``) or one described
in a YAML file, and writes ``store/briefs/<event_id>.json``.

What it does, in order:

1. **Hours.** Every UTC hour from ``hours_before`` before the start to ``hours_after`` after the
   end (so past midnight and across a DST change nothing is dropped or doubled); each row
   carries its local time with its offset.
2. **Presence forecast** for the venue zone and its ring of neighbouring zones
   (``features.zones.neighbours``: touching polygons, or the H3 ring). The *reference* is the
   cube's ``present_baseline`` for that zone and hour (or, past the cube, the latest baseline for
   the same zone and local hour of week; or the median presence of that hour of week). The
   *uplift* is learnt from comparable past events of the store (same category, attendance
   within a factor ``comparable_size_ratio``, start within ``comparable_hour_window`` hours of
   local time): their observed present − reference, per attendee, hour by hour relative to their
   start (before and during) and end (after), median over comparables, times this event's
   attendance. Without comparables the uplift is the attendance itself with a triangular
   arrival curve over the entry window and a departure curve after the end
   (:mod:`pipelines.events.staffing`), and nothing in the ring. ``presence_method`` says which was used.
3. **Incident forecast** per hour, zone and category group, with 80 % and 95 % intervals, from
   the fitted models (``pipelines.models.load_predictor(store).predict(frame)``), on a frame of
   the cube's columns with the forecast presence and the event's attendance.
4. **Staffing** per hour (:func:`pipelines.events.staffing.plan_event`): rescuers by the DPS grid,
   agents, entry lanes, barrier and egress, with their arithmetic and sources.
5. **Context**: lamps out within ``lamp_radius_m`` of the venue (validated lamps and the lighting
   faults open at the event), transit stops within ``stop_radius_m`` with their usual and
   expected entries, concurrent events within ``concurrent_radius_m``, and the comparable past
   events with what happened (presence peak, incidents observed against the usual count).

Anything that could not be estimated goes to the ``limitations`` list; a missing source never
stops the brief. Figures in the brief are raw (it is a store file): reports suppress small
counts when they publish it (:mod:`pipelines.reports.publish`).

References
----------
Arrêté du 7 novembre 2006 (référentiel national DPS); HSE (1999) HSG195; Fruin (1971); SGSA
(2018) Green Guide — see :mod:`pipelines.events.staffing`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError, StoreError, VigieError
from features.geo import haversine_m
from features.store import Store
from pipelines.events import staffing as st

log = logging.getLogger(__name__)

_HOUR = pd.Timedelta(hours=1)
_Z = {"upper80": 1.2815515655446004, "upper95": 1.959963984540054, "mean": 0.0}


@dataclass(frozen=True)
class BriefParams:
    """Settings of the brief (the staffing rules' own defaults are in ``staffing``).

    Attributes
    ----------
    hours_before, hours_after
        Hours covered before the start and after the end.
    lamp_radius_m, stop_radius_m, concurrent_radius_m
        Radii around the venue for lamps, transit stops and concurrent events.
    comparable_size_ratio
        A past event is comparable when its attendance is within this factor of the event's.
    comparable_hour_window
        ... and its local start hour within this many hours.
    max_comparables
        At most this many comparables, the most similar first.
    baseline_weeks
        Weeks of history for the usual transit entries and fallback references.
    staffing
        :class:`pipelines.events.staffing.StaffingParams`.
    """

    hours_before: int = 3
    hours_after: int = 2
    lamp_radius_m: float = 500.0
    stop_radius_m: float = 800.0
    concurrent_radius_m: float = 3000.0
    comparable_size_ratio: float = 2.0
    comparable_hour_window: float = 3.0
    max_comparables: int = 10
    baseline_weeks: int = 8
    staffing: st.StaffingParams = dataclasses.field(default_factory=st.StaffingParams)

    def __post_init__(self) -> None:
        for name in ("hours_before", "hours_after"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and 0 <= v <= 48):
                raise InputError(
                    f"brief parameter {name} must be a whole number of hours in 0–48, got {v!r}."
                )
        for name in (
            "lamp_radius_m",
            "stop_radius_m",
            "concurrent_radius_m",
            "comparable_hour_window",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise InputError(
                    f"brief parameter {name} must be a non-negative number, got {v!r}."
                )
        if not self.comparable_size_ratio >= 1:
            raise InputError(
                f"brief parameter comparable_size_ratio must be ≥ 1, got {self.comparable_size_ratio!r}."
            )
        if not (isinstance(self.max_comparables, int) and self.max_comparables >= 0):
            raise InputError(
                f"brief parameter max_comparables must be a whole number ≥ 0, got {self.max_comparables!r}."
            )

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any] | BriefParams | st.StaffingParams | None
    ) -> BriefParams:
        """Parameters from a flat mapping of brief and staffing names (or a params object)."""
        if values is None:
            return cls()
        if isinstance(values, BriefParams):
            return values
        if isinstance(values, st.StaffingParams):
            return cls(staffing=values)
        values = dict(values)
        own = {f.name for f in dataclasses.fields(cls)} - {"staffing"}
        mine = {k: values.pop(k) for k in list(values) if k in own}
        nested = values.pop("staffing", None)
        staff = (
            st.StaffingParams.from_mapping({**dict(nested or {}), **values})
            if (values or nested)
            else st.StaffingParams()
        )
        return cls(**mine, staffing=staff)

    def describe(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "staffing"
        }
        out["staffing"] = self.staffing.describe()
        return out


@dataclass(frozen=True)
class EventSpec:
    """One event to brief, times in UTC."""

    event_id: str
    name: str
    start: pd.Timestamp
    end: pd.Timestamp
    zone_id: str
    latitude: float
    longitude: float
    attendance: float
    category: str
    indoor: bool | None = None
    dps_activity: Any = None
    dps_environment: Any = None
    dps_delay: Any = None
    high_risk: bool | None = None
    exit_widths_m: tuple[float, ...] | None = None
    exit_stairs: bool = False
    origin: str = "store"
    staffing_overrides: tuple[tuple[str, Any], ...] = ()


# -- the event --------------------------------------------------------------------------------------


def _localise(value: Any, tz: str, what: str, notes: list[str]) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(
            f"event {what} must be a date-time such as 2026-06-20T20:30 or 2026-06-20T20:30+02:00, got {value!r}."
        ) from None
    if ts is pd.NaT:
        raise InputError(f"event {what} is missing; expected a date-time such as 2026-06-20T20:30.")
    if ts.tzinfo is not None:
        return ts.tz_convert("UTC")
    try:
        return ts.tz_localize(tz, ambiguous="raise", nonexistent="raise").tz_convert("UTC")
    except Exception:  # noqa: BLE001 - a DST gap or repeat: pandas 3 raises a bare ValueError
        # for both, pandas 2 pytz's classes, so which one it is comes from NaT below, not the class
        if ts.tz_localize(tz, ambiguous=True, nonexistent="NaT") is pd.NaT:
            out = ts.tz_localize(tz, nonexistent="shift_forward").tz_convert("UTC")
            notes.append(
                f"event {what} {ts} does not exist in {tz} (DST gap): moved to {out.tz_convert(tz)}"
            )
            return out
        out = ts.tz_localize(tz, ambiguous=True).tz_convert("UTC")
        notes.append(
            f"event {what} {ts} is ambiguous in {tz} (DST repeat): read as {out.tz_convert(tz)}; give an offset to choose"
        )
        return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "event"


def brief_key(event_id: str) -> str:
    """The file and report name of an event's brief: ``store/briefs/<key>.json`` and
    ``reports/event-brief/<key>/`` (the event id with characters unsafe in a path replaced)."""
    return _slug(event_id)


def _bool_or_none(v: Any) -> bool | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y", "oui", "indoor")
    return bool(v)


def load_event(
    store: Store, event: str | Path | Mapping[str, Any], *, notes: list[str] | None = None
) -> EventSpec:
    """The event to brief: an ``event_id`` of the store's events, a YAML file, or a mapping.

    A YAML event has ``name``, ``start``, ``end`` (local times of the study's time zone, or
    offset-aware), ``expected_attendance`` (or ``attendance``), ``category``, a venue
    (``latitude``/``longitude`` or ``zone_id``, at the top level or under ``venue:``), and
    optionally ``event_id``, ``indoor``, ``dps_activity``, ``dps_environment``, ``dps_delay``,
    ``high_risk``, ``exit_widths_m`` (list of metres), ``exit_stairs`` and ``staffing`` (a
    mapping of staffing parameters to override).

    Raises
    ------
    InputError
        An unknown event_id, an unreadable YAML, a missing or wrong field.
    """
    notes = notes if notes is not None else []
    tz = store.timezone
    if isinstance(event, Mapping):
        return _event_from_mapping(store, dict(event), "mapping", tz, notes)
    text = str(event)
    path = Path(text)
    if text.lower().endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise InputError(
                f"{path}: no such event file; expected an event_id of the store or a YAML file.",
                file=str(path),
            )
        import yaml

        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{path}: not a readable YAML event file ({exc.__class__.__name__}).",
                file=str(path),
            ) from None
        if not isinstance(raw, dict):
            raise InputError(
                f"{path}: expected a mapping with name, start, end, expected_attendance, category and a venue.",
                file=str(path),
            )
        return _event_from_mapping(store, raw, str(path), tz, notes)
    events = store.validated("events")
    if events is None or events.empty:
        raise InputError(
            f"event {text!r}: the store has no events; give a YAML event file instead."
        )
    hit = events[events["event_id"].astype(str) == text]
    if hit.empty:
        some = ", ".join(events["event_id"].astype(str).head(5))
        raise InputError(
            f"event {text!r} is not in the store's events (e.g. {some}); give an event_id or a YAML file."
        )
    return _spec_from_row(hit.iloc[0])


def _event_from_mapping(
    store: Store, raw: dict[str, Any], where: str, tz: str, notes: list[str]
) -> EventSpec:
    venue = raw.get("venue") or {}
    if not isinstance(venue, Mapping):
        raise InputError(
            f"{where}: venue must be a mapping with latitude/longitude or zone_id, got {venue!r}."
        )
    get = lambda k: venue.get(k, raw.get(k))  # noqa: E731
    missing = [k for k in ("name", "start", "end", "category") if raw.get(k) in (None, "")]
    attendance = raw.get("expected_attendance", raw.get("attendance"))
    if attendance is None:
        missing.append("expected_attendance")
    if missing:
        raise InputError(
            f"{where}: the event lacks {', '.join(missing)}; expected name, start, end, expected_attendance, category and a venue.",
            file=where,
        )
    try:
        attendance = float(attendance)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: expected_attendance must be a number, got {attendance!r}.", file=where
        ) from None
    if not math.isfinite(attendance) or attendance < 0:
        raise InputError(
            f"{where}: expected_attendance must be a non-negative number, got {attendance!r}.",
            file=where,
        )
    start = _localise(raw["start"], tz, "start", notes)
    end = _localise(raw["end"], tz, "end", notes)
    if end <= start:
        raise InputError(
            f"{where}: the event ends ({raw['end']}) before it starts ({raw['start']}); an event past midnight "
            "needs the next day's date on its end.",
            file=where,
        )
    lat, lon, zone = get("latitude"), get("longitude"), get("zone_id")
    zone_id, lat, lon = _locate(store, lat, lon, None if zone is None else str(zone), where)
    widths = raw.get("exit_widths_m")
    if widths is not None:
        if isinstance(widths, (int, float)):
            widths = [widths]
        try:
            widths = tuple(float(w) for w in widths)
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: exit_widths_m must be a list of metres, got {widths!r}.", file=where
            ) from None
    staffing = raw.get("staffing") or {}
    if not isinstance(staffing, Mapping):
        raise InputError(
            f"{where}: staffing must be a mapping of parameter: value, got {staffing!r}.",
            file=where,
        )
    local_start = start.tz_convert(tz)
    event_id = str(raw.get("event_id") or f"{_slug(raw['name'])}-{local_start:%Y%m%d}")
    return EventSpec(
        event_id=event_id,
        name=str(raw["name"]),
        start=start,
        end=end,
        zone_id=zone_id,
        latitude=lat,
        longitude=lon,
        attendance=attendance,
        category=str(raw["category"]),
        indoor=_bool_or_none(raw.get("indoor")),
        dps_activity=raw.get("dps_activity"),
        dps_environment=raw.get("dps_environment"),
        dps_delay=raw.get("dps_delay"),
        high_risk=_bool_or_none(raw.get("high_risk")),
        exit_widths_m=widths,
        exit_stairs=bool(raw.get("exit_stairs", False)),
        origin=where,
        staffing_overrides=tuple(sorted(dict(staffing).items())),
    )


def _locate(
    store: Store, lat: Any, lon: Any, zone: str | None, where: str
) -> tuple[str, float, float]:
    """The venue's zone and coordinates from lat/lon or a zone_id."""
    from features import zones as fz

    info = _zones(store)
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
                import h3

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


class _ZoneInfo:
    """A store's zones with their centroids and neighbour rings, computed once per file."""

    def __init__(self, gdf) -> None:
        from features import zones as fz

        self.gdf = gdf
        self.ids = set(gdf["zone_id"].astype(str)) if gdf is not None else set()
        self._cent: dict[str, tuple[float, float]] | None = None
        self._nbrs: dict[str, list[str]] | None = None
        self._fz = fz

    def centroid(self, zone_id: str) -> tuple[float, float]:
        if self.gdf is not None and len(self.gdf):
            if self._cent is None:
                c = self._fz.centroids(self.gdf)
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
            import h3

            if h3.is_valid_cell(zone_id):
                lat, lon = h3.cell_to_latlng(zone_id)
                return float(lat), float(lon)
        except (TypeError, ValueError):  # not an H3 id
            pass
        return (float("nan"), float("nan"))

    def ring(self, zone_id: str) -> list[str]:
        if self.gdf is not None and len(self.gdf):
            if self._nbrs is None:
                self._nbrs = self._fz.neighbours(self.gdf)
            return self._fz.ring(zone_id, self._nbrs)
        import h3

        try:
            return sorted(h3.grid_ring(zone_id, 1)) if h3.is_valid_cell(zone_id) else []
        except (TypeError, ValueError):
            return []


_ZONE_CACHE: dict[tuple[str, float], _ZoneInfo] = {}


def _zones(store: Store) -> _ZoneInfo:
    """The store's zones (cached while the file is unchanged); ``gdf`` is None without zones."""
    path = store.validated_path("zones")
    if not path.exists():
        return _ZoneInfo(None)
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _ZONE_CACHE:
        _ZONE_CACHE.clear()
        _ZONE_CACHE[key] = _ZoneInfo(store.zones())
    return _ZONE_CACHE[key]


# -- time ----------------------------------------------------------------------------------------


def event_hours(
    start: pd.Timestamp, end: pd.Timestamp, *, before: int, after: int
) -> pd.DatetimeIndex:
    """UTC hours from ``before`` h before the start to ``after`` h after the end (DST-safe)."""
    first = (start - before * _HOUR).floor("h")
    last = (end + after * _HOUR).ceil("h")
    return pd.date_range(first, last - _HOUR, freq="h", tz="UTC")


def phase_keys(
    hours: pd.DatetimeIndex, start: pd.Timestamp, end: pd.Timestamp
) -> list[tuple[str, int]]:
    """Each hour's place relative to an event: ``("before", k)`` k hours before the start (k ≥ 1),
    ``("during", k)`` the k-th hour since the start, ``("after", k)`` the k-th hour after the end."""
    out = []
    for h in hours:
        if h + _HOUR <= start:
            out.append(("before", int(math.ceil((start - h) / _HOUR - 1e-9))))
        elif h >= end:
            out.append(("after", int((h - end) // _HOUR)))
        else:
            out.append(("during", int(max(pd.Timedelta(0), h - start.floor("h")) // _HOUR)))
    return out


def attendance_curve(
    hours: pd.DatetimeIndex, start: pd.Timestamp, end: pd.Timestamp, params: st.StaffingParams
) -> tuple[np.ndarray, np.ndarray]:
    """Share of attendees present (mean over each hour) and peak share arriving per minute.

    Minute by minute: before the start the arrived share of the triangular arrival curve,
    during the event everybody, after the end the remaining share of the departure curve
    (:mod:`pipelines.events.staffing`).
    """
    present = np.zeros(len(hours))
    arrivals = np.zeros(len(hours))
    offs = np.arange(60) + 0.5
    for i, h in enumerate(hours):
        t = h + pd.to_timedelta(offs, unit="min")
        to_start = ((start - t) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
        after_end = ((t - end) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
        occ = np.where(
            to_start > 0,
            st.arrived_share(to_start, params=params),
            np.where(after_end >= 0, st.remaining_share(after_end, params=params), 1.0),
        )
        present[i] = occ.mean()
        dens = np.where(to_start >= 0, st.arrival_density(to_start, params=params), 0.0)
        arrivals[i] = dens.max()
    return present, arrivals


def _local_parts(hours: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    loc = hours.tz_convert(tz)
    return pd.DataFrame(
        {
            "hour": hours,
            "local_hour": loc.hour.astype("int8"),
            "dow": loc.dayofweek.astype("int8"),
            "local_date": loc.date,
        }
    )


# -- cube helpers ----------------------------------------------------------------------------------


def _read_cube(store: Store, zones: list[str], limitations: list[str]) -> pd.DataFrame | None:
    try:
        meta = store.cube_meta()
    except StoreError:
        limitations.append(
            "no cube in the store: no presence reference, no observed history (run `vigie cube`)"
        )
        return None
    cols = [c for c in meta.get("columns", []) if c not in ("zone_id", "hour", "month")] or None
    try:
        cube = store.cube(columns=cols, zones=sorted(set(zones)))
    except Exception as exc:  # noqa: BLE001 - an unreadable cube is a limitation, not a crash
        limitations.append(f"the cube could not be read ({exc.__class__.__name__}: {exc})")
        return None
    if "local_hour" not in cube.columns or "dow" not in cube.columns:
        loc = pd.DatetimeIndex(cube["hour"]).tz_convert(store.timezone)
        cube["local_hour"] = loc.hour
        cube["dow"] = loc.dayofweek
    return cube


class History:
    """The cube's rows of a few zones, split by zone and indexed by hour (cached lookups).

    Parameters
    ----------
    cube
        Cube rows (zone_id, hour, local_hour, dow, present, ...), or None.
    events
        The store's events: the hours from ``before`` hours before each event's start to
        ``after`` hours after its end are *affected* in its zone and never enter a reference
        (the cube's own baseline leaves out only ``[start, end)``, so arrivals and departures
        of a recurring event would leak into it).
    """

    def __init__(
        self,
        cube: pd.DataFrame | None,
        events: pd.DataFrame | None = None,
        *,
        before: int = 3,
        after: int = 2,
    ) -> None:
        self.cube = cube
        self._zones: dict[str, pd.DataFrame | None] = {}
        self._how: dict[str, tuple[dict, dict]] = {}
        self._affected: dict[str, pd.DatetimeIndex] = {}
        if events is not None and len(events):
            for e in events.itertuples():
                hrs = event_hours(
                    pd.Timestamp(e.start).tz_convert("UTC"),
                    pd.Timestamp(e.end).tz_convert("UTC"),
                    before=before,
                    after=after,
                )
                z = str(e.zone_id)
                self._affected[z] = self._affected[z].union(hrs) if z in self._affected else hrs

    def zone(self, zone_id: str) -> pd.DataFrame | None:
        if zone_id not in self._zones:
            c = self.cube
            if c is None or "present" not in c.columns:
                self._zones[zone_id] = None
            else:
                z = c[c["zone_id"] == zone_id]
                self._zones[zone_id] = None if z.empty else z.set_index("hour").sort_index()
        return self._zones[zone_id]

    def observed(self, zone_id: str, hours: pd.DatetimeIndex) -> np.ndarray:
        z = self.zone(zone_id)
        if z is None:
            return np.full(len(hours), np.nan)
        return z["present"].reindex(hours).to_numpy(dtype=float, copy=True)

    def quiet(self, zone_id: str) -> tuple[dict, dict]:
        """Presence of the zone's hours untouched by events, per (local_hour, dow) and per
        (local_hour, weekend)."""
        if zone_id not in self._how:
            z = self.zone(zone_id)
            by_how: dict = {}
            by_type: dict = {}
            if z is not None:
                keep = z["present"].notna().to_numpy(copy=True)
                if "events_active" in z.columns:
                    keep &= z["events_active"].fillna(0).to_numpy() == 0
                if zone_id in self._affected:
                    keep &= ~z.index.isin(self._affected[zone_id])
                q = z[keep]
                t = q.index.as_unit("ns").asi8
                v = q["present"].to_numpy(dtype=float)
                lh = q["local_hour"].to_numpy(dtype=int)
                dw = q["dow"].to_numpy(dtype=int)
                for key, sel in pd.Series(np.arange(len(q))).groupby([lh, dw]).groups.items():
                    by_how[key] = (t[sel], v[sel])
                for key, sel in pd.Series(np.arange(len(q))).groupby([lh, dw >= 5]).groups.items():
                    by_type[key] = (t[sel], v[sel])
            self._how[zone_id] = (by_how, by_type)
        return self._how[zone_id]


def _history(h: History | pd.DataFrame | None) -> History:
    return h if isinstance(h, History) else History(h)


def _median_before(series: tuple[np.ndarray, np.ndarray] | None, h: pd.Timestamp, n: int) -> float:
    """Median of the last ``n`` values before ``h`` (of the last ``n`` overall when fewer than 2
    are before it); NaN with fewer than 2 values. ``series`` is (sorted UTC ns, values)."""
    if series is None or len(series[0]) == 0:
        return float("nan")
    t, v = series
    k = int(np.searchsorted(t, h.as_unit("ns").value, side="left"))
    use = v[max(0, k - n) : k] if k >= 2 else v[-n:]
    return float(np.median(use)) if len(use) >= 2 else float("nan")


def reference(
    history: History | pd.DataFrame | None,
    zone_id: str,
    hours: pd.DatetimeIndex,
    tz: str,
    *,
    weeks: int = 8,
) -> tuple[np.ndarray, list[str]]:
    """The reference presence of a zone at given hours, and how each was obtained.

    The cube's baseline definition (median of the same zone and local hour of week over the
    previous ``weeks`` weeks, past only), recomputed on hours untouched by events (see
    :class:`History`):

    1. median ``present`` of the same zone and local hour of week, the last ``weeks`` such
       hours without events before the hour (for hours past the cube, the last ones it has);
    2. else (an hour of week that always has an event, e.g. a weekly market) the median of
       the same local hour on days of the same type (weekday or weekend) without events, over
       the last ``weeks`` × 5 such hours;
    3. else the cube's ``present_baseline`` at that hour;
    4. else NaN.
    """
    hist = _history(history)
    n = len(hours)
    out = np.full(n, np.nan)
    how = ["none"] * n
    z = hist.zone(zone_id)
    if z is None:
        return out, how
    by_how, by_type = hist.quiet(zone_id)
    parts = _local_parts(hours, tz)
    base = (
        z["present_baseline"].reindex(hours).to_numpy(dtype=float)
        if "present_baseline" in z.columns
        else out.copy()
    )
    for i, h in enumerate(hours):
        lh, dw = int(parts["local_hour"].iat[i]), int(parts["dow"].iat[i])
        v = _median_before(by_how.get((lh, dw)), h, weeks)
        if np.isfinite(v):
            out[i], how[i] = v, "median of the same hour of week without events"
            continue
        v = _median_before(by_type.get((lh, dw >= 5)), h, weeks * 5)
        if np.isfinite(v):
            kind = "weekend" if dw >= 5 else "weekday"
            out[i], how[i] = v, f"median of the same hour on {kind}s without events"
            continue
        if np.isfinite(base[i]):
            out[i], how[i] = base[i], "cube baseline"
    return out, how


# -- comparables -----------------------------------------------------------------------------------


def _hour_gap(a: int, b: int) -> int:
    d = abs(int(a) - int(b)) % 24
    return min(d, 24 - d)


def find_comparables(
    events: pd.DataFrame | None, ev: EventSpec, tz: str, params: BriefParams
) -> pd.DataFrame:
    """Past events of the same category, similar size and similar local start hour, best first."""
    if events is None or events.empty or ev.attendance <= 0:
        return pd.DataFrame()
    e = events[(events["event_id"].astype(str) != ev.event_id)].copy()
    e = e[e["category"].astype(str).str.strip().str.lower() == ev.category.strip().lower()]
    e = e[pd.to_datetime(e["end"], utc=True) <= ev.start]
    e = e[e["expected_attendance"] > 0]
    if e.empty:
        return e
    ratio = e["expected_attendance"].astype(float) / ev.attendance
    r = params.comparable_size_ratio
    e = e[(ratio >= 1 / r) & (ratio <= r)]
    own = ev.start.tz_convert(tz).hour
    gaps = (
        pd.to_datetime(e["start"], utc=True)
        .dt.tz_convert(tz)
        .dt.hour.map(lambda x: _hour_gap(x, own))
    )
    e = e[gaps <= params.comparable_hour_window]
    if e.empty:
        return e
    e["size_gap"] = np.abs(np.log(e["expected_attendance"].astype(float) / ev.attendance))
    e["hour_gap"] = gaps[e.index]
    e["score"] = e["size_gap"] + e["hour_gap"] / max(params.comparable_hour_window, 1)
    return e.sort_values(["score", "start"], ascending=[True, False]).head(params.max_comparables)


def _observed_uplift(
    cube: History | pd.DataFrame, zone_ids: list[str], hours: pd.DatetimeIndex, tz: str, weeks: int
) -> np.ndarray:
    """Mean over ``zone_ids`` of observed present − reference at ``hours`` (NaN where unobserved)."""
    if not zone_ids:
        return np.full(len(hours), np.nan)
    hist = _history(cube)
    vals = []
    for z in zone_ids:
        ref, _ = reference(hist, z, hours, tz, weeks=weeks)
        obs = hist.observed(z, hours)
        vals.append(obs - ref)
    arr = np.vstack(vals)
    with np.errstate(all="ignore"):
        ok = np.isfinite(arr).sum(axis=0)
        mean = np.where(ok > 0, np.nansum(arr, axis=0) / np.maximum(ok, 1), np.nan)
    return mean


def _key_lookup(keys: list[tuple[str, int]], values: np.ndarray) -> dict[tuple[str, int], float]:
    return {k: float(v) for k, v in zip(keys, values, strict=False) if np.isfinite(v)}


def _align(table: dict[tuple[str, int], float], key: tuple[str, int]) -> float:
    if key in table:
        return table[key]
    if key[0] == "during":
        during = [k for k in table if k[0] == "during"]
        if during:
            last = max(during, key=lambda k: k[1])
            if key[1] > last[1]:
                return table[last]
    return float("nan")


def _spec_from_row(row: Any) -> EventSpec:
    """An EventSpec from a row of the validated events."""
    return EventSpec(
        event_id=str(row["event_id"]),
        name=str(row.get("name", row["event_id"])),
        start=pd.Timestamp(row["start"]).tz_convert("UTC"),
        end=pd.Timestamp(row["end"]).tz_convert("UTC"),
        zone_id=str(row["zone_id"]),
        latitude=float(row.get("latitude", np.nan)),
        longitude=float(row.get("longitude", np.nan)),
        attendance=float(row["expected_attendance"]),
        category=str(row["category"]),
        indoor=_bool_or_none(row.get("indoor")),
        dps_activity=row.get("dps_activity"),
        dps_environment=row.get("dps_environment"),
        dps_delay=row.get("dps_delay"),
        origin="store",
    )


def _events_around(
    events: pd.DataFrame | None, ev: EventSpec, hours: pd.DatetimeIndex, bp: BriefParams
) -> list[EventSpec]:
    """Other events whose arrival-to-departure window overlaps ``hours``."""
    if events is None or events.empty or len(hours) == 0:
        return []
    s = pd.to_datetime(events["start"], utc=True) - pd.Timedelta(hours=bp.hours_before)
    e = pd.to_datetime(events["end"], utc=True) + pd.Timedelta(hours=bp.hours_after)
    hit = events[
        (s < hours[-1] + _HOUR) & (e > hours[0]) & (events["event_id"].astype(str) != ev.event_id)
    ]
    return [_spec_from_row(r) for _, r in hit.iterrows()]


def _learn_crowd(
    ev: EventSpec,
    hours: pd.DatetimeIndex,
    comps: pd.DataFrame,
    comp_zones: dict[str, list[str]],
    hist: History,
    tz: str,
    bp: BriefParams,
    *,
    summarise: bool = True,
) -> dict[str, Any]:
    """An event's crowd above the reference, in its zone and in each ring zone, on ``hours``.

    From its comparables (median per-attendee uplift, hour by hour relative to start and end)
    when some have observed presence, else from the attendance curve (nothing in the ring).
    """
    sp = bp.staffing
    keys = phase_keys(hours, ev.start, ev.end)
    share, _ = attendance_curve(hours, ev.start, ev.end, sp)
    curve_crowd = ev.attendance * share
    venue_table: list[dict] = []
    ring_table: list[dict] = []
    summaries: list[dict] = []
    have_presence = hist.cube is not None and "present" in hist.cube.columns
    for _, c in comps.iterrows():
        cs = pd.Timestamp(c["start"]).tz_convert("UTC")
        ce = pd.Timestamp(c["end"]).tz_convert("UTC")
        cz = str(c["zone_id"])
        used = False
        if have_presence:
            ch = event_hours(cs, ce, before=bp.hours_before, after=bp.hours_after)
            ck = phase_keys(ch, cs, ce)
            att = float(c["expected_attendance"])
            up = _observed_uplift(hist, [cz], ch, tz, bp.baseline_weeks)
            if np.isfinite(up).sum() >= max(1, len(ch) // 2):
                used = True
                venue_table.append(_key_lookup(ck, up / att))
                rup = _observed_uplift(hist, comp_zones.get(cz, []), ch, tz, bp.baseline_weeks)
                ring_table.append(_key_lookup(ck, rup / att))
        if summarise:
            summaries.append(
                _comparable_summary(c, hist, cz, comp_zones.get(cz, []), cs, ce, tz, bp, used=used)
            )
    if venue_table:
        per_att = np.array([_median_at(venue_table, k) for k in keys])
        gaps = ~np.isfinite(per_att)
        # an event adds people: a learnt uplift below zero (noise around the reference in the
        # hours before and after) is taken as none
        crowd = np.maximum(np.where(gaps, curve_crowd, per_att * ev.attendance), 0.0)
        ring_att = np.array([_median_at(ring_table, k) for k in keys])
        ring_crowd = np.maximum(np.where(np.isfinite(ring_att), ring_att, 0.0) * ev.attendance, 0.0)
        text = (
            f"uplift learnt from {len(venue_table)} comparable past event(s) of category {ev.category!r} "
            "(observed present − reference per attendee, hour by hour relative to start and end, "
            f"median) × {ev.attendance:,.0f} attendees"
        ).replace(",", " ")
        return {"crowd": crowd, "ring_crowd": ring_crowd, "method": "comparables", "method_text": text,
                "gaps": int(gaps.sum()), "comparables": summaries}  # fmt: skip
    text = (
        f"attendance curve: {ev.attendance:,.0f} attendees, arrivals over {sp.entry_window_minutes:g} min "
        f"peaking {sp.arrival_peak_minutes_before:g} min before the start, departures within "
        f"{sp.departure_window_minutes:g} min of the end"
    ).replace(",", " ")
    return {"crowd": curve_crowd, "ring_crowd": np.zeros(len(hours)), "method": "attendance curve",
            "method_text": text, "gaps": 0, "comparables": summaries}  # fmt: skip


def _median_at(tables: list[dict[tuple[str, int], float]], key: tuple[str, int]) -> float:
    vals = np.array([_align(t, key) for t in tables], dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else float("nan")


# -- the brief -------------------------------------------------------------------------------------


def make_brief(
    store: Store | str | Path,
    event: str | Path | Mapping[str, Any],
    *,
    params: Mapping[str, Any] | BriefParams | st.StaffingParams | None = None,
    predictor: Any = None,
    write: bool = True,
) -> dict[str, Any]:
    """The event brief: presence, incidents, staffing and context per hour.

    Parameters
    ----------
    store
        The vigie store (or its folder).
    event
        An ``event_id`` of the store's events, a YAML event file, or a mapping with the same
        fields (see :func:`load_event`).
    params
        Overrides, as a flat mapping of :class:`BriefParams` and
        :class:`pipelines.events.staffing.StaffingParams` names, or a params object.
    predictor
        An object with ``predict(frame, groups=None)`` returning zone_id, hour, group, mean,
        lower80, upper80, lower95, upper95 per input row and group; by default
        ``pipelines.models.load_predictor(store)``.
    write
        Write ``store/briefs/<event_id>.json``.

    Returns
    -------
    dict
        ``event`` (the event, local and UTC times), ``generated_at``, ``params``, ``hours``
        (one row per hour: local and UTC time, phase, venue and ring presence, event crowd,
        incidents, staffing figures), ``presence`` (per hour and zone: reference, uplift,
        forecast, observed when the cube has it), ``presence_method``, ``incidents`` (per
        hour, zone and group with intervals), ``staffing`` (:class:`EventStaffing` as a dict),
        ``context`` (lamps, stops, concurrent events, comparables), ``limitations`` and
        ``path`` (the written file, when written).

    Raises
    ------
    InputError
        When the event cannot be found or read. Missing data never raises: it is a limitation.
    """
    store = store if isinstance(store, Store) else Store(store)
    tz = store.timezone
    limitations: list[str] = []
    notes: list[str] = []
    bp = BriefParams.from_mapping(params)
    ev = load_event(store, event, notes=notes)
    if ev.staffing_overrides:
        bp = dataclasses.replace(
            bp, staffing=bp.staffing.with_overrides(**dict(ev.staffing_overrides))
        )
    sp = bp.staffing

    zones = _zones(store)
    if zones.gdf is None:
        limitations.append(
            "no zones in the store: the ring of neighbouring zones is H3-based or empty"
        )
    ring = zones.ring(ev.zone_id)
    if not ring:
        limitations.append(f"venue zone {ev.zone_id} has no neighbouring zones: no ring forecast")
    hours = event_hours(ev.start, ev.end, before=bp.hours_before, after=bp.hours_after)
    keys = phase_keys(hours, ev.start, ev.end)
    parts = _local_parts(hours, tz)
    local = hours.tz_convert(tz)
    if len({t.utcoffset() for t in local}) > 1:
        notes.append(
            "the brief spans a daylight-saving change: hours are listed in UTC order with their local offset"
        )
    if local[0].date() != local[-1].date():
        notes.append("the brief spans midnight (local time)")
    if ev.indoor:
        notes.append(
            "indoor event: presence is as measured by the source inside the venue zone; lamps and transit matter for the approach routes"
        )

    events = store.validated("events")
    comps = find_comparables(events, ev, tz, bp)
    # other events whose crowd reaches the venue zone or its ring during these hours
    ours = {ev.zone_id, *ring}
    others = []
    for spec in _events_around(events, ev, hours, bp):
        if spec.zone_id in ours or ours & set(zones.ring(spec.zone_id)):
            others.append((spec, find_comparables(events, spec, tz, bp)))
    comp_zones: dict[str, list[str]] = {}
    for table in [comps, *(c for _, c in others)]:
        for cz in table.get("zone_id", pd.Series(dtype=str)).astype(str):
            comp_zones.setdefault(cz, zones.ring(cz))
    for spec, _ in others:
        comp_zones.setdefault(spec.zone_id, zones.ring(spec.zone_id))
    wanted = {*ours, *comp_zones, *(z for r in comp_zones.values() for z in r)}
    cube = _read_cube(store, sorted(wanted), limitations)
    hist = History(cube, events, before=bp.hours_before, after=bp.hours_after)

    # -- presence -------------------------------------------------------------------------------
    _, arrivals_share = attendance_curve(hours, ev.start, ev.end, sp)
    learnt = _learn_crowd(ev, hours, comps, comp_zones, hist, tz, bp)
    crowd, ring_crowd = learnt["crowd"], learnt["ring_crowd"]
    comparables_out = learnt["comparables"]
    method, method_text = learnt["method"], learnt["method_text"]
    if learnt["gaps"]:
        notes.append(
            f"{learnt['gaps']} hour(s) not covered by the comparables used the attendance curve"
        )
    if method == "attendance curve":
        limitations.append(
            f"no comparable past event with observed presence (category {ev.category!r}, attendance "
            f"within ×{bp.comparable_size_ratio:g}, start within {bp.comparable_hour_window:g} h): "
            "the uplift is the expected attendance with a "
            f"triangular arrival curve over {sp.entry_window_minutes:g} min before the start and departures "
            f"within {sp.departure_window_minutes:g} min after the end; no uplift forecast in the ring"
        )
    spill: dict[str, np.ndarray] = {z: np.zeros(len(hours)) for z in ours}
    spill_out = []
    for spec, ccomps in others:
        o = _learn_crowd(spec, hours, ccomps, comp_zones, hist, tz, bp, summarise=False)
        if spec.zone_id in spill:
            spill[spec.zone_id] += o["crowd"]
        for z in zones.ring(spec.zone_id):
            if z in spill:
                spill[z] += o["ring_crowd"]
        spill_out.append(
            {"event_id": spec.event_id, "zone_id": spec.zone_id, "method": o["method"]}
        )
    if spill_out:
        notes.append(
            "the crowds of other events around the venue are added to the forecast: "
            + ", ".join(f"{x['event_id']} ({x['method']})" for x in spill_out)
        )

    presence_rows: list[dict] = []
    venue_ref, venue_how = reference(hist, ev.zone_id, hours, tz, weeks=bp.baseline_weeks)
    if not np.isfinite(venue_ref).any():
        limitations.append(
            f"no presence reference for venue zone {ev.zone_id}: forecast presence is the event crowd alone"
        )
    zone_forecasts: dict[str, np.ndarray] = {}
    for role, zlist in (("venue", [ev.zone_id]), ("ring", ring)):
        for z in zlist:
            ref, how = (
                (venue_ref, venue_how)
                if z == ev.zone_id
                else reference(hist, z, hours, tz, weeks=bp.baseline_weeks)
            )
            up = (crowd if role == "venue" else ring_crowd) + spill[z]
            fc = np.maximum(0.0, np.nan_to_num(ref, nan=0.0) + up)
            zone_forecasts[z] = fc
            obs = None
            if cube is not None and "present" in cube.columns:
                obs = hist.observed(z, hours)
            for i, h in enumerate(hours):
                presence_rows.append(
                    {
                        "hour": h,
                        "local": local[i].isoformat(),
                        "zone_id": z,
                        "role": role,
                        "reference": _num(ref[i]),
                        "reference_method": how[i],
                        "uplift": float(up[i]),
                        "forecast": float(fc[i]),
                        "observed": None if obs is None else _num(obs[i]),
                    }
                )

    # -- concurrent events (also feed the model frame) ----------------------------------------------
    concurrent = _concurrent(events, ev, tz, bp)

    # -- incidents ---------------------------------------------------------------------------------
    frame = _model_frame(
        store, cube, ev, ring, hours, parts, zone_forecasts, concurrent, tz, limitations
    )
    inc_rows, inc_hour = _incidents(store, predictor, frame, hours, sp, limitations)

    # -- staffing ------------------------------------------------------------------------------------
    plan = st.plan_event(
        ev.attendance,
        hours=[t.isoformat() for t in local],
        crowd=crowd.tolist(),
        arrivals_peak_per_min=(arrivals_share * ev.attendance).tolist(),
        incidents_per_hour=inc_hour.tolist(),
        category=ev.category,
        indoor=ev.indoor,
        high_risk=ev.high_risk,
        dps_activity=ev.dps_activity,
        dps_environment=ev.dps_environment,
        dps_delay=ev.dps_delay,
        exit_widths_m=ev.exit_widths_m,
        exit_stairs=ev.exit_stairs,
        params=sp,
    )

    # -- context -----------------------------------------------------------------------------------
    lamps = _lamps_context(store, ev, bp, limitations)
    stops = _stops_context(store, ev, hours, tz, bp, sp, limitations)

    hours_out = []
    ring_total = np.sum([zone_forecasts[z] for z in ring], axis=0) if ring else np.zeros(len(hours))
    for i, h in enumerate(hours):
        srow = plan.hours[i]
        hours_out.append(
            {
                "hour": h,
                "local": local[i].isoformat(),
                "phase": keys[i][0],
                "phase_hour": keys[i][1],
                "venue_present_forecast": float(zone_forecasts[ev.zone_id][i]),
                "venue_reference": _num(venue_ref[i]),
                "ring_present_forecast": float(ring_total[i]),
                "event_crowd": float(crowd[i]),
                "incidents_per_hour": float(inc_hour[i]),
                "rescuers": srow["rescuers"],
                "dps_tier": srow["dps_tier"],
                "agents": srow["agents"],
                "entry_lanes": srow["entry_lanes"],
                "arrivals_peak_per_min": srow["arrivals_peak_per_min"],
            }
        )
    brief = {
        "event": {
            "event_id": ev.event_id,
            "name": ev.name,
            "category": ev.category,
            "start": ev.start,
            "end": ev.end,
            "start_local": ev.start.tz_convert(tz).isoformat(),
            "end_local": ev.end.tz_convert(tz).isoformat(),
            "timezone": tz,
            "zone_id": ev.zone_id,
            "ring": ring,
            "latitude": _num(ev.latitude),
            "longitude": _num(ev.longitude),
            "expected_attendance": ev.attendance,
            "indoor": ev.indoor,
            "origin": ev.origin,
        },
        "generated_at": pd.Timestamp.now(tz="UTC"),
        "params": bp.describe(),
        "presence_method": method,
        "presence_method_text": method_text,
        "hours": hours_out,
        "presence": presence_rows,
        "incidents": inc_rows,
        "staffing": plan.to_dict(),
        "context": {
            "lamps": lamps,
            "stops": stops,
            "concurrent_events": concurrent,
            "comparables": comparables_out,
        },
        "notes": notes + plan.notes,
        "limitations": limitations,
        "provenance": _provenance(store),
    }
    if write:
        path = store.write_json(f"briefs/{_slug(ev.event_id)}.json", brief)
        brief["path"] = str(path)
    return brief


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _provenance(store: Store) -> dict[str, Any]:
    try:
        from importlib.metadata import version

        code = version("vigie")
    except Exception:  # noqa: BLE001 - not installed
        code = "unknown"
    try:
        sources = store.study().get("sources", {})
    except StoreError:
        sources = {}
    return {"code_version": code, "sources": sources, "store": str(store.root)}


# -- model frame and incidents ------------------------------------------------------------------


def _model_frame(
    store, cube, ev, ring, hours, parts, zone_forecasts, concurrent, tz, limitations
) -> pd.DataFrame:
    """Cube-like rows for the venue and ring zones at the brief's hours, with forecast presence.

    Where the cube has the row, its columns are kept; elsewhere calendar columns are computed
    (darkness, holidays), lamps and weather carried from the cube's history (the latest lamps
    count; the mean temperature of that local hour; no rain), and the event's attendance set.
    """
    from features import calendar as cal
    from features.config import default_country

    zone_ids = [ev.zone_id, *ring]
    rows = []
    for z in zone_ids:
        f = parts.copy()
        f.insert(0, "zone_id", z)
        f["present"] = zone_forecasts[z]
        rows.append(f)
    frame = pd.concat(rows, ignore_index=True)
    if cube is not None:
        extra = [
            c
            for c in cube.columns
            if c not in frame.columns
            and c not in ("present_missing",)
            and not c.startswith("inc_")
            and c != "incidents"
        ]
        known = cube.set_index(["zone_id", "hour"])[extra]
        idx = pd.MultiIndex.from_frame(frame[["zone_id", "hour"]])
        frame = pd.concat([frame, known.reindex(idx).reset_index(drop=True)], axis=1)
    study = {}
    try:
        study = store.study().get("area", {})
    except StoreError:
        pass
    need = frame.get("dark")
    if need is None or need.isna().any():
        info = _zones(store)
        cents = {z: info.centroid(z) for z in zone_ids}
        lat = frame["zone_id"].map(lambda z: cents[z][0]).to_numpy(dtype=float)
        lon = frame["zone_id"].map(lambda z: cents[z][1]).to_numpy(dtype=float)
        if np.isfinite(lat).all():
            dark = cal.dark_mask(pd.DatetimeIndex(frame["hour"]), lat, lon)
            frame["dark"] = (
                frame["dark"].fillna(pd.Series(dark)).astype(bool) if "dark" in frame else dark
            )
    for col, fn in (
        (
            "holiday",
            lambda d: cal.public_holidays(
                d,
                country=study.get("country") or default_country(tz),
                subdivision=study.get("subdivision"),
            ),
        ),
        ("school_holiday", lambda d: cal.school_holidays(d, zone=study.get("school_zone"))),
    ):
        if col not in frame or frame[col].isna().any():
            try:
                vals = fn(frame["local_date"])
            except (ValueError, NotImplementedError):
                vals = np.zeros(len(frame), dtype=bool)
            frame[col] = frame[col].fillna(pd.Series(vals)).astype(bool) if col in frame else vals
    if cube is not None:
        for col in ("lamps", "lamps_out"):
            if col in cube.columns and frame[col].isna().any():
                last = cube.dropna(subset=[col]).groupby("zone_id")[col].last()
                frame[col] = frame[col].fillna(frame["zone_id"].map(last)).fillna(0)
        if "ridership_entries" in cube.columns and frame["ridership_entries"].isna().any():
            usual = cube.groupby(["zone_id", "dow", "local_hour"])["ridership_entries"].median()
            key = pd.MultiIndex.from_frame(frame[["zone_id", "dow", "local_hour"]])
            frame["ridership_entries"] = (
                frame["ridership_entries"]
                .fillna(pd.Series(usual.reindex(key).to_numpy()))
                .fillna(0)
            )
        if "temperature_c" in cube.columns and frame["temperature_c"].isna().any():
            by_hour = cube.groupby("local_hour")["temperature_c"].mean()
            frame["temperature_c"] = frame["temperature_c"].fillna(frame["local_hour"].map(by_hour))
            limitations.append(
                "weather at the event is unknown: the mean temperature of each hour and no rain are assumed"
            )
        if "precipitation_mm" in cube.columns:
            frame["precipitation_mm"] = frame["precipitation_mm"].fillna(0.0)
    if "present_baseline" in frame:
        frame["present_ratio"] = frame["present"] / frame["present_baseline"].replace(0, np.nan)
    frame["present_missing"] = False
    # the event (and any concurrent one in the same zones) during its hours
    active = np.zeros(len(frame))
    att = np.zeros(len(frame))
    for e in [
        {"zone_id": ev.zone_id, "start": ev.start, "end": ev.end, "attendance": ev.attendance},
        *(
            {
                "zone_id": c["zone_id"],
                "start": c["start"],
                "end": c["end"],
                "attendance": c["expected_attendance"],
            }
            for c in concurrent
        ),
    ]:
        on = (
            (frame["zone_id"] == e["zone_id"])
            & (frame["hour"] < e["end"])
            & (frame["hour"] + _HOUR > e["start"])
        )
        active += on.to_numpy()
        att += on.to_numpy() * float(e["attendance"])
    frame["events_active"] = active.astype(int)
    frame["event_attendance"] = att
    return frame


def _incidents(store, predictor, frame, hours, sp, limitations) -> tuple[list[dict], np.ndarray]:
    """Per hour, zone and group forecasts, and the planning incidents per hour for the workload.

    The area's incidents per hour at the planning quantile: the sum over the venue and ring
    zones (of the ``all`` group when the model has one, else of every group) of the means, plus
    z times the square root of the summed variances, each variance read from the 95 % interval
    (sd ≈ (upper95 − lower95) / 3.92, a normal approximation, and at least the Poisson
    √mean, a lower bound for Poisson and negative-binomial counts); z = 1.2816 for ``upper80`` (the
    90th percentile), 1.96 for ``upper95``, 0 for ``mean``.
    """
    none = np.zeros(len(hours))
    if predictor is None:
        try:
            from pipelines.models import load_predictor

            predictor = load_predictor(store)
        except Exception as exc:  # noqa: BLE001 - a missing or broken model is a limitation
            msg = str(exc) if isinstance(exc, VigieError) else f"{exc.__class__.__name__}: {exc}"
            limitations.append(
                f"no incident forecast: no fitted model could be loaded ({msg}); agents from the visibility ratio only"
            )
            return [], none
    try:
        pred = predictor.predict(frame, groups=None)
    except Exception as exc:  # noqa: BLE001
        limitations.append(
            f"no incident forecast: the model could not predict ({exc.__class__.__name__}: {exc}); agents from the visibility ratio only"
        )
        return [], none
    need = {"zone_id", "hour", "group", "mean", "lower80", "upper80", "lower95", "upper95"}
    if pred is None or not need <= set(pred.columns):
        limitations.append(
            f"no incident forecast: the model's predictions lack {sorted(need - set(getattr(pred, 'columns', [])))}"
        )
        return [], none
    pred = pred.copy()
    pred["hour"] = pd.to_datetime(pred["hour"], utc=True)
    if pred.empty:
        limitations.append(
            "no incident forecast: the model returned no rows (no incidents source in the study?)"
        )
        return [], none
    # sd from the 95 % interval, at least the Poisson sd √mean (the interval of a small count
    # is degenerate: Poisson(0.02) has lower95 = upper95 = 0)
    pred["sd"] = np.maximum(
        ((pred["upper95"] - pred["lower95"]) / 3.92).clip(lower=0),
        np.sqrt(pred["mean"].clip(lower=0)),
    )
    if pred["mean"].isna().any():
        limitations.append(
            f"{int(pred['mean'].isna().sum())} incident forecast(s) could not be computed (missing model inputs)"
        )
    # the 'all' group is the total of the others: the workload uses it alone when present
    total = pred[pred["group"] == "all"] if (pred["group"] == "all").any() else pred
    agg = total.groupby("hour").agg(mean=("mean", "sum"), var=("sd", lambda s: float((s**2).sum())))
    z = _Z[sp.incident_quantile]
    planned = (agg["mean"] + z * np.sqrt(agg["var"])).reindex(hours).fillna(0.0).to_numpy()
    cols = ["hour", "zone_id", "group", "mean", "lower80", "upper80", "lower95", "upper95"]
    rows = pred[cols].sort_values(["hour", "zone_id", "group"]).to_dict(orient="records")
    return rows, planned


# -- context ------------------------------------------------------------------------------------


def _lamps_context(
    store: Store, ev: EventSpec, bp: BriefParams, limitations: list[str]
) -> dict[str, Any]:
    lamps = store.validated("lamps")
    faults = store.validated("lighting_faults")
    out: dict[str, Any] = {
        "radius_m": bp.lamp_radius_m,
        "lamps": None,
        "out": None,
        "to_repair": [],
    }
    if not np.isfinite(ev.latitude):
        limitations.append("venue location unknown: no lamps context")
        return out
    if lamps is None and faults is None:
        limitations.append(
            "no lighting data in the study (no lamps, no lighting_faults): street lights near the venue unknown"
        )
        return out
    if lamps is not None:
        d = haversine_m(
            ev.latitude,
            ev.longitude,
            lamps["latitude"].to_numpy(float),
            lamps["longitude"].to_numpy(float),
        )
        out["lamps"] = int((d <= bp.lamp_radius_m).sum())
    if faults is None:
        limitations.append("no lighting_faults source: lamps out near the venue unknown")
        return out
    f = faults.copy()
    if "latitude" not in f or f["latitude"].isna().any():
        if lamps is not None:
            loc = lamps.set_index("lamp_id")[["latitude", "longitude"]]
            f["latitude"] = f.get("latitude", pd.Series(np.nan, index=f.index)).fillna(
                f["lamp_id"].map(loc["latitude"])
            )
            f["longitude"] = f.get("longitude", pd.Series(np.nan, index=f.index)).fillna(
                f["lamp_id"].map(loc["longitude"])
            )
    f = f.dropna(subset=["latitude", "longitude"])
    reported = pd.to_datetime(f["reported_at"], utc=True)
    repaired = pd.to_datetime(f["repaired_at"], utc=True)
    open_at = (reported < ev.end) & (repaired.isna() | (repaired > ev.start))
    f = f[open_at]
    d = haversine_m(
        ev.latitude, ev.longitude, f["latitude"].to_numpy(float), f["longitude"].to_numpy(float)
    )
    f = f.assign(distance_m=d)[d <= bp.lamp_radius_m].sort_values("distance_m")
    out["out"] = int(f["lamp_id"].nunique())
    latest = reported.max() if len(reported) else None
    if latest is not None and latest < ev.start:
        out["as_of"] = latest
        limitations.append(
            f"lighting faults known up to {latest:%Y-%m-%d}: lamps out at the event are those still open then"
        )
    out["to_repair"] = [
        {
            "lamp_id": str(r.lamp_id),
            "fault_id": None if pd.isna(getattr(r, "fault_id", None)) else str(r.fault_id),
            "distance_m": round(float(r.distance_m), 1),
            "reported_at": pd.Timestamp(r.reported_at),
            "zone_id": None if pd.isna(getattr(r, "zone_id", None)) else str(r.zone_id),
        }
        for r in f.itertuples()
    ]
    return out


def _hourly_ridership(rid: pd.DataFrame) -> pd.DataFrame:
    """Entries per stop and UTC hour: finer slots summed, coarser slots split evenly."""
    r = rid[["stop_id", "start", "slot_minutes", "entries"]].copy()
    r["start"] = pd.to_datetime(r["start"], utc=True)
    r["slot_minutes"] = r["slot_minutes"].fillna(60).astype(int)
    big = r[r["slot_minutes"] > 60]
    small = r[r["slot_minutes"] <= 60]
    parts = [small.assign(hour=small["start"].dt.floor("h"))]
    if len(big):
        n = (big["slot_minutes"] // 60).clip(lower=1)
        rep = big.loc[big.index.repeat(n)].copy()
        k = rep.groupby(level=0).cumcount()
        rep["hour"] = rep["start"] + pd.to_timedelta(k, unit="h")
        rep["entries"] = rep["entries"] / n.loc[rep.index].to_numpy()
        parts.append(rep)
    out = pd.concat(parts, ignore_index=True)
    return out.groupby(["stop_id", "hour"], as_index=False)["entries"].sum()


def _stops_context(store, ev, hours, tz, bp, sp, limitations) -> list[dict[str, Any]]:
    stops = store.validated("stops")
    if stops is None:
        limitations.append("no transit stops in the study: transit load near the venue unknown")
        return []
    if not np.isfinite(ev.latitude):
        return []
    d = haversine_m(
        ev.latitude,
        ev.longitude,
        stops["stop_lat"].to_numpy(float),
        stops["stop_lon"].to_numpy(float),
    )
    near = stops.assign(distance_m=d)[d <= bp.stop_radius_m].sort_values("distance_m")
    if near.empty:
        limitations.append(f"no transit stop within {bp.stop_radius_m:g} m of the venue")
        return []
    rid = store.validated("ridership")
    parts = _local_parts(hours, tz)
    usual = np.zeros((len(near), len(hours)))
    if rid is None or rid.empty:
        limitations.append("no ridership source: usual entries at the stops near the venue unknown")
    else:
        hourly = _hourly_ridership(
            rid[rid["stop_id"].astype(str).isin(near["stop_id"].astype(str))]
        )
        hourly = hourly[hourly["hour"] < ev.start]
        hourly = hourly[hourly["hour"] >= ev.start - pd.Timedelta(weeks=bp.baseline_weeks)]
        loc = pd.DatetimeIndex(hourly["hour"]).tz_convert(tz)
        hourly = hourly.assign(local_hour=loc.hour, dow=loc.dayofweek)
        med = hourly.groupby(["stop_id", "dow", "local_hour"])["entries"].median()
        for i, sid in enumerate(near["stop_id"].astype(str)):
            for j in range(len(hours)):
                usual[i, j] = float(
                    med.get((sid, parts["dow"].iat[j], parts["local_hour"].iat[j]), 0.0)
                )
    # attendees leaving in each hour, a transit_share of whom board near the venue
    after = np.array([((h - ev.end) / pd.Timedelta(minutes=1)) for h in hours], dtype=float)
    leaving = ev.attendance * (
        st.remaining_share(after, params=sp) - st.remaining_share(after + 60, params=sp)
    )
    leaving = np.where(after + 60 > 0, leaving, 0.0)
    weights = usual.sum(axis=1)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(near), 1 / len(near))
    out = []
    local = hours.tz_convert(tz)
    for i, r in enumerate(near.itertuples()):
        extra = sp.transit_share * leaving * weights[i]
        exp = usual[i] + extra
        j = int(np.argmax(exp))
        out.append(
            {
                "stop_id": str(r.stop_id),
                "stop_name": str(r.stop_name),
                "distance_m": round(float(r.distance_m), 1),
                "usual_entries": float(usual[i].sum()),
                "expected_entries": float(exp.sum()),
                "peak_local": local[j].isoformat(),
                "peak_usual_entries": float(usual[i, j]),
                "peak_expected_entries": float(exp[j]),
                "hours": [
                    {"hour": h, "usual_entries": float(u), "expected_entries": float(e)}
                    for h, u, e in zip(hours, usual[i], exp, strict=False)
                ],
                "arithmetic": (
                    f"expected = usual + {sp.transit_share:g} (transit share) × attendees leaving that hour × "
                    f"{weights[i]:.2f} (this stop's share of the usual entries near the venue)"
                ),
            }
        )
    return out


def _concurrent(
    events: pd.DataFrame | None, ev: EventSpec, tz: str, bp: BriefParams
) -> list[dict[str, Any]]:
    if events is None or events.empty or not np.isfinite(ev.latitude):
        return []
    e = events[events["event_id"].astype(str) != ev.event_id].copy()
    s, en = pd.to_datetime(e["start"], utc=True), pd.to_datetime(e["end"], utc=True)
    e = e[(s < ev.end) & (en > ev.start)]
    if e.empty:
        return []
    d = haversine_m(
        ev.latitude, ev.longitude, e["latitude"].to_numpy(float), e["longitude"].to_numpy(float)
    )
    e = e.assign(distance_m=d)[d <= bp.concurrent_radius_m].sort_values("distance_m")
    return [
        {
            "event_id": str(r.event_id),
            "name": str(r.name),
            "category": str(r.category),
            "start": pd.Timestamp(r.start).tz_convert("UTC"),
            "end": pd.Timestamp(r.end).tz_convert("UTC"),
            "start_local": pd.Timestamp(r.start).tz_convert(tz).isoformat(),
            "end_local": pd.Timestamp(r.end).tz_convert(tz).isoformat(),
            "zone_id": str(r.zone_id),
            "expected_attendance": float(r.expected_attendance),
            "distance_m": round(float(r.distance_m), 1),
        }
        for r in e.itertuples()
    ]


def _comparable_summary(
    c, hist, zone_id, ring, start, end, tz, bp, *, used: bool
) -> dict[str, Any]:
    """What happened at a comparable past event: presence peak and incidents against usual."""
    start, end = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    out: dict[str, Any] = {
        "event_id": str(c["event_id"]),
        "name": str(c["name"]),
        "start_local": start.tz_convert(tz).isoformat(),
        "end_local": end.tz_convert(tz).isoformat(),
        "zone_id": zone_id,
        "expected_attendance": float(c["expected_attendance"]),
        "used_for_uplift": used,
        "present_peak": None,
        "present_peak_local": None,
        "reference_at_peak": None,
        "incidents_observed": None,
        "incidents_usual": None,
    }
    hist = _history(hist)
    cube = hist.cube
    if cube is None or "present" not in cube.columns:
        return out
    hours = pd.date_range(start.floor("h"), end.ceil("h") - _HOUR, freq="h", tz="UTC")
    obs = pd.Series(hist.observed(zone_id, hours), index=hours)
    if obs.notna().any():
        h = obs.idxmax()
        ref, _ = reference(hist, zone_id, pd.DatetimeIndex([h]), tz, weeks=bp.baseline_weeks)
        out.update(
            present_peak=float(obs[h]),
            present_peak_local=h.tz_convert(tz).isoformat(),
            reference_at_peak=_num(ref[0]),
        )
    if "incidents" in cube.columns:
        area = cube[cube["zone_id"].isin([zone_id, *ring])]
        during = area[area["hour"].isin(hours)]
        out["incidents_observed"] = int(during["incidents"].sum())
        quiet = area if "events_active" not in area else area[area["events_active"].fillna(0) == 0]
        quiet = quiet[~quiet["hour"].isin(hours)]
        per = quiet.groupby(["zone_id", "dow", "local_hour"])["incidents"].mean()
        loc = hours.tz_convert(tz)
        usual = 0.0
        for z in [zone_id, *ring]:
            for h in loc:
                usual += float(per.get((z, h.dayofweek, h.hour), 0.0))
        out["incidents_usual"] = usual
    return out
