"""Benchmark: the zones' vectorised hot paths against the code they replaced, same process.

* **H3 assignment** of 39 M points (the rows of a metropolis' presence over two years) spread
  uniformly over 40 km x 40 km around Paris, at the studies' default resolution 8 and at 9:
  ``features.h3index.h3_ints`` (the grid shortcut, then h3ronpy for points near cell edges)
  against the loop it replaced (``h3.latlng_to_cell`` point by point) timed on a 400 000-point
  subsample and scaled to 39 M. The points are drawn into preallocated arrays in chunks (no
  39 M-long temporaries); ``h3_ints`` itself works in chunks of ``H3_CHUNK`` points. The two are
  compared on the subsample (they must be equal). Goal (issue 18): under 10 s.
* **Zone neighbours**: the 8 nearest of 5 000 zones (centroids spread over a region of
  200 km x 200 km), ``pipelines.signals.scan.knn_neighbours`` (k-d tree) against
  ``knn_neighbours_dense`` (the full distance matrix it replaced); both must be equal. Best of
  3 runs each. Goal: under 0.1 s.

Wall time and the process' CPU time are both reported, with the machine's 1-minute load
average when the run started: the machine is shared, and wall time on a loaded machine is
several times its CPU time. Figures go into docs/benchmarks.md between the ``bench_zones``
markers (other sections left alone).

Usage: ``python -m bench zones`` or ``python -m bench.bench_zones``.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import h3
import numpy as np
import pandas as pd

from bench.bench_cube import write_section
from features.h3index import H3_CHUNK, h3_ints
from pipelines.signals.scan import knn_neighbours, knn_neighbours_dense

START, END = "<!-- bench_zones:start -->", "<!-- bench_zones:end -->"
N_POINTS = 39_000_000
N_LOOP = 400_000
N_ZONES = 5_000
GOAL_H3_S, GOAL_NB_S = 10.0, 0.1
CENTRE = (48.8566, 2.3522)  # Paris
HALF_KM = 20.0


def _points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform over 40 km x 40 km around :data:`CENTRE`, drawn chunk by chunk."""
    rng = np.random.default_rng(seed)
    lat = np.empty(n)
    lon = np.empty(n)
    dlat = HALF_KM / 111.195
    dlon = dlat / np.cos(np.radians(CENTRE[0]))
    for lo in range(0, n, H3_CHUNK):
        hi = min(n, lo + H3_CHUNK)
        lat[lo:hi] = rng.uniform(CENTRE[0] - dlat, CENTRE[0] + dlat, hi - lo)
        lon[lo:hi] = rng.uniform(CENTRE[1] - dlon, CENTRE[1] + dlon, hi - lo)
    return lat, lon


def _timed(f, *args, **kw):
    w, c = time.perf_counter(), time.process_time()
    out = f(*args, **kw)
    return out, time.perf_counter() - w, time.process_time() - c


def bench_h3(res: int, *, n: int = N_POINTS, seed: int = 0) -> dict:
    """H3 assignment of ``n`` points at ``res``: vectorised against the scaled loop."""
    lat, lon = _points(n, seed)
    sub = slice(0, min(n, N_LOOP))
    loop, loop_s, loop_cpu = _timed(
        lambda: [h3.latlng_to_cell(a, o, res) for a, o in zip(lat[sub], lon[sub])]
    )
    cells, wall, cpu = _timed(h3_ints, lat, lon, res)
    same = bool((cells[sub] == np.array([h3.str_to_int(c) for c in loop], np.uint64)).all())
    if not same:
        raise AssertionError(f"h3_ints differs from h3.latlng_to_cell at resolution {res}")
    scale = n / len(loop)
    return {
        "resolution": res,
        "points": n,
        "cells": int(len(pd.unique(cells))),
        "vectorised_s": round(wall, 2),
        "vectorised_cpu_s": round(cpu, 2),
        "points_per_s": round(n / wall),
        "loop_s_scaled": round(loop_s * scale, 1),
        "loop_cpu_s_scaled": round(loop_cpu * scale, 1),
        "speed_up": round(loop_s * scale / wall, 1),
        "same_cells": same,
        "goal_met": bool(wall < GOAL_H3_S),
    }


