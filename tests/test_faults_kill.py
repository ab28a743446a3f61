"""Kill-and-rerun, per stage: SIGKILL at random points, the store and reports/ stay readable and
the next run gives what an uninterrupted run gives.

Each stage (ingest, cube, fit, signals, report) runs on the tiny city in forked children of
``tests/_faults_driver.py`` (one import of the stack for all the kills); the kills fall at
seeded random delays spread over the stage's measured duration. ``VIGIE_FAULT_KILLS`` sets the
number of kills per stage (10 by default; ``VIGIE_FAULT_KILLS=40`` for the long version).

* ingest: the store starts ingested from *other* inputs (a renamed zone, fewer incidents), so the
  kills fall in re-ingests, where a source's files and the report change one after the other;
* cube: the store starts with a cube of another period, so the kills fall around the swap;
* fit: the store starts fitted with other settings; signals: a week; report: a notebook run by
  papermill whose report already exists (the kills fall around its swap and the index).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from features.cube import build_cube
from features.ingest import ingest
from features.store import Store

DRIVER = Path(__file__).with_name("_faults_driver.py")
KILLS = int(os.environ.get("VIGIE_FAULT_KILLS", "10"))
WEEK = "2026-W45"


def _other_city(city: Path, dst: Path) -> Path:
    """A copy of the tiny city with one zone's population changed and a tenth of one incident
    file dropped."""
    shutil.copytree(city, dst)
    zones = next(dst.glob("zones*.geojson"))
    gj = json.loads(zones.read_text())
    gj["features"][0]["properties"]["population"] += 1
    zones.write_text(json.dumps(gj))
    incidents = sorted((dst / "incidents").glob("*.csv"))[-1]
    lines = incidents.read_text().splitlines(keepends=True)
    incidents.write_text("".join(lines[: 1 + (len(lines) - 1) * 9 // 10]))
    return dst / "sources.yaml"


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 3")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "from pipelines.reports.publish import emit_summary\n"
            "emit_summary({'total': n * 100, 'title': 'fault test'}, k=10)"
        ),
        nbformat.v4.new_markdown_cell("A report whose run gets killed."),
    ]
    nbformat.write(nb, str(path))
    return path


def _initial(stage: str, tmp: Path, tiny_city: Path, tiny_store: Path, fitted: Path) -> dict:
    """The folder the stage starts from (``store/`` and maybe ``reports/``), and its spec."""
    init = tmp / "initial"
    spec: dict = {"stage": stage, "week": WEEK, "seed": 14}
    if stage == "ingest":
        ingest(_other_city(tiny_city, tmp / "other_city"), init / "store")
        spec["sources"] = str(tiny_city / "sources.yaml")
    elif stage == "cube":
        shutil.copytree(tiny_store, init / "store")
        build_cube(Store(init / "store"), engine="pandas", start="2026-10-05", end="2026-10-19")
    else:
        shutil.copytree(fitted if stage == "fit" else tiny_store, init / "store")
    if stage == "report":
        spec["notebook"] = str(_notebook(tmp / "fault.ipynb"))
        from pipelines.reports.runner import run_notebook

        run_notebook(spec["notebook"], kind="weekly", report_id=WEEK, reports_dir=init / "reports")
    spec.update(initial=str(init), out=str(tmp / "runs"), kills=KILLS)
    return spec


@pytest.mark.parametrize("stage", ["ingest", "cube", "fit", "signals", "report"])
def test_kill_and_rerun(stage, tmp_path, tiny_city, tiny_store, request):
    """After each SIGKILL the store and reports/ are readable (every JSON and Parquet parses,
    cube_meta.json describes the cube, a report folder is whole); the rerun completes and its
    products equal an uninterrupted run's; no temporary file of a killed run is left."""
    fitted = request.getfixturevalue("fitted_store") if stage == "fit" else tiny_store
    spec = _initial(stage, tmp_path, tiny_city, tiny_store, fitted)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(spec_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(out)
    assert out["kills"] == KILLS, out  # killed while running (runs that ended are not counted)
    assert out["failures"] == [], out
