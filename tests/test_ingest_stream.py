"""Ingest at scale (issue 18): the C time parsers agree with pandas, and a presence source read
file by file gives the validated table and quarantine computed independently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

import features.ingest.run as run_mod
import features.ingest.stream as stream_mod
from features.ingest import ingest
from features.ingest.times import _strptime, _strptime_aware
from features.store import Store

#: times pandas and a lenient C strptime may read differently
_AWARE = [
    "18/11/2024 00:00:04+0100",
    "18/11/2024 00:00:04+01:00",
    "18/11/2024 00:00:04Z",
    "18/11/2024 00:00:04",
    "31/02/2024 00:00:04+0100",
    "30/04/2024 00:00:04+0100",
    "01/03/2024 00:00:04+0100",
    "18/11/2024 00:00:04 +0100",
    "18/11/0225 00:00:04+0100",
    None,
    "18/11/2024 00:00:04-0530",
    "18/11/2024 00:00:04+01",
    "1/2/2024 00:00:04+0100",
    "29/02/2024 23:59:59+0000",
    "29/02/2023 23:59:59+0000",
    "18/11/24 00:00:04+0100",
    "18/11/2024 24:00:00+0100",
    "nonsense",
]


def test_aware_times_read_as_pandas_reads_them():
    s = pd.Series(_AWARE, dtype="string[pyarrow]")
    fmt = "%d/%m/%Y %H:%M:%S%z"
    got = _strptime_aware(s, fmt).astype("datetime64[us, UTC]")
    want = pd.to_datetime(s.astype(object), format=fmt, errors="coerce", utc=True)
    pd.testing.assert_series_equal(got, want.astype("datetime64[us, UTC]"), check_names=False)
    # the impossible dates are refused, not rolled over into the next month
    assert got.iloc[4] is pd.NaT and got.iloc[14] is pd.NaT  # 31/02/2024, 29/02/2023
    assert got.iloc[5] == pd.Timestamp("2024-04-29 23:00:04", tz="UTC")


@pytest.mark.parametrize("fmt", ["%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S"])
def test_naive_format_refuses_impossible_dates(fmt):
    good = pd.Timestamp("2024-02-29 10:00")
    vals = [good.strftime(fmt), "31/02/2024 10:00", "2024-02-30 10:00:00", "18/11/24 10:00"]
    s = pd.Series(vals, dtype="string[pyarrow]")
    got = _strptime(s, [fmt], fallback=fmt)
    want = pd.to_datetime(s.astype(object), format=fmt, errors="coerce")
    pd.testing.assert_series_equal(
        got.astype("datetime64[us]"), want.astype("datetime64[us]"), check_names=False
    )
    assert got.iloc[0] == good


# --------------------------------------------------------------------------------------------
# a presence source read file by file
# --------------------------------------------------------------------------------------------
def _zones(d: Path) -> None:
    gpd.GeoDataFrame(
        {"zone_id": ["A", "B", "C"]},
        geometry=[box(2.0 + i / 10, 48.8, 2.1 + i / 10, 48.9) for i in range(3)],
        crs=4326,
    ).to_file(d / "zones.geojson", driver="GeoJSON")


def _presence_files(d: Path) -> None:
    """Three files of a spring-forward day in Paris (02:00 does not exist): a placeholder whose
    real hour is in the next file, a repeated key within a file and two across files, an
    unknown zone and a negative count."""
    day = "2026-03-29"
    files = {
        "p1.csv": [("A", "01:00", 5), ("A", "02:00", 0), ("B", "01:00", 3), ("B", "03:00", 4),
                   ("B", "03:00", 40)],
        "p2.csv": [("A", "03:00", 7), ("B", "03:00", 44), ("C", "04:00", 9), ("Z", "04:00", 1)],
        "p3.csv": [("C", "04:00", 90), ("C", "05:00", 10), ("C", "06:00", -3)],
    }  # fmt: skip
    for name, rows in files.items():
        pd.DataFrame(
            [(z, f"{day} {h}", n) for z, h, n in rows], columns=["zone_id", "start", "present"]
        ).to_csv(d / name, index=False)


def _run(d: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    (d / "sources.yaml").write_text(
        "area: {timezone: Europe/Paris}\nzones: {path: zones.geojson}\n"
        "presence: {path: 'p*.csv', slot_minutes: 60}\n",
        encoding="utf-8",
    )
    ingest(d / "sources.yaml", d / "s")
    report = json.loads((d / "s" / "ingest_report.json").read_text())["sources"]["presence"]
    q = pd.read_csv(d / "s" / "quarantine" / "presence.csv", dtype=str)
    return Store(d / "s").validated("presence"), q, report


@pytest.mark.parametrize("workers", [False, True])
def test_presence_file_by_file_matches_the_hand_computed_store(
    tmp_path: Path, monkeypatch, workers
):
    """Read here, or by the two worker processes of a large source (forced), the same store."""
    if workers:
        monkeypatch.setattr(stream_mod, "POOL_BYTES", 0)
    _zones(tmp_path)
    _presence_files(tmp_path)
    kept, q, rep = _run(tmp_path)
    utc = {
        h: pd.Timestamp(f"2026-03-29 {h}", tz="UTC") for h in ("00:00", "01:00", "02:00", "03:00")
    }
    # local 01:00 is 00:00 UTC (CET); 03:00, 04:00, 05:00 are 01:00, 02:00, 03:00 UTC (CEST)
    assert kept[["zone_id", "start", "present"]].values.tolist() == [
        ["A", utc["00:00"], 5.0],
        ["B", utc["00:00"], 3.0],
        ["B", utc["01:00"], 4.0],
        ["A", utc["01:00"], 7.0],
        ["C", utc["02:00"], 9.0],
        ["C", utc["03:00"], 10.0],
    ]
    assert q[["file", "row", "reason"]].values.tolist() == [
        ["p1.csv", "2", "nonexistent local time (placeholder)"],
        ["p1.csv", "5", "duplicate zone_id+start (B|2026-03-29 01:00:00+00:00)"],
        ["p2.csv", "2", "duplicate zone_id+start (B|2026-03-29 01:00:00+00:00)"],
        ["p2.csv", "4", "zone_id: unknown zone (Z)"],
        ["p3.csv", "1", "duplicate zone_id+start (C|2026-03-29 02:00:00+00:00)"],
        ["p3.csv", "3", "present: present must be >= 0 (-3.0)"],
    ]
    assert (rep["rows_read"], rep["rows_kept"], rep["rows_quarantined"]) == (12, 6, 6)
    assert rep["reasons"] == {
        "duplicate zone_id+start": 3,
        "nonexistent local time (placeholder)": 1,
        "present: present must be >= 0": 1,
        "zone_id: unknown zone": 1,
    }
    assert rep["dst"]["nonexistent_placeholder"] == 1 and rep["dst"]["nonexistent_shifted"] == 0


def test_presence_file_by_file_equals_the_source_read_whole(tmp_path: Path, monkeypatch):
    """The same files read whole (the path of the small sources) give the same store."""
    for sub in ("stream", "whole"):
        (tmp_path / sub).mkdir()
        _zones(tmp_path / sub)
        _presence_files(tmp_path / sub)
    a = _run(tmp_path / "stream")
    monkeypatch.setattr(run_mod, "streamable", lambda name, kind: False)
    b = _run(tmp_path / "whole")
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert {k: v for k, v in a[2].items() if k != "files"} == {
        k: v for k, v in b[2].items() if k != "files"
    }


def _many_files(d: Path, n_files: int, rows: int) -> None:
    zones = np.array(["A", "B", "C"])
    for i in range(n_files):
        start = pd.Timestamp("2025-01-06") + pd.Timedelta(hours=i * rows // 3)
        hours = pd.date_range(start, periods=rows // 3, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
        pd.DataFrame(
            {
                "zone_id": np.repeat(zones, len(hours)),
                "start": np.tile(hours, 3),
                "present": np.arange(3 * len(hours)) % 50,
            }
        ).to_parquet(d / f"p{i:02d}.parquet")


def test_memory_of_a_source_read_file_by_file_does_not_grow_with_its_files(tmp_path: Path):
    """Peak traced memory of ingesting 6 files of 15 000 rows is well under 6 times that of
    one such file: the files are not held together."""
    peaks = {}
    for n in (1, 6):
        d = tmp_path / f"n{n}"
        d.mkdir()
        _zones(d)
        _many_files(d, n, 15_000)
        (d / "sources.yaml").write_text(
            "area: {timezone: Europe/Paris}\nzones: {path: zones.geojson}\n"
            "presence: {path: 'p*.parquet', slot_minutes: 60}\n",
            encoding="utf-8",
        )
        ingest(d / "sources.yaml", d / "warm")  # imports and caches outside the measure
        tracemalloc.start()
        res = ingest(d / "sources.yaml", d / "s")
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert res.sources["presence"].rows_kept == n * 15_000
    assert peaks[6] < 2 * peaks[1], peaks


def test_tables_handed_over_in_shared_memory_and_orphans_removed(tmp_path: Path, monkeypatch):
    """A worker's table comes back equal through the IPC file (removed once mapped); the
    allocator settings are undone on leaving; a folder left by a process that no longer runs
    is removed, one of a running process kept."""
    import subprocess
    import sys

    import pyarrow as pa

    from features.ingest import memory

    before = pa.default_memory_pool().backend_name
    table = pa.table({"zone_id": ["A", "B", None], "n": [1, 2, 3]})
    with memory.reused_memory(), memory.shared_dir() as d:
        path = memory.put_table(table, d)
        assert memory.take_table(path).equals(table)
        assert not Path(path).exists()
    assert not d.exists()
    assert pa.default_memory_pool().backend_name == before
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / f"vigie-ingest-{dead}-x").mkdir()
    (tmp_path / f"vigie-ingest-{os.getpid()}-y").mkdir()
    memory._remove_orphans(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"vigie-ingest-{os.getpid()}-y"]


_FAULTS = """
import resource, sys
import numpy as np
from features.ingest import memory
if sys.argv[1] == "after":
    with memory.reused_memory():
        pass
