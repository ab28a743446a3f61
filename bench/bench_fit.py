"""Benchmark: `vigie fit` (GLMs + XGBoost per category group, rolling backtest, effects).

For a synthetic city (``tiny``, ``city``: 300 zones x 2 years ~ 5 M zone-hours, or
``metropolis``: 17.5 M) the ingested store is made once by :func:`bench.bench_cube.prepare`
(cached under ``$VIGIE_BENCH_DIR``) and its cube built once; then
:func:`pipelines.models.fit_all` runs in a child process, which reports its wall time per step
and its peak resident memory. The backtest's own figures (Poisson deviance and PAI at 5 % of
every model and baseline) are printed next to the timings, and the table of every scale
measured so far goes into docs/benchmarks.md (section between the ``bench_fit`` markers).

Usage: ``python -m bench.bench_fit [tiny|city|metropolis ...]`` or ``run("city")``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd

from bench.bench_cube import keep_result, prepare, run_child, write_section
from features.cube import build_cube
from features.store import Store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_out" / "fit_results.json"
START = "<!-- bench_fit:start -->"
END = "<!-- bench_fit:end -->"

_CHILD = """
import json, os, resource, sys
from features.store import Store
from pipelines.models.fit import fit_all
load = os.getloadavg()[0]
r = fit_all(Store(sys.argv[1]), backtest_weeks=int(sys.argv[2]))
use = resource.getrusage(resource.RUSAGE_SELF)
bt = r.backtest
ev = bt.models if bt is not None else {}
print(json.dumps({
    "seconds": r.seconds,
    "groups": list(r.groups),
    "skipped": list(r.skipped),
    "n_effects": r.n_effects,
    "weeks": bt.weeks if bt is not None else None,
    "deviance": {m: v.poisson_deviance for m, v in ev.items()},
    "pai5": {m: v.pai.get("5%") for m, v in ev.items()},
    "coverage95": {m: v.coverage95 for m, v in ev.items()},
    "peak_mb": use.ru_maxrss / 1024,
    "cpu_s": use.ru_utime + use.ru_stime,
    "load": (load + os.getloadavg()[0]) / 2,
}))
"""


def _cube(scale: str, seed: int) -> Path:
    """The cached store of a scale, with its cube built (once)."""
    store = prepare(scale, seed=seed)
    if not (store / "cube_meta.json").exists():
        build_cube(Store(store))
    return store


def run(scale: str = "city", *, seed: int = 0, backtest_weeks: int = 8) -> dict:
    """Time ``fit_all`` (fit + backtest + effects) on a synthetic city's cube.

    Parameters
    ----------
    scale
        ``tiny``, ``city`` (default) or ``metropolis``.
    seed
        Synthetic city seed.
    backtest_weeks
        Weekly origins of the backtest.

    Returns
    -------
    dict
        ``scale, zone_hours, seconds {read, design, fit, backtest, effects, save, total}, peak_mb,
        groups, deviance {model: ...}, pai5 {model: ...}, coverage95`` (also kept in
        bench_out/fit_results.json and written into docs/benchmarks.md).
    """
    store = _cube(scale, seed)
    meta = json.loads((store / "cube_meta.json").read_text())
    child = run_child(_CHILD, str(store), str(backtest_weeks))
    result = {
        "scale": scale,
        "zone_hours": int(meta.get("rows", 0)),
        **child,
        "peak_mb": round(child["peak_mb"]),
        "cores": os.cpu_count(),
        "when": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    s = result["seconds"]
    print(
        f"fit {scale}: {result['zone_hours']:,} zone-hours | total {s['total']:.0f} s (fit "
        f"{s['fit']:.0f} s, backtest {s.get('backtest', 0):.0f} s over {result['weeks']} weeks, "
        f"effects {s['effects']:.0f} s) | CPU {result['cpu_s']:.0f} s at load {result['load']:.1f} "
        f"| peak {result['peak_mb']:,} MB"
    )
    for m, dev in result["deviance"].items():
        print(f"  {m:<20} deviance {dev:.4f}  PAI@5% {result['pai5'][m]:.2f}")
    _record(result)
    return result


def _record(result: dict) -> None:
    results = keep_result(RESULTS, result["scale"], result)
    order = {"tiny": 0, "city": 1, "metropolis": 2}
    lines = [
        START,
        "## Models (`bench/bench_fit.py`)",
        "",
        "`vigie fit` (zone rate model, Poisson + NB GLMs and XGBoost per category group, 8-week",
        "rolling backtest, effects) in a child process; peak = its maximum resident memory; CPU =",
        "its user + system time, which other jobs on the machine inflate less than the wall",
        "times (load = the 1-minute load average, mean of start and end).",
        "",
        "| scale | zone-hours | fit (s) | backtest (s) | effects (s) | total (s) | CPU (s) "
        "| load | peak (MB) | deviance zone GLM / GLM / XGB / naive 4w "
        "| PAI@5% zone GLM / GLM / XGB / hotspot | measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    nan = float("nan")
    for r in sorted(results.values(), key=lambda r: order.get(r["scale"], 9)):
        s, d, p = r["seconds"], r["deviance"], r["pai5"]
        cpu, load = r.get("cpu_s"), r.get("load")
        lines.append(
            f"| {r['scale']} | {r['zone_hours']:,} | {s['fit']:.0f} | {s.get('backtest', 0):.0f} "
            f"| {s['effects']:.0f} | {s['total']:.0f} | {'' if cpu is None else f'{cpu:.0f}'} "
            f"| {'' if load is None else f'{load:.1f}'} | {r['peak_mb']:,} "
            f"| {d.get('zone_glm', nan):.3f} / {d.get('glm', nan):.3f} / {d.get('xgb', nan):.3f} / "
            f"{d.get('seasonal_naive_4w', nan):.3f} "
            f"| {p.get('zone_glm', nan):.2f} / {p.get('glm', nan):.2f} / {p.get('xgb', nan):.2f} / "
            f"{p.get('recent_hotspot', nan):.2f} | {r['when'][:10]}, {r['cores']} cores |"
        )
    lines.append(END)
    write_section(START, END, "\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    for name in sys.argv[1:] or ["city"]:
        run(name)
