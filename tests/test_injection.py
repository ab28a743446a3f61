"""Text from data is escaped wherever a report publishes it (issue 14, injection).

Unit checks of each escape (tables, Markdown, map tooltips, the index), the sandbox of map
frames and the report pages' Content-Security-Policy. The end-to-end check, a study whose names
hold payloads opened in headless Chromium, is tests/test_injection_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re

import geopandas as gpd
import pandas as pd
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from shapely.geometry import box

from pipelines.reports import publish
from pipelines.reports.export import (
    content_security_policy,
    inline_scripts,
    sandbox_iframes,
    with_csp,
)
from pipelines.reports.index import index_page
from pipelines.reports.maps import to_html, tooltip_text, zones_map

#: one name holding the ways in: a tag with a handler, a script end, a template literal
PAYLOAD = (
    '<img class="vigie-xss" src=x onerror="alert(1)">'
    "</script><script>alert(2)</script>`${alert(3)}`\\u0061 [link](javascript:alert(4)) **b**"
)


def _tags(fragment: str) -> list[str]:
    """Element names that a fragment of HTML would create (ignoring the text)."""
    return re.findall(r"<\s*([a-zA-Z][\w-]*)", fragment)


def test_table_escapes_cells_and_headers():
    """publish.table writes names from data as text: no tag from a cell or a column name."""
    df = pd.DataFrame({"event": [PAYLOAD], PAYLOAD: [1.5], "incidents": [3]})
    page = publish.table(df, 10).to_html()
    assert "<img" not in page and "<script" not in page
    assert html.escape('<img class="vigie-xss"', quote=True) in page
    assert "&lt;10" in page  # and the count is suppressed


def test_markdown_text_renders_as_text():
    """md_text: a name in a Markdown cell renders as its own characters, no tag, link or bold."""
    out = markdown2html_mistune(f"**{publish.md_text(PAYLOAD)}** and _{publish.md_text('a_b*')}_")
    inner = out.removeprefix("<p><strong>").split("</strong>")[0]
    assert _tags(inner) == []
    assert html.unescape(inner) == " ".join(PAYLOAD.split())
    assert "<a " not in out and "<em>a_b*</em>" in out
    # a newline in a name cannot open a block (heading, list)
    assert "<h1>" not in markdown2html_mistune(publish.md_text("x\n# heading\n- item"))


def test_tooltip_text_is_inert_in_html_and_in_a_template_literal():
    """Tooltip text: no tag, and none of ` $ \\ that end or evaluate a JavaScript template literal."""
    t = tooltip_text(PAYLOAD)
    assert _tags(t) == [] and not set(t) & set("`$\\<>")
    assert html.unescape(t) == PAYLOAD


@pytest.fixture
def hostile_zones() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"zone_id": ["Z0", "Z<1>"], "name": [PAYLOAD, "ok"]},
        geometry=[box(2.30, 48.85, 2.31, 48.86), box(2.31, 48.85, 2.32, 48.86)],
        crs=4326,
    )


def test_map_tooltips_and_geojson_fields_are_escaped(hostile_zones):
    """Zone names (GeoJsonTooltip's innerHTML), stop, venue and lamp names (Tooltip's template
    literal) reach the map page escaped; the page keeps the payload's text."""
    m = zones_map(
        hostile_zones,
        pd.DataFrame({"zone_id": ["Z0", "Z<1>"], "incidents": [30, 40], "present_ratio": [1, 2]}),
        signals=["Z<1>"],
        lamps_out=pd.DataFrame({"latitude": [48.855], "longitude": [2.305], "lamp_id": [PAYLOAD]}),
        stops=pd.DataFrame({"stop_lat": [48.853], "stop_lon": [2.315], "stop_name": [PAYLOAD]}),
        venue={"latitude": 48.855, "longitude": 2.31, "radius_m": 300, "name": PAYLOAD},
    )
    page = to_html(m)
    # the payload never ends a script early: the page's scripts are Leaflet and folium's own
    assert "</script><script>alert(2)" not in page
    assert not any(s.startswith("alert(2)") for s in inline_scripts(page))
    literals = re.findall(r"bindTooltip\(\s*`(.*?)`", page, re.S)
    assert len(literals) == 5  # signal ring, lamp, stop, venue ring, venue
    for literal in literals:
        assert not set(literal) & set("$\\`") and _tags(literal) == ["div"]
    geo = json.loads(re.search(r"geo_json_\w+_add\((\{.*?\})\);", page, re.S).group(1))
    zones = [f["properties"]["zone"] for f in geo["features"]]
    assert all(_tags(z) == [] for z in zones)
    assert html.unescape(zones[0]) == f"{PAYLOAD} (Z0)"


def test_map_frame_is_sandboxed(hostile_zones):
    """In a notebook (and so in a report) the map is an iframe sandboxed to its own scripts."""
    frame = zones_map(hostile_zones)._repr_html_()
    assert frame.startswith('<iframe sandbox="allow-scripts" srcdoc=')
    assert sandbox_iframes(frame) == frame  # never sandboxed twice
    assert sandbox_iframes('<iframe srcdoc="x">') == '<iframe sandbox="allow-scripts" srcdoc="x">'


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_csp_allows_the_page_scripts_by_hash_and_nothing_inline():
    """The policy lists the hash of each script of the page and of its frames, and no
    'unsafe-inline' (so inline event handlers and javascript: URLs are refused)."""
    frame = "<html><head><script>var inFrame = 1;</script></head></html>"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><script>var a = 1;</script></head>"
        f'<body><iframe srcdoc="{html.escape(frame)}"></iframe></body></html>'
    )
    csp = content_security_policy(page)
    assert _sha("var a = 1;") in csp and _sha("var inFrame = 1;") in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp
    out = with_csp(page)
    head = out.index("<head>") + len("<head>")
    assert out[head:].startswith('<meta http-equiv="Content-Security-Policy"')
    assert content_security_policy("<p>no script</p>").startswith("script-src 'none'")


def test_index_is_escaped_and_runs_no_script(tmp_path):
    """index.html escapes titles and parameters and its policy allows no script at all."""
    row = {
        "kind": "event-brief",
        "id": "x",
        "title": PAYLOAD,
        "generated_at": "2026-01-01",
        "href": "event-brief/x/report.html",
        "parameters": {"event_id": PAYLOAD},
    }
    page = index_page([row], [])
    body = page.split("<body>", 1)[1]
    assert "<img" not in body and "<script" not in body
    assert "default-src 'none'" in page and "script-src" not in page
