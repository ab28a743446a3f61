"""The event to brief and the brief's settings: BriefParams, EventSpec, load_event, brief_key.

An event is an ``event_id`` of the store's events, a YAML file or a mapping
(:func:`load_event`); local times are read in the study's time zone, a DST gap or repeat with a
note.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.config import read_yaml
from features.errors import ConfigError, InputError
from features.paths import file_key
from features.schemas import COUNT
from features.store import Store
from pipelines.events.params import StaffingParams
from pipelines.events.venue import locate


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
        :class:`pipelines.events.params.StaffingParams`.
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
    staffing: StaffingParams = dataclasses.field(default_factory=StaffingParams)

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
        cls, values: Mapping[str, Any] | BriefParams | StaffingParams | None
    ) -> BriefParams:
        """Parameters from a flat mapping of brief and staffing names (or a params object)."""
        if values is None:
            return cls()
        if isinstance(values, BriefParams):
            return values
        if isinstance(values, StaffingParams):
            return cls(staffing=values)
        values = dict(values)
        own = {f.name for f in dataclasses.fields(cls)} - {"staffing"}
        mine = {k: values.pop(k) for k in list(values) if k in own}
        nested = values.pop("staffing", None)
        staff = (
            StaffingParams.from_mapping({**dict(nested or {}), **values})
            if (values or nested)
            else StaffingParams()
        )
        return cls(**mine, staffing=staff)

    def for_event(self, ev: EventSpec) -> BriefParams:
        """These parameters with the event's own staffing overrides applied."""
        if not ev.staffing_overrides:
            return self
        return dataclasses.replace(
            self, staffing=self.staffing.with_overrides(**dict(ev.staffing_overrides))
        )

    def describe(self) -> dict[str, Any]:
        """Every parameter with its value, the staffing ones with their sources (the brief's JSON)."""
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


def localise(value: Any, tz: str, what: str, notes: list[str]) -> pd.Timestamp:
    """A date-time in UTC; a local one is read in ``tz``, a DST gap or repeat with a note."""
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


#: the widest exit taken (metres): a wider one is a unit error (centimetres?)
MAX_EXIT_M = 1000.0


def _slug(text: str) -> str:
    """An id made from an event's name: safe characters only, at most 80 of them."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_text).strip("-._")[:80].strip("-._") or "event"


def brief_key(event_id: str) -> str:
    """The file and report name of an event's brief: ``store/briefs/<key>.json`` and
    ``reports/event-brief/<key>/`` (:func:`features.paths.file_key` of the event id).

    Raises
    ------
    InputError
        An id over :data:`features.paths.MAX_KEY` characters or that would name a hidden file.
    """
    return file_key(event_id, what="event id")


def claim_brief_key(store: Store, event_id: str) -> str:
    """:func:`brief_key`, refusing a name that another event already holds: a brief of the store
    written for another id, or another id of the store's events with the same name (file names
    compared without case, as on macOS and Windows).

    Raises
    ------
    InputError
        Naming both event ids and the file name they share.
    """
    key = brief_key(event_id)
    others: list[str] = []
    path = store.brief_path(key)
    if path.exists():
        try:
            others.append(str(json.loads(path.read_text())["event"]["event_id"]))
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable brief is rewritten
    events = store.validated("events", columns=["event_id"])
    if events is not None:
        others += [i for i in events["event_id"].astype(str).unique() if _same_key(i, key)]
    clash = next((o for o in others if o != str(event_id)), None)
    if clash is not None:
        raise InputError(
            f"event ids {clash!r} and {str(event_id)!r} both make the brief file name {key!r}; "
            f"one would overwrite the other: give this event another id.",
            file=str(path),
        )
    return key


def _same_key(other: str, key: str) -> bool:
    try:
        return brief_key(other).lower() == key.lower()
    except InputError:
        return False


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
        return _named(_event_from_mapping(store, dict(event), "mapping", tz, notes))
    text = str(event)
    path = Path(text)
    if text.lower().endswith((".yaml", ".yml")) or _is_file(path):
        if not _is_file(path):
            raise InputError(
                f"{path}: no such event file; expected an event_id of the store or a YAML file.",
                file=str(path),
            )
        try:
            raw = read_yaml(path)
        except ConfigError as exc:
            raise InputError(str(exc), file=str(path)) from None
        if not isinstance(raw, dict):
            raise InputError(
                f"{path}: expected a mapping with name, start, end, expected_attendance, category and a venue.",
                file=str(path),
            )
        return _named(_event_from_mapping(store, raw, str(path), tz, notes))
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
    return _named(spec_from_row(hit.iloc[0]))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a text no file system takes as a path (too long, NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _named(ev: EventSpec) -> EventSpec:
    """The event, once its id is known to make a file name (an over-long id or one that would
    name a hidden file stops here, before any work, with exit code 2)."""
    brief_key(ev.event_id)
    return ev


def _attendance(raw: Mapping[str, Any], where: str) -> float:
    """The event's expected attendance, after checking every required field is there."""
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
    if not math.isfinite(attendance) or not 0 <= attendance <= COUNT["max"]:
        raise InputError(
            f"{where}: expected_attendance must be a number from 0 to {COUNT['max']:g} (the "
            f"bound ingest applies to events), got {attendance!r}.",
            file=where,
        )
    return attendance


