"""Benchmark: weak signals on a synthetic city, and the detectors' evaluation.

For a synthetic city (``tiny`` by default; ``city`` for scale) the store is made once by
``features.synth.generate`` + ``ingest`` + ``build_cube`` + ``fit_all`` (cached under
``$VIGIE_BENCH_DIR``, default ``~/.cache/vigie/bench``), then:

* **planted signals**: ``run_signals`` for each week of truth.json, with the fitted model and
  with the per-capita fallback; for each planted signal, its rank and q value (acceptance: top
  ten, q < 0.05) and the run time;
* **evaluation** (``evaluate_detectors``): injected outbreaks (Noufaily et al. 2013) and null
  replicates; POD for outbreaks >= 3 SD at 1 % FPR per zone-week for every detector and EARS
  C1/C2/C3, PPV, delay, and the share of null weekly runs with a false signal against the
  nominal FDR.

Usage: ``python -m bench.bench_signals [tiny|city]`` or ``run("tiny")``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from bench.bench_cube import bench_dir
from features.cube import build_cube
from features.ingest import ingest
from features.store import Store
from features.synth import generate
from pipelines.models.fit import fit_all
from pipelines.signals.evaluate import evaluate_detectors
from pipelines.signals.period import parse_period
from pipelines.signals.run import run_signals

MATCH = {
    "gathering": {"gathering"},
    "cluster": {"cluster", "excess"},
    "emerging": {"drift", "excess", "cluster"},
    "outage_spillover": {"correlation", "cluster", "excess"},
}


def prepare(scale: str, *, seed: int = 0) -> tuple[Path, Path]:
    """Store (with cube and fitted models) and truth.json of a synthetic city, made once."""
    base = bench_dir() / f"signals-{scale}-seed{seed}"
    store, stamp = base / "store", base / "ready.json"
    if not stamp.exists():
        res = generate(scale, base / "raw", seed=seed)
        ingest(res.sources_yaml, store)
        build_cube(store)
        fit_all(Store(store))
        stamp.write_text(json.dumps({"scale": scale, "seed": seed}))
    return store, base / "raw" / "truth.json"


def _rank(signals: pd.DataFrame, planted: dict) -> tuple[int | None, float | None]:
    zones = set(planted["zones"])
    if planted["type"] == "outage_spillover":
        zones |= set(planted["params"].get("neighbours", []))
    a, b = pd.Timestamp(planted["start"]), pd.Timestamp(planted["end"])
    for _, s in signals.iterrows():
        if s["type"] in MATCH.get(planted["type"], set()) and set(s["zones"]) & zones:
            if pd.Timestamp(s["start"]) < b and pd.Timestamp(s["end"]) > a:
                return int(s["rank"]), float(s["q_value"])
    return None, None


def run(scale: str = "tiny", *, replicates: int = 600) -> dict:
    """Run the benchmark and return its figures."""
    store, truth_path = prepare(scale)
    truth = json.loads(truth_path.read_text())
    out: dict = {"scale": scale, "planted": {}}
    for use_model in (True, False):
        key = "model" if use_model else "fallback"
        rows = []
        for wk in sorted({s["week"] for s in truth["signals"]}):
            t0 = time.perf_counter()
            r = run_signals(store, parse_period(wk), use_model=use_model)
            secs = time.perf_counter() - t0
            for p in (s for s in truth["signals"] if s["week"] == wk):
                rank, q = _rank(r.signals, p)
                rows.append({"week": wk, "type": p["type"], "rank": rank, "q": q,
                             "ok": rank is not None and rank <= 10 and q < 0.05,
                             "seconds": round(secs, 1), "tests": r.n_tests})  # fmt: skip
        out["planted"][key] = rows
        for row in rows:
            print(f"[signals] {key:8s} {row}")
    t0 = time.perf_counter()
    ev = evaluate_detectors(store, replicates=replicates, truth=truth)
    out["evaluation_seconds"] = round(time.perf_counter() - t0, 1)
    out["evaluation"] = ev.to_json()
    for name, d in ev.to_json()["detectors"].items():
        print(
            f"[signals] {name:8s} FPR {d['fpr_zone_week']:.3f} POD>=3SD {d['pod_3sd_plus']:.2f} "
            f"PPV {d['ppv_one_outbreak_per_week'] or 0:.2f} delay {d['median_delay_days']}"
        )
    print(f"[signals] nominal-FDR pipeline: {ev.to_json()['nominal_fdr_pipeline']}")
    print(f"[signals] acceptance: {ev.to_json()['acceptance']}")
    return out


if __name__ == "__main__":
    for sc in sys.argv[1:] or ["tiny"]:
        run(sc)
