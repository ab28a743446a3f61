"""`vigie live` latency: from a new hourly file landing in the inbox to its alerts and the page.

The synthetic city's store (``city``: 300 zones x 2 years, made once by
:func:`bench.bench_cube.prepare`) is copied into a drill store whose presence stops ``slots``
hours before 12 h after the planted gathering ends (:func:`pipelines.live.replay.make_drill`). The watcher runs as its own
process (:func:`pipelines.live.run.watch`, watchfiles, default settings), exactly as
``vigie live --store --inbox`` does. The bench then delivers those ``slots`` hourly slots one
after the other as a feed would: each file written under a hidden name, renamed into the inbox
and followed by its ``.done`` marker; the latency of a slot is the wall time from the rename to
the page (``reports/live/index.html``) saying "data up to" the slot's end, which the watcher
writes after the file's rows are appended, its slots tested, its alerts written to
``alerts.jsonl`` and posted, and its ledger line written. The watcher's resident memory is read
after every slot (flat: the window it holds is trimmed to the reference's 8 weeks). The full
re-ingest and cube rebuild of the same city (``vigie ingest`` + ``vigie cube``) is timed for
the ratio. The table of every scale measured goes into docs/benchmarks.md (between the
``bench_live`` markers).

Usage: ``python -m bench.bench_live [tiny|city]`` or ``python -m bench live``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from bench.bench_cube import bench_dir, keep_result, prepare, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_out" / "live_results.json"
START = "<!-- bench_live:start -->"
END = "<!-- bench_live:end -->"

_WATCHER = """
import sys
from pathlib import Path
from features.store import Store
from pipelines.live.replay import REPLAY_SPEC
from pipelines.live.run import LiveRunner, watch
from pipelines.live.settings import LiveSettings
runner = LiveRunner(Store(sys.argv[1]), Path(sys.argv[2]), REPLAY_SPEC, LiveSettings(),
                    Path(sys.argv[3]))
said = []


def ready(_done):
    if not said:
        said.append(print("ready", flush=True))


watch(runner, on_pass=ready)
"""


def _full_rebuild(scale: str, seed: int, work: Path) -> float:
    """Seconds of a full ingest + cube build of the scale's raw files into a fresh store."""
    from features.cube import build_cube
    from features.ingest import ingest
    from features.store import Store

    sources = bench_dir() / f"{scale}-seed{seed}" / "raw" / "sources.yaml"
    t0 = time.perf_counter()
    ingest(sources, work / "full")
    build_cube(Store(work / "full"))
    seconds = time.perf_counter() - t0
    shutil.rmtree(work / "full", ignore_errors=True)
    return seconds


def _last_hour(st, truth: Path) -> pd.Timestamp:
    """The last hour delivered: 12 h after the planted gathering ends (so that the feed raises
    alerts), or the store's last hour."""
    import json

    if truth.exists():
        for sig in json.loads(truth.read_text()).get("signals", []):
            if sig["type"] == "gathering":
                return pd.Timestamp(sig["end"]) + pd.Timedelta(hours=12)
    return pd.read_parquet(st.validated_path("presence"), columns=["start"])["start"].max()


def _wait_page(page: Path, shown: str, timeout: float) -> float:
    """Wait until the page says the data reach ``shown`` (local time; "data up to ...", or "no
    data since HH:MM (...)" when the replayed hours lie in the past); when (perf_counter)."""
    t_end = time.perf_counter() + timeout
    texts = (f"data up to {shown}", f"({shown})</p>")
    while time.perf_counter() < t_end:
        try:
            text = page.read_text(encoding="utf-8")
            if any(t in text for t in texts):
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{page}: data up to {shown} not shown within {timeout:.0f} s")


