"""Benchmark: `vigie serve`, 1 000 sequential ``/presence`` queries on a synthetic city's store.

The store (``city``: 300 zones x 2 years ~ 5.2 M zone-hours) is made once by
:func:`bench.bench_cube.prepare` (cached under ``$VIGIE_BENCH_DIR``) and its cube built once.
The API runs as a real ``vigie serve`` process (uvicorn, default settings, bearer token set) on
a free localhost port; one HTTP client (httpx, one kept-alive connection) then asks, one after
the other, for a random zone's presence over a random week of the data (seeded), reading each
answer whole. Latency is the wall time from sending the request to the last byte; p50 and p99
over the queries, and the first (cold) query apart. The table of every scale measured so far
goes into docs/benchmarks.md (section between the ``bench_api`` markers).

Usage: ``python -m bench.bench_api [tiny|city|metropolis ...]`` or ``run("city")``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench.bench_cube import keep_result, prepare, write_section
from features.cube import build_cube
from features.store import Store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_out" / "api_results.json"
START = "<!-- bench_api:start -->"
END = "<!-- bench_api:end -->"
TOKEN = "bench-token"


def _store(scale: str, seed: int) -> Path:
    """The cached store of a scale, with its cube built (once)."""
    store = prepare(scale, seed=seed)
    if not (store / "cube_meta.json").exists():
        build_cube(Store(store))
    return store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(store: Path, port: int, log: Path) -> subprocess.Popen:
    """`vigie serve` in a child process, once it answers."""
    env = {**os.environ, "VIGIE_API_TOKEN": TOKEN}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--store", str(store),
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vigie serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("vigie serve did not answer within 300 s")


def run(scale: str = "city", *, queries: int = 1000, seed: int = 0) -> dict:
    """Time ``queries`` sequential /presence queries (one random zone-week each)."""
    store = _store(scale, seed)
    st = Store(store)
    zones = sorted(st.zones()["zone_id"].astype(str))
    meta = st.cube_meta()
    first = dt.date.fromisoformat(meta["first_date"])
    days = (dt.date.fromisoformat(meta["last_date"]) - first).days + 1
    rng = np.random.default_rng(seed)
    port = _free_port()
    log = ROOT / "bench_out" / "bench_api_serve.log"
    log.parent.mkdir(exist_ok=True)
    proc = _start(store, port, log)
    lat, slots = [], 0
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ) as client:
            for _ in range(queries):
                zone = zones[int(rng.integers(len(zones)))]
                a = first + dt.timedelta(days=int(rng.integers(max(1, days - 6))))
                params = {"zone": zone, "from": a.isoformat(), "to": str(a + dt.timedelta(days=6))}
                t0 = time.perf_counter()
                r = client.get("/presence", params=params)
                body = r.json()
                lat.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"/presence {params}: {r.status_code} {r.text[:300]}")
                slots += body["count"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ms = np.array(lat) * 1000
    result = {
        "scale": scale,
        "zones": len(zones),
        "zone_hours": int(meta.get("rows", 0)),
        "queries": queries,
        "slots": slots,
        "first_ms": float(ms[0]),
        "p50_ms": float(np.percentile(ms[1:], 50)),
        "p99_ms": float(np.percentile(ms[1:], 99)),
        "max_ms": float(ms[1:].max()),
        "total_s": float(ms.sum() / 1000),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
    }
    print(
        f"[bench_api] {scale}: {queries} /presence queries (one zone-week each) in "
        f"{result['total_s']:.1f} s; p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
        f"(first {result['first_ms']:.0f} ms)"
    )
    _record(result)
    return result


def _record(result: dict) -> None:
    results = keep_result(RESULTS, result["scale"], result)
    order = {"tiny": 0, "city": 1, "metropolis": 2}
    lines = [
        START,
        "## API (`bench/bench_api.py`)",
        "",
        "`vigie serve` (uvicorn, bearer token set) in a child process; one httpx client asks, one",
        "after the other, for a random zone's `/presence` over a random week (168 slots, suppressed",
        "as published) and reads each answer whole. Latency from request to last byte; p50 and p99",
        "over the queries after the first (cold) one.",
        "",
        "| scale | zones | zone-hours | queries | first (ms) | p50 (ms) | p99 (ms) | max (ms) "
        "| total (s) | measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results.values(), key=lambda r: order.get(r["scale"], 9)):
        lines.append(
            f"| {r['scale']} | {r['zones']:,} | {r['zone_hours']:,} | {r['queries']:,} "
            f"| {r['first_ms']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} "
            f"| {r['total_s']:.1f} | {r['when'][:10]}, {r['machine']}, {r['cores']} cores |"
        )
    lines += ["", "The machine is shared with other jobs: times are indicative.", END]
    write_section(START, END, "\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    for name in sys.argv[1:] or ["city"]:
        run(name)
