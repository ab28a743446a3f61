"""The tiny city's store with the signals of its last full week and the brief of its largest
event, built once per test session (for tests/test_export.py and tests/test_api.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from features.store import Store
from features.timeutil import last_full_week
from pipelines.events.brief import make_brief
from pipelines.signals.run import parse_period, run_signals


def build(tiny_store: Path, base: Path) -> dict:
    """Copy ``tiny_store`` under ``base``, run its signals and one brief (cached by a marker)."""
    marker = base / "built.json"
    if marker.exists():
        return json.loads(marker.read_text())
    base.mkdir(parents=True, exist_ok=True)
    store = base / "store"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(tiny_store, store)
    st = Store(store)
    week = last_full_week(st.cube_meta()["end"], st.timezone)
    run_signals(st, parse_period(week), n_sim=99)
    events = st.validated("events")
    event_id = str(events.sort_values("expected_attendance").iloc[-1]["event_id"])
    make_brief(store, event_id)
    info = {"store": str(store), "week": week, "event_id": event_id}
    marker.write_text(json.dumps(info))
    return info


def incident_ids(store: Path) -> set[str]:
    """Every incident id of the store (none may appear in a published answer)."""
    inc = Store(store).validated("incidents", columns=["incident_id"])
    return set() if inc is None else set(inc["incident_id"].astype(str))
