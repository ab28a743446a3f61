"""Benchmark: the whole chain, stage by stage, each against its physical floor (issue 18).

For a synthetic study (``region``: 5 000 zones x 2 years = 87 M zone-hours; ``city`` and the
others work the same way), every stage is the `vigie` command a user types, run in its own
child process under ``nice``, with its wall time and the peak resident memory of its process
tree (sampled every 0.2 s; a stage above ``--cap-gb`` is stopped and recorded as not measured,
so that a run never takes a shared machine's memory):

synth -> ingest -> cube -> glm_cells (the GLM's sufficient statistics on a 2-worker Dask
LocalCluster, :mod:`pipelines.models.distributed`) -> fit -> signals of the last full week ->
weekly report -> brief of the largest upcoming event.

**The floor of a stage**, timed in the same run: one DuckDB pass (one thread per core, same
child-process rules) that reads the stage's inputs -- every column it uses (the cube's: its
sources' :data:`features.cube.plan.INPUT_COLUMNS`, no other file or column), each decoded by
``bit_xor(hash(column))`` (``max()`` would be answered from the Parquet statistics without
reading the data) -- and writes an output of the same rows and columns (the stage's own
Parquet output read back and written again with zstd; the read-back makes the floor a little
slower, so the ratios favour vigie slightly). The ingest is
also compared with a plain pyarrow read and Parquet write of the presence files (issue 18's
goal: within 2x), and the cube with its floor (goal: within 3x). Stages whose inputs are the
store's small outputs (weekly report, brief) have no floor.

A stage that fails, times out or passes the memory cap is recorded as *not measured* with the
reason, and so is every stage after it that needs its output. ``run`` writes
``bench_out/region_results.json`` and the ``bench_region`` section of docs/benchmarks.md and
the measured section of docs/scaling.md.

Usage: ``python -m bench.bench_region [--scale region] [--raw FOLDER] [--cap-gb 20]
[--budget-min 90]`` or ``python -m bench region``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.bench_cube import bench_dir, keep_result, write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench_out" / "region_results.json"
SCALING = ROOT / "docs" / "scaling.md"
START, END = "<!-- bench_region:start -->", "<!-- bench_region:end -->"
S_START, S_END = "<!-- scaling_measured:start -->", "<!-- scaling_measured:end -->"
GOALS = {"ingest": 2.0, "cube": 3.0}  # ratio goals (ingest: to pyarrow; cube: to its floor)
RAW_TABLES = ("presence", "incidents", "ridership")


# ------------------------------------------------------------------------------------------
# running one stage: wall time and peak memory of the process tree
# ------------------------------------------------------------------------------------------
def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_stage(args: list[str], *, cap_gb: float, timeout_s: float, log: Path) -> dict[str, Any]:
    """Run ``args`` (niced); wall seconds, peak MB of its tree, and ``error`` when it failed."""
    t0 = time.perf_counter()
    peak, error = 0, None
    with log.open("w") as out:
        child = subprocess.Popen(["nice", "-n", "5", *args], cwd=ROOT, stdout=out, stderr=out)
        proc = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                peak = max(peak, _tree_rss(proc))
            except psutil.Error:
                pass
            if peak > cap_gb * 2**30:
                error = f"stopped above the {cap_gb:g} GB memory cap after {time.perf_counter() - t0:.0f} s"
            elif time.perf_counter() - t0 > timeout_s:
                error = f"stopped after {timeout_s:.0f} s (time limit), at {peak / 2**30:.1f} GB"
            if error:
                for p in [*proc.children(recursive=True), proc]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                child.wait()
                break
            time.sleep(0.2)
    if error is None and child.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        error = f"exit {child.returncode}: {' '.join(tail)[-300:]}"
    return {"seconds": time.perf_counter() - t0, "peak_mb": peak / 2**20, "error": error}


# ------------------------------------------------------------------------------------------
# floors: one DuckDB pass over the inputs' columns, writing an output of the same size
# ------------------------------------------------------------------------------------------
_FLOOR_CHILD = """
import duckdb, json, sys, time
spec = json.loads(sys.argv[1])
con = duckdb.connect()
con.execute("SET threads TO 2")
t = time.perf_counter()
for files, cols in spec["inputs"]:
    sel = ", ".join(f'bit_xor(hash("{c}"))' for c in cols) or "count(*)"
    con.execute(f"SELECT {sel} FROM read_parquet({files!r}, union_by_name=true)").fetchall()
