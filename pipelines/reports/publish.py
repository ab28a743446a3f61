"""Small-count suppression for everything a report publishes.

A published figure is an aggregate: any count of people or incidents below the study's
suppression threshold ``k`` (``suppression_k`` in the sources.yaml, default 10) is shown as the
string ``"<k"`` — in the HTML tables, the map tooltips and ``summary.json`` alike. Zero is a count
below ``k`` too and is suppressed like the others (a published "0 incidents here" can be as
revealing as a 3). Ratios, rates, model expectations and staff numbers are not counts of the
public and pass through unchanged.

The rule follows the threshold ("cell size") suppression of official statistics: the Eurostat
*Handbook on Statistical Disclosure Control* (Hundepool et al. 2010, §4.2 "threshold rule") and
the US CDC/NCHS small-cell policy. Secondary (complementary) suppression covers the figures
published beside a count that would rebuild it: in a row (a table row, a JSON record, a map
tooltip) where a count is suppressed, its ``expected``, ``excess`` and ``ratio``
(:data:`DERIVED_NAME_PATTERN`) are shown as :data:`SECONDARY_LABEL` too, since observed =
expected + excess = ratio × expected. Numbers inside sentences (signal explanations) go through
:func:`suppress_text`. Totals over several cells are published (they are sums of cells at or
above k, or themselves suppressed); an analyst who needs exact small counts reads the store, not
a report.

Every text that comes from data (names of events, zones, categories and stops, ids, notes,
explanations) is escaped where it is published: :func:`table` escapes cells and headers,
:func:`md_text` escapes a value for a Markdown cell, and :mod:`pipelines.reports.maps` escapes
tooltips for HTML and for the JavaScript template literals folium writes them into.

Which fields are counts is decided by name (:func:`is_count_name`): ``incidents``,
``inc_<category>``, ``present``, ``residents``, ``visitors``, ``attendance``, ``entries``,
``observed``, ``count``, ``n_incidents`` and ``incident_count``. Counts of zones, lamps, stops,
events or staff are not counts of the public and are not suppressed. Notebooks and summary writers call
:func:`suppress_value`, :func:`suppress_frame` and :func:`suppress_json`; the report runner applies
:func:`suppress_json` once more to every ``summary.json`` before writing it.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import display

from features.jsonio import lenient_json_default
from pipelines.reports.labels import codes_in_words, fmt_count, formatter, label

#: names of fields holding counts of people or incidents (matched on the whole name, lower case)
COUNT_NAME_PATTERN = re.compile(
    r"^(incidents?|inc_[a-z0-9_]+|present|present_baseline|"
    r"residents|visitors|tourists|excursionists|foreign|unique_visitors|"
    r"attendance|expected_attendance|event_attendance|entries|exits|ridership_entries|"
    r"observed|count|people|persons|n_incidents|n_people|"
    r"present_peak|incidents_observed|incidents_usual|this_week|reference_mean|"
    r"forecast|reference|uplift|venue_present_forecast|event_crowd|crowd|"
    r"(peak_)?usual_entries|(peak_)?expected_entries|present_forecast|present_reference|"
    r"venue_reference|ring_reference|ring_present_forecast|venue_present|ring_present|"
    r"(incident|people|person|visitor|resident)s?_count)$"
)

#: figures published beside a count that, with the count's other neighbours, rebuild it
#: (observed = expected + excess = ratio × expected): suppressed in a row whose count is
DERIVED_NAME_PATTERN = re.compile(r"^(expected|excess|ratio)$")

#: totals published beside two of their parts: (total, part, part). When a part is suppressed,
#: total - other part would give it back, so the total is withheld too (the brief's hours:
#: venue forecast = venue reference + event crowd)
SUM_RELATIONS: tuple[tuple[str, str, str], ...] = (
    ("venue_present_forecast", "venue_reference", "event_crowd"),
)

#: the text of a figure withheld because it would rebuild a suppressed count ("confidential",
#: Eurostat's flag for secondarily suppressed cells)
SECONDARY_LABEL = "c"


def is_count_name(name: object) -> bool:
    """Whether a column or key name denotes a count of people or incidents.

    Examples
    --------
    >>> is_count_name("incidents"), is_count_name("inc_theft"), is_count_name("present_ratio")
    (True, True, False)
    """
    return bool(COUNT_NAME_PATTERN.match(str(name).strip().lower()))


def is_derived_name(name: object) -> bool:
    """Whether a column or key holds a figure that rebuilds a count with its neighbours
    (``expected``, ``excess``, ``ratio``)."""
    return bool(DERIVED_NAME_PATTERN.match(str(name).strip().lower()))


def _below_k(value: Any, k: int) -> bool:
    """Whether ``value`` is a number (not bool, not NaN) below ``k``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        return False
    v = float(value)
    return not math.isnan(v) and v < k