for _ in range(5):  # warm-up: the dynamic rule moves its threshold on the first frees
    np.ones(2**19)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):  # 200 blocks of 4 MB taken and freed
    a = np.ones(2**19)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")
def test_leaving_reused_memory_keeps_later_allocations_cheap():
    """After a source, the process allocates as one that never entered: glibc's dynamic mmap
    threshold cannot be turned back on, and leaving it at its 128 KB start value mapped every
    4 MB block afresh (about 1 000 page faults a block, 100 000 for 200 blocks, against a few
    hundred). Fresh processes, so nothing else has moved the thresholds."""
    runs = {}
    for case in ("fresh", "after"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, case], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).parents[1])  # fmt: skip
        runs[case] = int(out.stdout.strip())
    assert runs["after"] <= max(5 * runs["fresh"], 5_000), runs


def test_a_small_dev_shm_hands_tables_over_through_the_temporary_folder(monkeypatch, tmp_path):
    """A container's /dev/shm (often 64 MB) cannot hold a region file's table (~190 MB): the
    hand-off then goes through the temporary folder instead of failing the source."""
    import pyarrow as pa

    from features.ingest import memory

    class _Small:
        f_bavail, f_frsize = 16_384, 4_096  # 64 MB

    monkeypatch.setattr(memory.os, "statvfs", lambda path: _Small())
    monkeypatch.setattr(memory.tempfile, "tempdir", str(tmp_path))
    table = pa.table({"n": [1, 2, 3]})
    with memory.shared_dir() as d:
        assert d.parent == tmp_path
        assert memory.take_table(memory.put_table(table, d)).equals(table)