for i, files in enumerate(f for f in spec["outputs"] if f):
    con.execute(f"COPY (SELECT * FROM read_parquet({files!r}, union_by_name=true)) "
                f"TO '{spec['to']}{i}.parquet' (FORMAT parquet, COMPRESSION zstd)")
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

_PYARROW_CHILD = """
import json, sys, time
import pyarrow.parquet as pq
files = json.loads(sys.argv[1])
t = time.perf_counter()
writer = None
for f in files:
    table = pq.read_table(f)
    if writer is None:
        writer = pq.ParquetWriter(sys.argv[2], table.schema, compression="zstd")
    writer.write_table(table.cast(writer.schema))
writer.close()
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def _child_json(code: str, *args: str, cap_gb: float, timeout_s: float, log: Path) -> dict:
    res = run_stage([sys.executable, "-c", code, *args], cap_gb=cap_gb, timeout_s=timeout_s,
                    log=log)  # fmt: skip
    if res["error"]:
        return {"error": res["error"], "peak_mb": res["peak_mb"]}
    line = log.read_text().strip().splitlines()[-1]
    return {**json.loads(line), "peak_mb": res["peak_mb"]}


def _columns(files: list[str]) -> list[str]:
    import pyarrow.parquet as pq

    names: dict[str, None] = {}
    for f in files[:1] + files[-1:]:
        names.update(dict.fromkeys(pq.read_schema(f).names))
    return list(names)


def _parquet(folder: Path, pattern: str) -> list[str]:
    return sorted(str(p) for p in folder.glob(pattern))


def floor_spec(stage: str, raw: Path, store: Path) -> dict[str, Any] | None:
    """The inputs (files, columns) and the output of a stage's floor; None: no floor."""
    from pipelines.models.cube_io import cube_columns_needed

    val = store / "validated"
    cube = _parquet(store / "cube", "month=*/*.parquet")
    if stage == "ingest":
        ins = [_parquet(raw, f"{d}/*.parquet") for d in ("presence", "incidents", "transport")]
        # output: the big tables again (the validated rows are the raw rows less the bad ones)
        ins = [[f for f in fs if "flux_vision_2h" not in f] for fs in ins]
        return {"inputs": [(f, _columns(f)) for f in ins if f], "outputs": ins}
    if stage == "cube":  # the cube's sources, the columns it reads (INPUT_COLUMNS)
        from features.cube.plan import INPUT_COLUMNS

        ins = [([str(val / f"{s}.parquet")], cols) for s, cols in INPUT_COLUMNS.items()]
        ins = [(f, [c for c in _columns(f) if c in cols]) for f, cols in ins if Path(f[0]).exists()]
        return {"inputs": ins, "outputs": [cube]}
    if stage in ("glm_cells", "fit", "signals") and cube:
        cols = cube_columns_needed(_columns(cube))
        out = {"fit": _parquet(store / "models", "*.parquet"),
               "signals": _parquet(store / "signals", "*.parquet")}.get(stage, [])  # fmt: skip
        return {"inputs": [(cube, ["zone_id", "hour", *cols])], "outputs": [out]}
    return None