def bench_neighbours(*, n: int = N_ZONES, k: int = 8, seed: int = 0) -> dict:
    """The ``k`` nearest of ``n`` zones: k-d tree against the full distance matrix."""
    rng = np.random.default_rng(seed)
    lat = CENTRE[0] + rng.uniform(-0.9, 0.9, n)
    lon = CENTRE[1] + rng.uniform(-1.35, 1.35, n)
    tree = [_timed(knn_neighbours, lon, lat, k=k) for _ in range(3)]
    dense = [_timed(knn_neighbours_dense, lon, lat, k=k) for _ in range(3)]
    same = bool((tree[0][0] == dense[0][0]).all())
    if not same:
        raise AssertionError("knn_neighbours differs from the full distance matrix")
    best_tree = min(t[1] for t in tree)
    best_dense = min(t[1] for t in dense)
    return {
        "zones": n,
        "k": k,
        "kdtree_s": round(best_tree, 4),
        "kdtree_cpu_s": round(min(t[2] for t in tree), 4),
        "dense_s": round(best_dense, 3),
        "speed_up": round(best_dense / best_tree),
        "same_neighbours": same,
        "goal_met": bool(best_tree < GOAL_NB_S),
    }


def run(*, n_points: int = N_POINTS, resolutions: tuple[int, ...] = (8, 9)) -> dict:
    """Both benchmarks; prints them and writes their section of docs/benchmarks.md."""
    load = os.getloadavg()[0]
    h3_rows = [bench_h3(r, n=n_points) for r in resolutions]
    nb = bench_neighbours()
    result = {
        "h3": h3_rows,
        "neighbours": nb,
        "load_1min": round(load, 1),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "when": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    for r in h3_rows:
        print(
            f"H3 res {r['resolution']}: {r['points']:,} points in {r['vectorised_s']:.1f} s "
            f"(CPU {r['vectorised_cpu_s']:.1f} s, {r['points_per_s']:,.0f} points/s) | loop, "
            f"scaled: {r['loop_s_scaled']:.0f} s | x{r['speed_up']} | goal < {GOAL_H3_S:.0f} s: "
            f"{'met' if r['goal_met'] else 'NOT met'}"
        )
    print(
        f"neighbours: {nb['zones']:,} zones, k = {nb['k']}: k-d tree {nb['kdtree_s']:.3f} s | "
        f"full matrix {nb['dense_s']:.2f} s | x{nb['speed_up']} | goal < {GOAL_NB_S} s: "
        f"{'met' if nb['goal_met'] else 'NOT met'} | load {load:.1f} on {os.cpu_count()} cores"
    )
    _record(result)
    return result


def _record(r: dict) -> None:
    when = f"{r['when'][:10]}, {r['machine']}, {r['cores']} cores, load {r['load_1min']}"
    nb = r["neighbours"]
    lines = [
        START,
        "## Zones: H3 assignment and neighbours (`bench/bench_zones.py`)",
        "",
        f"H3 cells of {r['h3'][0]['points']:,} points uniform over 40 km x 40 km (Paris):",
        "`features.h3index.h3_ints` (a grid of boxes finer than a cell gives most points their",
        "box's cell after a containment test with a 1 % margin; points near cell edges go to",
        "h3ronpy; chunks of 64 k points in 2 threads) against the `h3.latlng_to_cell` loop it",
        f"replaced, timed on {N_LOOP:,} points and scaled (equal cells checked on those). CPU is",
        f"the process' CPU time over both threads. Goal: < {GOAL_H3_S:.0f} s.",
        "",
        "| resolution | cells | vectorised (s) | CPU (s) | points/s | loop, scaled (s) | speed-up | goal | measured |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for h in r["h3"]:
        lines.append(
            f"| {h['resolution']} | {h['cells']:,} | {h['vectorised_s']:.1f} | "
            f"{h['vectorised_cpu_s']:.1f} | {h['points_per_s']:,} | {h['loop_s_scaled']:.0f} | "
            f"{h['speed_up']:.1f} | {'met' if h['goal_met'] else 'not met'} | {when} |"
        )
    lines += [
        "",
        f"The {nb['k']} nearest of {nb['zones']:,} zones (the scan's neighbourhoods):",
        "`pipelines.signals.scan.knn_neighbours` (k-d tree) against the full distance matrix it",
        f"replaced, best of 3 runs each, same neighbours checked. Goal: < {GOAL_NB_S} s.",
        "",
        "| zones | k-d tree (s) | CPU (s) | full matrix (s) | speed-up | goal | measured |",
        "|---:|---:|---:|---:|---:|---|---|",
        f"| {nb['zones']:,} | {nb['kdtree_s']:.4f} | {nb['kdtree_cpu_s']:.4f} | "
        f"{nb['dense_s']:.2f} | {nb['speed_up']:,} | {'met' if nb['goal_met'] else 'not met'} | "
        f"{when} |",
        "",
        f"Peak memory of the whole run: {r['peak_mb']:,} MB. The machine is shared with other",
        "jobs (its 1-minute load average at the start is given): wall times depend on that load,",
        "CPU times much less.",
        END,
    ]
    write_section(START, END, "\n".join(lines))


if __name__ == "__main__":
    run()
