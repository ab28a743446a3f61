"""``reports/live/index.html``: the live page, self-contained and refreshing itself.

A map of the zones (inline SVG, no script) coloured by present / reference at the newest slot,
the open alerts, each running event's crowd against its brief's forecast hour by hour, and
"no data since HH:MM" when the feed stops. Counts below k read "<k" and the figures that would
give them back (ratio, z) read "c", the zone then left uncoloured; every text is escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store import write_text_atomic
from pipelines.reports.publish import suppress_value

_CSP = "default-src 'none'; style-src 'unsafe-inline'"
#: ratio bins and their colours (drop ... surge)
_BINS = [
    (0.67, "#2c7bb6"),
    (0.9, "#abd9e9"),
    (1.1, "#f7f7f7"),
    (1.5, "#fdae61"),
    (np.inf, "#d7191c"),
]


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _colour(ratio: float, suppressed: bool) -> str:
    if suppressed or not np.isfinite(ratio):
        return "#dddddd"
    return next(c for b, c in _BINS if ratio < b)


def _shapes(zones, b: np.ndarray, sx: float) -> list[list[str]]:
    """Each zone's polygons as SVG points (exterior rings), computed once per zones frame."""
    cached = zones.attrs.get("_svg_points")
    if cached is not None and len(cached) == len(zones):
        return cached
    out = []
    for geom in zones.geometry:
        rings = []
        for g in getattr(geom, "geoms", [geom]):
            xy = np.asarray(g.exterior.coords)
            rings.append(
                " ".join(
                    f"{x:.1f},{y:.1f}"
                    for x, y in zip((xy[:, 0] - b[0]) * sx, (b[3] - xy[:, 1]) * sx)
                )
            )
        out.append(rings)
    zones.attrs["_svg_points"] = out
    return out


def _svg(zones, latest: pd.DataFrame, k: int) -> str:
    """The zones as SVG polygons (exterior rings), coloured by ratio, a title per zone."""
    b = zones.total_bounds
    w, h = 640.0, 640.0 * (b[3] - b[1]) / max(b[2] - b[0], 1e-9)
    sx = w / max(b[2] - b[0], 1e-9)
    pres = dict(zip(latest["zone_id"], latest["present"])) if len(latest) else {}
    ratios = dict(zip(latest["zone_id"], latest["ratio"])) if len(latest) else {}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}">']
    names = zones["name"] if "name" in zones.columns else zones["zone_id"]
    for zid, name, rings in zip(zones["zone_id"], names, _shapes(zones, b, sx)):
        present = float(pres.get(zid, np.nan))
        shown = suppress_value(present, k) if np.isfinite(present) else "no data"
        sup = isinstance(shown, str)
        ratio = float(ratios.get(zid, np.nan))
        fill = _colour(ratio, sup)
        tip = f"{name or zid} ({zid}): present {shown}"
        if not sup and np.isfinite(ratio):
            tip += f", ratio {ratio:.2f}"
        for pts in rings:
            parts.append(
                f'<polygon points="{pts}" fill="{fill}" stroke="#555" stroke-width="0.5">'
                f"<title>{_e(tip)}</title></polygon>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any, k: int, *, suppressed: bool = False, digits: int = 2) -> str:
    if suppressed:
        return "c"
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def _rows(zones, latest, alerts, events, local, k) -> tuple[list, list, list]:
    """The rows of the zones', alerts' and events' tables (counts suppressed)."""
    names = dict(zip(zones["zone_id"], zones["name"].fillna(zones["zone_id"])))
    zrows = []
    for r in latest.sort_values("ratio", ascending=False, na_position="last").itertuples():
        shown = suppress_value(r.present, k) if np.isfinite(r.present) else "no data"
        sup = isinstance(shown, str)
        zrows.append(
            [
                names.get(r.zone_id, r.zone_id),
                r.zone_id,
                shown,
                suppress_value(round(r.reference), k) if np.isfinite(r.reference) else "-",
                _fmt(r.ratio, k, suppressed=sup),
                _fmt(r.z, k, suppressed=sup, digits=1),
            ]
        )
    arows = [
        [
            a["zone_name"],
            a["zone_id"],
            a["kind"],
            local(pd.Timestamp(a["slot"])),
            a["present"],
            a["reference"],
            a["forecast"] if a["forecast"] is not None else "-",
            a["ratio"],
            a["z"],
            a["persistence"],
            a["explanation"],
        ]
        for a in alerts
    ]
    erows = [
        [
            e.event,
            local(e.hour),
            suppress_value(e.present, k) if np.isfinite(e.present) else "no data yet",
            suppress_value(round(e.forecast), k),
        ]
        for e in events.itertuples()
    ]
    return zrows, arows, erows


def render(
    path: Path,
    *,
    zones,
    latest: pd.DataFrame,
    alerts: list[dict[str, Any]],
    events: pd.DataFrame,
    last_slot_end: pd.Timestamp | None,
    now: pd.Timestamp,
    tz: str,
    k: int,
    gap: pd.Timedelta,
    refresh: int,
) -> Path:
    """Write the page (atomic)."""

    def local(t: pd.Timestamp) -> str:
        return t.tz_convert(tz).strftime("%Y-%m-%d %H:%M")

    if last_slot_end is None:
        status = "<p class='gap'>no data yet</p>"
    elif now - last_slot_end > gap:
        status = f"<p class='gap'>no data since {_e(last_slot_end.tz_convert(tz).strftime('%H:%M'))} ({_e(local(last_slot_end))})</p>"
    else:
        status = f"<p>data up to {_e(local(last_slot_end))}</p>"
    zrows, arows, erows = _rows(zones, latest, alerts, events, local, k)
    body = (
        f"<h1>Live presence</h1>{status}<p>updated {_e(local(now))}; colours: present / reference</p>"
        f"{_svg(zones, latest, k)}<h2>Open alerts ({len(arows)})</h2>"
        + _table(
            [
                "zone",
                "code",
                "kind",
                "slot",
                "present",
                "reference",
                "forecast",
                "ratio",
                "z",
                "slots",
                "explanation",
            ],
            arows,
        )
        + "<h2>Running events: crowd against the brief's forecast</h2>"
        + (_table(["event", "hour", "present", "forecast"], erows) if erows else "<p>none</p>")
        + "<h2>Zones at the newest slot</h2>"
        + _table(["zone", "code", "present", "reference", "ratio", "z"], zrows)
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        f"<meta http-equiv='refresh' content='{int(refresh)}'>"
        "<title>vigie live</title><style>body{font-family:sans-serif;margin:1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".gap{color:#b00;font-weight:bold}</style></head><body>"
        f"{body}</body></html>"
    )
    return write_text_atomic(path, page)
