"""Event staffing: rescuers, agents, entry lanes, barrier and egress, with their arithmetic.

Pure and data-free: every function takes numbers and returns a small frozen result that carries
its figures, the published source of every default and a human-readable ``arithmetic`` string,
so a brief can show how each figure was reached, not only the answer.

Methods
-------
Rescuers
    The French DPS grid (*Référentiel national des missions de sécurité civile, dispositifs
    prévisionnels de secours*, approved by the arrêté du 7 novembre 2006, NOR INTE0600910A).
    P1 is the declared public present at once; P = P1 up to 100 000 and
    P = 100 000 + (P1 − 100 000) / 2 above. The risk index i = P2 + E1 + E2 adds the public's
    activity P2 (0.25 seated; 0.30 standing: ceremony, meeting, exhibition, fair; 0.35 standing:
    static show, funfair, sport with crowd barriers; 0.40 dynamic crowd: dance, feria, carnival,
    parade, festival), the environment and access E1 (0.25 permanent buildings or streets with
    clear access; 0.30 non-permanent structures, natural area ≤ 2 ha; 0.35 natural area 2–5 ha;
    0.40 natural area > 5 ha, difficult access) and the public emergency services' delay E2
    (0.25 ≤ 10 min; 0.30 10–20; 0.35 20–30; 0.40 > 30). RIS = i × P / 1000. RIS ≤ 0.25: no
    minimum dispositif; ≤ 1.125: PAPS (2 rescuers); ≤ 12: DPS-PE; ≤ 36: DPS-ME; above: DPS-GE.
    Rescuers = RIS rounded up to the next even number, at least 4 in a DPS-PE; one first-aid
    post per 12 rescuers (a DPS-PE has one post).
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

Every default is a field of :class:`StaffingParams`, overridable, with its source in
:data:`PARAM_SOURCES`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.errors import InputError

# -- DPS grid -----------------------------------------------------------------------------------

#: P2 levels of the DPS grid and the words that select them.
ACTIVITY_LEVELS: dict[float, str] = {
    0.25: "seated public (show, ceremony, meeting, restaurant, sport seated)",
    0.30: "standing public: ceremony, meeting, restaurant, exhibition, fair, show",
    0.35: "standing public: static show, funfair, sport with the public protected from it",
    0.40: "standing dynamic public: dance, feria, carnival, street show, parade, festival, "
    "sport without protection, events over several days",
}
ENVIRONMENT_LEVELS: dict[float, str] = {
    0.25: "permanent buildings, public streets with clear access, easy access",
    0.30: "non-permanent structures (stands, marquees), natural area ≤ 2 ha, stretcher 150–300 m",
    0.35: "natural area 2–5 ha, stretcher 300–600 m, other difficult access",
    0.40: "natural area > 5 ha, stretcher > 600 m, slopes, crowd hindering rescuers",
}
DELAY_LEVELS: dict[float, str] = {
    0.25: "public emergency services on site in ≤ 10 min",
    0.30: "10–20 min",
    0.35: "20–30 min",
    0.40: "> 30 min",
}
_ACTIVITY_WORDS = {
    "seated": 0.25,
    "standing": 0.30,
    "static": 0.35,
    "dynamic": 0.40,
}
_ENVIRONMENT_WORDS = {
    "building": 0.25,
    "permanent": 0.25,
    "streets": 0.25,
    "street": 0.25,
    "temporary": 0.30,
    "natural_small": 0.30,
    "natural_medium": 0.35,
    "difficult": 0.40,
    "natural_large": 0.40,
}

#: category words → P2 when the event does not give dps_activity (documented inference).
CATEGORY_ACTIVITY: tuple[tuple[tuple[str, ...], float], ...] = (
    (("theatre", "theater", "opera", "cinema", "conference", "congress", "classical"), 0.25),
    (("exhibition", "expo", "fair", "market", "salon", "ceremony", "meeting", "trade"), 0.30),
    (
        ("concert", "show", "sport", "match", "football", "rugby", "stadium", "funfair", "game"),
        0.35,
    ),
    (("festival", "parade", "carnival", "dance", "rave", "feria", "party", "club", "street"), 0.40),
    (("demonstration", "protest", "manifestation", "march", "marathon", "race", "run"), 0.40),
)
#: categories that take place in the street (E1 = 0.25 "public streets with clear access").
STREET_CATEGORIES = ("parade", "carnival", "market", "street", "marathon", "race", "run", "march")

TIERS = ("none", "PAPS", "DPS-PE", "DPS-ME", "DPS-GE")

# -- Fruin queuing levels of service: lower bound of space per person (m²) -------------------------
FRUIN_QUEUE_SPACE_M2: dict[str, float] = {"A": 1.21, "B": 0.93, "C": 0.65, "D": 0.28, "E": 0.19}

_EPS = 1e-9


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


# -- results ------------------------------------------------------------------------------------


class _Result:
    """Base of the frozen result dataclasses: ``to_dict`` for the brief's JSON."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DpsResult(_Result):
    """The DPS grid applied to one public.

    Attributes
    ----------
    public_declared
        P1, the public present at once.
    public
        P after the 100 000 rule.
    p2, e1, e2, i
        Coefficients of the grid and their sum.
    ris
        Ratio d'intervenants secouristes, i × P / 1000.
    tier
        ``none``, ``PAPS``, ``DPS-PE``, ``DPS-ME`` or ``DPS-GE``.
    rescuers
        Intervenants secouristes.
    posts
        First-aid posts (postes de secours).
    arithmetic
        The computation written out.
    """

    public_declared: float
    public: float
    p2: float
    e1: float
    e2: float
    i: float
    ris: float
    tier: str
    rescuers: int
    posts: int
    arithmetic: str
    source: str = "arrêté du 7 novembre 2006 (référentiel national DPS)"


