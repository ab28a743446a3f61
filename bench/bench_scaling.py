"""Benchmark: the Dask ``distributed`` path on 1, 2 and 4 workers (issue 18's measured scaling).

On one machine, a ``distributed.LocalCluster`` of n single-threaded worker processes (what
``--scheduler local`` starts, n = 1, 2, 4) runs, on a copy of an ingested metropolis (1 000
zones x 2 years, the scale issue 18 asks the scaling at; by default the one
``bench/bench_cube.py`` caches, made by synth and ingest on first use, or ``--store``):

- **cube**: ``build_cube(engine="dask")``, one task per month (``vigie cube --scheduler``);
- **glm_cells**: the GLM's sufficient statistics, one task per month partition and a groupby
  tree (:func:`pipelines.models.distributed.cell_statistics`, ``vigie fit --scheduler``);
- **signals**: the last full week's signals with the incident statistics and the scan per zone
  block (:mod:`pipelines.signals.blocks`, ``vigie signals --scheduler``).

Each stage is timed in this process once the cluster is up and its workers have imported the
code (a warm-up task each), so the start of the cluster is not counted. Speed-up = T(1) / T(n)
and scaling efficiency = T(1) / (n T(n)). The machine's cores, memory and load (1-minute
average before each stage) are written with the figures: workers beyond the cores share them,
and other jobs on a shared machine take their part. ``run`` writes
``bench_out/scaling_results.json`` and the ``scaling_workers`` section of docs/scaling.md.

Usage: ``python -m bench.bench_scaling [--store STORE] [--workers 1 2 4] [--only cube ...]``
or ``python -m bench scaling``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.bench_cube import bench_dir, keep_result, prepare
from bench.bench_region import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_out" / "scaling_results.json"
SCALING = ROOT / "docs" / "scaling.md"
START, END = "<!-- scaling_workers:start -->", "<!-- scaling_workers:end -->"
STAGES = ("cube", "glm_cells", "signals")


def _warm() -> int:
    """A worker's warm-up task: import what the stages' tasks use."""
    import features.cube.month  # noqa: F401
    import pipelines.models.distributed  # noqa: F401
    import pipelines.signals.blocks  # noqa: F401

    return os.getpid()


def _stage(name: str, store: Path, address: str) -> dict[str, Any]:
    """Run one stage on the cluster at ``address``; what it did."""
    from features.cube import build_cube
    from features.store import Store

    st = Store(store)
    if name == "cube":
        res = build_cube(st, engine="dask", dask_address=address)
        return {"rows": int(res.rows)}
    if name == "glm_cells":
        from pipelines.models.distributed import cell_statistics

        stats = cell_statistics(st, address=address)
        return {"cells": len(stats.cells), "partitions": stats.partitions}
    from features.timeutil import last_full_week
    from pipelines.signals.period import parse_period
    from pipelines.signals.run import run_signals

    meta = st.cube_meta()
    period = parse_period(last_full_week(meta["end"], meta.get("timezone") or st.timezone))
    run = run_signals(st, period, write=False, address=address)
    return {"week": period.label, "tests": int(len(run.tests)), "zones": run.zones,
            "path": "calibrated" if "incidents" in run.test_counts else "model-based"}  # fmt: skip


def _cpu(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of the client and the workers so far."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _on_cluster(n: int, store: Path, stages: list[str]) -> dict[str, Any]:
    """The stages on a LocalCluster of ``n`` single-threaded worker processes."""
    import dask
    from distributed import LocalCluster

    from features.cube.dask_engine import run_tasks

    out: dict[str, Any] = {}
    with LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster:  # fmt: skip
        address = str(cluster.scheduler_address)
        pids = set(run_tasks([dask.delayed(_warm, pure=False)() for _ in range(2 * n)], address))
        procs = [psutil.Process(pid) for pid in {os.getpid(), *pids}]
        for name in stages:
            load = os.getloadavg()[0]
            cpu0 = _cpu(procs)
            t0 = time.perf_counter()
            what = _stage(name, store, address)
            out[name] = {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu(procs) - cpu0,
                         "load": load, **what}  # fmt: skip
            print(f"[scaling] {n} worker(s) {name}: {json.dumps(out[name])}", flush=True)
    return out


def run(
    store: Path | None = None,
    *,
    workers: tuple[int, ...] = (1, 2, 4),
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Time the stages on LocalClusters of ``workers`` workers; write the results and docs."""
    src = Path(store) if store else prepare("metropolis")
    work = bench_dir() / "scaling" / "store"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("signals", "briefs"))
    stages = [s for s in STAGES if not only or s in only]
    if "cube" not in stages and not (work / "cube").exists():
        stages.insert(0, "cube")  # the others read the cube
    rec: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": machine(), "cores": os.cpu_count(), "store": str(src),
                           "zones": _zones(work), "models": (work / "models").exists(),
                           "runs": {}}  # fmt: skip
    _warm()  # the client's imports too, so that the first cluster does not pay them
    for n in workers:
        rec["runs"][str(n)] = _on_cluster(n, work, stages)
    rec["days"] = _days(work)
    rec["machine_after"] = machine()
    zones = rec["zones"] or 0
    keep_result(RESULTS, "metropolis" if zones >= 1000 else "city", rec)
    write_docs(rec)
    return rec