def secondary_rows(df: pd.DataFrame, k: int, *, columns: Iterable[str] | None = None) -> pd.Series:
    """Rows of ``df`` where a count (``columns``, default the count-named ones) is below ``k``:
    their derived figures (:func:`is_derived_name`) must be withheld too."""
    cols = [c for c in df.columns if is_count_name(c)] if columns is None else list(columns)
    mask = pd.Series(False, index=df.index)
    for c in cols:
        mask |= df[c].map(lambda v: _below_k(v, k)).astype(bool)
    return mask


def suppressed_label(k: int) -> str:
    """The text shown in place of a suppressed count: ``"<k"``."""
    return f"<{int(k)}"


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"suppression threshold k must be a positive integer, got {k!r}")
    return int(k)


def suppress_value(value: Any, k: int) -> Any:
    """One count, suppressed: the value itself when it is ``>= k``, else ``"<k"``.

    Missing values (None, NaN) stay missing, and so do infinities; non-numbers pass through
    unchanged. Counts at or
    above ``k`` are returned as int when whole, else rounded to 1 decimal (a mean presence).

    Parameters
    ----------
    value
        A count of people or incidents.
    k
        The suppression threshold (study's ``suppression_k``).

    Returns
    -------
    int, float, str or None

    Examples
    --------
    >>> suppress_value(3, 10), suppress_value(12, 10), suppress_value(0, 5)
    ('<10', 12, '<5')
    """
    k = _check_k(k)
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return value
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return value
    v = float(value)
    if not math.isfinite(v):  # NaN is missing; an infinite count is no figure either
        return None
    if v < k:
        return suppressed_label(k)
    return int(round(v)) if float(v).is_integer() else round(v, 1)


