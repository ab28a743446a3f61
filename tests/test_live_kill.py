"""`vigie live` killed (SIGKILL) at random points while files arrive, then restarted: no file lost
or processed twice, each alert once, the store readable and equal to an uninterrupted run's.

The watcher's work runs in a child process (``_DRIVER``: one pass over the files in the inbox,
as ``vigie live --once``); the files of ten slots around the tiny city's planted gathering
(which raises alerts) arrive a few at a time, and after each arrival the child is killed after
a seeded random delay spread over the time the pass takes. A last pass runs to the end; the
store (ledger, live presence partitions, live cube rows, quarantine, run state, alerts) is then
compared with the one an uninterrupted pass over the same files gives.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from features.ingest.append import stored_presence
from features.store import Store
from pipelines.live.alerts import read_jsonl
from pipelines.live.cube_update import live_cube
from pipelines.live.replay import make_drill, slot_files

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("VIGIE_LIVE_KILLS", "4"))
SEED = 20261101

_DRIVER = """
import sys, time
from pathlib import Path
from features.store import Store
from pipelines.live.replay import REPLAY_SPEC
from pipelines.live.run import LiveRunner
from pipelines.live.settings import LiveSettings
inbox = Path(sys.argv[2])
runner = LiveRunner(Store(sys.argv[1]), inbox, REPLAY_SPEC, LiveSettings(), Path(sys.argv[3]))
print("ready", flush=True)
t = time.perf_counter()
runner.process(files=sorted(inbox.glob("*.csv")), now=None)
print(f"done {time.perf_counter() - t:.3f}", flush=True)
"""


def _start(store: Path, inbox: Path, reports: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(store), str(inbox), str(reports)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _finish(proc: subprocess.Popen) -> float:
    """Wait for a pass to end; its duration (seconds)."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert proc.wait(timeout=600) == 0, out
    return float(out.split()[-1])


def _snapshot(root: Path) -> dict:
    """What a run leaves, without the times it was written at."""
    st = Store(root)
    live = root / "live"
    ledger = [
        {k: v for k, v in e.items() if k not in ("at", "mtime")}
        for e in read_jsonl(live / "ledger.jsonl")
    ]
    pres = stored_presence(st, columns=["zone_id", "start", "slot_minutes", "present"])
    cube = live_cube(st)
    return {
        "ledger": ledger,
        "alerts": [
            {k: v for k, v in a.items() if k != "raised_at"}
            for a in read_jsonl(live / "alerts.jsonl")
        ],
        "state": json.loads((live / "state.json").read_text()),
        "partitions": sorted(p.name for p in (live / "presence").iterdir()),
        "cube_files": sorted(p.name for p in (live / "cube").iterdir()),
        "quarantine": sorted(p.name for p in (live / "quarantine").glob("*.csv"))
        if (live / "quarantine").is_dir()
        else [],
        "presence": pres.sort_values(["zone_id", "start"]).reset_index(drop=True),
        "cube": cube,
    }


def test_sigkill_while_files_arrive_then_restart(tiny_store: Path, tiny_city: Path, tmp_path):
    truth = json.loads((tiny_city / "truth.json").read_text())
    sig = next(s for s in truth["signals"] if s["type"] == "gathering")
    t0 = pd.Timestamp(sig["start"]) - pd.Timedelta(hours=3)
    st = Store(tiny_store)
    base = make_drill(st, tmp_path / "base", t0).root
    files = []
    for slot, rows in slot_files(st, t0, t0 + pd.Timedelta(hours=10)):
        files.append((f"presence_{slot.strftime('%Y%m%dT%H%M')}Z.csv", rows))
    assert len(files) == 10

    def deliver(inbox: Path, upto: int) -> None:
        for name, rows in files[:upto]:
            if not (inbox / name).exists():
                out = rows.assign(start=rows["start"].map(lambda t: t.isoformat()))
                out.to_csv(inbox / f".{name}", index=False)
                os.replace(inbox / f".{name}", inbox / name)

    # the uninterrupted run, timed
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    (tmp_path / "ref_inbox").mkdir()
    deliver(tmp_path / "ref_inbox", len(files))
    per_file = _finish(_start(ref, tmp_path / "ref_inbox", tmp_path / "ref_reports")) / len(files)
    expected = _snapshot(ref)
    assert expected["alerts"], "the gathering raises alerts in the uninterrupted run"

    work, inbox = tmp_path / "work", tmp_path / "inbox"
    shutil.copytree(base, work)
    inbox.mkdir()
    rng = random.Random(SEED)
    arrived, killed = 0, 0
    for _ in range(KILLS):
        arrived = min(len(files), arrived + rng.randint(2, 3))
        deliver(inbox, arrived)
        proc = _start(work, inbox, tmp_path / "reports")
        time.sleep(rng.uniform(0.0, per_file * 3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        _snapshot(work) if (work / "live" / "state.json").exists() else None  # readable
    deliver(inbox, len(files))
    _finish(_start(work, inbox, tmp_path / "reports"))
    got = _snapshot(work)

    assert killed >= KILLS // 2  # most kills fell inside a pass
    names = [e["file"] for e in got["ledger"]]
    assert sorted(names) == sorted(n for n, _ in files)  # every file once: none lost or doubled
    ids = [a["id"] for a in got["alerts"]]
    assert len(ids) == len(set(ids))
    for key in ("ledger", "alerts", "state", "partitions", "cube_files", "quarantine"):
        assert got[key] == expected[key], key
    pd.testing.assert_frame_equal(got["presence"], expected["presence"])
    pd.testing.assert_frame_equal(got["cube"], expected["cube"])
    leftovers = [
        p for p in (work / "live").rglob("*") if ".tmp" in p.name or p.name.startswith(".")
    ]
    assert leftovers == []