def _days(store: Path) -> int:
    import pandas as pd

    from features.store import Store

    meta = Store(store).cube_meta()
    return int((pd.Timestamp(meta["end"]) - pd.Timestamp(meta["start"])).days)


def _zones(store: Path) -> int | None:
    from features.store import Store

    try:
        return len(Store(store).zones())
    except Exception:  # a store without a zones file: the count is only a label
        return None


def section(rec: dict[str, Any]) -> str:
    """The scaling_workers section of docs/scaling.md."""
    runs = rec["runs"]
    ns = sorted(int(n) for n in runs)
    first = str(ns[0])
    cores = rec.get("cores") or 1
    lines = [
        START,
        f"Written by `python -m bench scaling` (`bench/bench_scaling.py`, `make bench`), measured "
        f"{rec['date']} on {rec['machine']} (after: {rec['machine_after'].split(', ')[-1]}); "
        f"a copy of `{rec['store']}` ({rec['zones']} zones, {rec['days']} days; "
        f"{'with' if rec['models'] else 'without'} fitted models). Each stage runs on a "
        "`distributed.LocalCluster` of n single-threaded worker processes started beforehand; "
        f"speed-up = T({ns[0]}) / T(n), efficiency = T({ns[0]}) / (n x T(n)).",
        "",
        "| stage | " + " | ".join(f"{n} worker{'s' if n > 1 else ''} (s)" for n in ns)
        + " | " + " | ".join(f"speed-up {n}" for n in ns[1:])
        + " | " + " | ".join(f"efficiency {n}" for n in ns[1:]) + " | CPU (s) | load before |",
        "|---|" + "---:|" * (len(ns) + 2 * (len(ns) - 1)) + "---|---|",
    ]  # fmt: skip
    for name in STAGES:
        if not all(name in runs[str(n)] for n in ns):
            continue
        t = {n: runs[str(n)][name]["seconds"] for n in ns}
        loads = ", ".join(f"{runs[str(n)][name]['load']:.1f}" for n in ns)
        cpus = ", ".join(f"{runs[str(n)][name].get('cpu_seconds', float('nan')):.0f}" for n in ns)
        lines.append("| " + " | ".join([name, *(f"{t[n]:.1f}" for n in ns),
                                        *(f"{t[ns[0]] / t[n]:.2f}" for n in ns[1:]),
                                        *(f"{t[ns[0]] / (n / ns[0] * t[n]):.2f}" for n in ns[1:]),
                                        cpus, loads]) + " |")  # fmt: skip
    over = [n for n in ns if n > cores]
    lines += ["", f"This machine has {cores} cores"
              + (f": {', '.join(map(str, over))} workers share them, so on an idle machine they "
                 f"cannot be faster than {cores}, and on a shared one they can only be by taking "
                 "a larger share of the cores from the other jobs; their efficiency measures "
                 "that and the cost of more workers than cores (processes switching, the "
                 "scheduler's traffic), not how a cluster of that many machines would scale. "
                 if over else ". ")
              + "The machine is shared with other jobs (the load column: the 1-minute load "
              "average before the stage, with n = " + ", ".join(map(str, ns)) + "): a worker "
              "then gets less than a core, which lowers the speed-ups"
              + (f"; with a load above the {cores} cores, as here, the other jobs take most of "
                 "the machine and the speed-ups and efficiencies say little about the code. "
                 if max(r[k]["load"] for r in runs.values() for k in r) > cores else ". ")
              + "The 1-minute load average also counts this run's own workers of the stage "
              "before, for a minute after they stop. "
              + "CPU = user and system seconds of the client and the workers during the stage "
              "(for n = " + ", ".join(map(str, ns)) + "): the same work whatever n; when it "
              "stays flat while the time does not fall, the cores were busy elsewhere. Signals run per zone "
              "block the reading of the history, the model's expectation (with a fitted model), "
              "the incident statistics and the scan; the presence anomalies, origins and "
              "correlations of the recent weeks stay in the client, which bounds its speed-up "
              "(see what runs where above). What ran: "
              + "; ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in runs[first][name].items()
                                                    if k not in ("seconds", "load", "cpu_seconds"))
                          for name in STAGES if name in runs[first]) + "."]  # fmt: skip
    return "\n".join([*lines, END])


def write_docs(rec: dict[str, Any]) -> None:
    text = SCALING.read_text() if SCALING.exists() else ""
    block = section(rec)
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    SCALING.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_scaling")
    p.add_argument("--store", type=Path, default=None, help="an ingested store to copy")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--only", nargs="*", default=None, help=f"some of {', '.join(STAGES)}")
    a = p.parse_args(argv)
    run(a.store, workers=tuple(a.workers), only=a.only)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
