"""Rescuers by the French DPS grid (arrêté du 7 novembre 2006): coefficients, public, tier.

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

Pure and data-free: :func:`dps` returns a frozen :class:`DpsResult` carrying its figures and the
arithmetic written out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.events.params import EPS, StaffingInputError, StaffingResult

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


@dataclass(frozen=True)
class DpsResult(StaffingResult):
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
    n = math.ceil(x - EPS)
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
    posts = 0 if tier in ("none", "PAPS") else max(1, math.ceil(rescuers / 12 - EPS))
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


def _activity_from_category(category: str | None, notes: list[str]) -> float:
    """P2 from the category words of :data:`CATEGORY_ACTIVITY` (0.35 when none matches)."""
    cat = (category or "").lower()
    for words, level in CATEGORY_ACTIVITY:
        if any(w in cat for w in words):
            notes.append(
                f"P2 = {level:.2f} inferred from category {category!r} ({ACTIVITY_LEVELS[level]})"
            )
            return level
    notes.append(f"P2 = 0.35 assumed (category {category!r} not recognised; give dps_activity)")
    return 0.35


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
    p2 = (
        activity_coefficient(dps_activity)
        if _given(dps_activity)
        else _activity_from_category(category, notes)
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
