"""The crowd's figures: agents, arrival and departure curves, entry lanes, barrier and egress.

Pure and data-free: every function takes numbers and returns a small frozen result that carries
its figures and a human-readable ``arithmetic`` string.

Methods
-------
Agents
    The larger of a visibility ratio (HSE, *The Event Safety Guide*, HSG195, 1999, the "Purple
    Guide": a rule of thumb of one steward per 250 attendees, one per 100 where the risk is
    high) and a workload figure: incidents per hour at an upper quantile × agents per incident ×
    handling time ÷ target utilisation (Larson 1972, *Urban Police Patrol Analysis*, MIT Press,
    for workload-based patrol staffing; Wilson & Weiss 2012, *A Performance-Based Approach to
    Police Staffing and Allocation*, US DOJ COPS Office, for keeping committed time to about
    60 % — the "Rule of 60").
Entry lanes and barrier
    Lanes = peak arrivals per minute ÷ lane rate (10 per minute without bags, 7 mixed, 4 with
    a bag search; the upper figure agrees with the *Guide to Safety at Sports Grounds* (SGSA,
    "Green Guide", 6th ed. 2018) maximum turnstile rate of 660 persons per hour). Arrivals
    follow a triangular curve over the entry window. The queue to hold off the carriageway is
    ``queue_minutes`` of peak arrivals, at the space per person of Fruin's queuing level of
    service (Fruin 1971, *Pedestrian Planning and Design*: A ≥ 1.21 m², B ≥ 0.93, C ≥ 0.65,
    D ≥ 0.28, E ≥ 0.19 m² per person), in channels of a set width lined on both sides.
Egress
    Time = people ÷ (flow × total exit width), with the Green Guide's rates of 82 persons per
    metre per minute on the level and 66 on stairways (82 is also Fruin's 25 persons per foot
    per minute maximum walkway flow).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.events.params import EPS, StaffingInputError, StaffingParams, StaffingResult


@dataclass(frozen=True)
class AgentsResult(StaffingResult):
    """Agents for one hour: the larger of visibility and workload."""

    present: float
    ratio: float
    high_risk: bool
    visibility: int
    incidents_per_hour: float
    workload: int
    agents: int
    binding: str
    arithmetic: str


@dataclass(frozen=True)
class LanesResult(StaffingResult):
    """Entry lanes for a peak arrival rate."""

    peak_arrivals_per_min: float
    screening: str
    lane_rate: float
    lanes: int
    arithmetic: str


@dataclass(frozen=True)
class BarrierResult(StaffingResult):
    """Queue to hold and the metres of barrier that channel it."""

    queue_people: float
    space_per_person_m2: float
    queue_level: str
    lanes: int
    channel_length_m: float
    barrier_m: float
    arithmetic: str


@dataclass(frozen=True)
class EgressResult(StaffingResult):
    """Time for a crowd to pass the exits."""

    people: float
    exit_width_m: float
    flow_per_m_per_min: float
    minutes: float
    target_minutes: float
    within_target: bool
    width_needed_m: float
    arithmetic: str


def is_high_risk(category: str | None, params: StaffingParams, flag: bool | None = None) -> bool:
    """Whether the event is high risk: its own flag when given, else its category."""
    if flag is not None and not (isinstance(flag, float) and math.isnan(flag)):
        return bool(flag)
    cat = (category or "").lower()
    return any(w in cat for w in params.high_risk_categories)


# -- agents -------------------------------------------------------------------------------------


def agents(
    present: float,
    *,
    incidents_per_hour: float = 0.0,
    high_risk: bool = False,
    params: StaffingParams | None = None,
) -> AgentsResult:
    """Agents for one hour: max(visibility, workload).

    Parameters
    ----------
    present
        The event crowd present during the hour.
    incidents_per_hour
        Forecast incidents per hour in the area, at the planning quantile.
    high_risk
        Use the high-risk visibility ratio.
    params
        :class:`StaffingParams` (defaults when None).

    References
    ----------
    HSE (1999) *The Event Safety Guide*, HSG195. Larson, R. C. (1972) *Urban Police Patrol
    Analysis*. Wilson, J. M. & Weiss, A. (2012) *A Performance-Based Approach to Police
    Staffing and Allocation*, COPS Office.

    Examples
    --------
    >>> agents(10_000, incidents_per_hour=2.0).agents
    40
    """
    p = params or StaffingParams()
    present = max(0.0, float(present))
    inc = max(0.0, float(incidents_per_hour)) if np.isfinite(incidents_per_hour) else 0.0
    ratio = p.high_risk_ratio if high_risk else p.visibility_ratio
    visibility = math.ceil(present / ratio - EPS) if present > 0 else 0
    busy = inc * p.agents_per_incident * p.handling_minutes / 60.0
    workload = math.ceil(busy / p.target_utilisation - EPS) if busy > 0 else 0
    n = max(visibility, workload)
    binding = "visibility" if visibility >= workload else "workload"
    text = (
        f"visibility = ⌈{present:,.0f} / {ratio:g}⌉ = {visibility}"
        f"{' (high-risk ratio)' if high_risk else ''}; "
        f"workload = ⌈{inc:.2f} incidents/h × {p.agents_per_incident:g} agents × "
        f"{p.handling_minutes:g} min / 60 ÷ {p.target_utilisation:g}⌉ = {workload}; "
        f"agents = max = {n} ({binding})"
    ).replace(",", " ")
    return AgentsResult(
        present=present,
        ratio=ratio,
        high_risk=bool(high_risk),
        visibility=visibility,
        incidents_per_hour=inc,
        workload=workload,
        agents=n,
        binding=binding,
        arithmetic=text,
    )


# -- arrivals, lanes, barrier, egress -------------------------------------------------------------


def arrival_density(
    minutes_to_start: np.ndarray, *, params: StaffingParams | None = None
) -> np.ndarray:
    """Share of attendees arriving per minute, at ``minutes_to_start`` before the start.

    A triangular distribution on [window, 0] minutes before the start, peaking
    ``arrival_peak_minutes_before``; it integrates to 1 and its peak is 2 / window.
    """
    p = params or StaffingParams()
    w, c = p.entry_window_minutes, p.arrival_peak_minutes_before
    m = np.asarray(minutes_to_start, dtype=float)
    peak = 2.0 / w
    out = np.zeros_like(m)
    rise = (m > c) & (m <= w)  # before the peak: density grows as m falls from w to c
    out[rise] = peak * (w - m[rise]) / (w - c) if w > c else 0.0
    fall = (m >= 0) & (m <= c)
    out[fall] = peak * m[fall] / c if c > 0 else 0.0
    if c == 0:
        out[m == 0] = peak
    return out


def arrived_share(
    minutes_to_start: np.ndarray, *, params: StaffingParams | None = None
) -> np.ndarray:
    """Share of attendees already arrived at ``minutes_to_start`` before the start (the CDF)."""
    p = params or StaffingParams()
    w, c = p.entry_window_minutes, p.arrival_peak_minutes_before
    m = np.clip(np.asarray(minutes_to_start, dtype=float), 0.0, w)
    # triangular CDF in the variable x = w - m (time since doors open), mode at w - c
    x = w - m
    mode = w - c
    out = np.where(
        x <= mode,
        np.divide(x**2, w * mode, out=np.zeros_like(x), where=mode > 0),
        1.0 - np.divide((w - x) ** 2, w * (w - mode), out=np.zeros_like(x), where=(w - mode) > 0),
    )
    return np.clip(out, 0.0, 1.0)


def remaining_share(
    minutes_after_end: np.ndarray, *, params: StaffingParams | None = None
) -> np.ndarray:
    """Share of attendees still present ``minutes_after_end`` after the end.

    Right-angled triangular departures over ``departure_window_minutes`` (most leave at once):
    remaining = (1 − t / D)².
    """
    p = params or StaffingParams()
    t = np.clip(np.asarray(minutes_after_end, dtype=float), 0.0, p.departure_window_minutes)
    return (1.0 - t / p.departure_window_minutes) ** 2


def peak_arrivals_per_minute(attendance: float, *, params: StaffingParams | None = None) -> float:
    """Peak arrivals per minute of the triangular arrival curve: attendance × 2 / window."""
    p = params or StaffingParams()
    return max(0.0, float(attendance)) * 2.0 / p.entry_window_minutes


def entry_lanes(
    peak_arrivals_per_min: float, *, params: StaffingParams | None = None
) -> LanesResult:
    """Entry lanes to admit the peak arrival rate.

    References
    ----------
    SGSA (2018) *Guide to Safety at Sports Grounds*, 6th ed. (entry capacity, 660/h per
    turnstile).

    Examples
    --------
    >>> entry_lanes(100.0).lanes  # 100/min at 7 per lane (mixed)
    15
    """
    p = params or StaffingParams()
    rate = p.lane_rate
    a = max(0.0, float(peak_arrivals_per_min))
    lanes = math.ceil(a / rate - EPS) if a > 0 else 0
    text = f"lanes = ⌈{a:.1f} arrivals/min ÷ {rate:g} per lane ({p.screening})⌉ = {lanes}"
    return LanesResult(a, p.screening, rate, lanes, text)


def barrier(
    lanes: int, peak_arrivals_per_min: float, *, params: StaffingParams | None = None
) -> BarrierResult:
    """Barrier to channel the queue: ``queue_minutes`` of peak arrivals at Fruin's space.

    The queue fills channels ``queue_channel_width_m`` wide (one or more per lane) at the space
    per person of the chosen queuing level; the channels' total length is
    queue × space ÷ width, and each channel is lined on both sides, so
    barrier = 2 × total channel length (lines shared by adjacent channels are not deducted: a
    safe over-estimate that never falls when the crowd grows).

    References
    ----------
    Fruin, J. J. (1971) *Pedestrian Planning and Design*, queuing levels of service.

    Examples
    --------
    >>> round(barrier(10, 100.0).barrier_m)  # 1 000 people × 0.65 m² / 2 m × 2 sides
    650
    """
    p = params or StaffingParams()
    a = max(0.0, float(peak_arrivals_per_min))
    queue = a * p.queue_minutes
    space = p.queue_space_m2
    if lanes <= 0 or queue <= 0:
        return BarrierResult(
            queue, space, p.queue_level, int(lanes), 0.0, 0.0, "no queue to channel"
        )
    length = queue * space / p.queue_channel_width_m
    metres = 2 * length
    text = (
        f"queue = {a:.1f}/min × {p.queue_minutes:g} min = {queue:,.0f} people; "
        f"channels = {queue:,.0f} × {space:g} m² (Fruin level {p.queue_level}) / "
        f"{p.queue_channel_width_m:g} m wide = {length:.1f} m in all ({length / lanes:.1f} m per lane); "
        f"barrier = 2 sides × {length:.1f} m = {metres:.0f} m"
    ).replace(",", " ")
    return BarrierResult(queue, space, p.queue_level, int(lanes), length, metres, text)


def egress(
    people: float,
    exit_widths_m: Sequence[float] | None,
    *,
    stairs: bool = False,
    params: StaffingParams | None = None,
) -> EgressResult | None:
    """Time for ``people`` to pass exits of the given widths; None when no widths are given.

    References
    ----------
    SGSA (2018) *Guide to Safety at Sports Grounds*, 6th ed., ch. 10 (rates of passage:
    82 persons/m/min level, 66 stairways). Fruin (1971): 25 persons/ft/min maximum flow.

    Examples
    --------
    >>> round(egress(8200, [10.0]).minutes, 1)
    10.0
    """
    if not exit_widths_m:
        return None
    p = params or StaffingParams()
    widths = [float(w) for w in exit_widths_m]
    if any(not math.isfinite(w) or w <= 0 for w in widths):
        raise StaffingInputError(
            f"exit widths must be positive metres, got {list(exit_widths_m)!r}."
        )
    total = sum(widths)
    flow = p.egress_flow_stairs if stairs else p.egress_flow_level
    n = max(0.0, float(people))
    minutes = n / (flow * total)
    needed = n / (flow * p.egress_target_minutes)
    text = (
        f"egress = {n:,.0f} people / ({flow:g} per m per min × {total:g} m) = {minutes:.1f} min "
        f"(target {p.egress_target_minutes:g} min needs {needed:.1f} m)"
    ).replace(",", " ")
    return EgressResult(
        n,
        total,
        flow,
        minutes,
        p.egress_target_minutes,
        minutes <= p.egress_target_minutes + EPS,
        needed,
        text,
    )
