"""A privacy audit of everything published under ``reports/``.

Reads every file of a reports folder as an outsider would and lists what should not be there:

- a count of people or incidents below ``k`` (a count-named JSON key, table column or map
  tooltip field holding a number below ``k``; a number followed by what it counts in a sentence,
  "7 incidents");
- a suppressed count that the figures beside it rebuild (a record or table row with ``"<k"``
  and a number under ``expected``, ``excess`` or ``ratio``);
- an incident identifier of the store;
- a column ingest left out as non-canonical (``ignored_columns`` of ``ingest_report.json``): its
  name as a JSON key or table header;
- a non-finite number ("inf", "Infinity", "NaN" shown as a figure).

Files read: ``summary.json`` (the figures), ``report.html`` (its tables and text, and the
GeoJSON properties and tooltips of its map frames), ``report.ipynb`` (its outputs) and
``index.html``. The tests run it on the tiny city's reports at the default ``k`` and at a ``k``
high enough that many cells are suppressed.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from bs4 import BeautifulSoup

from features.store import Store
from pipelines.reports.publish import (
    NUMBER_IN_TEXT,
    find_derivable,
    find_unsuppressed,
    is_count_name,
    is_derived_name,
    suppressed_label,
)

#: a map frame's page, as the report embeds it
_SRCDOC = re.compile(r'srcdoc="([^"]*)"')
#: a count in running text: a number followed by what it counts
_TEXT_COUNT = re.compile(
    rf"(?<![\w.,<])({NUMBER_IN_TEXT})\s+(?:incidents?|people|persons|visitors|residents|entries)\b"
)
#: a non-finite figure shown as text
_NON_FINITE = re.compile(r"(?<![\w.])(?:-?inf(?:inity)?|nan)(?![\w.])", re.IGNORECASE)
#: where folium hands GeoJSON to Leaflet
_GEOJSON = re.compile(r"geo_json_\w+_add\((?=\{)")
#: folium's Tooltip text (a template literal holding a div)
_TOOLTIP = re.compile(r"bindTooltip\(\s*`<div>(.*?)</div>`", re.S)


@dataclass(frozen=True)
class Finding:
    """One thing a published file should not show: the file, where in it, and what."""

    file: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.what}"


def _number(text: str) -> float | None:
    try:
        return float(re.sub(r"[,\u202f\u00a0 ]", "", str(text)))
    except ValueError:
        return None


def _text_findings(text: str, k: int, where: str) -> list[tuple[str, str]]:
    """Counts below ``k`` and non-finite figures in running text."""
    out = []
    for m in _TEXT_COUNT.finditer(text):
        v = _number(m.group(1))
        if v is not None and v < k:
            out.append((where, f"count below k in text: {m.group(0)!r}"))
    out += [
        (where, f"non-finite figure in text: {m.group(0)!r}") for m in _NON_FINITE.finditer(text)
    ]
    return out


def _table_findings(table: Any, k: int, where: str) -> list[tuple[str, str]]:
    """Counts below ``k`` and rebuildable suppressed cells in one HTML table."""
    heads = [th.get_text(" ", strip=True) for th in table.select("thead th")]
    out = []
    label = suppressed_label(k)
    for i, tr in enumerate(table.select("tbody tr")):
        cells = [td.get_text(" ", strip=True) for td in tr.find_all(["td", "th"])]
        row = dict(zip(heads, cells, strict=False)) if len(heads) == len(cells) else {}
        counts = {h: v for h, v in row.items() if is_count_name(h.replace(" ", "_"))}
        for h, v in counts.items():
            num = _number(v)
            if num is not None and num < k:
                out.append((f"{where} row {i}", f"count below k: {h} = {v}"))
        if label in counts.values():
            out += [
                (f"{where} row {i}", f"{h} = {v} beside a suppressed count")
                for h, v in row.items()
                if is_derived_name(h) and _number(v) is not None
            ]
        out += _text_findings(" ".join(cells), k, f"{where} row {i}")
    return out


def _json_findings(obj: Any, k: int) -> list[tuple[str, str]]:
    out = [(p, "count below k") for p in find_unsuppressed(obj, k)]
    out += [(p, "figure beside a suppressed count") for p in find_derivable(obj, k)]
    out += _non_finite_json(obj, "$")
    return out


def _non_finite_json(obj: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        return [f for key, v in obj.items() for f in _non_finite_json(v, f"{path}.{key}")]
    if isinstance(obj, list):
        return [f for i, v in enumerate(obj) for f in _non_finite_json(v, f"{path}[{i}]")]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [(path, f"non-finite number {obj}")]
    if isinstance(obj, str) and _NON_FINITE.fullmatch(obj.strip()):
        return [(path, f"non-finite figure {obj!r}")]
    return []


def _frame_findings(doc: str, k: int, where: str) -> list[tuple[str, str]]:
    """A map frame: its zones' tooltip fields and its tooltips' text."""
    out = []
    for m in _GEOJSON.finditer(doc):
        try:
            data, _ = json.JSONDecoder().raw_decode(doc, m.end())
        except json.JSONDecodeError:
            out.append((where, "map data that is not JSON"))
            continue
        props = [f.get("properties", {}) for f in data.get("features", [])]
        for j, p in enumerate(props):
            p = {key: _number(v) if _number(v) is not None else v for key, v in p.items()}
            out += [(f"{where} feature {j}.{a}", b) for a, b in _json_findings(p, k)]
    for m in _TOOLTIP.finditer(doc):
        out += _text_findings(html.unescape(m.group(1)), k, f"{where} tooltip")
    return out


def _html_findings(page: str, k: int) -> list[tuple[str, str]]:
    """A published page: its tables, its text and its map frames."""
    soup = BeautifulSoup(page, "html.parser")
    out = []
    for i, doc in enumerate(_SRCDOC.findall(page)):
        out += _frame_findings(html.unescape(doc), k, f"map {i}")
    for i, table in enumerate(soup.find_all("table")):
        out += _table_findings(table, k, f"table {i}")
        table.decompose()
    for tag in soup(["script", "style", "iframe"]):
        tag.decompose()
    out += _text_findings(soup.get_text(" "), k, "text")
    return out


def _notebook_html(path: Path) -> str:
    """The HTML and Markdown outputs of an executed notebook, as one page."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            for mime in ("text/html", "text/markdown"):
                if mime in data:
                    val = data[mime]
                    parts.append("".join(val) if isinstance(val, list) else str(val))
    return "\n".join(parts)


