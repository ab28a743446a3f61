"""`vigie live`'s watcher (watchfiles): files landing in the inbox, one while it starts, another
still being written (no ``.done`` marker yet), are each processed once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd

from features.store import Store
from pipelines.live.alerts import read_jsonl
from pipelines.live.replay import REPLAY_SPEC, make_drill, slot_files
from pipelines.live.run import LEDGER, LiveRunner, watch
from pipelines.live.settings import LiveSettings


def test_watcher_processes_files_as_they_land(tiny_store: Path, tmp_path: Path):
    st = Store(tiny_store)
    t0 = pd.Timestamp("2026-10-20T10:00Z")
    drill = make_drill(st, tmp_path / "drill", t0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = LiveSettings(require_done=True, settle_seconds=0.3)
    runner = LiveRunner(drill, inbox, REPLAY_SPEC, settings, tmp_path / "reports")
    files = []
    for slot, rows in slot_files(st, t0, t0 + pd.Timedelta(hours=3)):
        files.append((f"presence_{slot.strftime('%Y%m%dT%H%M')}Z.csv", rows))

    def write(i: int, *, done: bool = True) -> None:
        name, rows = files[i]
        rows.assign(start=rows["start"].map(lambda t: t.isoformat())).to_csv(
            inbox / name, index=False
        )
        if done:
            (inbox / f"{name}.done").touch()

    passes: list[dict] = []
    stop = threading.Event()

    class _Stop(Exception):
        pass

    def on_pass(done: dict) -> None:
        passes.append(done)
        if stop.is_set():
            raise _Stop

    def run() -> None:
        try:
            watch(runner, on_pass=on_pass)
        except _Stop:
            pass

    def wait(cond, what: str) -> None:
        t_end = time.time() + 60
        while not cond():
            assert time.time() < t_end, what
            time.sleep(0.05)

    def ledger() -> list[str]:
        return [e["file"] for e in read_jsonl(drill.root / LEDGER)]

    th = threading.Thread(target=run)
    th.start()
    try:
        write(0)  # lands while the watcher starts
        wait(lambda: len(ledger()) == 1, "the first file is processed")
        write(1, done=False)  # still being written: waits for its marker
        n = len(passes)
        wait(lambda: len(passes) >= n + 2, "the watcher keeps passing")
        assert ledger() == [files[0][0]]
        (inbox / f"{files[1][0]}.done").touch()
        write(2)
        wait(lambda: len(ledger()) == 3, "the other files are processed")
    finally:
        stop.set()
        th.join(timeout=60)
    assert ledger() == [name for name, _ in files]  # each once, in order
    assert all(e["status"] == "ingested" for e in read_jsonl(drill.root / LEDGER))
    assert (tmp_path / "reports" / "live" / "index.html").exists()
