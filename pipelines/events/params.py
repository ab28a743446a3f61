"""The staffing rules' parameters: every default, its published source, and the results' base.

Every default of the staffing rules (:mod:`pipelines.events.dps`, :mod:`pipelines.events.crowd`,
:mod:`pipelines.events.plan`) is a field of :class:`StaffingParams`, overridable, with its
source in :data:`PARAM_SOURCES`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from features.errors import InputError

# -- Fruin queuing levels of service: lower bound of space per person (m²) -------------------------
FRUIN_QUEUE_SPACE_M2: dict[str, float] = {"A": 1.21, "B": 0.93, "C": 0.65, "D": 0.28, "E": 0.19}

#: tolerance of the rounding-up rules (a figure a hair above a whole number stays it)
EPS = 1e-9


class StaffingInputError(InputError, ValueError):
    """A staffing input is out of its documented range (a user-facing error)."""


#: where each default of :class:`StaffingParams` comes from.
PARAM_SOURCES: dict[str, str] = {
    "visibility_ratio": "HSE, The Event Safety Guide (HSG195, 1999): rule of thumb of 1 steward "
    "per 250 attendees",
    "high_risk_ratio": "HSE HSG195 (1999): 1 steward per 100 attendees where the risk is high",
    "high_risk_categories": "vigie default: categories treated as high risk unless the event says",
    "incident_quantile": "vigie default: plan for the upper bound of the 80 % interval (the 90th "
    "percentile) of forecast incidents",
    "handling_minutes": "vigie default: typical time on scene per incident in police CAD data; "
    "replace with your own median from response logs",
    "agents_per_incident": "vigie default: incidents are handled by a patrol of two",
    "target_utilisation": "Wilson & Weiss (2012), COPS Office, 'Rule of 60': keep committed time "
    "at or below about 60 %",
    "lane_rate_none": "vigie default (DESIGN.md): 10 persons/min/lane without bags; Green Guide "
    "(SGSA 2018) maximum turnstile rate 660/h = 11/min",
    "lane_rate_mixed": "vigie default (DESIGN.md): 7 persons/min/lane, some bags checked",
    "lane_rate_bag_search": "vigie default (DESIGN.md): 4 persons/min/lane with a bag search",
    "screening": "vigie default: mixed screening",
    "entry_window_minutes": "vigie default: doors open 2 h before the start",
    "arrival_peak_minutes_before": "vigie default: arrivals peak 30 min before the start "
    "(triangular arrival curve)",
    "departure_window_minutes": "vigie default: the crowd leaves within 1 h of the end, most at "
    "once (right-angled triangular departure curve)",
    "queue_minutes": "vigie default: hold 10 min of peak arrivals in queues off the carriageway",
    "queue_level": "Fruin (1971) queuing level of service C (≥ 0.65 m² per person)",
    "queue_channel_width_m": "vigie default: queuing channels 2 m wide (two or three abreast)",
    "egress_flow_level": "SGSA Green Guide (6th ed. 2018): 82 persons per metre per minute on "
    "the level (= Fruin's 25 persons/ft/min)",
    "egress_flow_stairs": "SGSA Green Guide (6th ed. 2018): 66 persons per metre per minute on "
    "stairways",
    "egress_target_minutes": "SGSA Green Guide: 8 min, the longest emergency evacuation time it "
    "accepts for a low-risk stand",
    "transit_share": "vigie default: share of attendees leaving by public transport; set it from "
    "your own modal survey",
}


@dataclass(frozen=True)
class StaffingParams:
    """Every default of the staffing rules; override with :meth:`with_overrides`.

    The source of each default is in :data:`PARAM_SOURCES` (``describe()`` lists both).
    """

    visibility_ratio: float = 250.0
    high_risk_ratio: float = 100.0
    high_risk_categories: tuple[str, ...] = (
        "demonstration",
        "protest",
        "manifestation",
        "derby",
        "rave",
        "high_risk",
    )
    incident_quantile: str = "upper80"
    handling_minutes: float = 45.0
    agents_per_incident: float = 2.0
    target_utilisation: float = 0.6
    lane_rate_none: float = 10.0
    lane_rate_mixed: float = 7.0
    lane_rate_bag_search: float = 4.0
    screening: str = "mixed"
    entry_window_minutes: float = 120.0
    arrival_peak_minutes_before: float = 30.0
    departure_window_minutes: float = 60.0
    queue_minutes: float = 10.0
    queue_level: str = "C"
    queue_channel_width_m: float = 2.0
    egress_flow_level: float = 82.0
    egress_flow_stairs: float = 66.0
    egress_target_minutes: float = 8.0
    transit_share: float = 0.3

    def __post_init__(self) -> None:
        positive = (
            "visibility_ratio",
            "high_risk_ratio",
            "handling_minutes",
            "agents_per_incident",
            "lane_rate_none",
            "lane_rate_mixed",
            "lane_rate_bag_search",
            "entry_window_minutes",
            "departure_window_minutes",
            "queue_channel_width_m",
            "egress_flow_level",
            "egress_flow_stairs",
            "egress_target_minutes",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise StaffingInputError(
                    f"staffing parameter {name} must be a positive number, got {value!r}."
                )
        if not 0 < self.target_utilisation <= 1:
            raise StaffingInputError(
                f"staffing parameter target_utilisation must be in (0, 1], got {self.target_utilisation!r}."
            )
        if not 0 <= self.transit_share <= 1:
            raise StaffingInputError(
                f"staffing parameter transit_share must be in [0, 1], got {self.transit_share!r}."
            )
        if not 0 <= self.arrival_peak_minutes_before <= self.entry_window_minutes:
            raise StaffingInputError(
                "staffing parameter arrival_peak_minutes_before must be between 0 and "
                f"entry_window_minutes ({self.entry_window_minutes}), got {self.arrival_peak_minutes_before!r}."
            )
        if self.queue_minutes < 0:
            raise StaffingInputError(
                f"staffing parameter queue_minutes must be ≥ 0, got {self.queue_minutes!r}."
            )
        if self.queue_level not in FRUIN_QUEUE_SPACE_M2:
            raise StaffingInputError(
                f"staffing parameter queue_level must be one of {', '.join(FRUIN_QUEUE_SPACE_M2)} "
                f"(Fruin's queuing levels of service), got {self.queue_level!r}."
            )
        if self.screening not in ("none", "mixed", "bag_search"):
            raise StaffingInputError(
                f"staffing parameter screening must be none, mixed or bag_search, got {self.screening!r}."
            )
        if self.incident_quantile not in ("mean", "upper80", "upper95"):
            raise StaffingInputError(
                "staffing parameter incident_quantile must be mean, upper80 or upper95, "
                f"got {self.incident_quantile!r}."
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> StaffingParams:
        """Defaults overridden by ``values``; an unknown name is an error naming the known ones."""
        return cls().with_overrides(**dict(values or {}))

    def with_overrides(self, **values: Any) -> StaffingParams:
        """A copy with some parameters changed."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StaffingInputError(
                f"unknown staffing parameter(s) {', '.join(unknown)}; known ones are {', '.join(sorted(known))}."
            )
        if "high_risk_categories" in values:
            values["high_risk_categories"] = tuple(values["high_risk_categories"])
        return dataclasses.replace(self, **values)

    @property
    def lane_rate(self) -> float:
        """Persons per minute per lane for the chosen screening."""
        return {
            "none": self.lane_rate_none,
            "mixed": self.lane_rate_mixed,
            "bag_search": self.lane_rate_bag_search,
        }[self.screening]

    @property
    def queue_space_m2(self) -> float:
        """Space per queuing person at the chosen Fruin level (m²)."""
        return FRUIN_QUEUE_SPACE_M2[self.queue_level]

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every parameter with its value and source (for the brief's JSON)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = {
                "value": list(value) if isinstance(value, tuple) else value,
                "source": PARAM_SOURCES.get(f.name, "vigie default"),
            }
        return out


class StaffingResult:
    """Base of the frozen staffing results: ``to_dict`` for the brief's JSON, ``from_dict`` back."""

    def to_dict(self) -> dict[str, Any]:
        """The result as plain values (the brief's JSON)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The result from :meth:`to_dict`'s output."""
        return cls(**dict(data))
