"""`vigie export`: GeoJSON, GeoPackage, GeoParquet and CSV of the tiny city's zones, signals and
briefs, read back by GDAL (pyogrio) and geopandas: geometry, CRS, values and suppression."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pytest
from pyproj import CRS
from typer.testing import CliRunner

from features.store import Store
from pipelines.cli import app
from pipelines.export import export, resolve_period, zone_indicators
from pipelines.reports.publish import find_unsuppressed, is_count_name
from pipelines.reports.weekly import zone_period_figures
from tests._export_store import build, incident_ids

FORMATS = ("geojson", "gpkg", "parquet", "csv")


@pytest.fixture(scope="module")
def served(tiny_store: Path, tmp_path_factory) -> dict:
    return build(tiny_store, tmp_path_factory.getbasetemp() / "export_store")


def read_back(path: Path, fmt: str) -> gpd.GeoDataFrame:
    """The file as GDAL reads it (GeoParquet through geopandas' own reader too)."""
    if fmt == "parquet":
        # GeoParquet: the `geo` metadata (version, primary column, CRS as PROJJSON) is what
        # QGIS/GDAL read; this GDAL build's Parquet driver needs libduckdb, so geopandas reads it
        geo = json.loads(pq.read_schema(path).metadata[b"geo"])
        assert geo["primary_column"] == "geometry" and geo["version"].startswith("1.")
        return gpd.read_parquet(path)
    gdf = pyogrio.read_dataframe(path)
    if fmt == "csv":
        gdf = gdf.drop(columns="WKT")
        for col in gdf.columns:
            if col not in ("geometry",) and gdf[col].dtype == object:
                gdf[col] = gdf[col].replace("", None)
    return gdf


def check_suppressed(gdf: pd.DataFrame, k: int) -> None:
    """No count below k; every withheld figure is null and named in `suppressed`."""
    for col in gdf.columns:
        if is_count_name(col):
            vals = pd.to_numeric(gdf[col], errors="coerce")
            assert not (vals < k).any(), f"{col} has counts below {k}"
    notes = gdf["suppressed"].fillna("")
    for i, note in notes.items():
        for item in filter(None, note.split("; ")):
            col, label = item.rsplit(" ", 1)
            assert label in (f"<{k}", "c")
            assert pd.isna(gdf.at[i, col]), (col, i)
    records = json.loads(pd.DataFrame(gdf.drop(columns="geometry")).to_json(orient="records"))
    assert find_unsuppressed(records, k) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_zones_export_reads_back(served, tmp_path, fmt):
    """Zones with indicators: one feature per zone, the zones' own geometry in EPSG:4326, the
    indicators of the cube's last full week, small counts withheld and said so."""
    st = Store(served["store"])
    res = export(st, what="zones", fmt=fmt, out=tmp_path / f"zones.{fmt}")
    got = read_back(res.path, fmt)
    zones = st.zones().sort_values("zone_id").reset_index(drop=True)
    got = got.sort_values("zone_id").reset_index(drop=True)
    assert CRS.from_user_input(got.crs).to_epsg() == 4326
    assert list(got["zone_id"].astype(str)) == list(zones["zone_id"])
    assert got.geometry.is_valid.all()
    assert got.geometry.geom_equals_exact(zones.geometry, tolerance=1e-6).all()
    assert set(got["period"]) == {served["week"]}
    k = st.suppression_k
    check_suppressed(got, k)
    raw = zone_indicators(st, resolve_period(st, served["week"])).set_index("zone_id")
    small = raw.index[raw["visitors"] < k]
    assert len(small) > 0, "the tiny city should have zones with fewer than k visitors"
    g = got.set_index(got["zone_id"].astype(str))
    assert g.loc[small, "visitors"].isna().all()
    assert g.loc[small, "suppressed"].str.contains(f"visitors <{k}").all()
    # present = residents + visitors: the residents beside a withheld visitors count go too
    assert g.loc[small, "residents"].isna().all()
    assert g.loc[small, "suppressed"].str.contains("residents c").all()
    shown = raw.index[(raw[["present", "reference", "residents", "visitors"]] >= k).all(axis=1)]
    assert np.allclose(g.loc[shown, "present"], raw.loc[shown, "present"].round(1))
    assert np.allclose(g.loc[shown, "ratio"], raw.loc[shown, "ratio"])
    assert (g["signals"] >= 0).all() and g["signals"].sum() > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_signals_export_lambert93(served, tmp_path, fmt):
    """Signals in Lambert-93: each signal's geometry is the union of its zones', projected; the
    file says EPSG:2154; observed counts below k are withheld."""
    st = Store(served["store"])
    run = json.loads(st.signals_path(served["week"]).read_text())
    res = export(st, what="signals", fmt=fmt, out=tmp_path / f"sig.{fmt}", crs="EPSG:2154")
    assert res.crs == "EPSG:2154" and res.rows == len(run["signals"]) > 0
    got = read_back(res.path, fmt)
    assert CRS.from_user_input(got.crs).to_epsg() == 2154
    minx, miny, maxx, maxy = got.total_bounds  # Paris in Lambert-93 metres
    assert 600_000 < minx < maxx < 700_000 and 6_800_000 < miny < maxy < 6_900_000
    zones = st.zones().set_index("zone_id").to_crs(2154).geometry
    for (_, row), sig in zip(got.iterrows(), run["signals"], strict=True):
        assert row["id"] == sig["id"]
        if sig["zones"]:
            expected = zones.loc[sig["zones"]].union_all()
            assert abs(row.geometry.area - expected.area) < 1e-3 * expected.area
    check_suppressed(got, st.suppression_k)


def test_briefs_export(served, tmp_path):
    """Briefs: the hour-by-hour staffing at the venue and the lamps to repair at their lamp."""
    st = Store(served["store"])
    res = export(st, what="briefs", fmt="gpkg", out=tmp_path / "briefs.gpkg")
    got = pyogrio.read_dataframe(res.path)
    brief = json.loads(st.brief_path(served["event_id"]).read_text())
    hours = got[got["feature"] == "hour"]
    lamps = got[got["feature"] == "lamp_to_repair"]
    assert len(hours) == len(brief["hours"]) and list(hours["agents"]) == [
        h["agents"] for h in brief["hours"]
    ]
    ev = brief["event"]
    assert np.allclose(hours.geometry.x, ev["longitude"]) and np.allclose(
        hours.geometry.y, ev["latitude"]
    )
    repair = brief["context"]["lamps"]["to_repair"]
    assert list(lamps["lamp_id"]) == [r["lamp_id"] for r in repair]
    where = st.validated("lamps").set_index("lamp_id")
    assert np.allclose(lamps.geometry.x, where.loc[lamps["lamp_id"], "longitude"])
    check_suppressed(got, st.suppression_k)


def test_zone_indicators_match_the_weekly_report(served):
    """The export's zone figures are the weekly report's map figures (computed by
    pipelines.reports.maps) for the same week."""
    st = Store(served["store"])
    period = resolve_period(st, served["week"])
    start, end = period.bounds(st.timezone)
    ours = zone_indicators(st, period).set_index("zone_id")
    report = zone_period_figures(st, start=start, end=end)
    assert np.allclose(ours["present"], report.loc[ours.index, "present"])
    assert np.allclose(ours["ratio"], report.loc[ours.index, "present_ratio"])
    assert np.allclose(ours["expected"], report.loc[ours.index, "expected"])
    assert (ours["incidents"] == report.loc[ours.index, "incidents"]).all()


def test_no_incident_id_in_any_export(served, tmp_path):
    """No incident id of the store appears in any exported text file."""
    ids = incident_ids(Path(served["store"]))
    assert ids
    for what in ("zones", "signals", "briefs"):
        for fmt in ("geojson", "csv"):
            text = export(served["store"], what=what, fmt=fmt, out=tmp_path / f"{what}.{fmt}")
            tokens = set(re.findall(r"[\w-]+", text.path.read_text(encoding="utf-8")))
            assert not tokens & ids, what


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--what", "lamps"], "--what 'lamps': expected one of zones, signals, briefs"),
        (["--what", "zones", "--format", "shp"], "--format 'shp': expected one of"),
        (["--what", "zones", "--period", "2026-W99"], "has no week 99"),
        (["--what", "zones", "--period", "next week"], "expected an ISO week"),
        (["--what", "zones", "--period", "2027-W03"], "is outside the data"),
        (["--what", "zones", "--crs", "EPSG:999999"], "not a coordinate reference system"),
        (["--what", "signals", "--period", "2026-W45"], "no signals for 2026-W45"),
    ],
    ids=["what", "format", "week", "period", "outside", "crs", "no-signals"],
)
def test_export_cli_errors(served, tmp_path, args, message):
    """Bad options exit 2 with one clear line, and write nothing."""
    out = tmp_path / "x.gpkg"
    res = CliRunner().invoke(app, ["export", "--store", served["store"], "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_export_cli_writes(served, tmp_path):
    """`vigie export` writes the file and says what it wrote (format from the suffix)."""
    out = tmp_path / "z.geojson"
    res = CliRunner().invoke(
        app, ["export", "--store", served["store"], "--what", "zones", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "30 features written" in res.output
    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 30
