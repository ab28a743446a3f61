"""The real exports of ../shared/data go through vigie as a user's would (examples/ studies).

These tests skip, with a message, where ../shared/data is absent; in CI it is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CHICAGO = SHARED / "chicago-cta-2015-2019"

needs_chicago = pytest.mark.skipif(
    not CHICAGO.exists(),
    reason=f"real Chicago exports not found at {CHICAGO} (see ../shared/data/README.md)",
)


def _raw_rows() -> int:
    return sum(
        len(pd.read_csv(p, usecols=["ID"])) for p in sorted(CHICAGO.glob("CTA_Crimes_*.csv"))
    )


@needs_chicago
def test_chicago_study_ingests_every_row_and_builds_a_daily_cube(tmp_path: Path):
    """examples/chicago: every crime row of 2015-2019 is kept (the export's own community area
    places the rows without coordinates), the 77 areas are the zones, and the daily cube holds
    every incident on 77 zones x 1 826 days."""
    store = tmp_path / "store"
    runner = CliRunner()
    res = runner.invoke(
        app, ["ingest", str(ROOT / "examples/chicago/sources.yaml"), "--store", str(store)]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((store / "ingest_report.json").read_text())
    inc = report["sources"]["incidents"]
    assert inc["rows_read"] == _raw_rows() == inc["rows_kept"] + inc["rows_quarantined"]
    assert inc["rows_quarantined"] == 0
    assert report["sources"]["zones"]["rows_kept"] == 77
    res = runner.invoke(app, ["cube", "--store", str(store)])
    assert res.exit_code == 0, res.output
    meta = json.loads((store / "cube_meta.json").read_text())
    assert meta["grain"] == "1d" and meta["zones"] == 77
    assert (meta["first_date"], meta["last_date"]) == ("2015-01-01", "2019-12-31")
    cube = pd.read_parquet(store / "cube", columns=["zone_id", "incidents"])
    assert len(cube) == 77 * 1826
    assert int(cube["incidents"].sum()) == inc["rows_kept"]
