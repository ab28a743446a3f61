"""The four reports of the tiny demo as a reader sees them: headless Chromium at 1 280 px, and
the brief printed to PDF (issue 15, "Look at what you ship").

In a copy of each report a probe script (allowed by the page's Content-Security-Policy through
its hash, as in tests/test_browser.py) measures, after the maps have drawn:

- every element's right edge against the page's width at 1 280 px (none may stick out, and the
  page may not scroll sideways);
- the text of every header (table headers and headings): none may hold an underscore (a code
  name, e.g. ``q_value``);
- every table row: a zone code in a row comes with the zone's name;
- every map frame: a legend, in words.

The brief's PDF (``--pdf``, :func:`pipelines.reports.export.print_pdf`) must hold the hour-by-hour
table whole: for each hour, its rescuers, rescue level, agents and entry lanes, read back from
the PDF's text (pypdf) and compared with the report's summary.json. A control page without the
print stylesheet loses those columns, so the check can fail.

Skipped, with the reason, where Chromium is absent (it is present in CI).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_browser import _script_text, allow_probe, chromium, run_chromium  # noqa: F401

pytestmark = pytest.mark.browser

KINDS = ("weekly", "event-brief", "evaluation", "explore")
WIDTH = 1280

#: after load and the maps' drawing: what sticks out, the headers, the rows and the legends
PROBE = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var W = document.documentElement.clientWidth;
    var wide = [];
    Array.prototype.forEach.call(document.querySelectorAll("body *"), function (el) {
      var r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > W + 1) {
        wide.push(el.tagName + "." + String(el.className).slice(0, 40) + " " +
                  Math.round(r.right) + "px");
      }
    });
    var text = function (el) { return (el.innerText || el.textContent || "").trim(); };
    var headers = Array.prototype.map.call(
      document.querySelectorAll("th, h1, h2, h3, h4, h5, h6"), text);
    var rows = Array.prototype.map.call(document.querySelectorAll("tr"), function (tr) {
      return Array.prototype.map.call(tr.querySelectorAll("td, th"), text);
    });
    var maps = Array.prototype.map.call(document.querySelectorAll("iframe"), function (f) {
      try {
        var legends = f.contentDocument.querySelectorAll(".vigie-legend");
        return {legends: Array.prototype.map.call(legends, function (l) {
          return l.textContent; })};
      } catch (e) { return {error: String(e)}; }
    });
    var out = {width: W, scroll: document.documentElement.scrollWidth, wide: wide,
               headers: headers, rows: rows, maps: maps};
    var pre = document.createElement("pre");
    pre.id = "vigie-layout";
    pre.textContent = JSON.stringify(out);
    pre.style.display = "none";
    document.body.appendChild(pre);
  }, 2500);
});
</script>
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny city's four reports (shared build with tests/test_reports.py)."""
    from tests._tiny_reports import build

    return build(tmp_path_factory.getbasetemp() / "vigie_tiny")


@pytest.fixture(scope="module")
def zone_names(tiny) -> dict[str, str]:
    from features.store import Store

    z = Store(tiny["store"]).zones()
    return dict(zip(z["zone_id"].astype(str), z["name"].astype(str), strict=True))


