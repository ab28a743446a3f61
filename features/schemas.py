"""Canonical sources: their columns, types, ranges and keys, declared once as data.

The ingest contract of DESIGN.md, table "Canonical sources". Each source is a list of
:class:`Col`; :func:`pandera_schema` turns it into a pandera ``DataFrameSchema`` that ingest runs
with ``lazy=True`` on the parsed rows, so a user sees every problem of a file at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import pandera.pandas as pa


@dataclass(frozen=True)
class Col:
    """One canonical column.

    kind is one of ``str``, ``time``, ``float``, ``int``, ``bool``, ``geometry``.
    """

    name: str
    kind: str
    required: bool = False
    min: float | None = None
    max: float | None = None


class _Range(TypedDict):
    """A ``min``/``max`` pair spread into :class:`Col` (``**LAT``)."""

    min: float
    max: float


LAT = _Range(min=-90.0, max=90.0)
#: a response time over a year is an export error
MINUTES_IN_A_YEAR = 366 * 24 * 60
#: counts of people, entries or attendance: more than any zone, stop or event ever holds
#: (100 million) is a unit or export error, quarantined rather than summed into an absurd rate
COUNT = _Range(min=0.0, max=1e8)
LON = _Range(min=-180.0, max=180.0)

SOURCES: dict[str, list[Col]] = {
    "zones": [
        Col("zone_id", "str", True),
        Col("geometry", "geometry", True),
        Col("name", "str"),
        Col("population", "float", **COUNT),
    ],
    "presence": [
        Col("zone_id", "str", True),
        Col("start", "time", True),
        Col("end", "time"),
        Col("slot_minutes", "int", min=15, max=1440),
        Col("present", "float", True, **COUNT),
        Col("residents", "float", **COUNT),
        Col("visitors", "float", **COUNT),
        Col("tourists", "float", **COUNT),
        Col("excursionists", "float", **COUNT),
        Col("foreign", "float", **COUNT),
        Col("unique_visitors", "float", **COUNT),
        Col("entries", "float", **COUNT),
    ],
    "presence_origin": [
        Col("zone_id", "str", True),
        Col("start", "time", True),
        Col("slot_minutes", "int", min=15, max=1440),
        Col("origin", "str", True),
        Col("count", "float", True, **COUNT),
    ],
    "incidents": [
        Col("incident_id", "str", True),
        Col("occurred_at", "time", True),
        Col("zone_id", "str"),
        Col("latitude", "float", **LAT),
        Col("longitude", "float", **LON),
        Col("category", "str", True),
        Col("source", "str"),
        Col("priority", "str"),
        Col("outdoor", "bool"),
        Col("response_minutes", "float", min=0, max=MINUTES_IN_A_YEAR),
    ],
    "lamps": [
        Col("lamp_id", "str", True),
        Col("latitude", "float", **LAT),
        Col("longitude", "float", **LON),
        Col("zone_id", "str"),
        Col("wattage", "float", min=0, max=1e5),
    ],
    "lighting_faults": [
        Col("fault_id", "str"),
        Col("reported_at", "time", True),
        Col("repaired_at", "time"),
        Col("lamp_id", "str"),
        Col("zone_id", "str"),
        Col("latitude", "float", **LAT),
        Col("longitude", "float", **LON),
    ],
    "stops": [
        Col("stop_id", "str", True),
        Col("stop_name", "str", True),
        Col("stop_lat", "float", True, **LAT),
        Col("stop_lon", "float", True, **LON),
    ],
    "ridership": [
        Col("stop_id", "str", True),
        Col("start", "time", True),
        Col("slot_minutes", "int", min=15, max=1440),
        Col("entries", "float", True, **COUNT),
        Col("exits", "float", **COUNT),
    ],
    "events": [
        Col("event_id", "str", True),
        Col("name", "str", True),
        Col("start", "time", True),
        Col("end", "time", True),
        Col("zone_id", "str"),
        Col("latitude", "float", **LAT),
        Col("longitude", "float", **LON),
        Col("expected_attendance", "float", True, **COUNT),
        Col("category", "str", True),
        Col("indoor", "bool"),
        Col("dps_activity", "float", min=0.25, max=0.40),
        Col("dps_environment", "float", min=0.25, max=0.40),
        Col("dps_delay", "float", min=0.25, max=0.40),
    ],
    "weather": [
        Col("start", "time", True),
        Col("slot_minutes", "int", min=15, max=1440),
        Col("temperature_c", "float", True, min=-80, max=70),
        Col("precipitation_mm", "float", True, min=0, max=500),
    ],
}

#: columns that identify a row; a second row with the same key is quarantined as a duplicate.
KEYS: dict[str, list[str]] = {
    "zones": ["zone_id"],
    "presence": ["zone_id", "start"],
    "presence_origin": ["zone_id", "start", "origin"],
    "incidents": ["incident_id"],
    "lamps": ["lamp_id"],
    "lighting_faults": ["fault_id"],
    "stops": ["stop_id"],
    "ridership": ["stop_id", "start"],
    "events": ["event_id"],
    "weather": ["start"],
}

#: sources located by a point (latitude/longitude, x/y + crs) or a zone_id.
LOCATED = {"incidents", "lamps", "lighting_faults", "events"}

#: the key columns (other than the time) that order repeated local times on a fall-back day.
SERIES_KEYS: dict[str, list[str]] = {
    "presence": ["zone_id"],
    "presence_origin": ["zone_id", "origin"],
    "ridership": ["stop_id"],
    "weather": [],
    "incidents": [],
    "lighting_faults": [],
    "events": [],
}

#: the columns each validated source stores, in order.
STORED: dict[str, list[str]] = {
    "zones": ["zone_id", "name", "population", "geometry"],
    "presence": [
        "zone_id",
        "start",
        "slot_minutes",
        "present",
        "residents",
        "visitors",
        "tourists",
        "excursionists",
        "foreign",
        "unique_visitors",
        "entries",
    ],
    "presence_origin": ["zone_id", "start", "slot_minutes", "origin", "count"],
    "incidents": [
        "incident_id",
        "occurred_at",
        "zone_id",
        "latitude",
        "longitude",
        "category",
        "source",
        "priority",
        "outdoor",
        "response_minutes",
    ],
    "lamps": ["lamp_id", "latitude", "longitude", "zone_id", "wattage"],
    "lighting_faults": [
        "fault_id",
        "reported_at",
        "repaired_at",
        "lamp_id",
        "zone_id",
        "latitude",
        "longitude",
    ],
    "stops": ["stop_id", "stop_name", "stop_lat", "stop_lon", "zone_id"],
    "ridership": ["stop_id", "start", "slot_minutes", "entries", "exits", "zone_id"],
    "events": [
        "event_id",
        "name",
        "start",
        "end",
        "zone_id",
        "latitude",
        "longitude",
        "expected_attendance",
        "category",
        "indoor",
        "dps_activity",
        "dps_environment",
        "dps_delay",
    ],
    "weather": ["start", "slot_minutes", "temperature_c", "precipitation_mm"],
}


def columns(source: str) -> dict[str, Col]:
    """The canonical columns of a source, by name."""
    return {c.name: c for c in SOURCES[source]}


def required(source: str) -> list[str]:
    """Required canonical columns (location columns of located sources are checked apart)."""
    return [c.name for c in SOURCES[source] if c.required]


_DTYPES = {
    "str": object,
    "time": "datetime64[ns, UTC]",
    "float": float,
    "int": "Int64",
    "bool": "boolean",
}


def pandera_schema(source: str, present: list[str]) -> pa.DataFrameSchema:
    """The pandera schema of a parsed source, restricted to the columns the file gave.

    Types are already coerced by ingest's parsers (which report what they could not parse;
    text is trimmed and a blank value made missing, so the nullability check also catches
    blanks); the schema pins nullability of required columns and value ranges.
    """
    cols = {}
    for c in SOURCES[source]:
        if c.name not in present or c.kind == "geometry":
            continue
        checks = []
        if c.min is not None:
            checks.append(pa.Check.ge(c.min, error=f"{c.name} must be >= {c.min:g}"))
        if c.max is not None:
            checks.append(pa.Check.le(c.max, error=f"{c.name} must be <= {c.max:g}"))
        cols[c.name] = pa.Column(
            nullable=not c.required, checks=checks, coerce=False, required=False
        )
    return pa.DataFrameSchema(cols, strict=False, name=source)
