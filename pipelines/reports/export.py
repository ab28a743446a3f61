"""The executed notebook as one offline HTML page, and the summary payloads it emitted.

The page is nbconvert's ``HTMLExporter(exclude_input=True)`` (the ``--no-input`` flag): the
reader sees figures, tables, maps and text but no code, and nothing is loaded from a network.
The figures of ``summary.json`` are the payloads the notebook displayed with the MIME type
:data:`pipelines.reports.publish.SUMMARY_MIME`; they are taken out of the page.

The page carries a Content-Security-Policy (:func:`content_security_policy`) whose
``script-src`` lists the SHA-256 of each script the export wrote (in the page and in its map
frames, which inherit the page's policy): no inline event handler (``onerror=``, ``onload=``…),
no ``javascript:`` URL, no ``eval`` and no script from elsewhere runs, even if a name from data
got through escaping. Map frames are sandboxed to scripts only (:func:`sandbox_iframes`).

References
----------
nbconvert ``--no-input``: https://nbconvert.readthedocs.io (``TemplateExporter.exclude_input``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
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


#: what a map's frame may do in a report: run its own scripts, nothing else (an opaque origin:
#: no access to the report page, no dialogs, no forms, no top-level navigation)
IFRAME_SANDBOX = "allow-scripts"

_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script\s*>", re.S | re.IGNORECASE)
_SRCDOC = re.compile(r'srcdoc="([^"]*)"')


def sandbox_iframes(page: str) -> str:
    """``page`` with every ``<iframe>`` that has no sandbox sandboxed (:data:`IFRAME_SANDBOX`)."""
    return re.sub(
        r"<iframe(?![^>]*\bsandbox=)(?=[\s>])", f'<iframe sandbox="{IFRAME_SANDBOX}"', page
    )


def inline_scripts(page: str) -> list[str]:
    """The text of every inline ``<script>`` of a page and of its iframes' ``srcdoc``."""
    found = _SCRIPT.findall(page)
    for doc in _SRCDOC.findall(page):
        found += inline_scripts(html.unescape(doc))
    return found


def content_security_policy(page: str) -> str:
    """The policy of a report page: its own scripts only, by hash (so inline event handlers,
    ``javascript:`` URLs and ``eval`` are refused), no plugins, no ``<base>``, no forms.

    References
    ----------
    W3C, *Content Security Policy Level 3*, §"script-src" and hash sources:
    https://www.w3.org/TR/CSP3/.
    """
    hashes = sorted(
        {
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
            for s in inline_scripts(page)
        }
    )
    return (
        f"script-src {' '.join(hashes) or chr(39) + 'none' + chr(39)}; object-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )


def with_csp(page: str) -> str:
    """``page`` with its :func:`content_security_policy` as the first element of ``<head>``."""
    meta = (
        '<meta http-equiv="Content-Security-Policy" '
        f'content="{html.escape(content_security_policy(page), quote=True)}">'
    )
    head = re.search(r"<head\b[^>]*>", page, re.IGNORECASE)
    if head is None:
        return meta + page
    return page[: head.end()] + meta + page[head.end() :]


def external_resources(page: str) -> list[str]:
    """Scripts and styles a page would load from the network (should be empty for a report).

    Looks at ``<script src>`` and ``<link href>`` in the page and in the ``srcdoc`` of its
    iframes (where folium maps live).
    """
    found = [m.group(0) for m in _EXTERNAL_TAG.finditer(page)]
    for doc in re.findall(r'srcdoc="([^"]*)"', page):
        found += [m.group(0) for m in _EXTERNAL_TAG.finditer(html.unescape(doc))]
    return found


_NO_ALT = 'alt="No description has been provided for this image"'


def figure_alts(nb: Any) -> list[str]:
    """Alt text of each image output, in page order: the image's own ``alt`` metadata, else
    the chart's place in the report (the section heading above it and its number there)."""
    alts: list[str] = []
    heading, n = "report", 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = re.findall(r"^#+\s*(.+)$", cell.source, re.M)
            if found:
                heading, n = found[-1].strip(), 0
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data and "image/jpeg" not in data:
                continue
            n += 1
            meta = out.get("metadata", {})
            own = (meta.get("image/png") or meta.get("image/jpeg") or {}).get("alt")
            alts.append(str(own) if own else f"Chart {n} of the section “{heading}”")
    return alts


def _with_alts(body: str, alts: list[str]) -> str:
    """The page with nbconvert's placeholder alt texts replaced by ``alts``, in order."""
    it = iter(alts)

    def sub(m: re.Match[str]) -> str:
        alt = next(it, None)
        return m.group(0) if alt is None else f'alt="{html.escape(alt, quote=True)}"'

    return re.sub(re.escape(_NO_ALT), sub, body)


def export_html(nb: Any, *, title: str) -> str:
    """The executed notebook as one HTML page with code hidden and no network resources.

    nbconvert's ``lab`` template with ``exclude_input=True`` (the ``--no-input`` flag); the
    MathJax, require.js and mermaid loaders it links from CDNs are dropped (reports carry no
    LaTeX, widgets or diagrams), so the page opens on a network without internet. Map frames
    are sandboxed and the page carries its Content-Security-Policy (:func:`with_csp`).
    """
    exporter = HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    nb.metadata["title"] = title
    alts = figure_alts(nb)
    # nbconvert warns of images without alt text, then writes a placeholder; each figure gets
    # its own alt text below, so the warning is noise (shown with -v only)
    exporter.log.setLevel(
        logging.DEBUG if logging.getLogger().isEnabledFor(logging.INFO) else logging.ERROR
    )
    body, _ = exporter.from_notebook_node(nb)
    body = _with_alts(body, alts)
    body = _EXTERNAL_TAG.sub("", body)
    # MathJax is configured by an inline script that only makes sense with MathJax loaded
    body = _MATHJAX.sub("", body)
    # the mermaid loader imports its library from a CDN (only when a diagram is present)
    body = sandbox_iframes(_MERMAID.sub("", body))
    return with_csp(_with_page_style(body))


#: the report's own style: tables fit the page on screen, and print whole on A4 landscape
PAGE_STYLE = """<style id="vigie-page">
.jp-RenderedHTMLCommon table { max-width: 100%; }
.jp-OutputArea-output { overflow-x: auto; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { text-align: left; }
@media print {
  @page { size: A4 landscape; margin: 10mm; }
  body { font-size: 9pt; }
  .jp-OutputArea-output { overflow: visible; }
  .jp-RenderedHTMLCommon table { font-size: 7.5pt; width: 100%; table-layout: auto;
                                  page-break-inside: auto; }
  .jp-RenderedHTMLCommon tr { page-break-inside: avoid; }
  .jp-RenderedHTMLCommon thead { display: table-header-group; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { padding: 1px 4px; }
  iframe { max-width: 100%; }
}
</style>"""


def _with_page_style(page: str) -> str:
    """``page`` with :data:`PAGE_STYLE` at the end of ``<head>``."""
    at = page.lower().rfind("</head>")
    return page + PAGE_STYLE if at < 0 else page[:at] + PAGE_STYLE + page[at:]


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
