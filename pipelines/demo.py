"""`make demo`: the whole chain on the synthetic city, then the paths of what it made.

synth -> ingest -> cube -> fit -> signals -> weekly report of the last full week -> brief of the
largest upcoming event -> model evaluation -> exploration. The data stay under
``demo/<scale>/`` (raw files and store); the reports go where the layout says, the top-level
``reports/<kind>/<id>/`` (``--reports`` to write them elsewhere). Each step is the `vigie` command a user would type, run in a
subprocess, so the demo exercises exactly what users run. The synthetic city is generated
only once per scale and seed (delete the folder to start again).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from features.store import Store
from features.timeutil import last_full_week


def _vigie(*args: str) -> None:
    cmd = [sys.executable, "-m", "pipelines.cli", *args]
    print("$ vigie " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `vigie {' '.join(args)}` failed (exit {proc.returncode}).")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def largest_upcoming_event(store: Path) -> str | None:
    """The id of the upcoming event with the largest expected attendance (the earliest among
    equals); all events when none starts after the cube's end; None without events."""
    st = Store(store)
    ev = st.validated("events")
    if ev is None or ev.empty:
        return None
    end = pd.Timestamp(st.cube_meta()["end"])
    up = ev[ev["start"] >= end]
    if up.empty:
        up = ev
    return str(
        up.sort_values(["expected_attendance", "start"], ascending=[False, True])["event_id"].iloc[
            0
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", default="city", choices=["tiny", "city", "metropolis"])
    p.add_argument("--dir", default="demo")
    p.add_argument("--seed", default="0")
    p.add_argument("--reports", default="reports", help="root of the reports tree")
    a = p.parse_args(argv)
    root = Path(a.dir) / a.scale
    raw, store, reports = root / "raw", root / "store", Path(a.reports)
    t0 = time.perf_counter()
    if not (raw / "sources.yaml").exists():
        _vigie("synth", "--scale", a.scale, "--out", str(raw), "--seed", a.seed)
    _vigie("ingest", str(raw / "sources.yaml"), "--store", str(store))
    _vigie("cube", "--store", str(store))
    _vigie("fit", "--store", str(store))
    meta = Store(store).cube_meta()
    week = last_full_week(meta["end"], meta["timezone"])
    _vigie("signals", "--store", str(store), "--week", week)
    _vigie("report", "weekly", "--store", str(store), "--week", week, "--reports", str(reports))
    event = largest_upcoming_event(store)
    if event:
        _vigie("brief", event, "--store", str(store), "--reports", str(reports))
    demo_id = f"demo-{a.scale}"
    for kind in ("evaluation", "explore"):
        _vigie("report", kind, "--store", str(store), "--reports", str(reports), "--id", demo_id)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    print(f"store:   {store}")
    for html in sorted(reports.glob("*/*/report.html")):
        print(f"report:  {html}")
    if (reports / "index.html").exists():
        print(f"index:   {reports / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