def run(scale: str = "city", *, slots: int = 100, seed: int = 0, full: bool = True) -> dict:
    """Deliver ``slots`` hourly files to a watcher on the scale's store; the figures."""
    from features.store import Store
    from pipelines.live.replay import make_drill, slot_files

    st = Store(prepare(scale, seed=seed))
    tz = st.timezone
    end = _last_hour(st, bench_dir() / f"{scale}-seed{seed}" / "raw" / "truth.json")
    start = end - pd.Timedelta(hours=slots - 1)
    work = Path(tempfile.mkdtemp(prefix="bench_live_"))
    drill = make_drill(st, work / "drill", start)
    inbox, reports = work / "inbox", work / "reports"
    inbox.mkdir()
    page = reports / "live" / "index.html"
    child = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(drill.root), str(inbox), str(reports)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        proc = psutil.Process(child.pid)
        lat, rss = [], []
        for slot, rows in slot_files(st, start, end + pd.Timedelta(hours=1)):
            minutes = int(rows["slot_minutes"].iloc[0])
            name = f"presence_{slot.strftime('%Y%m%dT%H%M')}Z.csv"
            tmp = inbox / f".{name}.tmp"
            rows.assign(start=rows["start"].map(lambda t: t.isoformat())).to_csv(tmp, index=False)
            shown = (slot + pd.Timedelta(minutes=minutes)).tz_convert(tz).strftime("%Y-%m-%d %H:%M")
            t0 = time.perf_counter()
            os.replace(tmp, inbox / name)
            (inbox / f"{name}.done").touch()
            lat.append(_wait_page(page, shown, timeout=300) - t0)
            rss.append(proc.memory_info().rss / 2**20)
    finally:
        child.terminate()
        child.wait(timeout=30)
    ledger = (drill.root / "live" / "ledger.jsonl").read_text().splitlines()
    alerts_path = drill.root / "live" / "alerts.jsonl"
    alerts = len(alerts_path.read_text().splitlines()) if alerts_path.exists() else 0
    full_s = _full_rebuild(scale, seed, work) if full else float("nan")
    shutil.rmtree(work, ignore_errors=True)
    lat_a = np.array(lat)
    third = max(len(rss) // 3, 1)
    result = {
        "scale": scale,
        "zones": len(st.zones()),
        "slots": len(lat),
        "files_in_ledger": len(ledger),
        "alerts": alerts,
        "p50_s": round(float(np.percentile(lat_a, 50)), 2),
        "p99_s": round(float(np.percentile(lat_a, 99)), 2),
        "max_s": round(float(lat_a.max()), 2),
        "rss_first_mb": round(float(np.mean(rss[:third])), 0),
        "rss_last_mb": round(float(np.mean(rss[-third:])), 0),
        "full_s": round(full_s, 1),
        "ratio": int(round(full_s / float(np.percentile(lat_a, 50)))) if full else None,
        "data": f"synthetic city ({scale} scale), seed {seed}, {slots} hours to "
        f"{end.strftime('%Y-%m-%d %H:%M')} UTC",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "cores": os.cpu_count(),
        "load": round(os.getloadavg()[0], 1),
    }
    print(
        f"[bench_live] {scale}: {result['slots']} slots, p50 {result['p50_s']} s, "
        f"p99 {result['p99_s']} s, RSS {result['rss_first_mb']:.0f} -> "
        f"{result['rss_last_mb']:.0f} MB; full re-ingest + cube {result['full_s']} s"
    )
    _record(result)
    return result


def _record(result: dict) -> None:
    results = keep_result(RESULTS, result["scale"], result)
    order = {"tiny": 0, "city": 1, "metropolis": 2}
    lines = [
        START,
        "## Live (`bench/bench_live.py`)",
        "",
        "`vigie live`'s watcher in its own process on a copy of the store whose presence stops",
        "100 hours before 12 h after the planted gathering ends (so that alerts are raised: the",
        "events' crowds, the gathering); those hours are then delivered one file at a time",
        "(written, renamed into the inbox, `.done` marker). Latency: from the rename to the page",
        "showing the slot (its rows appended, its slots tested, its cube rows, alerts.jsonl and the",
        "ledger written). Targets (issue 17): p50 <= 5 s, p99 <= 30 s over 100 slots at city",
        "scale, memory flat. RSS: the watcher's, mean over the first and the last third of the",
        "slots. Full: `vigie ingest` +",
        "`vigie cube` of the same city from its raw files; ratio = full / p50.",
        "",
        "| scale | zones | slots | p50 (s) | p99 (s) | max (s) | RSS first -> last (MB) "
        "| full re-ingest + cube (s) | ratio | alerts | measured |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in sorted(results.values(), key=lambda r: order.get(r["scale"], 9)):
        lines.append(
            f"| {r['scale']} | {r['zones']} | {r['slots']} | {r['p50_s']:.2f} | {r['p99_s']:.2f} "
            f"| {r['max_s']:.2f} | {r['rss_first_mb']:.0f} -> {r['rss_last_mb']:.0f} "
            f"| {r['full_s']:.0f} | {r['ratio'] if r['ratio'] is not None else '-'} "
            f"| {r['alerts']} | {r['when'][:10]}, {r['data']}, {r['machine']}, {r['cores']} cores, "
            f"load {r['load']} |"
        )
    lines += ["", "The machine is shared with other jobs: times are indicative.", END]
    write_section(START, END, "\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    for name in sys.argv[1:] or ["city"]:
        run(name)