def _store_facts(store: Store) -> tuple[set[str], set[str]]:
    """The store's incident ids and the column names ingest left out."""
    inc = store.validated("incidents")
    ids = set() if inc is None else set(inc["incident_id"].astype(str))
    report = store.read_json("ingest_report.json") or {}
    ignored = {
        str(c)
        for src in report.get("sources", {}).values()
        if isinstance(src, dict)
        for c in src.get("ignored_columns", []) or []
    }
    return ids, ignored


def _identifier_findings(text: str, ids: set[str], ignored: set[str]) -> list[tuple[str, str]]:
    tokens = {t for pat in (r"\w+", r"[\w-]+", r"[\w./-]+") for t in re.findall(pat, text)}
    out = [("anywhere", f"incident id {t!r}") for t in sorted(tokens & ids)]
    for col in sorted(ignored):
        if re.search(rf"[\"'>]{re.escape(col)}[\"'<]", text):
            out.append(("anywhere", f"non-canonical column {col!r} as a key or header"))
    return out


def audit_reports(reports_dir: str | Path, store: str | Path | Store, *, k: int) -> list[Finding]:
    """Everything under ``reports_dir`` that shows what a report must not (empty: clean).

    Parameters
    ----------
    reports_dir
        The reports folder (``index.html`` and ``<kind>/<id>/``); ``_``- and ``.``-folders
        (failed runs, screenshots, temporary folders) are left out.
    store
        The store the reports were made from (its incident ids and ingest report).
    k
        The suppression threshold the reports were made with.
    """
    st = store if isinstance(store, Store) else Store(store)
    ids, ignored = _store_facts(st)
    root = Path(reports_dir)
    found: list[Finding] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(p.startswith(("_", ".")) for p in rel.parts[:-1]):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        pairs: list[tuple[str, str]] = []
        if path.suffix == ".json":
            data = json.loads(text)
            pairs += _json_findings(data.get("figures", data), k)
        elif path.suffix == ".html":
            pairs += _html_findings(text, k)
        elif path.suffix == ".ipynb":
            pairs += _html_findings(_notebook_html(path), k)
        else:
            continue
        pairs += _identifier_findings(text, ids, ignored)
        found += [Finding(rel.as_posix(), where, what) for where, what in pairs]
    return found


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """The findings as a table (file, where, what)."""
    return pd.DataFrame([f.__dict__ for f in findings], columns=["file", "where", "what"])
