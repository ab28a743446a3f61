"""`make demo` records its step times, and `python -m bench demo` writes them into the docs."""

from __future__ import annotations

import json

from bench import bench_demo
from pipelines import demo


def test_the_demo_record_is_what_the_bench_reads(tmp_path, monkeypatch):
    """The record the demo writes (steps, total, date, machine, load) is read back by the bench
    and every step shows in the table; a step that did not run reads "–"."""
    monkeypatch.setattr(demo, "STEP_SECONDS", {"synth": 3.4, "fit": 17.0, "report weekly": 16.2})
    (tmp_path / "tiny").mkdir()
    demo.record_times(tmp_path / "tiny" / "demo_times.json", scale="tiny", total_s=71.3)
    rec = bench_demo.read_record(tmp_path, "tiny")
    assert rec["steps_s"] == {"synth": 3.4, "fit": 17.0, "report weekly": 16.2}
    assert rec["total_s"] == 71.3 and rec["date"] and "cores" in rec["machine"]
    table = bench_demo.section({"tiny": rec})
    row = next(line for line in table.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["3", "–", "–", "17"] and cells[6] == "16"
    assert cells[10] == "71" and cells[12].endswith("/ not recorded")
    assert table.startswith(bench_demo.START) and table.endswith(bench_demo.END)
    json.dumps(rec)  # the record stays plain JSON