def _exit_widths(raw: Mapping[str, Any], where: str) -> tuple[float, ...] | None:
    widths = raw.get("exit_widths_m")
    if widths is None:
        return None
    if isinstance(widths, (int, float)):
        widths = [widths]
    try:
        out = tuple(float(w) for w in widths)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: exit_widths_m must be a list of metres, got {widths!r}.", file=where
        ) from None
    if not all(math.isfinite(w) and 0 < w <= MAX_EXIT_M for w in out):
        raise InputError(
            f"{where}: exit_widths_m must be widths above 0 and at most {MAX_EXIT_M:g} m, "
            f"got {list(out)!r}.",
            file=where,
        )
    return out


def _staffing_overrides(raw: Mapping[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    staffing = raw.get("staffing") or {}
    if not isinstance(staffing, Mapping):
        raise InputError(
            f"{where}: staffing must be a mapping of parameter: value, got {staffing!r}.",
            file=where,
        )
    return tuple(sorted(dict(staffing).items()))


def _event_from_mapping(
    store: Store, raw: dict[str, Any], where: str, tz: str, notes: list[str]
) -> EventSpec:
    venue = raw.get("venue") or {}
    if not isinstance(venue, Mapping):
        raise InputError(
            f"{where}: venue must be a mapping with latitude/longitude or zone_id, got {venue!r}."
        )
    attendance = _attendance(raw, where)
    start = localise(raw["start"], tz, "start", notes)
    end = localise(raw["end"], tz, "end", notes)
    if end <= start:
        raise InputError(
            f"{where}: the event ends ({raw['end']}) before it starts ({raw['start']}); an event past midnight "
            "needs the next day's date on its end.",
            file=where,
        )
    lat, lon, zone = (venue.get(k, raw.get(k)) for k in ("latitude", "longitude", "zone_id"))
    zone_id, lat, lon = locate(store, lat, lon, None if zone is None else str(zone), where)
    widths = _exit_widths(raw, where)
    overrides = _staffing_overrides(raw, where)
    local_start = start.tz_convert(tz)
    return EventSpec(
        event_id=str(raw.get("event_id") or f"{_slug(raw['name'])}-{local_start:%Y%m%d}"),
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
        staffing_overrides=overrides,
    )


def spec_from_row(row: Any) -> EventSpec:
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


def num_or_none(x: Any) -> float | None:
    """``x`` as a finite float, or None (the brief's JSON has no NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
