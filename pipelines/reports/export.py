"""The executed notebook as one offline HTML page, and the summary payloads it emitted.

The page is nbconvert's ``HTMLExporter(exclude_input=True)`` (the ``--no-input`` flag): the
reader sees figures, tables, maps and text but no code, and nothing is loaded from a network.
The figures of ``summary.json`` are the payloads the notebook displayed with the MIME type
:data:`pipelines.reports.publish.SUMMARY_MIME`; they are taken out of the page.

References
----------
nbconvert ``--no-input``: https://nbconvert.readthedocs.io (``TemplateExporter.exclude_input``).
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from nbconvert import HTMLExporter

from pipelines.reports.publish import SUMMARY_MIME

_EXTERNAL_TAG = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']https?://[^\"']*[\"'][^>]*>\s*</script>"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']https?://[^\"']*[\"'][^>]*/?>",
    re.IGNORECASE,
)
_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_MERMAID = re.compile(
    r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>", re.S
)


def external_resources(page: str) -> list[str]:
    """Scripts and styles a page would load from the network (should be empty for a report).

    Looks at ``<script src>`` and ``<link href>`` in the page and in the ``srcdoc`` of its
    iframes (where folium maps live).
    """
    found = [m.group(0) for m in _EXTERNAL_TAG.finditer(page)]
    for doc in re.findall(r'srcdoc="([^"]*)"', page):
        found += [m.group(0) for m in _EXTERNAL_TAG.finditer(html.unescape(doc))]
    return found


def export_html(nb: Any, *, title: str) -> str:
    """The executed notebook as one HTML page with code hidden and no network resources.

    nbconvert's ``lab`` template with ``exclude_input=True`` (the ``--no-input`` flag); the
    MathJax, require.js and mermaid loaders it links from CDNs are dropped (reports carry no
    LaTeX, widgets or diagrams), so the page opens on a network without internet.
    """
    exporter = HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    body = _EXTERNAL_TAG.sub("", body)
    # MathJax is configured by an inline script that only makes sense with MathJax loaded
    body = _MATHJAX.sub("", body)
    # the mermaid loader imports its library from a CDN (only when a diagram is present)
    return _MERMAID.sub("", body)


def _payload(output: Any) -> dict[str, Any] | None:
    """The summary payload an output carries, or None."""
    if output.get("output_type") != "display_data":
        return None
    data = output.get("data", {})
    if SUMMARY_MIME not in data:
        return None
    payload = data[SUMMARY_MIME]
    return json.loads(payload) if isinstance(payload, str) else payload


def collect_summaries(nb: Any) -> tuple[dict[str, Any], int]:
    """Merge, in order, the summary payloads the notebook emitted, and remove them from its
    outputs (they go to ``summary.json``, not the page).

    Returns
    -------
    (dict, int)
        The merged figures and how many payloads there were.
    """
    merged: dict[str, Any] = {}
    n = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            payload = _payload(out)
            if payload is None:
                kept.append(out)
            else:
                merged.update(payload)
                n += 1
        cell["outputs"] = kept
    return merged, n