@dataclass(frozen=True)
class AgentsResult(_Result):
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
class LanesResult(_Result):
    """Entry lanes for a peak arrival rate."""

    peak_arrivals_per_min: float
    screening: str
    lane_rate: float
    lanes: int
    arithmetic: str


@dataclass(frozen=True)
class BarrierResult(_Result):
    """Queue to hold and the metres of barrier that channel it."""

    queue_people: float
    space_per_person_m2: float
    queue_level: str
    lanes: int
    channel_length_m: float
    barrier_m: float
    arithmetic: str


@dataclass(frozen=True)
class EgressResult(_Result):
    """Time for a crowd to pass the exits."""

    people: float
    exit_width_m: float
    flow_per_m_per_min: float
    minutes: float
    target_minutes: float
    within_target: bool
    width_needed_m: float
    arithmetic: str


# -- DPS ----------------------------------------------------------------------------------------


def _level(value: Any, levels: Mapping[float, str], words: Mapping[str, float], what: str) -> float:
    if isinstance(value, str):
        key = re.sub(r"[^a-z_]+", "_", value.strip().lower()).strip("_")
        if key in words:
            return words[key]
        try:
            value = float(value)
        except ValueError:
            raise StaffingInputError(
                f"{what} must be one of {', '.join(f'{v:.2f}' for v in levels)} or a word among "
                f"{', '.join(words)}, got {value!r}."
            ) from None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise StaffingInputError(f"{what} must be a number, got {value!r}.") from None
    for lv in levels:
        if abs(v - lv) < 1e-6:
            return lv
    raise StaffingInputError(
        f"{what} must be one of {', '.join(f'{v:.2f}' for v in levels)} (the DPS grid), got {value!r}."
    )


def activity_coefficient(value: Any) -> float:
    """P2 from a coefficient (0.25, 0.30, 0.35, 0.40) or a word (seated, standing, static, dynamic)."""
    return _level(value, ACTIVITY_LEVELS, _ACTIVITY_WORDS, "dps_activity (P2)")


def environment_coefficient(value: Any) -> float:
    """E1 from a coefficient or a word (building, streets, temporary, natural_small, ...)."""
    return _level(value, ENVIRONMENT_LEVELS, _ENVIRONMENT_WORDS, "dps_environment (E1)")


