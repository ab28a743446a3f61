"""The reports' ``index.html``: every report, newest first, and the recent failed runs.

Every text is escaped, and the page's Content-Security-Policy (:data:`INDEX_CSP`) lets no script
run at all.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
from pathlib import Path
from typing import Any

from pipelines.reports.export import screenshot

_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;"
    "border-bottom:1px solid #ddd;text-align:left}th{background:#f4f4f4}"
    ".muted{color:#777;font-size:.9em}</style>"
)


#: the index runs no script at all and loads nothing but its own inline style
INDEX_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _row(summary_path: Path) -> dict[str, Any] | None:
    """The index line of one report, from its summary.json (None when unreadable)."""
    try:
        s = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    folder, kind_dir = summary_path.parent, summary_path.parent.parent
    return {
        "kind": s.get("kind", kind_dir.name),
        "id": s.get("id", folder.name),
        "title": s.get("title", folder.name),
        "generated_at": s.get("generated_at", ""),
        "href": f"{kind_dir.name}/{folder.name}/report.html",
        "pdf": (folder / "report.pdf").exists(),
        "parameters": s.get("provenance", {}).get("parameters", {}),
    }


def list_reports(reports_dir: str | Path) -> list[dict[str, Any]]:
    """Every report under ``reports_dir`` (from its summary.json), newest first."""
    rows = []
    for summ in Path(reports_dir).glob("*/*/summary.json"):
        if summ.parent.parent.name.startswith(("_", ".")) or summ.parent.name.startswith(
            (".", "_")
        ):
            continue
        row = _row(summ)
        if row is not None:
            rows.append(row)
    rows.sort(key=lambda r: (r["generated_at"], r["kind"], r["id"]), reverse=True)
    return rows


def _report_line(r: dict[str, Any]) -> str:
    esc = html.escape
    params = ", ".join(
        f"{k}={v}" for k, v in r["parameters"].items() if k not in ("store", "reports_dir")
    )
    return (
        f"<tr><td>{esc(str(r['generated_at']))}</td><td>{esc(str(r['kind']))}</td>"
        f'<td><a href="{esc(r["href"])}">{esc(str(r["title"]))}</a>'
        + (
            f' <a class="muted" href="{esc(r["href"].removesuffix(".html") + ".pdf")}">PDF</a>'
            if r.get("pdf")
            else ""
        )
        + "</td>"
        f'<td class="muted">{esc(params)}</td></tr>'
    )


def _failed_lines(failed: list[Path]) -> list[str]:
    if not failed:
        return []
    esc = html.escape
    lines = ["<h2>Recent failed runs</h2><ul>"]
    for f in failed:
        first = f.read_text(encoding="utf-8", errors="replace").splitlines()[:2]
        lines.append(
            f'<li><a href="_failed/{esc(f.name)}">{esc(f.name)}</a> '
            f'<span class="muted">{esc(" — ".join(first))}</span></li>'
        )
    return [*lines, "</ul>"]


def index_page(rows: list[dict[str, Any]], failed: list[Path]) -> str:
    """The HTML of the index: one line per report (``rows`` of :func:`list_reports`), then the
    failed runs' ``.error.txt`` files with their first two lines."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{INDEX_CSP}">',
        "<title>vigie reports</title>",
        f"{_STYLE}</head><body>",
        "<h1>vigie reports</h1>",
        f'<p class="muted">{len(rows)} report(s), newest first. Generated {html.escape(now)}.</p>',
        "<table><thead><tr><th>generated (UTC)</th><th>kind</th><th>report</th>"
        "<th>parameters</th></tr></thead><tbody>",
        *(_report_line(r) for r in rows),
        "</tbody></table>",
        *_failed_lines(failed),
        "</body></html>",
    ]
    return "\n".join(lines) + "\n"


def write_index(reports_dir: str | Path) -> Path:
    """Regenerate ``reports_dir/index.html``: one line per report, newest first (atomic write)."""
    root = Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    failed = sorted((root / "_failed").glob("*.error.txt"), reverse=True)[:20]
    page = index_page(list_reports(root), failed)
    path = root / "index.html"
    tmp = root / f".index.html.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


#: the report kinds pictured by :func:`shoot_reports`, in the README's order
SHOT_KINDS = ("weekly", "event-brief", "evaluation", "explore")


def shoot_reports(
    reports_dir: str | Path,
    out_dir: str | Path,
    *,
    width: int = 1280,
    height: int = 1800,
    scale: float = 0.75,
) -> list[Path]:
    """A PNG of the newest report of each kind (``out_dir/<kind>.png``): the top ``height``
    pixels of the page opened ``width`` pixels wide, drawn at ``scale`` (the README's pictures,
    kept small). Raises :class:`~pipelines.reports.errors.ReportError` when a kind has no
    report or no Chromium is found."""
    from pipelines.reports.errors import ReportError

    rows = list_reports(reports_dir)
    shots = []
    for kind in SHOT_KINDS:
        row = next((r for r in rows if r["kind"] == kind), None)
        if row is None:
            raise ReportError(f"{reports_dir}: no {kind} report to picture; run `make demo` first.")
        page = Path(reports_dir) / row["href"]
        shots.append(
            screenshot(
                page,
                Path(out_dir) / f"{kind}.png",
                width=width,
                height=height,
                extra=(f"--force-device-scale-factor={scale:g}",),
            )
        )
    return shots