def layout(exe: str, page: Path, tmp: Path) -> dict:
    """What the probe measured on a copy of ``page`` opened 1 280 px wide."""
    html = allow_probe(page.read_text(encoding="utf-8"), _script_text(PROBE))
    copy = page.with_name(page.stem + ".layout.html")
    copy.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        proc = run_chromium(
            exe,
            copy.as_uri(),
            tmp,
            f"--window-size={WIDTH},900",
            "--virtual-time-budget=15000",
            "--dump-dom",
        )
    finally:
        copy.unlink()
    m = re.search(r'<pre id="vigie-layout"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the probe did not run on {page}; chromium stderr: {proc.stderr[-2000:]}"
    from html import unescape

    return json.loads(unescape(m.group(1)))


@pytest.fixture(scope="module")
def measured(chromium, tiny, tmp_path_factory) -> dict[str, dict]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("layout")
    return {k: layout(chromium, Path(tiny["made"][k]["html"]), tmp) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_wider_than_the_page_at_1280px(measured, kind):
    m = measured[kind]
    assert m["width"] >= WIDTH - 20, m["width"]  # the window was 1 280 px wide
    assert m["scroll"] <= m["width"], f"{kind}: the page scrolls sideways ({m['scroll']} px)"
    assert m["wide"] == [], f"{kind}: elements beyond the page's right edge: {m['wide'][:10]}"


@pytest.mark.parametrize("kind", KINDS)
def test_no_header_holds_a_code_name(measured, kind):
    headers = measured[kind]["headers"]
    assert headers, f"{kind}: no header found (is the probe blind?)"
    bad = [h for h in headers if "_" in h]
    assert bad == [], f"{kind}: headers with an underscore: {bad}"


@pytest.mark.parametrize("kind", KINDS)
def test_zone_codes_come_with_their_names(measured, zone_names, kind):
    code = re.compile(r"(?<![\d.])(" + "|".join(map(re.escape, zone_names)) + r")(?![\d.])")
    missing = []
    for row in measured[kind]["rows"]:
        line = " | ".join(row)
        for zid in set(code.findall(line)):
            if zone_names[zid] not in line:
                missing.append((zid, line[:120]))
    assert missing == [], f"{kind}: zone codes without their name: {missing[:5]}"


def test_the_weekly_table_names_zones(measured, zone_names):
    """Control: the weekly report's signals table does show zone codes (the check above sees
    them)."""
    rows = [" | ".join(r) for r in measured["weekly"]["rows"]]
    assert any(any(z in r and n in r for z, n in zone_names.items()) for r in rows)


@pytest.mark.parametrize("kind", ["weekly", "event-brief"])
def test_every_map_has_a_legend_in_words(measured, kind):
    maps = measured[kind]["maps"]
    assert maps, f"{kind}: no map"
    for i, m in enumerate(maps):
        assert "error" not in m, m
        assert m["legends"], f"{kind}: map {i} has no legend"
        for text in m["legends"]:
            # words (e.g. "under 50 % of usual", "about as usual"), not bare class bounds
            assert re.search(r"usual|expected|no data", text), text
            assert not re.search(r"-?\d+\.\d+\s*–\s*-?\d+\.\d+", text), text


def _hour_lines(pdf: Path) -> dict[str, str]:
    """The PDF's text lines that start with a local hour (the hour-by-hour table's rows)."""
    import pypdf

    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    return {ln[:5]: ln for ln in text.splitlines() if re.match(r"^\d\d:\d\d \w", ln)}


def _staffing_ok(lines: dict[str, str], hours: list[dict]) -> list[str]:
    """Hours whose PDF line does not end with its rescuers, rescue level, agents and lanes."""
    bad = []
    for h in hours:
        want = f"{h['rescuers']} {h['dps_tier']} {h['agents']} {h['entry_lanes']}"
        line = lines.get(h["hour (local)"], "")
        if not line.rstrip().endswith(want):
            bad.append(f"{h['hour (local)']}: {line!r} (expected to end with {want!r})")
    return bad


def test_the_brief_pdf_keeps_the_staffing_columns(chromium, tiny, tmp_path):  # noqa: F811
    from pipelines.reports.export import print_pdf

    page = Path(tiny["made"]["event-brief"]["html"])
    hours = json.loads(Path(tiny["made"]["event-brief"]["summary"]).read_text())["figures"]["hours"]
    assert hours and {"rescuers", "agents", "entry_lanes"} <= set(hours[0])
    pdf = print_pdf(page, tmp_path / "brief.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert _staffing_ok(_hour_lines(pdf), hours) == []
    # control: the same page without its print stylesheet, in a scrolling frame, loses them
    bare = re.sub(
        r'<style id="vigie-page">.*?</style>',
        "<style>.jp-OutputArea-output{overflow-x:auto} table{font-size:14pt;"
        "white-space:nowrap}</style>",
        page.read_text(encoding="utf-8"),
        flags=re.S,
    )
    (tmp_path / "bare.html").write_text(bare, encoding="utf-8")
    cut = print_pdf(tmp_path / "bare.html")
    assert _staffing_ok(_hour_lines(cut), hours) != []


def test_screenshots_of_the_four_reports_are_small_pngs(chromium, tiny, tmp_path):  # noqa: F811
    """`vigie report screenshots` (make screenshots): one PNG per kind, 1 280 px drawn at 0.75."""
    import struct

    from pipelines.reports.index import SHOT_KINDS, shoot_reports

    shots = shoot_reports(tiny["reports"], tmp_path / "img", height=900)
    assert [p.name for p in shots] == [f"{k}.png" for k in SHOT_KINDS]
    for p in shots:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (960, 675), (p, width, height)
        assert 10_000 < len(data) < 600_000, (p, len(data))
