"""Replay: a stored period fed slot by slot through the live path, for drills, tests and the bench.

The drill store is a copy of the store whose presence stops before ``FROM`` (zones, events,
briefs and the other sources as they are); each slot of ``[FROM, TO)`` is then written as one
file (canonical columns, UTC times with their offset) into the drill's inbox and processed by
:meth:`pipelines.live.run.LiveRunner.process`, the page's clock set to the slot's end. With
``speed`` > 0 the slots are spaced as in real time divided by ``speed``; 0: as fast as it can.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from features import schemas
from features.config import SourceSpec
from features.ingest.writing import _atomic_parquet
from features.store import Store
from features.timeutil import as_utc
from pipelines.live.run import LiveRunner
from pipelines.live.settings import LiveSettings

#: the presence mapping of replayed files: canonical names
REPLAY_SPEC = SourceSpec.model_validate(
    {
        "path": "*.csv",
        "columns": {
            c: c for c in ("zone_id", "start", "slot_minutes", "present", "residents", "visitors")
        },
    }
)


def make_drill(store: Store, drill: Path, start: pd.Timestamp) -> Store:
    """A copy of ``store`` at ``drill`` whose presence stops before ``start`` (no live state)."""
    if drill.exists():
        shutil.rmtree(drill)
    shutil.copytree(store.root, drill, ignore=shutil.ignore_patterns("live", "cube", ".*"))
    out = Store(drill)
    pres = pd.read_parquet(store.validated_path("presence"))
    _atomic_parquet(
        pres[pres["start"] < start].reset_index(drop=True), out.validated_path("presence")
    )
    return out


def slot_files(
    store: Store, start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """The store's presence of ``[start, end)``, one slot at a time (canonical columns)."""
    cols = [c for c in REPLAY_SPEC.columns if c in schemas.STORED["presence"]]
    pres = pd.read_parquet(
        store.validated_path("presence"),
        columns=cols,
        filters=[("start", ">=", start), ("start", "<", end)],
    )
    for slot, grp in pres.groupby("start", sort=True):
        yield pd.Timestamp(slot), grp


def replay(
    store: Store,
    *,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp,
    drill: Path,
    reports: Path,
    settings: LiveSettings,
    speed: float = 60.0,
    on_slot: Callable[[pd.Timestamp, dict[str, Any]], None] | None = None,
) -> LiveRunner:
    """Replay ``[start, end)`` of ``store`` into the drill store ``drill``; the runner."""
    t0, t1 = as_utc(start), as_utc(end)
    dst = make_drill(store, drill, t0)
    inbox = drill / "inbox"
    inbox.mkdir(exist_ok=True)
    runner = LiveRunner(dst, inbox, REPLAY_SPEC, settings, reports)
    last = None
    for slot, rows in slot_files(store, t0, t1):
        minutes = int(rows["slot_minutes"].iloc[0])
        if speed > 0 and last is not None:
            time.sleep(max((slot - last).total_seconds() / speed, 0))
        last = slot
        path = inbox / f"presence_{slot.strftime('%Y%m%dT%H%M')}Z.csv"
        out = rows.assign(start=rows["start"].map(lambda t: t.isoformat()))
        out.to_csv(path, index=False)
        done = runner.process(now=slot + pd.Timedelta(minutes=minutes), files=[path])
        if on_slot is not None:
            on_slot(slot, done)
    return runner
