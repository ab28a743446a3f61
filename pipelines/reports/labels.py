"""Column labels in words with units, and numbers formatted as their kind asks.

Report tables keep the store's code names (``this_week``, ``q_value``,
``venue_present_forecast``) up to the moment they are shown, because small-count suppression
(:mod:`pipelines.reports.publish`) decides by name what is a count; only then
:func:`pipelines.reports.publish.table` relabels the headers with :func:`label` and formats each
column with :func:`formatter`:

=========  ===================================================  =======================
kind       rule                                                 example
=========  ===================================================  =======================
``count``  whole numbers, thousands grouped (people, incidents)  ``9,276``
``rate``   2 significant figures (rates, ratios, shares)        ``0.0012``, ``1.4``, ``87``
``p``      3 decimals, scientific notation below 0.001          ``0.012``, ``6.0e-28``
=========  ===================================================  =======================

Zone codes are given with their names (:func:`zone_with_name`): ``Batignolles (750560024)``.

References
----------
Miller, J. E. (2004), *The Chicago Guide to Writing about Numbers*, ch. 4 (precision: as many
digits as the reader can use). APA (2020), *Publication Manual*, §6.36 (p values: exact to two
or three decimals, "< .001" below).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

#: code name -> (label in words with its unit, kind of number)
LABELS: dict[str, tuple[str, str]] = {
    "figure": ("figure", "text"),
    "this_week": ("this week", "count"),
    "reference_mean": ("reference (mean of the weeks before)", "count"),
    "ratio": ("ratio to reference", "rate"),
    "rank": ("rank", "count"),
    "type": ("kind of signal", "text"),
    "zones": ("zones", "text"),
    "zone_id": ("zone", "text"),
    "zone": ("zone", "text"),
    "when": ("when (local time)", "text"),
    "observed": ("observed", "count"),
    "expected": ("expected", "rate"),
    "excess": ("excess over expected", "count"),
    "q_value": ("q value (false discovery rate)", "p"),
    "p_value": ("p value", "p"),
    "explanation": ("explanation", "text"),
    "event": ("event", "text"),
    "category": ("category", "text"),
    "expected_attendance": ("expected attendance (people)", "count"),
    "venue_reference": ("venue: usual people present", "count"),
    "venue_present_forecast": ("venue: people present (forecast)", "count"),
    "ring_present_forecast": ("ring: people present (forecast)", "count"),
    "event_crowd": ("event crowd (people)", "count"),
    "incidents_per_hour": ("incidents per hour (upper bound)", "rate"),
    "rescuers": ("rescuers", "count"),
    "dps_tier": ("rescue level (DPS)", "text"),
    "agents": ("agents", "count"),
    "entry_lanes": ("entry lanes", "count"),
    "phase": ("phase", "text"),
    "role": ("role", "text"),
    "present_ratio": ("people present / usual", "rate"),
    "incidents": ("incidents", "count"),
    "present": ("people present", "count"),
    "estimate": ("estimate", "rate"),
    "ci_low": ("95 % interval: low", "rate"),
    "ci_high": ("95 % interval: high", "rate"),
    "unit": ("unit", "text"),
    "feature": ("feature", "text"),
    "name": ("effect", "text"),
    "comparison": ("compared with", "text"),
    "model": ("model", "text"),
    "poisson_deviance": ("mean Poisson deviance", "rate"),
    "mae": ("mean absolute error (incidents)", "rate"),
    "coverage": ("interval coverage", "rate"),
    "coverage80": ("80 % interval coverage", "rate"),
    "coverage95": ("95 % interval coverage", "rate"),
    "zone_slots": ("zone-slots forecast", "count"),
    "quantity": ("quantity", "text"),
    "arithmetic": ("arithmetic", "text"),
    "source": ("source", "text"),
    "stop_id": ("stop", "text"),
    "stop_name": ("stop name", "text"),
    "distance_m": ("distance (m)", "count"),
    "lag_days": ("lag (days)", "count"),
    "spearman": ("Spearman correlation", "rate"),
    "rho": ("Spearman correlation", "rate"),
}

#: columns whose cells are zone codes (one, or several separated by commas)
ZONE_COLUMNS = ("zone_id", "zone", "zones", "venue_zone", "zone_ids")


def label(name: Any) -> str:
    """A column's header in words: its :data:`LABELS` entry, else the name with spaces for
    underscores (``hit_rate_5%`` -> ``hit rate 5%``)."""
    text = str(name)
    if text in LABELS:
        return LABELS[text][0]
    level = re.match(r"^(pai|hit_rate)_(.+)$", text)
    if level:
        what = "PAI" if level.group(1) == "pai" else "hit rate"
        return f"{what} at {level.group(2)} of area × time"
    if text.startswith("inc_"):
        return f"incidents: {text[4:].replace('_', ' ')}"
    return re.sub(r"_+", " ", text).strip()


def kind(name: Any) -> str | None:
    """The kind of number of a column (``count``, ``rate``, ``p``, ``text``), None if unknown."""
    text = str(name)
    if text in LABELS:
        return LABELS[text][1]
    if text.startswith(("inc_", "incidents")) or text.endswith(("_count", "_forecast")):
        return "count"
    if text.startswith(("p_", "q_")) or text in ("p", "q"):
        return "p"
    if text.startswith(("pai", "hit_rate", "coverage")) or text.endswith(("_ratio", "_rate")):
        return "rate"
    return None


def _number(v: Any) -> float | None:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    return float(v)


def fmt_count(v: Any) -> str:
    """A count of people or incidents: whole, thousands grouped (``9,275.6`` -> ``9,276``)."""
    x = _number(v)
    if x is None:
        return str(v)
    return "–" if not math.isfinite(x) else f"{round(x):,}"


def fmt_rate(v: Any) -> str:
    """Two significant figures (``0.001234`` -> ``0.0012``, ``1.437`` -> ``1.4``), whole
    numbers from 100 up (``1,234``)."""
    x = _number(v)
    if x is None:
        return str(v)
    if not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{round(x):,}"
    decimals = max(0, 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_p(v: Any) -> str:
    """A p or q value: 3 decimals, scientific notation below 0.001 (``6.0e-28``), and
    ``< 1e-300`` for a value that underflowed to 0."""
    x = _number(v)
    if x is None:
        return str(v)
    if not math.isfinite(x):
        return "–"
    if x == 0:
        return "< 1e-300"
    return f"{x:.1e}" if x < 0.001 else f"{x:.3f}"


FORMATTERS: dict[str, Callable[[Any], str]] = {"count": fmt_count, "rate": fmt_rate, "p": fmt_p}


def formatter(name: Any) -> Callable[[Any], str] | None:
    """The number formatter of a column by its kind, None for text or unknown columns."""
    k = kind(name)
    return FORMATTERS.get(k) if k else None


#: the forecasting models and baselines of the backtest, in words (the data keep the codes)
MODEL_WORDS = {
    "zone_glm": "zone rate model (GLM, zone effects)",
    "glm": "rate model (Poisson/NB GLM)",
    "xgb": "XGBoost",
    "seasonal_naive_4w": "seasonal naive (4 weeks)",
    "seasonal_naive_8w": "seasonal naive (8 weeks)",
    "recent_rate_8w": "recent rate (8 weeks)",
    "recent_hotspot": "recent hotspot map",
}

#: columns whose codes a table shows in words
CODE_WORDS: dict[str, Mapping[str, str]] = {"model": MODEL_WORDS}


def codes_in_words(df: pd.DataFrame, *, zones: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``df`` as a table shows it: the codes of :data:`CODE_WORDS` columns in words (unknown
    codes kept) and, with ``zones`` (names by code), the :data:`ZONE_COLUMNS` with names."""
    out = {c: df[c].map(lambda v, c=c: CODE_WORDS[c].get(v, v)) for c in CODE_WORDS if c in df}
    for c in [c for c in ZONE_COLUMNS if zones and c in df.columns]:
        out[c] = df[c].map(lambda v: zone_with_name(v, zones or {}))
    return df.assign(**out) if out else df


