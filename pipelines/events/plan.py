"""Event staffing hour by hour: rescuers, agents, entry lanes, barrier and egress, with their arithmetic.

:func:`plan_event` applies the DPS grid (:mod:`pipelines.events.dps`) and the crowd rules
(:mod:`pipelines.events.crowd`) to each hour of an event and sizes its entries and exits at the
peak. Pure and data-free: it takes numbers and returns a frozen :class:`EventStaffing` that
carries every figure, the published source of every default (:mod:`pipelines.events.params`)
and the arithmetic, so a brief can show how each figure was reached, not only the answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.events.crowd import (
    BarrierResult,
    EgressResult,
    LanesResult,
    agents,
    barrier,
    egress,
    entry_lanes,
    is_high_risk,
    peak_arrivals_per_minute,
)
from pipelines.events.dps import DpsResult, dps, infer_dps_inputs
from pipelines.events.params import EPS, StaffingInputError, StaffingParams

# -- the whole plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffingPeak:
    """The headline figures of an event's staffing (the largest hour, or the peak sizing)."""

    rescuers: int
    agents: int
    entry_lanes: int
    barrier_m: int
    first_aid_posts: int

    def to_dict(self) -> dict[str, int]:
        """The figures as a dict (the brief's ``staffing.peak``)."""
        return {
            "rescuers": self.rescuers,
            "agents": self.agents,
            "entry_lanes": self.entry_lanes,
            "barrier_m": self.barrier_m,
            "first_aid_posts": self.first_aid_posts,
        }


