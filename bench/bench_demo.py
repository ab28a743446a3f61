"""`make demo`'s step times into docs/benchmarks.md (between the ``demo`` markers).

The demo itself records each step's wall time, with its date, machine and load, in
``<dir>/<scale>/demo_times.json`` (:func:`pipelines.demo.record_times`). This bench runs the demo
on a fresh folder (``python -m bench.bench_demo run [tiny|city]``, several minutes for the city)
or reads the record a finished demo left (``python -m bench.bench_demo read DEMO_DIR``), keeps
the last run per scale in ``bench_out/demo_results.json`` and writes the table. The wall times
depend on the machine's load, which the table shows beside them; a fresh machine adds the
install (``pip install -e .[dev]``).

Usage: ``python -m bench demo`` (runs the tiny demo) or the two forms above.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_cube import keep_result, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_out" / "demo_results.json"
START, END = "<!-- demo:start -->", "<!-- demo:end -->"
STEPS = (
    "synth",
    "ingest",
    "cube",
    "fit",
    "signals",
    "report weekly",
    "brief",
    "report evaluation",
    "report explore",
)


def run_demo(scale: str) -> dict:
    """Run ``python -m pipelines.demo`` on a fresh folder and return its record."""
    with tempfile.TemporaryDirectory(prefix="vigie_demo_") as tmp:
        cmd = [sys.executable, "-m", "pipelines.demo", "--scale", scale, "--dir", tmp]
        subprocess.run([*cmd, "--reports", str(Path(tmp) / "reports")], check=True, cwd=ROOT)
        return read_record(Path(tmp), scale)


def read_record(demo_dir: Path, scale: str) -> dict:
    """The record a finished demo wrote under ``demo_dir/<scale>/demo_times.json``."""
    return json.loads((Path(demo_dir) / scale / "demo_times.json").read_text())


def section(results: dict) -> str:
    """The Markdown table of every scale's last run."""
    head = (
        "| scale | "
        + " | ".join(STEPS)
        + " | total | measured | load (1 min): at the end / highest at a step's end |"
    )
    lines = [
        START,
        "## `make demo` (whole chain, `bench/bench_demo.py`)",
        "",
        "`make demo` = synth → ingest → cube → fit (+ 8-week backtest, effects) → signals → weekly "
        "report of the last full week → brief of the largest upcoming event → evaluation and "
        "exploration reports, each step a `vigie` command in a subprocess. Seconds of wall time per "
        "step, recorded by the demo itself (`demo_times.json`); the environment already "
        "installed (a fresh machine adds `pip install -e .[dev]`). This machine is shared: the "
        "load beside each run says how far its times are from an idle machine's.",
        "",
        head,
        "|---|" + "---:|" * (len(STEPS) + 1) + "---|---:|",
    ]
    order = {"tiny": 0, "city": 1, "metropolis": 2}
    for r in sorted(results.values(), key=lambda r: order.get(r["scale"], 9)):
        cells = [f"{r['steps_s'][s]:.0f}" if s in r["steps_s"] else "–" for s in STEPS]
        lines.append(
            f"| {r['scale']} | "
            + " | ".join(cells)
            + f" | {r['total_s']:.0f} | {r['date']}, {r['machine']} | {_loads(r)} |"
        )
    lines.append(END)
    return "\n".join(lines)


def _loads(r: dict) -> str:
    by_step = r.get("load_1min_by_step") or {}
    top = f" / {max(by_step.values()):g}" if by_step else " / not recorded"
    return f"{r['load_1min_at_end']:g}{top}"


def record(result: dict) -> dict:
    """Keep ``result`` as its scale's last run and rewrite the section."""
    results = keep_result(RESULTS, result["scale"], result)
    write_section(START, END, section(results))
    return result


def run() -> dict:
    """`python -m bench demo`: the tiny demo (the city's takes several minutes: run it with
    ``python -m bench.bench_demo run city``)."""
    return record(run_demo("tiny"))


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "read":
        scale = argv[2] if len(argv) > 2 else "city"
        record(read_record(Path(argv[1]), scale))
    else:
        record(run_demo(argv[1] if len(argv) > 1 else "tiny"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
