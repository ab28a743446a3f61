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
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from nbconvert import HTMLExporter

from pipelines.reports.errors import ReportError
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


# -- headless Chromium: the report as PDF and as a picture ------------------------------------
#: executables tried in turn (``VIGIE_CHROMIUM`` first when set)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: a headless run that reaches no network service of its own (the page is a local file)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

#: what a user is told when no Chromium is found
CHROMIUM_HINT = (
    "--pdf and the screenshots need headless Chromium: install it (Debian/Ubuntu: "
    "`apt-get install chromium`) or set VIGIE_CHROMIUM to a Chromium or Chrome executable."
)


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable: ``$VIGIE_CHROMIUM``, else the first of
    :data:`CHROMIUM_NAMES` on the PATH, else None."""
    env = os.environ.get("VIGIE_CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


def run_chromium(page: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """One headless Chromium run on a local page, with a fresh profile folder.

    Raises
    ------
    ReportError
        No Chromium found (:data:`CHROMIUM_HINT`), or the run failed or timed out.
    """
    exe = find_chromium()
    if exe is None:
        raise ReportError(f"no Chromium found. {CHROMIUM_HINT}")
    with tempfile.TemporaryDirectory(prefix="vigie-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra]
        try:
            proc = subprocess.run(
                [*cmd, Path(page).resolve().as_uri()],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ReportError(f"{page}: Chromium did not finish in {timeout:g} s.") from None
    if proc.returncode != 0:
        raise ReportError(f"{page}: Chromium failed: {proc.stderr.strip()[-500:]}")
    return proc


def _atomic_output(target: Path, suffix: str, *extra: str, page: Path, flag: str) -> Path:
    """Run Chromium writing to a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        run_chromium(page, *extra, f"{flag}={tmp}")
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise ReportError(f"{page}: Chromium wrote no {suffix} file.")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def print_pdf(page: Path, pdf: Path | None = None, *, settle_ms: int = 20000) -> Path:
    """Print a report page to PDF with headless Chromium (``report.pdf`` beside it by default).

    The page's print stylesheet (:data:`PAGE_STYLE`) sets A4 landscape and keeps every table
    whole; the maps are drawn first (``settle_ms`` of virtual time: Leaflet's zoom to the
    map's bounds is animated, and a page taken earlier shows it half done). Written atomically.

    Raises
    ------
    ReportError
        No Chromium (the message says how to install one), or Chromium failed.
    """
    page = Path(page)
    target = Path(pdf) if pdf is not None else page.with_suffix(".pdf")
    return _atomic_output(
        target,
        ".pdf",
        "--no-pdf-header-footer",
        f"--virtual-time-budget={int(settle_ms)}",
        page=page,
        flag="--print-to-pdf",
    )


def screenshot(
    page: Path,
    png: Path,
    *,
    width: int = 1280,
    height: int = 2400,
    settle_ms: int = 20000,
    extra: tuple[str, ...] = (),
) -> Path:
    """A PNG of the top ``height`` pixels of a page opened ``width`` pixels wide (Chromium);
    ``extra``: more Chromium flags (e.g. ``--force-device-scale-factor=0.75``)."""
    return _atomic_output(
        Path(png),
        ".png",
        f"--window-size={int(width)},{int(height)}",
        f"--virtual-time-budget={int(settle_ms)}",
        *extra,
        page=Path(page),
        flag="--screenshot",
    )
