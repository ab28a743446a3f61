"""A study whose names are attacks, opened in a real browser (issue 14, injection).

The tiny synthetic city's raw files are copied and their names replaced by HTML/JavaScript
payloads: every zone name (GeoJSON), every event name (the events file), an incident category,
every GTFS stop name, and an event given as a YAML file (its name and category). The whole chain
runs on them (ingest, cube, fit, signals, briefs) and every report is made: weekly, both event
briefs, evaluation, explore, and the index.

Headless Chromium then opens each page with the defences that are not escaping taken off (the
Content-Security-Policy removed, the map frames given the page's origin and the right to open
dialogs), so that only escaping stands between a payload and the reader. A probe hovers every
interactive map element and opens every tooltip and popup through Leaflet, then reports the
dialogs opened (``alert``, ``confirm``, ``prompt`` and ``print`` are recorded in the page and
in every frame before any other script runs), the payload elements found in the DOM at any
moment, and the text shown. The test asserts no dialog and no payload element, and that the
payloads' text is shown (escaped, not dropped). A second test keeps the policy and checks that
it refuses an inline event handler planted in a real report page while the maps still draw.
"""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.test_browser import allow_probe, chromium, console_errors, run_chromium  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def payload(tag: str) -> str:
    """One name holding the ways in, labelled ``tag``: the end of the page title, a tag with a
    handler, the end of a script and a new one, a template-literal substitution and a stray backtick, an SVG handler,
    Markdown that would make a link."""
    return (
        f"</title><img class=vigie-xss src=x onerror=alert('{tag}')>"
        f"</script><script class=vigie-xss>alert('{tag}')</script>"
        f"`${{alert('{tag}')}}` <svg class=vigie-xss onload=alert('{tag}')></svg>"
        f"[{tag}](javascript:alert('{tag}'))"
    )


TAGS = ("zone", "event", "category", "stop", "yaml", "yamlcat")