def delay_coefficient(value: Any) -> float:
    """E2 from a coefficient (0.25, 0.30, 0.35, 0.40) or a delay in minutes (any other number).

    Examples
    --------
    >>> delay_coefficient(0.3), delay_coefficient(8), delay_coefficient(25), delay_coefficient(45)
    (0.3, 0.25, 0.35, 0.4)
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise StaffingInputError(
            f"dps_delay (E2) must be a coefficient 0.25–0.40 or a delay in minutes, got {value!r}."
        ) from None
    if not math.isfinite(v) or v < 0:
        raise StaffingInputError(f"dps_delay (E2) must be a non-negative number, got {value!r}.")
    if 0.25 - 1e-9 <= v <= 0.40 + 1e-9:
        return _level(v, DELAY_LEVELS, {}, "dps_delay (E2)")
    if v <= 10:
        return 0.25
    if v <= 20:
        return 0.30
    if v <= 30:
        return 0.35
    return 0.40


def dps_public(p1: float) -> float:
    """P from the declared public P1: P1 up to 100 000, then 100 000 + half of the excess.

    Examples
    --------
    >>> dps_public(80_000), dps_public(150_000)
    (80000.0, 125000.0)
    """
    p1 = float(p1)
    if not math.isfinite(p1) or p1 < 0:
        raise StaffingInputError(f"the public must be a non-negative number, got {p1!r}.")
    return p1 if p1 <= 100_000 else 100_000 + (p1 - 100_000) / 2


def _even_up(x: float) -> int:
    n = math.ceil(x - _EPS)
    return n + (n % 2)


def dps(
    public: float, *, activity: Any = 0.30, environment: Any = 0.25, delay: Any = 0.25
) -> DpsResult:
    """Size the first-aid dispositif for a public by the DPS grid.

    Parameters
    ----------
    public
        P1, the declared public present at once.
    activity, environment, delay
        P2, E1, E2 as coefficients of the grid (or words, or minutes for ``delay``).

    Returns
    -------
    DpsResult

    Raises
    ------
    StaffingInputError
        For a negative public or a coefficient outside the grid.

    References
    ----------
    Arrêté du 7 novembre 2006 fixant le référentiel national relatif aux dispositifs
    prévisionnels de secours (JORF 21 novembre 2006), annexe: grille d'évaluation des risques.

    Examples
    --------
    >>> r = dps(10_000, activity=0.30, environment=0.25, delay=0.25)
    >>> r.i, r.ris, r.tier, r.rescuers
    (0.8, 8.0, 'DPS-PE', 8)
    """
    p2 = activity_coefficient(activity)
    e1 = environment_coefficient(environment)
    e2 = delay_coefficient(delay)
    p1 = float(public)
    p = dps_public(p1)
    i = round(p2 + e1 + e2, 2)
    ris = round(i * p / 1000, 9)
    if ris <= 0.25:
        tier, rescuers = "none", 0
    elif ris <= 1.125:
        tier, rescuers = "PAPS", 2
    else:
        rescuers = max(4, _even_up(ris))
        tier = "DPS-PE" if ris <= 12 else ("DPS-ME" if ris <= 36 else "DPS-GE")
    posts = 0 if tier in ("none", "PAPS") else max(1, math.ceil(rescuers / 12 - _EPS))
    p_text = (
        f"P = {p1:,.0f}" if p1 <= 100_000 else f"P = 100 000 + ({p1:,.0f} − 100 000) / 2 = {p:,.0f}"
    )
    rule = {
        "none": "RIS ≤ 0.25: no minimum dispositif",
        "PAPS": "0.25 < RIS ≤ 1.125: PAPS, 2 rescuers",
        "DPS-PE": "1.125 < RIS ≤ 12: DPS-PE",
        "DPS-ME": "12 < RIS ≤ 36: DPS-ME",
        "DPS-GE": "RIS > 36: DPS-GE",
    }[tier]
    text = (
        f"{p_text}; i = P2 {p2:.2f} + E1 {e1:.2f} + E2 {e2:.2f} = {i:.2f}; "
        f"RIS = {i:.2f} × {p:,.0f} / 1000 = {ris:.3f}; {rule}"
    )
    if tier not in ("none", "PAPS"):
        text += (
            f"; rescuers = RIS rounded up to an even number (at least 4) = {rescuers}"
            f"; posts = ⌈{rescuers} / 12⌉ = {posts}"
        )
    return DpsResult(
        public_declared=p1,
        public=p,
        p2=p2,
        e1=e1,
        e2=e2,
        i=i,
        ris=ris,
        tier=tier,
        rescuers=rescuers,
        posts=posts,
        arithmetic=text.replace(",", " "),
    )


def infer_dps_inputs(
    category: str | None,
    *,
    indoor: bool | None = None,
    dps_activity: Any = None,
    dps_environment: Any = None,
    dps_delay: Any = None,
) -> tuple[float, float, float, list[str]]:
    """P2, E1, E2 for an event: the given ones, or inferred from its category and setting.

    Inference (stated in the returned notes): P2 from the category words of
    :data:`CATEGORY_ACTIVITY` (0.35 when none matches); E1 = 0.25 indoors or for street
    categories, 0.30 for other outdoor venues (non-permanent structures assumed); E2 = 0.25
    (urban area, public services within 10 min).

    Returns
    -------
    tuple
        ``(p2, e1, e2, notes)``; notes say which were inferred and why.
    """
    notes: list[str] = []
    cat = (category or "").lower()
    if _given(dps_activity):
        p2 = activity_coefficient(dps_activity)
    else:
        p2 = None
        for words, level in CATEGORY_ACTIVITY:
            if any(w in cat for w in words):
                p2 = level
                break
        if p2 is None:
            p2 = 0.35
            notes.append(
                f"P2 = 0.35 assumed (category {category!r} not recognised; give dps_activity)"
            )
        else:
            notes.append(
                f"P2 = {p2:.2f} inferred from category {category!r} ({ACTIVITY_LEVELS[p2]})"
            )
    if _given(dps_environment):
        e1 = environment_coefficient(dps_environment)
    elif indoor:
        e1 = 0.25
        notes.append("E1 = 0.25 inferred: indoors, permanent building")
    elif any(w in cat for w in STREET_CATEGORIES):
        e1 = 0.25
        notes.append("E1 = 0.25 inferred: public streets with clear access")
    else:
        e1 = 0.30
        notes.append(
            "E1 = 0.30 assumed: outdoor venue with non-permanent structures (give dps_environment)"
        )
    if _given(dps_delay):
        e2 = delay_coefficient(dps_delay)
    else:
        e2 = 0.25
        notes.append(
            "E2 = 0.25 assumed: urban area, public emergency services within 10 min (give dps_delay)"
        )
    return p2, e1, e2, notes


def _given(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""
    except TypeError:  # pragma: no cover - pd.NA
        return False


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
    visibility = math.ceil(present / ratio - _EPS) if present > 0 else 0
    busy = inc * p.agents_per_incident * p.handling_minutes / 60.0
    workload = math.ceil(busy / p.target_utilisation - _EPS) if busy > 0 else 0
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
    lanes = math.ceil(a / rate - _EPS) if a > 0 else 0
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
        minutes <= p.egress_target_minutes + _EPS,
        needed,
        text,
    )


# -- the whole plan -----------------------------------------------------------------------------


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
    peak: dict[str, int]
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dps": self.dps.to_dict(),
            "lanes": self.lanes.to_dict(),
            "barrier": self.barrier.to_dict(),
            "egress": None if self.egress is None else self.egress.to_dict(),
            "peak": dict(self.peak),
            "hours": list(self.hours),
            "notes": list(self.notes),
            "params": self.params,
        }


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
        Event attributes; DPS inputs not given are inferred (see :func:`infer_dps_inputs`).
    exit_widths_m, exit_stairs
        Exit widths, for the egress time (skipped when None).
    params
        :class:`StaffingParams`.

    Returns
    -------
    EventStaffing
        Per hour the DPS grid is applied to the crowd present that hour (capped by the sizing
        on the declared attendance); agents and lanes per hour as in :func:`agents` and
        :func:`entry_lanes`.
    """
    p = params or StaffingParams()
    n = len(hours)
    if len(crowd) != n or len(arrivals_peak_per_min) != n:
        raise StaffingInputError(
            f"hours, crowd and arrivals_peak_per_min must have the same length, got {n}, {len(crowd)}, "
            f"{len(arrivals_peak_per_min)}."
        )
    inc = [0.0] * n if incidents_per_hour is None else [float(x) for x in incidents_per_hour]
    if len(inc) != n:
        raise StaffingInputError(f"incidents_per_hour must have {n} values, got {len(inc)}.")
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
    rows = []
    for h, c, a, k in zip(hours, crowd, arrivals_peak_per_min, inc, strict=False):
        c = max(0.0, float(c)) if np.isfinite(c) else 0.0
        c_dps = min(c, float(attendance))
        d = dps(c_dps, activity=p2, environment=e1, delay=e2)
        ag = agents(c, incidents_per_hour=k, high_risk=risk, params=p)
        ln = entry_lanes(a, params=p)
        rows.append(
            {
                "hour": h,
                "crowd": c,
                "arrivals_peak_per_min": float(a),
                "incidents_per_hour": ag.incidents_per_hour,
                "rescuers": d.rescuers,
                "dps_tier": d.tier,
                "first_aid_posts": d.posts,
                "agents": ag.agents,
                "agents_visibility": ag.visibility,
                "agents_workload": ag.workload,
                "entry_lanes": ln.lanes,
                "arithmetic": {
                    "rescuers": d.arithmetic,
                    "agents": ag.arithmetic,
                    "lanes": ln.arithmetic,
                },
            }
        )
    peak_rate = peak_arrivals_per_minute(attendance, params=p)
    lanes = entry_lanes(max([peak_rate, *[float(a) for a in arrivals_peak_per_min]]), params=p)
    bar = barrier(lanes.lanes, lanes.peak_arrivals_per_min, params=p)
    eg = egress(attendance, exit_widths_m, stairs=exit_stairs, params=p)
    if eg is None:
        notes.append("egress time not computed: no exit widths given")
    peak = {
        "rescuers": max([total.rescuers, *[r["rescuers"] for r in rows]]),
        "agents": max([0, *[r["agents"] for r in rows]]),
        "entry_lanes": lanes.lanes,
        "barrier_m": int(math.ceil(bar.barrier_m - _EPS)) if bar.barrier_m > 0 else 0,
        "first_aid_posts": total.posts,
    }
    return EventStaffing(total, lanes, bar, eg, rows, peak, notes, p.describe())
