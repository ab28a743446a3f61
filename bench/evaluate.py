"""`make evaluate`: how vigie does on real data and on a synthetic city that is not its model.

Usage: ``python -m bench.evaluate [SECTION ...]`` (default: every section that exists).

Each section is a module ``bench/eval_<section>.py`` exposing ``run() -> Section``: it runs its
evaluation (real exports of ``../shared/data``, the synthetic city) and returns the Markdown it
wants in docs/evaluation.md. This runner stamps each section with the date, the machine and the
command that wrote it, and replaces that section (between its markers) in docs/evaluation.md, so a
partial run keeps the other sections. Every figure the README quotes about forecasts, effects and
detectors comes from that page.

Sections, in the order of the page:

* ``forecasts`` -- rolling-origin backtests (Chicago 2015-2019 transit crimes; the synthetic city)
  against seasonal-naive and recent-hotspot forecasts;
* ``effects`` -- recovery of planted effects on the synthetic city, planted signals left in;
* ``detectors`` -- outbreaks injected into the real Chicago series, detectors at equal real
  false-alarm rates against EARS and CDC's ESSENCE detectors (pynssp);
* ``presence`` -- presence anomalies on the real Brooklyn Bridge counts and on withheld
  recurring gatherings.
* ``origins`` -- the origin-shift test on origin inflows planted in synthetic cities, against
  scipy's chi-square test of homogeneity.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "evaluation.md"
SHARED_DATA = ROOT.parent / "shared" / "data"
SECTIONS = ("forecasts", "effects", "detectors", "presence", "origins")
HEADER = """# Evaluation

How vigie does on real public data (`../shared/data`: Chicago transit-premises crimes 2015-2019,
Brooklyn Bridge hourly pedestrian counts) and on a synthetic city whose incidents are *not* drawn
from the model vigie fits. Every table is written by `make evaluate` (`python -m bench.evaluate`);
each section names the date, the machine and the data of its run. Nothing here is typed by hand.
"""


@dataclasses.dataclass(frozen=True)
class Section:
    """What one evaluation contributes to docs/evaluation.md."""

    title: str
    markdown: str
    data: str
    #: the figures, for bench_out/evaluation.json
    figures: dict = dataclasses.field(default_factory=dict)


def machine() -> str:
    """This machine, as the page names it."""
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- evaluate:{name}:start -->", f"<!-- evaluate:{name}:end -->"


def render(name: str, section: Section, seconds: float) -> str:
    start, end = markers(name)
    stamp = (
        f"*Written by `python -m bench.evaluate {name}` on {dt.date.today().isoformat()}, "
        f"{machine()}, in {seconds:.0f} s. Data: {section.data}.*"
    )
    return f"{start}\n## {section.title}\n\n{stamp}\n\n{section.markdown.strip()}\n{end}"


def put_section(name: str, block: str, doc: Path = DOC) -> None:
    """Replace section ``name`` of the page (or append it in the order of SECTIONS)."""
    text = doc.read_text() if doc.exists() else HEADER
    start, end = markers(name)
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        later = [markers(s)[0] for s in SECTIONS[SECTIONS.index(name) + 1 :] if s in SECTIONS]
        at = min((text.index(m) for m in later if m in text), default=None)
        text = (
            text.rstrip() + "\n\n" + block + "\n"
            if at is None
            else text[:at] + block + "\n\n" + text[at:]
        )
    doc.write_text(text)


def main(argv: list[str]) -> int:
    names = argv or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if not SHARED_DATA.exists():
        print(f"[evaluate] note: {SHARED_DATA} is absent: the real-data parts are skipped")
    for name in names:
        try:
            mod = importlib.import_module(f"bench.eval_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.eval_{name}":
                raise
            print(f"[evaluate] {name}: no evaluation module yet (bench/eval_{name}.py)")
            continue
        print(f"[evaluate] {name} ...", flush=True)
        t0 = time.perf_counter()
        section = mod.run()
        seconds = time.perf_counter() - t0
        put_section(name, render(name, section, seconds))
        print(f"[evaluate] {name} done in {seconds:.0f} s -> {DOC}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
