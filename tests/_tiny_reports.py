"""Build, once per test session, a tiny synthetic city's store and its four reports.

Used by tests/test_reports.py and tests/test_browser.py. The build is cached in the session's
pytest base temp folder (a marker file), so both modules share one build.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from features.cube import build_cube
from features.ingest import ingest
from features.store import Store
from features.synth import generate
from features.timeutil import last_full_week as _lfw
from pipelines.events.brief import make_brief
from pipelines.models import fit_all
from pipelines.reports import catalog as reports
from pipelines.signals.run import parse_period, run_signals


def last_full_week(store: Path) -> str:
    """ISO week of the last whole local week of the cube."""
    st = Store(store)
    return _lfw(st.cube_meta()["end"], st.timezone)


def build(base: Path) -> dict:
    """The tiny city (seed 1): store, models, signals of the last full week, the brief of the
    largest event, and the four reports. Returns paths and timings (cached)."""
    marker = base / "built.json"
    if marker.exists():
        return json.loads(marker.read_text())
    base.mkdir(parents=True, exist_ok=True)
    t = {}
    t0 = time.perf_counter()
    res = generate("tiny", base / "raw", seed=1)
    store = base / "store"
    ingest(res.sources_yaml, store)
    build_cube(store)
    t["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_all(Store(store), backtest_weeks=2, groups=["all"], xgb_rounds=60)
    week = last_full_week(store)
    run_signals(store, parse_period(week), n_sim=99)
    events = Store(store).validated("events")
    event_id = str(events.sort_values("expected_attendance").iloc[-1]["event_id"])
    make_brief(store, event_id)
    t["analysis"] = time.perf_counter() - t0
    out = base / "reports"
    made = {}
    for kind, run in (
        ("weekly", lambda: reports.report_weekly(store, week=week, reports_dir=out)),
        ("event-brief", lambda: reports.report_brief(store, event_id, reports_dir=out)),
        ("evaluation", lambda: reports.report_evaluation(store, reports_dir=out, report_id="tiny")),
        ("explore", lambda: reports.report_explore(store, reports_dir=out, report_id="tiny")),
    ):
        t0 = time.perf_counter()
        r = run()
        t[kind] = time.perf_counter() - t0
        made[kind] = {"html": str(r.html), "summary": str(r.summary_path), "id": r.report_id}
    info = {
        "store": str(store),
        "reports": str(out),
        "week": week,
        "event_id": event_id,
        "made": made,
        "seconds": t,
        "zones": int(len(Store(store).zones())),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info
