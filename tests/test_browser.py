"""Reports in a real browser: headless Chromium opens them from file://, with no network.

Checks that the maps draw the zones (Leaflet's SVG paths counted inside the map frames after
load) under the page's Content-Security-Policy, that no script error or refused script is logged
(Chromium's console log on stderr), and saves a screenshot of each page under
reports/_screens/ (repository) for a person to look at.
Chromium (Debian's ``chromium``) is installed with apt-get when missing; the tests are skipped,
with the reason, only where it cannot be installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SCREENS = REPO / "reports" / "_screens"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]

#: appended to a copy of the page: after load, count Leaflet's interactive paths in each frame
PROBE = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var frames = Array.prototype.slice.call(document.querySelectorAll("iframe"));
    var out = frames.map(function (f) {
      try {
        var d = f.contentDocument;
        return {paths: d.querySelectorAll("path.leaflet-interactive").length,
                layers: d.querySelectorAll(".leaflet-control-layers-selector").length,
                leaflet: typeof f.contentWindow.L};
      } catch (e) { return {error: String(e)}; }
    });
    var pre = document.createElement("pre");
    pre.id = "vigie-probe";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 2000);
});
</script>
"""


def _script_text(tag: str) -> str:
    """The text inside a ``<script>`` tag (what its CSP hash covers)."""
    return re.search(r"<script>(.*)</script>", tag, re.S).group(1)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of headless Chromium, installed with apt-get when missing (skip only if that fails)."""
    exe = _chromium()
    if exe is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, env=env, timeout=900
        )
        exe = _chromium()
    if exe is None:
        pytest.skip(
            "headless Chromium is not installed and could not be installed with apt-get "
            "(needs root and Debian's package archive): browser checks not run"
        )
    return exe


def run_chromium(exe: str, url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile; stdout = DOM dump when asked."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_errors(stderr: str) -> list[str]:
    """Console errors in Chromium's log (uncaught exceptions, failed script loads, scripts and
    handlers refused by the Content-Security-Policy)."""
    lines = [
        ln
        for ln in stderr.splitlines()
        if "CONSOLE" in ln or "Uncaught" in ln or "Content Security Policy" in ln
    ]
    return [ln for ln in lines if re.search(r"Uncaught|Error|ERR_|Refused", ln)]


def script_hash(script: str) -> str:
    """The CSP hash source of an inline script's text."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def allow_probe(page: str, *scripts: str) -> str:
    """A copy of a report page that a probe can inspect: the given inline scripts are added to
    the page's Content-Security-Policy (everything else it refuses stays refused), and the map
    frames share the page's origin so the probe can read them (they keep no other right)."""
    extra = " ".join(script_hash(s) for s in scripts)
    page = re.sub(
        r'(http-equiv="Content-Security-Policy" content="script-src )', rf"\1{extra} ", page
    )
    return page.replace('sandbox="allow-scripts"', 'sandbox="allow-scripts allow-same-origin"')


def probe(exe: str, page: Path, tmp: Path) -> tuple[list[dict], list[str]]:
    """Open a copy of ``page`` with the probe; return the per-frame counts and console errors."""
    html = allow_probe(page.read_text(encoding="utf-8"), _script_text(PROBE))
    copy = page.with_name(page.stem + ".probe.html")
    copy.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        proc = run_chromium(exe, copy.as_uri(), tmp, "--virtual-time-budget=15000", "--dump-dom")
    finally:
        copy.unlink()
    m = re.search(r'<pre id="vigie-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the probe did not run; chromium stderr: {proc.stderr[-2000:]}"
    frames = json.loads(m.group(1).replace("&quot;", '"'))
    return frames, console_errors(proc.stderr)


def screenshot(exe: str, page: Path, tmp: Path, name: str) -> Path:
    """Full-page screenshot (1200 px wide) saved as reports/_screens/<name>.png."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    out = SCREENS / f"{name}.png"
    run_chromium(
        exe,
        page.as_uri(),
        tmp,
        "--virtual-time-budget=10000",
        "--window-size=1200,4200",
        f"--screenshot={out}",
    )
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny city's reports (shared build with tests/test_reports.py)."""
    from tests._tiny_reports import build

    return build(tmp_path_factory.getbasetemp() / "vigie_tiny")


def test_probe_catches_script_errors(chromium, tmp_path: Path):
    """Control: a page whose map frame throws is reported (the error check is not blind)."""
    from html import escape

    inner = "<html><body><script>notDefinedAnywhere();</script></body></html>"
    page = tmp_path / "bad.html"
    page.write_text(f'<html><body><iframe srcdoc="{escape(inner)}"></iframe></body></html>')
    frames, errors = probe(chromium, page, tmp_path)
    assert len(frames) == 1
    assert any("notDefinedAnywhere" in e for e in errors), errors


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["weekly", "event-brief"])
def test_report_maps_draw_offline_without_errors(chromium, tiny, kind, tmp_path: Path):
    """The report's maps draw every zone from file:// with no network, and no script errors."""
    page = Path(tiny["made"][kind]["html"])
    frames, errors = probe(chromium, page, tmp_path)
    assert errors == [], errors
    assert frames, "no map frame in the report"
    for f in frames:
        assert f.get("leaflet") == "object", f
        assert f["layers"] >= 1, f  # the layer control's checkboxes
    # the first map of each report draws one path per zone at least (plus rings and circles)
    assert frames[0]["paths"] >= tiny["zones"], frames
    shot = screenshot(chromium, page, tmp_path, f"{kind}-{tiny['made'][kind]['id']}")
    assert shot.exists() and shot.stat().st_size > 20_000