def zone_with_name(value: Any, names: Mapping[str, str]) -> Any:
    """Zone codes given with their names: ``"750560024"`` -> ``"Batignolles (750560024)"``;
    a comma-separated list or a list is named code by code; unknown codes are left as they are.
    """
    if isinstance(value, (list, tuple)):
        codes = [str(z) for z in value]
    elif isinstance(value, str):
        codes = [z.strip() for z in value.split(",")]
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    else:
        codes = [str(value)]
    named = [f"{names[z]} ({z})" if names.get(z) and names[z] != z else z for z in codes]
    return ", ".join(named)


def name_zones_in_text(text: Any, names: Mapping[str, str]) -> Any:
    """A sentence with each zone code followed by its name: ``zone 750560024`` ->
    ``zone 750560024 (Batignolles)``. Non-strings pass through."""
    if not isinstance(text, str) or not names:
        return text
    codes = sorted((c for c in names if c and names[c] and names[c] != c), key=len, reverse=True)
    if not codes:
        return text
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(c) for c in codes) + r")(?![\w-])")
    return pattern.sub(lambda m: f"{m.group(1)} ({names[m.group(1)]})", text)


def class_words(color_by: str, breaks: tuple[float, ...] | list[float]) -> list[str] | None:
    """A map legend's classes in words (then "no data"): the presence ratio as shares of the
    usual presence, the excess as incidents more or fewer than usual; None for other columns."""
    b = list(breaks)
    if not b:
        return None
    if color_by == "present_ratio":

        def pct(x: float) -> str:
            return f"{round(x * 100)} %"

        words = [f"under {pct(b[0])} of usual"]
        for lo, hi in zip(b[:-1], b[1:], strict=True):
            words.append(
                f"about usual ({pct(lo)} to {pct(hi)})"
                if lo < 1 < hi
                else f"{pct(lo)} to {pct(hi)} of usual"
            )
        return [*words, f"{pct(b[-1])} of usual or more", "no data"]
    if color_by == "excess":

        def n(x: float) -> str:
            return fmt_rate(abs(x))

        words = [f"over {n(b[0])} incidents fewer than usual"]
        for lo, hi in zip(b[:-1], b[1:], strict=True):
            if lo < 0 < hi:
                words.append(f"about usual (within {n(hi)} incidents)")
            elif hi <= 0:
                words.append(f"{n(hi)} to {n(lo)} incidents fewer")
            else:
                words.append(f"{n(lo)} to {n(hi)} incidents more")
        return [*words, f"over {n(b[-1])} incidents more than usual", "no data"]
    return None
