"""Kill a vigie stage at random points and rerun it: ``python tests/_faults_driver.py SPEC.json``.

A fork server: this process imports the stack once, then runs the stage in forked children
(each in its own process group, so a report's kernel dies with it). For one stage it

1. runs the stage uninterrupted on a copy of the initial state (the reference) and times it;
2. ``kills`` times: on a fresh copy of the initial state, starts the stage and SIGKILLs the
   child's process group after a seeded random delay spread over the measured duration; a fresh
   child then checks that the store and ``reports/`` are readable; the stage runs again to the
   end, and its products are compared with the reference (``bench.compare_outputs``) and the
   temporary files left behind are listed.

It prints one JSON line: kills, and every failure (unreadable, rerun failed, a difference, a
leftover) with the kill it followed. ``tests/test_faults_kill.py`` drives it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare_outputs import _same, compare  # noqa: E402
from features.cube import build_cube  # noqa: E402
from features.ingest import ingest  # noqa: E402
from features.store import Store  # noqa: E402
from pipelines.models import fit_all  # noqa: E402
from pipelines.reports.runner import run_notebook  # noqa: E402
from pipelines.signals.run import parse_period, run_signals  # noqa: E402

#: the products compared after the final run, per stage (relative to the work folder)
PRODUCTS = {
    "ingest": ["store/validated", "store/quarantine", "store/ingest_report.json"],
    "cube": ["store/cube", "store/cube_meta.json"],
    "fit": ["store/models"],
    "signals": ["store/signals"],
    "report": ["reports"],
}


def run_stage(spec: dict[str, Any], work: Path) -> None:
    """The stage itself, with the parameters of the spec (small ones keep the test fast)."""
    stage = spec["stage"]
    store = Store(work / "store")
    if stage == "ingest":
        ingest(spec["sources"], store)
    elif stage == "cube":
        build_cube(store, engine=spec.get("engine", "duckdb"))
    elif stage == "fit":
        fit_all(store, backtest_weeks=0, xgb_rounds=10, effects=False)
    elif stage == "signals":
        run_signals(store, parse_period(spec["week"]), n_sim=19, seed=1, use_model=False)
    elif stage == "report":
        run_notebook(
            spec["notebook"],
            kind="weekly",
            report_id=spec["week"],
            parameters={"n": 12},
            reports_dir=work / "reports",
            store=store.root,
            kernel_name=spec.get("kernel"),
        )
    else:  # pragma: no cover
        raise ValueError(stage)


def _read_all(folder: Path) -> None:
    """Every JSON and Parquet file (temporary ones aside) parses."""
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".parquet":
            pd.read_parquet(p)


def check_readable(stage: str, work: Path) -> None:
    """The store and reports/ as a reader finds them after a kill; raises when not usable."""
    store = Store(work / "store")
    _read_all(store.root)
    if stage in ("cube", "fit", "signals"):  # the cube, and the metadata that describes it
        meta = store.cube_meta()
        assert meta["rows"] == len(store.cube(columns=[])), "cube_meta.json vs cube rows"
    if stage == "ingest" and (store.root / "ingest_report.json").exists():
        report = json.loads((store.root / "ingest_report.json").read_text())
        for name, entry in report["sources"].items():
            if entry["fingerprint"] != "pending":
                assert store.validated_path(name).exists(), f"{name}: reported, not in store"
    if stage == "fit" and store.model_file("models.json").exists():
        manifest = json.loads(store.model_file("models.json").read_text())
        for name in manifest["glm"].values():
            assert store.model_file(name).exists(), name
    if stage == "signals":
        for js in store.signals_dir.glob("*.json"):
            if js.name != "evaluation.json":
                assert js.with_suffix(".parquet").exists(), f"{js.name} without its table"
    reports = work / "reports"
    if reports.exists():
        _read_all(reports)
        for d in reports.glob("*/*"):
            if d.is_dir() and not d.name.startswith(".") and d.parent.name != "_failed":
                assert (d / "summary.json").exists() and (d / "report.html").exists(), d


def _fork(fn, *args) -> int:
    """Run ``fn(*args)`` in a forked child of its own process group; its pid."""
    pid = os.fork()
    if pid == 0:  # the child
        os.setpgid(0, 0)
        code = 0
        try:
            fn(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it first
        pass
    return pid


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run(spec: dict[str, Any], work: Path) -> float:
    t0 = time.perf_counter()
    code = _wait(_fork(run_stage, spec, work))
    if code != 0:
        raise RuntimeError(f"{spec['stage']} failed uninterrupted (exit {code})")
    return time.perf_counter() - t0


def _leftovers(work: Path) -> list[str]:
    """Temporary names left in the store and reports (index.html's own temp files aside)."""
    return sorted(
        str(p.relative_to(work))
        for p in work.rglob("*")
        if (".tmp-" in p.name or ".old-" in p.name or ".work-" in p.name)
        and not p.name.startswith(".index.html.tmp-")
    )


def _diffs(stage: str, ref: Path, work: Path) -> list[str]:
    """What the stage's products of ``work`` have that the reference's have not."""
    diffs: list[str] = []
    for rel in PRODUCTS[stage]:
        a, b = ref / rel, work / rel
        if a.is_dir():
            diffs += [f"{rel}/{d}" for d in compare(a, b)]
        elif not b.exists():
            diffs.append(f"{rel}: missing after the rerun")
        else:
            _same(json.loads(a.read_text()), json.loads(b.read_text()), rel, diffs)
    return diffs


def main(spec_path: str) -> dict[str, Any]:
    spec = json.loads(Path(spec_path).read_text())
    initial, out = Path(spec["initial"]), Path(spec["out"])
    ref, work = out / "reference", out / "killed"
    shutil.copytree(initial, ref)
    duration = _run(spec, ref)
    rng = random.Random(spec["seed"])
    failures: list[str] = []
    killed = finished = 0
    for i in range(3 * spec["kills"]):
        if killed == spec["kills"]:
            break
        # each kill starts from the initial state; the delays cover the whole run: its start,
        # its work and its writes (a run that ends before its kill is not counted as one)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(initial, work)
        delay = rng.uniform(0.0, 0.95 * duration)
        pid = _fork(run_stage, spec, work)
        time.sleep(delay)
        done = os.waitpid(pid, os.WNOHANG)[0] != 0
        if not done:
            _kill(pid)
            _wait(pid)
        killed += not done
        finished += done
        where = f"kill {i} at {delay:.2f} s of {duration:.2f}"
        if _wait(_fork(check_readable, spec["stage"], work)) != 0:
            failures.append(f"{where}: the store or reports/ is not readable")
        try:  # the next run completes and gives the uninterrupted run's products
            _run(spec, work)
        except RuntimeError as exc:
            failures.append(f"{where}: the rerun failed: {exc}")
            continue
        failures += [f"{where}: {d}" for d in _diffs(spec["stage"], ref, work)]
        failures += [f"{where}: left behind {p}" for p in _leftovers(work)]
    return {
        "stage": spec["stage"],
        "duration_s": round(duration, 2),
        "kills": killed,
        "finished_before_kill": finished,
        "failures": failures,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