def _edit_raw(raw: Path) -> None:
    """Put the payloads into the tiny city's raw files (the synthetic city's own layout)."""
    zones_path = raw / "zones_iris.geojson"
    gj = json.loads(zones_path.read_text(encoding="utf-8"))
    for f in gj["features"]:
        f["properties"]["nom"] = payload("zone") + " " + f["properties"]["nom"]
    zones_path.write_text(json.dumps(gj), encoding="utf-8")

    ev_path = raw / "evenements.csv"
    ev = pd.read_csv(ev_path, dtype=str, keep_default_na=False)
    ev["intitule"] = payload("event") + " " + ev["intitule"]
    ev.to_csv(ev_path, index=False)

    for path in sorted((raw / "incidents").glob("*.csv")):
        inc = pd.read_csv(path, dtype=str, keep_default_na=False)
        inc["nature"] = inc["nature"].replace({"trouble_ordre_public": payload("category")})
        inc.to_csv(path, index=False)

    gtfs = raw / "transport" / "gtfs.zip"
    with zipfile.ZipFile(gtfs) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    stops = pd.read_csv(io.BytesIO(files["stops.txt"]), dtype=str, keep_default_na=False)
    stops["stop_name"] = payload("stop") + " " + stops["stop_name"]
    files["stops.txt"] = stops.to_csv(index=False).encode("utf-8")
    with zipfile.ZipFile(gtfs, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def _yaml_event(store: Path, path: Path) -> Path:
    """An event file whose name and category are payloads, at the largest event's venue."""
    import yaml

    from features.store import Store

    ev = Store(store).validated("events").sort_values("expected_attendance").iloc[-1]
    tz = Store(store).timezone
    start = ev["start"].tz_convert(tz)
    path.write_text(
        yaml.safe_dump(
            {
                "event_id": "yaml-evt",
                "name": payload("yaml"),
                "category": payload("yamlcat"),
                "start": f"{start:%Y-%m-%d %H:%M}",
                "end": f"{start + pd.Timedelta(hours=3):%Y-%m-%d %H:%M}",
                "expected_attendance": 3000,
                "venue": {"zone_id": str(ev["zone_id"])},
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return path


def build_hostile(base: Path) -> dict:
    """The tiny city with payloads in its names, the analyses and every report (cached)."""
    from features.cube import build_cube
    from features.ingest import ingest
    from features.store import Store
    from features.synth import generate
    from pipelines.events.brief import make_brief
    from pipelines.models import fit_all
    from pipelines.reports import catalog
    from pipelines.signals.run import parse_period, run_signals
    from tests._tiny_reports import last_full_week

    marker = base / "built.json"
    if marker.exists():
        return json.loads(marker.read_text())
    base.mkdir(parents=True, exist_ok=True)
    res = generate("tiny", base / "raw", seed=1)
    _edit_raw(base / "raw")
    store = base / "store"
    ingest(res.sources_yaml, store)
    build_cube(store)
    fit_all(Store(store), backtest_weeks=1, groups=["all"], xgb_rounds=20)
    week = last_full_week(store)
    run_signals(store, parse_period(week), n_sim=19)
    events = Store(store).validated("events")
    event_id = str(events.sort_values("expected_attendance").iloc[-1]["event_id"])
    make_brief(store, event_id)
    make_brief(store, _yaml_event(store, base / "event.yaml"))
    out = base / "reports"
    pages = [
        catalog.report_weekly(store, week=week, reports_dir=out).html,
        catalog.report_brief(store, event_id, reports_dir=out).html,
        catalog.report_brief(store, "yaml-evt", reports_dir=out).html,
        catalog.report_evaluation(store, reports_dir=out, report_id="hostile").html,
        catalog.report_explore(store, reports_dir=out, report_id="hostile").html,
        out / "index.html",
    ]
    info = {"store": str(store), "reports": str(out), "pages": [str(p) for p in pages]}
    marker.write_text(json.dumps(info))
    return info


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    return build_hostile(tmp_path_factory.getbasetemp() / "vigie_hostile")


#: first script of the page and of every frame: records dialogs instead of opening them
HOOK = (
    "<script>(function(){var t;try{t=window.top;t.__vx=t.__vx||[];}catch(e){t=window;"
    "window.__vx=[];}['alert','confirm','prompt','print'].forEach(function(n){"
    "window[n]=function(m){t.__vx.push(n+':'+String(m));};});})();</script>"
)

#: after load: hover every interactive element, open every tooltip and popup, report
PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var out = {marked: 0, frames: []}, texts = [document.body.innerText];
  function mark(d) { out.marked = Math.max(out.marked, d.querySelectorAll("[class*=vigie-xss]").length); }
  mark(document);
  Array.prototype.slice.call(document.querySelectorAll("iframe")).forEach(function (f) {
    var w = f.contentWindow, d = f.contentDocument, info = {hovered: 0, opened: 0};
    if (!d || !w.L) { out.frames.push({error: "no Leaflet in frame"}); return; }
    Array.prototype.slice.call(d.querySelectorAll(".leaflet-interactive")).forEach(function (el) {
      var r = el.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
      ["mouseover", "mousemove"].forEach(function (t) {
        el.dispatchEvent(new w.MouseEvent(t, {bubbles: true, clientX: x, clientY: y}));
      });
      info.hovered++; mark(d); texts.push(d.body.innerText);
      el.dispatchEvent(new w.MouseEvent("mouseout", {bubbles: true, clientX: x, clientY: y}));
    });
    Object.keys(w).forEach(function (k) {
      var m = w[k];
      if (!(m instanceof w.L.Map)) return;
      m.eachLayer(function (l) {
        if (l.getTooltip && l.getTooltip()) { l.openTooltip(); info.opened++; }
        if (l.getPopup && l.getPopup()) { l.openPopup(); info.opened++; }
        mark(d); texts.push(d.body.innerText);
      });
    });
    out.frames.push(info);
  });
  setTimeout(function () {
    mark(document);
    Array.prototype.slice.call(document.querySelectorAll("iframe")).forEach(function (f) {
      if (f.contentDocument) mark(f.contentDocument);
    });
    out.dialogs = window.__vx || [];
    out.text = texts.join("\\n");
    var pre = document.createElement("pre");
    pre.id = "vigie-probe";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 1500);
}, 2000); });
</script>"""


def defenceless_copy(page: str) -> str:
    """The page with escaping as its only defence: no CSP, frames of the page's origin allowed
    dialogs, and the dialog hook first in the page and in every frame."""
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    page = page.replace(
        'sandbox="allow-scripts"', 'sandbox="allow-scripts allow-same-origin allow-modals"'
    )

    def hook_frame(m: re.Match[str]) -> str:
        doc = html.unescape(m.group(1))
        doc = re.sub(r"(<head[^>]*>)", lambda h: h.group(1) + HOOK, doc, count=1)
        return f'srcdoc="{html.escape(doc, quote=True)}"'

    page = re.sub(r'srcdoc="([^"]*)"', hook_frame, page)
    page = re.sub(r"(<head[^>]*>)", lambda h: h.group(1) + HOOK, page, count=1)
    return page.replace("</body>", PROBE + "</body>")


def run_probe(exe: str, page: Path, tmp: Path) -> tuple[dict, list[str]]:
    copy = tmp / f"{page.parent.name}-{page.name}"
    # beside nothing: the copy loads nothing relative, reports are self-contained
    copy.write_text(defenceless_copy(page.read_text(encoding="utf-8")), encoding="utf-8")
    proc = run_chromium(exe, copy.as_uri(), tmp, "--virtual-time-budget=20000", "--dump-dom")
    m = re.search(r'<pre id="vigie-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the probe did not run on {page}; chromium stderr: {proc.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1))), console_errors(proc.stderr)


def test_probe_sees_an_unescaped_payload(chromium, tmp_path: Path):  # noqa: F811
    """Control: the same probe on a page and a map frame that do not escape reports the dialogs
    and the payload elements (the test is not blind)."""
    frame = (
        "<html><head><script>var L = {Map: function () {}};</script></head><body>"
        f"{payload('frame')}<div class=leaflet-interactive></div></body></html>"
    )
    page = tmp_path / "bad.html"
    page.write_text(
        f"<html><head></head><body>{payload('page')}"
        f'<iframe sandbox="allow-scripts" srcdoc="{html.escape(frame)}"></iframe></body></html>'
    )
    out, _ = run_probe(chromium, page, tmp_path)
    assert any("page" in d for d in out["dialogs"]), out
    assert any("frame" in d for d in out["dialogs"]), out
    assert out["marked"] >= 2


@pytest.mark.parametrize(
    "i", range(6), ids=["weekly", "brief", "brief-yaml", "evaluation", "explore", "index"]
)
def test_payload_names_stay_text_in_every_report(chromium, hostile, i, tmp_path: Path):  # noqa: F811
    """No dialog opens and no payload element exists, on load, on hover or with every tooltip
    and popup open; the payloads are shown as text."""
    page = Path(hostile["pages"][i])
    out, errors = run_probe(chromium, page, tmp_path)
    assert out["dialogs"] == [], out["dialogs"]
    assert out["marked"] == 0
    assert errors == [], errors
    text = out["text"]
    shown = {tag for tag in TAGS if f"onerror=alert('{tag}')" in text}
    expected = {
        0: {"zone", "event", "category", "stop"},  # key figures, events, zone and stop tooltips
        1: {"event", "zone", "stop"},  # heading, ring tooltips, stops table and map
        2: {"yaml", "yamlcat"},
        3: set(),
        4: set(),
        5: {"yaml", "event"},  # the briefs' titles
    }[i]
    assert expected <= shown, (expected - shown, out["frames"])
    if i in (0, 1, 2):
        assert out["frames"] and all(f.get("hovered", 0) > 0 for f in out["frames"]), out["frames"]


def _planted_run(exe: str, page: str, tmp: Path, name: str) -> dict:
    """Open ``page`` with an inline handler planted in it; the title it leaves and the map
    paths drawn in its first frame."""
    planted = "<img src=x onerror=\"document.title='pwned'\">"
    check = (
        "<script>window.addEventListener('load',function(){setTimeout(function(){"
        "var f=document.querySelector('iframe');var p=document.createElement('pre');"
        "p.id='vigie-probe';p.textContent=JSON.stringify({title:document.title,"
        "paths:f.contentDocument.querySelectorAll('path.leaflet-interactive').length});"
        "document.body.appendChild(p);},2000);});</script>"
    )
    body = check.removeprefix("<script>").removesuffix("</script>")
    copy = tmp / f"{name}.html"
    copy.write_text(
        allow_probe(page, body).replace("</body>", planted + check + "</body>"), encoding="utf-8"
    )
    proc = run_chromium(exe, copy.as_uri(), tmp, "--virtual-time-budget=15000", "--dump-dom")
    m = re.search(r'<pre id="vigie-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    return json.loads(html.unescape(m.group(1)))


def test_policy_refuses_an_inline_handler_and_the_maps_still_draw(chromium, hostile, tmp_path):  # noqa: F811
    """With its Content-Security-Policy, a real report page refuses an inline event handler
    planted in it (as a payload that escaped would be), while its own scripts, Leaflet and the
    maps, run; the same page without the policy runs the handler (the check is not blind)."""
    page = Path(hostile["pages"][0]).read_text(encoding="utf-8")
    with_policy = _planted_run(chromium, page, tmp_path, "with-policy")
    assert with_policy["title"] != "pwned" and with_policy["paths"] > 0, with_policy
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    without = _planted_run(chromium, bare, tmp_path, "without-policy")
    assert without["title"] == "pwned", without
