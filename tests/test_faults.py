"""Crash windows, closed: a re-ingest cut between a source's files and the report, a cube build
cut after its swap or between its two renames, and the leftovers of killed runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.ingest import ingest
from features.store import Store, clean_stale, is_stale, temp_sibling


def _dead_tag() -> str:
    """An owner tag of a process that has ended (this host)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    from features.store import _HOST

    return f"{int(proc.stdout)}x{_HOST}-0badc0de"


def test_reingest_cut_before_its_report_is_redone(tiny_city: Path, tmp_path: Path, monkeypatch):
    """A re-ingest killed after zones.parquet was replaced but before ingest_report.json: the next
    run with the original inputs reads the zones again (not "unchanged") and the store holds the
    original zones again."""
    city = tmp_path / "city"
    shutil.copytree(tiny_city, city)
    store = tmp_path / "store"
    ingest(city / "sources.yaml", store)
    before = pd.read_parquet(store / "validated" / "zones.parquet")
    zones = next(city.glob("zones*.geojson"))
    original = zones.read_text()
    gj = json.loads(original)
    gj["features"][0]["properties"]["population"] += 1000
    zones.write_text(json.dumps(gj))

    import features.ingest.run as run_mod

    def crash(*a, **k):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(run_mod, "_write_study", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest(city / "sources.yaml", store)
    monkeypatch.undo()
    changed = pd.read_parquet(store / "validated" / "zones.parquet")
    assert not changed["population"].equals(before["population"])  # the window was reached
    report = json.loads((store / "ingest_report.json").read_text())
    assert report["sources"]["zones"]["fingerprint"] == "pending"
    zones.write_text(original)
    result = ingest(city / "sources.yaml", store)
    assert result.sources["zones"].status == "ingested"
    pd.testing.assert_frame_equal(pd.read_parquet(store / "validated" / "zones.parquet"), before)


def test_a_store_file_changed_behind_the_report_is_read_again(tiny_city: Path, tmp_path: Path):
    """ingest_report.json records each source's files with their SHA-256: a validated file that
    is not the one recorded is read again, whatever the fingerprint says."""
    store = tmp_path / "store"
    ingest(tiny_city / "sources.yaml", store)
    path = store / "validated" / "weather.parquet"
    good = path.read_bytes()
    pd.read_parquet(path).iloc[:5].to_parquet(path)
    result = ingest(tiny_city / "sources.yaml", store)
    assert result.sources["weather"].status == "ingested"
    assert all(r.status == "unchanged" for n, r in result.sources.items() if n != "weather")
    assert path.read_bytes() == good


def test_cube_meta_left_from_another_build_is_rewritten(tiny_store: Path, tmp_path: Path):
    """A build killed after its swap leaves cube_meta.json of the old build: readers get the
    cube's own metadata (inside the swapped folder) and the top copy is rewritten from it."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    st = Store(root)
    inside = json.loads((root / "cube" / "_meta.json").read_text())
    stale = {**inside, "build_id": "old", "rows": 1, "end": "2026-10-01T00:00:00+00:00"}
    (root / "cube_meta.json").write_text(json.dumps(stale))
    assert st.cube_meta() == inside
    assert json.loads((root / "cube_meta.json").read_text()) == inside
    assert len(st.cube(columns=["present"])) == inside["rows"]


def test_swap_cut_between_its_renames_is_finished(tiny_store: Path, tmp_path: Path):
    """Killed between 'old cube aside' and 'new cube in': the next reader puts the new one in."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    tag = _dead_tag()
    shutil.copytree(root / "cube", temp_sibling(root / "cube", "tmp", tag))
    (root / "cube").rename(temp_sibling(root / "cube", "old", tag))
    assert not (root / "cube").exists()
    st = Store(root)
    assert len(st.cube(columns=["present"])) == st.cube_meta()["rows"]
    assert st.clean_stale() == [temp_sibling(root / "cube", "old", tag)]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_only_the_leftovers_of_dead_runs_are_removed(tmp_path: Path):
    """Temporary names carry their writer's pid and host: a dead writer's are removed, a live
    one's (this process, its parent) are kept; names of earlier versions after a grace time."""
    dead = temp_sibling(tmp_path / "cube", "tmp", _dead_tag())
    dead.mkdir()
    live = temp_sibling(tmp_path / "cube", "work")
    live.mkdir()
    from features.store import _HOST

    parent = tmp_path / f".x.json.tmp-{os.getppid()}x{_HOST}-12345678"
    parent.write_text("{}")
    legacy = tmp_path / ".cube-building-0123abcd"
    legacy.mkdir()
    fresh_legacy = tmp_path / "zones.parquet.tmp"
    fresh_legacy.write_text("")
    os.utime(legacy, (0, 0))
    assert is_stale(dead) and not is_stale(live) and not is_stale(parent)
    removed = clean_stale(tmp_path)
    assert sorted(removed) == sorted([dead, legacy])
    assert live.exists() and parent.exists() and fresh_legacy.exists()


def test_a_signals_run_removes_what_a_killed_one_left(tiny_store: Path, tmp_path: Path):
    """A signals run killed while writing its tables leaves ``.<week>.tests.parquet.tmp-...``;
    the next run removes it (CI found one left behind by the kill test) and keeps those of live
    writers (this process's and another's)."""
    from pipelines.signals.period import parse_period
    from pipelines.signals.run import run_signals

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    st = Store(root)
    target = root / "signals" / "2026-W45.tests.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    dead = temp_sibling(target, "tmp", _dead_tag())
    dead.write_bytes(b"part of a parquet file")
    own = temp_sibling(target)  # this process's own name
    own.write_bytes(b"being written")
    from features.store import _HOST

    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # another live process's name
        live = temp_sibling(target, "tmp", f"{writer.pid}x{_HOST}-0badc0de")
        live.write_bytes(b"being written too")
        run_signals(st, parse_period("2026-W45"), n_sim=19, seed=1, use_model=False)
    finally:
        writer.kill()
        writer.wait()
    assert not dead.exists() and own.exists() and live.exists() and target.exists()
