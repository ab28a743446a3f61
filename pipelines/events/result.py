"""The event brief as a typed result: the event, the hours, presence, incidents, staffing, context.

:func:`pipelines.events.brief.make_brief` returns a :class:`Brief` and writes its
:meth:`Brief.to_json` to ``store/briefs/<key>.json``; :meth:`Brief.from_json` (or
:meth:`Brief.load`) reads it back. The parts that are read by name are typed
(:class:`BriefEvent`, :class:`BriefHour`, :class:`pipelines.events.plan.EventStaffing`,
:class:`BriefContext`, :class:`LampsContext`); the long per-zone and per-group tables
(``presence``, ``incidents``, the stops and comparables) stay rows of plain values, as in the
JSON. :data:`HOURS_SCHEMA` is the pandera schema of the hour-by-hour table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa

from features.store import Store
from pipelines.events.dps import TIERS
from pipelines.events.plan import EventStaffing


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@dataclass(frozen=True)
class BriefEvent:
    """The event briefed, with UTC and local times and its venue zone and ring."""

    event_id: str
    name: str
    category: str
    start: pd.Timestamp
    end: pd.Timestamp
    start_local: str
    end_local: str
    timezone: str
    zone_id: str
    ring: tuple[str, ...]
    latitude: float | None
    longitude: float | None
    expected_attendance: float
    indoor: bool | None
    origin: str

    def to_json(self) -> dict[str, Any]:
        """The event as the brief's JSON holds it."""
        return {**_fields(self), "ring": list(self.ring)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BriefEvent:
        """The event from :meth:`to_json`'s output."""
        return cls(
            **{
                **dict(data),
                "start": pd.Timestamp(data["start"]),
                "end": pd.Timestamp(data["end"]),
                "ring": tuple(data["ring"]),
            }
        )


@dataclass(frozen=True)
class BriefHour:
    """One hour of the brief: its time and phase, presence, incidents and staffing."""

    hour: pd.Timestamp
    local: str
    phase: str
    phase_hour: int
    venue_present_forecast: float
    venue_reference: float | None
    ring_present_forecast: float
    event_crowd: float
    incidents_per_hour: float
    rescuers: int
    dps_tier: str
    agents: int
    entry_lanes: int
    arrivals_peak_per_min: float

    def to_json(self) -> dict[str, Any]:
        """The hour as the brief's JSON holds it."""
        return _fields(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BriefHour:
        """The hour from :meth:`to_json`'s output."""
        return cls(**{**dict(data), "hour": pd.Timestamp(data["hour"])})


#: the brief's hour-by-hour table (:meth:`Brief.hours_table`), checked before the brief is written
#: the hour-by-hour columns a published brief shows (report table and GIS export), in order
PUBLISHED_HOUR_COLUMNS = (
    "local",
    "phase",
    "venue_reference",
    "venue_present_forecast",
    "ring_present_forecast",
    "event_crowd",
    "incidents_per_hour",
    "rescuers",
    "dps_tier",
    "agents",
    "entry_lanes",
)

HOURS_SCHEMA = pa.DataFrameSchema(
    {
        "hour": pa.Column(checks=pa.Check(lambda s: s.map(lambda t: t.tzinfo is not None))),
        "local": pa.Column(str),
        "phase": pa.Column(str, pa.Check.isin(["before", "during", "after"])),
        "phase_hour": pa.Column(int, pa.Check.ge(0)),
        "venue_present_forecast": pa.Column(float, pa.Check.ge(0)),
        "venue_reference": pa.Column(nullable=True),
        "ring_present_forecast": pa.Column(float, pa.Check.ge(0)),
        "event_crowd": pa.Column(float, pa.Check.ge(0)),
        "incidents_per_hour": pa.Column(float, pa.Check.ge(0)),
        "rescuers": pa.Column(int, pa.Check.ge(0)),
        "dps_tier": pa.Column(str, pa.Check.isin(list(TIERS))),
        "agents": pa.Column(int, pa.Check.ge(0)),
        "entry_lanes": pa.Column(int, pa.Check.ge(0)),
        "arrivals_peak_per_min": pa.Column(float, pa.Check.ge(0)),
    },
    strict=True,
    ordered=True,
    name="brief_hours",
)


@dataclass(frozen=True)
class LampsContext:
    """Street lights near the venue: lamps within the radius, those out, the faults to repair."""

    radius_m: float
    lamps: int | None = None
    out: int | None = None
    to_repair: list[dict[str, Any]] = field(default_factory=list)
    as_of: pd.Timestamp | None = None

    def to_json(self) -> dict[str, Any]:
        """The lamps context as the brief's JSON holds it (``as_of`` only when known)."""
        out = _fields(self)
        if self.as_of is None:
            del out["as_of"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LampsContext:
        """The lamps context from :meth:`to_json`'s output."""
        as_of = data.get("as_of")
        return cls(**{**dict(data), "as_of": None if as_of is None else pd.Timestamp(as_of)})


@dataclass(frozen=True)
class BriefContext:
    """Around the event: lamps, transit stops, concurrent events and comparable past events."""

    lamps: LampsContext
    stops: list[dict[str, Any]]
    concurrent_events: list[dict[str, Any]]
    comparables: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The context as the brief's JSON holds it."""
        return {
            "lamps": self.lamps.to_json(),
            "stops": list(self.stops),
            "concurrent_events": list(self.concurrent_events),
            "comparables": list(self.comparables),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BriefContext:
        """The context from :meth:`to_json`'s output."""
        return cls(
            lamps=LampsContext.from_json(data["lamps"]),
            stops=list(data["stops"]),
            concurrent_events=list(data["concurrent_events"]),
            comparables=list(data["comparables"]),
        )

    def stops_table(self) -> pd.DataFrame:
        """The stops near the venue, one row each, without their hourly detail."""
        return pd.DataFrame(self.stops).drop(columns=["hours", "arithmetic"], errors="ignore")

    @property
    def stops_arithmetic(self) -> str:
        """How the stops' expected entries are reached (the nearest stop's arithmetic), or ""."""
        return str(self.stops[0].get("arithmetic", "")) if self.stops else ""

    def comparables_table(self) -> pd.DataFrame:
        """The comparable past events, one row each."""
        return pd.DataFrame(self.comparables)


@dataclass(frozen=True)
class Brief:
    """The brief of one event (see :mod:`pipelines.events.brief` for how it is made).

    Attributes
    ----------
    event
        The event, local and UTC times, venue zone and ring.
    generated_at
        When the brief was made (UTC).
    params
        The brief's and staffing's parameters with their sources.
    presence_method, presence_method_text
        ``comparables`` or ``attendance curve``, and the method in words.
    hours
        One :class:`BriefHour` per hour.
    presence
        Per hour and zone: reference, uplift, forecast and observed presence.
    incidents
        Per hour, zone and group: the forecast with 80 % and 95 % intervals.
    staffing
        The staffing plan with its arithmetic.
    context
        Lamps, stops, concurrent events and comparables.
    notes, limitations
        What was assumed, and what could not be estimated.
    provenance
        Code version, sources and store.
    path
        The file the brief was written to (not part of its JSON), or None.
    """

    event: BriefEvent
    generated_at: pd.Timestamp
    params: dict[str, Any]
    presence_method: str
    presence_method_text: str
    hours: tuple[BriefHour, ...]
    presence: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    staffing: EventStaffing
    context: BriefContext
    notes: list[str]
    limitations: list[str]
    provenance: dict[str, Any]
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The brief as ``store/briefs/<key>.json`` holds it (times as timestamps)."""
        return {
            "event": self.event.to_json(),
            "generated_at": self.generated_at,
            "params": self.params,
            "presence_method": self.presence_method,
            "presence_method_text": self.presence_method_text,
            "hours": [h.to_json() for h in self.hours],
            "presence": list(self.presence),
            "incidents": list(self.incidents),
            "staffing": self.staffing.to_dict(),
            "context": self.context.to_json(),
            "notes": list(self.notes),
            "limitations": list(self.limitations),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Brief:
        """The brief from :meth:`to_json`'s output or its JSON file's content."""
        return cls(
            event=BriefEvent.from_json(data["event"]),
            generated_at=pd.Timestamp(data["generated_at"]),
            params=dict(data["params"]),
            presence_method=data["presence_method"],
            presence_method_text=data["presence_method_text"],
            hours=tuple(BriefHour.from_json(h) for h in data["hours"]),
            presence=list(data["presence"]),
            incidents=list(data["incidents"]),
            staffing=EventStaffing.from_dict(data["staffing"]),
            context=BriefContext.from_json(data["context"]),
            notes=list(data.get("notes", [])),
            limitations=list(data.get("limitations", [])),
            provenance=dict(data.get("provenance", {})),
            path=data.get("path"),
        )

    @classmethod
    def load(cls, store: Store, key: str) -> Brief | None:
        """The brief written under ``key`` in the store, or None when it has not been made."""
        data = store.read_json(store.brief_relpath(key))
        return None if data is None else cls.from_json(data)

    def hours_table(self) -> pd.DataFrame:
        """The hour-by-hour table, one row per :class:`BriefHour` (see :data:`HOURS_SCHEMA`)."""
        return pd.DataFrame([h.to_json() for h in self.hours])

    def presence_table(self) -> pd.DataFrame:
        """The presence rows (hour, zone, role, reference, uplift, forecast, observed)."""
        return pd.DataFrame(self.presence)

    def validate(self) -> Brief:
        """The brief itself, after its hour-by-hour table passed :data:`HOURS_SCHEMA`."""
        HOURS_SCHEMA.validate(self.hours_table())
        return self

    def summary(self) -> str:
        """One line of headline figures, then one line per limitation (the CLI prints it)."""
        peak, dps = self.staffing.peak, self.staffing.dps
        lines = [
            f"{self.event.name} ({self.event.start_local}): {dps.tier} with "
            f"{peak.rescuers} rescuers, up to {peak.agents} agents, {peak.entry_lanes} entry lanes, "
            f"{peak.barrier_m} m of barrier; presence from {self.presence_method}."
        ]
        lines += [f"  limitation: {line}" for line in self.limitations]
        return "\n".join(lines)