@dataclass(frozen=True)
class EventStaffing:
    """Staffing of one event: headline figures and one row per hour.

    Attributes
    ----------
    dps
        The DPS grid on the declared attendance (the regulatory sizing).
    lanes, barrier, egress
        Entry and exit figures at the event's peak.
    hours
        One dict per hour (``hour`` as given, ``crowd``, ``arrivals_peak_per_min``,
        ``incidents_per_hour``, ``rescuers``, ``dps_tier``, ``agents``, ``agents_visibility``,
        ``agents_workload``, ``lanes`` and their ``arithmetic``).
    peak
        The headline figures (:class:`StaffingPeak`).
    notes
        What was inferred or assumed.
    params
        The parameters used, with their sources.
    """

    dps: DpsResult
    lanes: LanesResult
    barrier: BarrierResult
    egress: EgressResult | None
    hours: list[dict[str, Any]]
    peak: StaffingPeak
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The staffing as plain values (the brief's ``staffing``)."""
        return {
            "dps": self.dps.to_dict(),
            "lanes": self.lanes.to_dict(),
            "barrier": self.barrier.to_dict(),
            "egress": None if self.egress is None else self.egress.to_dict(),
            "peak": self.peak.to_dict(),
            "hours": list(self.hours),
            "notes": list(self.notes),
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventStaffing:
        """The staffing from :meth:`to_dict`'s output (e.g. a brief read back from its JSON)."""
        egress_ = data.get("egress")
        return cls(
            dps=DpsResult.from_dict(data["dps"]),
            lanes=LanesResult.from_dict(data["lanes"]),
            barrier=BarrierResult.from_dict(data["barrier"]),
            egress=None if egress_ is None else EgressResult.from_dict(egress_),
            hours=list(data["hours"]),
            peak=StaffingPeak(**data["peak"]),
            notes=list(data.get("notes", [])),
            params=dict(data.get("params", {})),
        )


def _hour_row(
    hour: Any,
    crowd: float,
    arrivals: float,
    incidents: float,
    *,
    attendance: float,
    coefficients: tuple[float, float, float],
    high_risk: bool,
    params: StaffingParams,
) -> dict[str, Any]:
    """One hour of the plan: the DPS grid on the crowd present (capped by the attendance),
    agents and entry lanes, with their arithmetic."""
    p2, e1, e2 = coefficients
    c = max(0.0, float(crowd)) if np.isfinite(crowd) else 0.0
    d = dps(min(c, float(attendance)), activity=p2, environment=e1, delay=e2)
    ag = agents(c, incidents_per_hour=incidents, high_risk=high_risk, params=params)
    ln = entry_lanes(arrivals, params=params)
    return {
        "hour": hour,
        "crowd": c,
        "arrivals_peak_per_min": float(arrivals),
        "incidents_per_hour": ag.incidents_per_hour,
        "rescuers": d.rescuers,
        "dps_tier": d.tier,
        "first_aid_posts": d.posts,
        "agents": ag.agents,
        "agents_visibility": ag.visibility,
        "agents_workload": ag.workload,
        "entry_lanes": ln.lanes,
        "arithmetic": {"rescuers": d.arithmetic, "agents": ag.arithmetic, "lanes": ln.arithmetic},
    }


def _check_lengths(
    n: int, crowd: Sequence[float], arrivals: Sequence[float], incidents: list[float]
) -> None:
    if len(crowd) != n or len(arrivals) != n:
        raise StaffingInputError(
            f"hours, crowd and arrivals_peak_per_min must have the same length, got {n}, {len(crowd)}, "
            f"{len(arrivals)}."
        )
    if len(incidents) != n:
        raise StaffingInputError(f"incidents_per_hour must have {n} values, got {len(incidents)}.")


def plan_event(
    attendance: float,
    *,
    hours: Sequence[Any],
    crowd: Sequence[float],
    arrivals_peak_per_min: Sequence[float],
    incidents_per_hour: Sequence[float] | None = None,
    category: str | None = None,
    indoor: bool | None = None,
    high_risk: bool | None = None,
    dps_activity: Any = None,
    dps_environment: Any = None,
    dps_delay: Any = None,
    exit_widths_m: Sequence[float] | None = None,
    exit_stairs: bool = False,
    params: StaffingParams | None = None,
) -> EventStaffing:
    """Staff an event hour by hour.

    Parameters
    ----------
    attendance
        Expected attendance (the declared public P1 of the DPS grid).
    hours
        Labels of the hours (kept as given).
    crowd
        Event crowd present in each hour (people above the reference).
    arrivals_peak_per_min
        Peak arrivals per minute within each hour.
    incidents_per_hour
        Forecast incidents per hour at the planning quantile (zeros when None).
    category, indoor, high_risk, dps_activity, dps_environment, dps_delay
        Event attributes; DPS inputs not given are inferred (see
        :func:`pipelines.events.dps.infer_dps_inputs`).
    exit_widths_m, exit_stairs
        Exit widths, for the egress time (skipped when None).
    params
        :class:`pipelines.events.params.StaffingParams`.

    Returns
    -------
    EventStaffing
        Per hour the DPS grid is applied to the crowd present that hour (capped by the sizing
        on the declared attendance); agents and lanes per hour as in
        :func:`pipelines.events.crowd.agents` and :func:`pipelines.events.crowd.entry_lanes`.
    """
    p = params or StaffingParams()
    n = len(hours)
    inc = [0.0] * n if incidents_per_hour is None else [float(x) for x in incidents_per_hour]
    _check_lengths(n, crowd, arrivals_peak_per_min, inc)
    p2, e1, e2, notes = infer_dps_inputs(
        category,
        indoor=indoor,
        dps_activity=dps_activity,
        dps_environment=dps_environment,
        dps_delay=dps_delay,
    )
    risk = is_high_risk(category, p, high_risk)
    if risk:
        notes.append(f"high-risk visibility ratio 1/{p.high_risk_ratio:g} used")
    total = dps(attendance, activity=p2, environment=e1, delay=e2)
    rows = [
        _hour_row(h, c, a, k, attendance=attendance, coefficients=(p2, e1, e2), high_risk=risk,
                  params=p)
        for h, c, a, k in zip(hours, crowd, arrivals_peak_per_min, inc, strict=False)
    ]  # fmt: skip
    peak_rate = peak_arrivals_per_minute(attendance, params=p)
    lanes = entry_lanes(max([peak_rate, *[float(a) for a in arrivals_peak_per_min]]), params=p)
    bar = barrier(lanes.lanes, lanes.peak_arrivals_per_min, params=p)
    eg = egress(attendance, exit_widths_m, stairs=exit_stairs, params=p)
    if eg is None:
        notes.append("egress time not computed: no exit widths given")
    peak = StaffingPeak(
        rescuers=max([total.rescuers, *[r["rescuers"] for r in rows]]),
        agents=max([0, *[r["agents"] for r in rows]]),
        entry_lanes=lanes.lanes,
        barrier_m=int(math.ceil(bar.barrier_m - EPS)) if bar.barrier_m > 0 else 0,
        first_aid_posts=total.posts,
    )
    return EventStaffing(total, lanes, bar, eg, rows, peak, notes, p.describe())
