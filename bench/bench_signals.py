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

* **speed** (:func:`speed`): ``vigie signals --from --to`` over three years of hourly presence
  and incidents at 25 zones (goal < 60 s; ``tests/_toy_store.py``, a grid city, Poisson
  incidents proportional to presence, cached under ``$VIGIE_BENCH_DIR``) and the last week of
  the 300-zone synthetic city (goal < 30 s; :func:`city_store`), each beside a plain pandas
  robust-z pass (median and MAD per zone and hour of week over the same rows, read from the
  same cube) for the ratio; written to docs/benchmarks.md.

Usage: ``python -m bench.bench_signals [tiny|city|speed]`` or ``run("tiny")``.
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
from features.timeutil import as_utc
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
    """Run the benchmark and return its figures (the speed goals first)."""
    out: dict = {"scale": scale, "planted": {}, "speed": speed()}
    store, truth_path = prepare(scale)
    truth = json.loads(truth_path.read_text())
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


def _toy(name: str, *, side: int, weeks: int) -> Path:
    """A cached toy store (tests/_toy_store.py) of ``side x side`` zones over ``weeks`` weeks."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _toy_store import toy_store

    root = bench_dir() / f"signals-speed-{name}"
    if not (root / "cube_meta.json").exists():
        toy_store(root, side=side, weeks=weeks, grain="1h", seed=3, daily_incidents=2.0)
    return root


def robust_z_seconds(store: Path, first: str, last: str) -> float:
    """A plain pandas robust-z pass over the same cube rows: read, median and MAD per zone and
    hour of week, z of every slot."""
    t0 = time.perf_counter()
    st = Store(store)
    tz = st.cube_meta().get("timezone") or st.timezone
    start = pd.Timestamp(first).tz_localize(tz) - pd.Timedelta(days=420)
    end = pd.Timestamp(last).tz_localize(tz) + pd.Timedelta(days=1)
    f = st.cube(columns=["present", "incidents", "dow", "local_hour"], start=as_utc(start),
                end=as_utc(end))  # fmt: skip
    f["how"] = f["dow"].astype(int) * 24 + f["local_hour"].astype(int)
    g = f.groupby(["zone_id", "how"])
    for col in ("present", "incidents"):
        med = g[col].transform("median")
        mad = (f[col] - med).abs().groupby([f["zone_id"], f["how"]]).transform("median")
        f[f"z_{col}"] = (f[col] - med) / (1.4826 * mad.where(mad > 0, 1.0))
    return time.perf_counter() - t0


def city_store() -> Path:
    """The synthetic city's store for the city-week case: ``$VIGIE_CITY_STORE`` (e.g. a copy of
    ``make demo SCALE=city``'s store, with its fitted models), else the benchmarks' own city
    (``bench.bench_cube.prepare("city")``: 300 zones, two years, no model)."""
    import os

    from bench.bench_cube import prepare as prepare_city

    env = os.environ.get("VIGIE_CITY_STORE")
    store = Path(env) if env else prepare_city("city")
    if not (store / "cube_meta.json").exists():
        build_cube(store)
    return store


def speed() -> dict:
    """The two speed goals of issue 13, each with the robust-z ratio; writes their section of
    docs/benchmarks.md."""
    out = {}
    cases = {
        "three_years_25_zones": (_toy("3y", side=5, weeks=160), 60.0, 156),
        "city_week": (city_store(), 30.0, 1),
    }
    for name, (store, goal, weeks) in cases.items():
        meta = Store(store).cube_meta()
        tz = meta.get("timezone") or "UTC"
        last = (as_utc(meta["end"]) - pd.Timedelta(hours=1)).tz_convert(tz).date()
        first = last - pd.Timedelta(days=7 * weeks - 1)
        period = parse_period(None, start=str(first), end=str(last))
        t0 = time.perf_counter()
        r = run_signals(store, period, write=False, use_model=False)
        secs = time.perf_counter() - t0
        rz = robust_z_seconds(store, str(first), str(last))
        out[name] = {"seconds": round(secs, 1), "goal_seconds": goal, "ok": secs < goal,
                     "robust_z_seconds": round(rz, 2), "ratio": round(secs / rz, 1),
                     "zones": r.zones, "days": period.days, "tests": r.n_tests,
                     "signals": r.n_signals}  # fmt: skip
        out[name]["store"] = str(store)
        out[name]["model"] = Store(store).model_file("models.json").exists()
        print(f"[signals] speed {name}: {out[name]}", flush=True)
    _write_speed(out)
    return out


def _write_speed(out: dict) -> None:
    """The speed section of docs/benchmarks.md (between the ``bench_signals_speed`` markers)."""
    import datetime as dt
    import os
    import platform

    from bench.bench_cube import write_section

    start, end = "<!-- bench_signals_speed:start -->", "<!-- bench_signals_speed:end -->"
    rows = [
        "| case | zones | days | tests | signals | model | vigie signals (s) | goal (s) | met | "
        "pandas robust z (s) | ratio |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for name, r in out.items():
        rows.append(
            f"| {name} | {r['zones']} | {r['days']} | {r['tests']} | {r['signals']} | "
            f"{'fitted' if r['model'] else 'fallback'} | {r['seconds']} | {r['goal_seconds']:.0f} | "
            f"{'yes' if r['ok'] else 'no'} | {r['robust_z_seconds']} | {r['ratio']} |"
        )
    block = "\n".join([
        start,
        "## Signals speed (`python -m bench.bench_signals speed`)",
        "",
        f"*Written on {dt.date.today()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}.* `vigie signals` "
        "(`run_signals`, every detector, `write=False`) over three years of hourly presence and "
        "incidents at 25 zones (tests/_toy_store.py) and over the last week of the synthetic city "
        f"({out['city_week']['store']}); beside each, a plain pandas robust-z pass (median and MAD "
        "per zone and hour of week over the same cube rows and 420 days of history, read "
        "included): the ratio is vigie / robust z. Goals (issue 13): < 60 s and < 30 s.",
        "",
        *rows,
        end,
    ])  # fmt: skip
    write_section(start, end, block)


if __name__ == "__main__":
    for sc in sys.argv[1:] or ["tiny"]:
        print(speed()) if sc == "speed" else run(sc)