def suppress_frame(
    df: pd.DataFrame, k: int, *, columns: Iterable[str] | None = None
) -> pd.DataFrame:
    """A copy of ``df`` with every count below ``k`` replaced by ``"<k"``.

    Parameters
    ----------
    df
        The table to publish.
    k
        The suppression threshold.
    columns
        The count columns; by default every column whose name :func:`is_count_name` accepts.

    Returns
    -------
    pandas.DataFrame
        Count columns become object columns mixing numbers and ``"<k"`` strings; in a row with
        a suppressed count, the derived figures (``expected``, ``excess``, ``ratio``) read
        :data:`SECONDARY_LABEL`; other columns are untouched.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"suppress_frame expects a pandas DataFrame, got {type(df).__name__}")
    k = _check_k(k)
    out = df.copy()
    cols = [c for c in out.columns if is_count_name(c)] if columns is None else list(columns)
    missing = [c for c in cols if c not in out.columns]
    if missing:
        raise KeyError(f"suppress_frame: no column(s) {missing} in the table ({list(out.columns)})")
    hide = secondary_rows(df, k, columns=cols)
    for c in cols:
        out[c] = out[c].astype(object).map(lambda v: suppress_value(v, k))
    for total, a, b in SUM_RELATIONS:
        if total in out.columns and a in df.columns and b in df.columns:
            small = df[a].map(lambda v: _below_k(v, k)) | df[b].map(lambda v: _below_k(v, k))
            out[total] = out[total].where(~small.astype(bool), SECONDARY_LABEL)
    if hide.any():
        for c in [c for c in out.columns if is_derived_name(c) and c not in cols]:
            out[c] = out[c].astype(object).where(~hide, SECONDARY_LABEL)
    return out


def suppress_json(obj: Any, k: int, *, _key: str | None = None) -> Any:
    """A copy of a JSON-like tree where every number under a count key is suppressed.

    Dict keys are checked with :func:`is_count_name`; a number (or a list or mapping of numbers)
    held by a count key is replaced by ``"<k"`` when below ``k``. A dict of the form
    ``{"name": "incidents", "value": 4}`` (a figure row) is judged by its ``name``. Other values
    pass through; numpy scalars become Python numbers.

    Examples
    --------
    >>> suppress_json({"zone": "Z1", "incidents": 3, "ratio": 0.4}, 10)
    {'zone': 'Z1', 'incidents': '<10', 'ratio': 0.4}
    """
    k = _check_k(k)
    if isinstance(obj, dict):
        if _key is not None and is_count_name(_key):
            # a mapping held by a count key ({"observed": {"during": 12, "before": 3}}): counts
            return {key: suppress_json(val, k, _key=_key) for key, val in obj.items()}
        row_name = obj.get("name") if isinstance(obj.get("name"), str) else None
        out = {}
        for key, val in obj.items():
            if key == "value" and row_name is not None and is_count_name(row_name):
                out[key] = suppress_json(val, k, _key=row_name)
            else:
                out[key] = suppress_json(val, k, _key=str(key))
        if any(is_count_name(key) and _below_k(val, k) for key, val in obj.items()):
            _withhold_rebuilders(obj, out, k)
        return out
    if isinstance(obj, (list, tuple)):
        return [suppress_json(v, k, _key=_key) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        obj = obj.item()
    if _key is not None and is_count_name(_key) and isinstance(obj, (int, float)):
        if isinstance(obj, bool):
            return obj
        return suppress_value(obj, k)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN or Infinity; a report never shows "inf"
    return obj


def _withhold_rebuilders(record: dict, out: dict, k: int) -> None:
    """In a record with a suppressed count, withhold (in ``out``) what would rebuild it: the
    derived figures, and a total published beside a suppressed part (:data:`SUM_RELATIONS`)."""
    for key, val in out.items():
        if is_derived_name(key) and isinstance(val, (int, float)):
            out[key] = SECONDARY_LABEL
    for total, a, b in SUM_RELATIONS:
        if total in out and a in record and b in record:
            if _below_k(record[a], k) or _below_k(record[b], k):
                out[total] = SECONDARY_LABEL


def find_unsuppressed(obj: Any, k: int, *, _path: str = "$") -> list[str]:
    """JSON paths of count fields whose value is a number below ``k`` (should be empty).

    Used by the tests and by the runner's final check on ``summary.json``.
    """
    k = _check_k(k)
    bad: list[str] = []
    if isinstance(obj, dict):
        row_name = obj.get("name") if isinstance(obj.get("name"), str) else None
        for key, val in obj.items():
            name = row_name if (key == "value" and row_name is not None) else key
            p = f"{_path}.{key}"
            if (
                is_count_name(name)
                and isinstance(val, (int, float))
                and not isinstance(val, bool)
                and not (isinstance(val, float) and math.isnan(val))
                and val < k
            ):
                bad.append(p)
            elif is_count_name(name) and isinstance(val, (list, dict)):
                items = val.items() if isinstance(val, dict) else enumerate(val)
                bad += [
                    f"{p}[{i!r}]" if isinstance(val, dict) else f"{p}[{i}]"
                    for i, v in items
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v < k
                ]
            else:
                bad += find_unsuppressed(val, k, _path=p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += find_unsuppressed(v, k, _path=f"{_path}[{i}]")
    return bad


def find_derivable(obj: Any, k: int, *, _path: str = "$") -> list[str]:
    """JSON paths of records that publish a derived figure (``expected``, ``excess``,
    ``ratio``) as a number beside a suppressed count (should be empty)."""
    label = suppressed_label(_check_k(k))
    bad: list[str] = []
    if isinstance(obj, dict):
        if any(is_count_name(key) and val == label for key, val in obj.items()):
            bad += [
                f"{_path}.{key}"
                for key, val in obj.items()
                if is_derived_name(key)
                and isinstance(val, (int, float))
                and not isinstance(val, bool)
                and not (isinstance(val, float) and math.isnan(val))
            ]
        for key, val in obj.items():
            bad += find_derivable(val, k, _path=f"{_path}.{key}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += find_derivable(v, k, _path=f"{_path}[{i}]")
    return bad


#: a number in a sentence, thousands grouped by commas or spaces (``6 083``, ``1,200``) or not;
#: a number in a sentence followed by what it counts (``241 incidents``, ``1,200 people``,
#: ``3.4 expected``), or introduced as a reference (``a reference of 120``)
NUMBER_IN_TEXT = r"(?:\d{1,3}(?:[,\u202f\u00a0 ]\d{3})+|\d+)(?:\.\d+)?"
_COUNT_IN_TEXT = re.compile(
    rf"(?<![\w.,<])(?P<num>{NUMBER_IN_TEXT})(?P<unit>\s+(?:incidents?|people|persons|visitors|"
    r"residents|entries|expected)\b)"
    rf"|(?P<pre>reference of\s+)(?P<ref>{NUMBER_IN_TEXT})(?![\w.])"
)
#: a ratio in a sentence (``x4.2``, ``x0.60``)
_RATIO_IN_TEXT = re.compile(r"(?<![\w.])x\d+(?:\.\d+)?(?![\w.])")


def suppress_text(text: Any, k: int, *, secondary: bool = False) -> Any:
    """A sentence with its counts below ``k`` shown as ``"<k"``.

    Numbers followed by what they count (``incidents``, ``people``, ``entries``, ``expected``…)
    or introduced by "reference of" are counts; below ``k`` they become ``"<k"``. With
    ``secondary`` (the sentence's record has a suppressed count), ratios (``x4.2``) and the
    other counts are withheld as :data:`SECONDARY_LABEL` as well, so the sentence cannot rebuild
    the suppressed count. Non-strings pass through.

    Examples
    --------
    >>> suppress_text("Zone Z1 had 241 incidents against 80.5 expected (x3.0).", 250)
    'Zone Z1 had <250 incidents against <250 expected (x3.0).'
    >>> suppress_text("Zone Z1 held 241 people against a reference of 400 (x0.60).", 250,
    ...               secondary=True)
    'Zone Z1 held <250 people against a reference of c (xc).'
    """
    if not isinstance(text, str):
        return text
    k = _check_k(k)

    def count(m: re.Match[str]) -> str:
        num = m.group("num") if m.group("num") is not None else m.group("ref")
        v = float(re.sub(r"[,\u202f\u00a0 ]", "", num))
        shown = suppressed_label(k) if v < k else (SECONDARY_LABEL if secondary else num)
        if m.group("num") is not None:
            return shown + m.group("unit")
        return m.group("pre") + shown

    out = _COUNT_IN_TEXT.sub(count, text)
    return _RATIO_IN_TEXT.sub("x" + SECONDARY_LABEL, out) if secondary else out


def md_text(value: Any) -> str:
    """A value from data, safe inside Markdown: HTML-escaped, Markdown punctuation
    backslash-escaped, on one line (a name cannot open a tag, a link, a list or a heading)."""
    text = re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", " ".join(str(value).split()))
    return html.escape(text, quote=False)


def table(
    df: pd.DataFrame,
    k: int,
    *,
    columns: Iterable[str] | None = None,
    digits: int = 2,
    zones: Mapping[str, str] | None = None,
):
    """A suppressed, escaped table for people (a pandas Styler, index hidden).

    Counts below ``k`` read ``"<k"`` and the figures that would rebuild them
    :data:`SECONDARY_LABEL`. Then, for reading: headers are labels in words with units
    (:func:`pipelines.reports.labels.label`), each column's numbers are formatted as their kind
    asks (whole people and incidents, rates with 2 significant figures, p and q values in
    scientific notation below 0.001: :mod:`pipelines.reports.labels`), zone codes come with
    their names (``zones``: code -> name), text is left-aligned and does not wrap inside a date.
    Text cells and column headers are HTML-escaped (names come from data).

    Parameters
    ----------
    df
        The table to publish, with the store's column names (suppression decides by name).
    k
        The suppression threshold.
    columns
        Count columns besides the count-named ones (suppression cannot be turned off).
    digits
        Decimals of floats whose kind is not known.
    zones
        Zone names by code, for the zone columns (:data:`pipelines.reports.ZONE_COLUMNS`).
    """
    counts = [c for c in df.columns if is_count_name(c)]
    counts += [c for c in (columns or []) if c not in counts]
    pub = codes_in_words(suppress_frame(df, k, columns=counts), zones=zones)

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "–"
        if isinstance(v, float):
            # a whole count reads as one (4,772, not 4,772.00); other floats get `digits`
            if v.is_integer() and abs(v) >= 1:
                return f"{v:,.0f}"
            return f"{v:,.{digits}f}"
        if isinstance(v, (int, np.integer)):
            return f"{v:,}"
        return html.escape(str(v), quote=True)

    styler = pub.style.format(fmt)
    for c in pub.columns:
        by_kind = formatter(c) or (fmt_count if c in counts else None)
        if by_kind is not None:
            styler = styler.format(_kind_formatter(by_kind, fmt), subset=[c])
    # text (object, or pandas 3's str dtype) reads from the left; numbers stay right-aligned
    text_cols = [c for c in pub.columns if not pd.api.types.is_numeric_dtype(pub[c])]
    if text_cols:
        styler = styler.set_properties(subset=text_cols, **{"text-align": "left"})
    styler = styler.set_table_styles(
        [
            {"selector": "th", "props": "text-align: left;"},
            {"selector": "td", "props": "white-space: nowrap;"},
            {"selector": "td.col-wrap", "props": "white-space: normal; min-width: 12em;"},
        ],
        overwrite=False,
    )
    long = [c for c in text_cols if pub[c].astype(str).str.len().gt(LONG_TEXT).any()]
    wrap = [c for c in pub.columns if c in WRAPPED_COLUMNS or c in long]
    if wrap:
        styler = styler.set_td_classes(
            pd.DataFrame("col-wrap", index=pub.index, columns=wrap).reindex(
                columns=pub.columns, fill_value=""
            )
        )
    return styler.format_index(label, axis=1, escape="html").hide(axis="index")


#: text columns that may wrap (long sentences); every other cell stays on one line, unless its
#: column holds text longer than :data:`LONG_TEXT` characters (the table would outgrow the page)
WRAPPED_COLUMNS = ("explanation", "arithmetic", "source", "event", "name", "comparison", "zones")
LONG_TEXT = 32


def _kind_formatter(
    by_kind: Callable[[Any], str] | None, fallback: Callable[[Any], str]
) -> Callable[[Any], str]:
    """A column formatter: numbers by their kind, anything else (a suppressed "<k", "c",
    None) as the table's default, escaped."""

    def fmt(v: Any) -> str:
        if by_kind is None or isinstance(v, (bool, np.bool_, str)) or v is None:
            return fallback(v)
        if not isinstance(v, (int, float, np.integer, np.floating)):
            return fallback(v)
        return by_kind(v)

    return fmt


#: MIME type of the summary payloads a notebook emits for ``summary.json``
SUMMARY_MIME = "application/vnd.vigie.summary+json"


def emit_summary(figures: dict[str, Any], *, k: int) -> dict[str, Any]:
    """Hand figures shown by a notebook to the report runner for ``summary.json``.

    The figures are suppressed with :func:`suppress_json` and displayed as one output with the
    MIME type :data:`SUMMARY_MIME`, which the runner collects (later payloads update earlier
    ones, key by key) and strips from the HTML. Outside the runner (JupyterLab) the output is
    invisible.

    Parameters
    ----------
    figures
        JSON-like figures (numbers, text, lists, mappings); NaN becomes null.
    k
        The suppression threshold.

    Returns
    -------
    dict
        The suppressed figures, as they will appear in ``summary.json``.
    """
    if not isinstance(figures, dict):
        raise TypeError(f"emit_summary expects a dict of figures, got {type(figures).__name__}")
    clean = suppress_json(figures, k)
    payload = json.loads(json.dumps(clean, default=lenient_json_default))
    display({SUMMARY_MIME: payload}, raw=True)
    return payload