# ------------------------------------------------------------------------------------------
# the chain
# ------------------------------------------------------------------------------------------
def _vigie(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


_CELLS_CHILD = """
import sys
from features.cube.dask_engine import scheduler
from features.store import Store
from pipelines.models.distributed import fit_on_cluster
with scheduler("local", workers=2) as address:
    fits = fit_on_cluster(Store(sys.argv[1]), address=address)
for g, f in fits.items():
    print(g, f if isinstance(f, str) else f"{f.n_cells} cells, {f.n_rows} rows, {f.n_incidents} incidents")
"""


def stages(scale: str, raw: Path, store: Path, reports: Path) -> list[tuple[str, Any]]:
    """(name, args or a callable giving the args once the store exists) of each stage."""

    def week() -> list[str]:
        from features.store import Store
        from features.timeutil import last_full_week

        meta = Store(store).cube_meta()
        return ["--week", last_full_week(meta["end"], meta["timezone"])]

    def event() -> list[str]:
        from pipelines.demo import largest_upcoming_event

        ev = largest_upcoming_event(store)
        return [ev, "--store", str(store), "--reports", str(reports)] if ev else []

    return [
        ("synth", _vigie("synth", "--scale", scale, "--out", str(raw))),
        ("ingest", _vigie("ingest", str(raw / "sources.yaml"), "--store", str(store))),
        ("cube", _vigie("cube", "--store", str(store))),
        ("glm_cells", [sys.executable, "-c", _CELLS_CHILD, str(store)]),
        ("fit", _vigie("fit", "--store", str(store), "--verbose")),  # progress in fit.log
        ("signals", lambda: _vigie("signals", "--store", str(store), *week())),
        (
            "weekly_report",
            lambda: _vigie(
                "report", "weekly", "--store", str(store), *week(), "--reports", str(reports)
            ),
        ),  # fmt: skip
        ("brief", lambda: _vigie("brief", *event()) if event() else []),
    ]


def _synth_record(base: Path) -> dict[str, Any]:
    """The synth stage of an earlier run (``/usr/bin/time -v`` output in ``base/synth.time``)."""
    path = base / "synth.time"
    if not path.exists():
        return {"error": "raw files given; synth not timed"}
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not wall or not rss:
        return {"error": f"{path}: no /usr/bin/time -v figures"}
    h, m, s = wall.groups()
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    return {"seconds": int(h or 0) * 3600 + int(m) * 60 + float(s),
            "peak_mb": int(rss.group(1)) / 1024, "error": None,
            "note": f"timed by `/usr/bin/time -v` on an earlier niced `vigie synth` run "
                    f"(written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(path.stat().st_mtime))}); "
                    f"CPU time {cpu:.0f} s (user + system)"}  # fmt: skip


def _floors(stage: str, raw: Path, store: Path, work: Path, *, cap_gb: float, left: float) -> dict:
    out: dict[str, Any] = {}
    spec = floor_spec(stage, raw, store)
    if spec is not None:
        spec["to"] = str(work / f"floor_{stage}_")
        out["floor"] = _child_json(_FLOOR_CHILD, json.dumps(spec), cap_gb=cap_gb,
                                   timeout_s=left, log=work / f"floor_{stage}.log")  # fmt: skip
    files = _parquet(raw, "presence/flux_vision_horaire_*.parquet")
    if stage == "ingest" and files:
        out["pyarrow"] = _child_json(_PYARROW_CHILD, json.dumps(files), str(work / "pa.parquet"),
                                     cap_gb=cap_gb, timeout_s=left, log=work / "pyarrow.log")  # fmt: skip
    return out


def run(
    scale: str = "region",
    *,
    raw: Path | None = None,
    cap_gb: float = 20.0,
    budget_min: float = 90.0,
    stage_min: float | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Run the chain on ``scale`` (raw files made by synth unless ``raw`` holds them already)."""
    from features.synth.scales import SCALES

    spec = SCALES[scale]
    base = bench_dir() / f"chain-{scale}"
    raw = Path(raw) if raw else base / "raw"
    store, reports, work = base / "store", base / "reports", base / "work"
    work.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget_min * 60
    zone_hours = spec.nx * spec.ny * spec.weeks * 168
    rec: dict[str, Any] = {"scale": scale, "zone_hours": zone_hours, "stages": {},
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": machine(), "cap_gb": cap_gb}  # fmt: skip
    blocked = None
    earlier = json.loads(RESULTS.read_text()).get(scale) if only and RESULTS.exists() else None
    if earlier:  # a rerun of some stages on the store of an earlier run: keep the others
        rec["stages"] = dict(earlier["stages"])
        rec["date"] = f"{_earlier_dates(earlier['date'], only)}; {', '.join(only)} {rec['date']}"
    for name, args in stages(scale, raw, store, reports):
        if only and name not in only:
            continue
        left = deadline - time.perf_counter()
        if name == "synth" and (raw / "sources.yaml").exists():
            rec["stages"][name] = _synth_record(raw.parent)
            continue
        if blocked or left <= 0:
            rec["stages"][name] = {"error": f"not run: {blocked or 'no time left in the budget'}"}
            continue
        try:
            argv = args() if callable(args) else args
        except Exception as exc:  # e.g. no cube to find the week in
            rec["stages"][name] = {"error": f"not run: {exc}"}
            continue
        if not argv:
            rec["stages"][name] = {"error": "nothing to run (no upcoming event)"}
            continue
        print(f"[region] {name} ...", flush=True)
        limit = min(left, stage_min * 60) if stage_min else left
        res = run_stage(argv, cap_gb=cap_gb, timeout_s=limit, log=work / f"{name}.log")
        if res["error"] is None or name == "ingest":  # the ingest's floor needs the raw files only
            res.update(_floors(name, raw, store, work, cap_gb=cap_gb,
                               left=deadline - time.perf_counter()))  # fmt: skip
        if res["error"] is not None and name in ("synth", "ingest", "cube"):
            blocked = f"needs {name}, which was not measured"
        rec["stages"][name] = res
        print(f"[region] {name}: {json.dumps(res, default=str)}", flush=True)
    keep_result(RESULTS, scale, rec)
    write_docs(json.loads(RESULTS.read_text()))
    if (not only or "ingest" in only) and (raw / "sources.yaml").exists():
        # the presence alone against a plain pyarrow read and write (the ingest goal)
        from bench.bench_ingest import run_presence

        left = max(deadline - time.perf_counter(), 0) / 60
        if left > 1:
            rec["ingest_presence"] = run_presence(raw, label=scale, cap_gb=cap_gb, timeout_min=left)
    return rec


def _earlier_dates(date: str, only: list[str]) -> str:
    """The dates of an earlier record less those of stages all rerun now (a part reads
    ``signals, brief 2026-12-03 12:07 UTC``; the first part, the whole run's, is kept)."""
    parts = date.split("; ")
    keep = [parts[0]]
    for part in parts[1:]:
        names = re.match(r"^(.*) \d{4}-\d{2}-\d{2} ", part)
        if names is None or not set(names.group(1).split(", ")) <= set(only):
            keep.append(part)
    return "; ".join(keep)


def machine() -> str:
    load = os.getloadavg()[0]
    return (f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GB, load {load:.1f}")  # fmt: skip


COUNTRY_ZONE_HOURS = 50_000 * 8_760  # a national hourly presence extract, one year
#: stages whose work grows with the study's zone-hours (the others read a week, or the outputs)
LINEAR = ("synth", "ingest", "cube", "glm_cells", "fit")


def _cell(st: dict[str, Any], zone_hours: int) -> list[str]:
    """Table cells of one stage: time, peak, zone-hours/s, floor, ratio, pyarrow, ratio."""
    fl, pa = st.get("floor") or {}, st.get("pyarrow") or {}
    f_s = f"{fl['seconds']:.1f}" if "seconds" in fl else fl.get("error", "n/a")
    if st.get("error"):  # the floors (which need the inputs only) may still have been timed
        p_s = f"{pa['seconds']:.1f}" if "seconds" in pa else ""
        return [f"not measured: {st['error']}", "", "", f_s if fl else "", "", p_s, ""]
    s = st["seconds"]
    f_r = f"{s / fl['seconds']:.2f}" if "seconds" in fl else ""
    p_s = f"{pa['seconds']:.1f}" if "seconds" in pa else ""
    p_r = f"{s / pa['seconds']:.2f}" if "seconds" in pa else ""
    return [f"{s:.1f}", f"{st['peak_mb']:,.0f}", f"{zone_hours / s:,.0f}", f_s, f_r, p_s, p_r]


def _goal(name: str, st: dict[str, Any]) -> str:
    if name not in GOALS or st.get("error"):
        return ""
    if name == "ingest":  # every source here; the goal is the presence's alone
        return "the 2x goal is on the presence alone: the ingest table below"
    ref = (st.get("pyarrow") if name == "ingest" else st.get("floor")) or {}
    if "seconds" not in ref:
        return "not measured"
    ratio = st["seconds"] / ref["seconds"]
    return f"{'met' if ratio <= GOALS[name] else 'not met'} (<= {GOALS[name]:g}x)"


def section(results: dict[str, Any]) -> str:
    """The bench_region section of docs/benchmarks.md."""
    lines = [
        START,
        "## The chain stage by stage, against physical floors (`bench/bench_region.py`)",
        "",
        "Each stage is the `vigie` command in its own niced child process; peak = the largest "
        "resident memory of its process tree (sampled every 0.2 s). Floor = one DuckDB pass in "
        "the same run decoding every column the stage reads from its inputs (for the cube, the "
        "columns of `features.cube.plan.INPUT_COLUMNS`; `bit_xor(hash(column))`, as `max()` "
        "is answered from the Parquet statistics) and writing its Parquet output again (zstd); "
        "pyarrow = a plain read and Parquet write of the presence files. "
        "glm_cells = the GLM's sufficient statistics on a 2-worker Dask LocalCluster and the "
        "Poisson GLMs fitted on them. A stage stopped at the memory cap, the time budget or an "
        "error is *not measured*, with the reason, as is every stage needing its output. "
        "zone-hours/s = the study's zone-hours over the stage's time (signals, the report and "
        "the brief read a week and its history, so theirs is only a yardstick). Small studies "
        "are dominated by start-up (imports, the cluster's workers), not by the data.",
    ]
    for scale, rec in results.items():
        zh = rec["zone_hours"]
        lines += ["", f"**{scale}** ({zh:,} zone-hours; measured {rec['date']}, {rec['machine']}, "
                      f"memory cap {rec['cap_gb']:g} GB):", "",  # fmt: skip
                  "| stage | time (s) | peak (MB) | zone-hours/s | floor (s) | ratio to floor "
                  "| pyarrow (s) | ratio to pyarrow | goal |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for name, st in rec["stages"].items():
            lines.append("| " + " | ".join([name, *_cell(st, zh), _goal(name, st)]) + " |")
        notes = [f"- {name}: {st['note']}" for name, st in rec["stages"].items() if "note" in st]
        lines += [""] + notes if notes else []
    return "\n".join([*lines, END])


def scaling_section(results: dict[str, Any]) -> str:
    """The measured section of docs/scaling.md: per stage, the measured throughput and what
    it gives for a country-year (linear in zone-hours) on one such machine."""
    lines = [S_START, "Written by `python -m bench region` (`make bench`). The last column "
             "divides a country-year by the measured rate, for the stages whose work grows "
             "with the zone-hours; it assumes the memory a stage needs is available (see the "
             "peak column and the table above for the stages that load their table).", ""]  # fmt: skip
    for scale, rec in results.items():
        zh = rec["zone_hours"]
        lines += [f"**{scale}**, measured {rec['date']} on {rec['machine']}:", "",
                  "| stage | time (s) | peak (MB) | zone-hours/s | a country-year (440 M "
                  "zone-hours) at that rate, one machine |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, st in rec["stages"].items():
            if st.get("error"):
                lines.append(f"| {name} | not measured: {st['error']} | | | |")
                continue
            rate = zh / st["seconds"]
            country = f"{COUNTRY_ZONE_HOURS / rate / 3600:.1f} h" if name in LINEAR else "-"
            lines.append(f"| {name} | {st['seconds']:.1f} | {st['peak_mb']:,.0f} | {rate:,.0f} | "
                         f"{country} |")  # fmt: skip
        lines.append("")
    return "\n".join([*lines, S_END])


def write_docs(results: dict[str, Any]) -> None:
    write_section(START, END, section(results))
    text = SCALING.read_text() if SCALING.exists() else ""
    block = scaling_section(results)
    if S_START in text and S_END in text:
        text = text[: text.index(S_START)] + block + text[text.index(S_END) + len(S_END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    SCALING.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_region")
    p.add_argument("--scale", default="region")
    p.add_argument("--raw", type=Path, default=None, help="raw files already written (synth)")
    p.add_argument("--cap-gb", type=float, default=20.0, help="memory cap of each stage")
    p.add_argument("--budget-min", type=float, default=90.0, help="time budget of the chain")
    p.add_argument("--stage-min", type=float, default=None, help="time limit of each stage")
    p.add_argument("--only", nargs="*", default=None, help="rerun these stages on the store")
    p.add_argument("--render", action="store_true",
                   help="only rewrite the docs' sections from bench_out/region_results.json")  # fmt: skip
    a = p.parse_args(argv)
    if a.render:
        write_docs(json.loads(RESULTS.read_text()))
        return 0
    run(a.scale, raw=a.raw, cap_gb=a.cap_gb, budget_min=a.budget_min, stage_min=a.stage_min,
        only=a.only)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
