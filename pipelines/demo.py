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
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from features.store import Store
from features.timeutil import last_full_week

#: seconds each step took in this run, by step (the command's first word, the report's kind)
STEP_SECONDS: dict[str, float] = {}
#: the machine's 1-minute load average at the end of each step (other jobs slow the steps)
STEP_LOADS: dict[str, float] = {}


def _vigie(*args: str) -> None:
    cmd = [sys.executable, "-m", "pipelines.cli", *args]
    print("$ vigie " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `vigie {' '.join(args)}` failed (exit {proc.returncode}).")
    seconds = time.perf_counter() - t0
    step = f"report {args[1]}" if args[0] == "report" else args[0]
    STEP_SECONDS[step] = round(seconds, 1)
    STEP_LOADS[step] = round(os.getloadavg()[0], 1)
    print(f"  ({seconds:.0f} s)", flush=True)


def record_times(path: Path, *, scale: str, total_s: float) -> None:
    """Write this run's step times with its date, machine and load (what `python -m bench demo`
    puts into docs/benchmarks.md)."""
    record = {
        "scale": scale,
        "steps_s": STEP_SECONDS,
        "total_s": round(total_s, 1),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_1min_at_end": round(os.getloadavg()[0], 1),
        "load_1min_by_step": STEP_LOADS,
    }
    path.write_text(json.dumps(record, indent=2))


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
    total = time.perf_counter() - t0
    record_times(root / "demo_times.json", scale=a.scale, total_s=total)
    print(f"\ndemo finished in {total:.0f} s (step times: {root / 'demo_times.json'})")
    print(f"store:   {store}")
    for html in sorted(reports.glob("*/*/report.html")):
        print(f"report:  {html}")
    if (reports / "index.html").exists():
        print(f"index:   {reports / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
