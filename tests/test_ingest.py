"""Ingest: every source and format, every failure class, DST, reconciliation and idempotence."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box
from typer.testing import CliRunner

from features.errors import ConfigError, InputError
from features.ingest import ingest
from features.store import Store
from pipelines.cli import app

# Two zones side by side in Paris, a third far away.
ZA = box(2.30, 48.85, 2.35, 48.90)
ZB = box(2.35, 48.85, 2.40, 48.90)


def write_zones(d: Path, name: str = "zones.geojson") -> Path:
    g = gpd.GeoDataFrame(
        {"code_iris": ["A", "B"], "nom": ["Nord-Ouest", "Nord-Est"], "population": [1200, 800]},
        geometry=[ZA, ZB],
        crs=4326,
    )
    p = d / name
    if name.endswith(".gpkg"):
        g.to_file(p, driver="GPKG")
    else:
        g.to_file(p, driver="GeoJSON")
    return p


def write_yaml(d: Path, text: str) -> Path:
    p = d / "sources.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A small study with every canonical source, in the shapes real exports take."""
    d = tmp_path
    write_zones(d)
    # presence: Flux-Vision-like, French names, semicolons, decimal commas, local times
    hours = pd.date_range("2026-11-02 00:00", periods=48, freq="h")
    rows = []
    for z in ("A", "B"):
        for h in hours:
            rows.append((z, h.strftime("%Y-%m-%d %H:%M"), f"{1000 + h.hour * 10},5", 600, 400))
    pd.DataFrame(
        rows, columns=["id_zone", "date_heure", "volume", "residents", "visiteurs"]
    ).to_csv(d / "presence.csv", sep=";", index=False)
    # presence in 2-hour slots (another file, Parquet)
    pd.DataFrame(
        {
            "zone": ["A", "B"],
            "debut": ["2026-11-05 00:00", "2026-11-05 00:00"],
            "pres": [900.0, 700.0],
        }
    ).to_parquet(d / "presence_2h.parquet")
    pd.DataFrame(
        {
            "zone_id": ["A", "A"],
            "start": ["2026-11-02T00:00:00+01:00"] * 2,
            "origin": ["75", "92"],
            "count": [300, 200],
        }
    ).to_csv(d / "origins.csv", index=False)
    # incidents: one file in lat/lon (UTF-8 BOM), one in Lambert-93 x/y (Latin-1, tab separated)
    inc = pd.DataFrame(
        {
            "ID": ["i1", "i2", "i3"],
            "Date": ["11/02/2026 10:15:00 PM", "11/03/2026 01:00:00 AM", "11/03/2026 09:30:00 AM"],
            "Latitude": [48.86, 48.87, 48.88],
            "Longitude": [2.31, 2.36, 2.37],
            "Primary Type": ["THEFT", "ASSAULT", "THEFT"],
            "Block": ["012XX N STATE ST", "x", "y"],
        }
    )
    inc.to_csv(d / "crimes_1.csv", index=False, encoding="utf-8-sig")
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, 2154, always_xy=True)
    x, y = tr.transform([2.32, 2.38], [48.86, 48.89])
    pd.DataFrame(
        {
            "ID": ["i4", "i5"],
            "Date": ["11/03/2026 11:00:00 AM", "11/04/2026 11:00:00 PM"],
            "X": x,
            "Y": y,
            "Primary Type": ["ASSAULT", "THEFT"],
            "Lieu": ["Église", "Hôtel de ville"],
        }
    ).to_csv(d / "crimes_l93.tsv", sep="\t", index=False, encoding="latin-1")
    pd.DataFrame(
        {"lamp": ["L1", "L2", "L3"], "lat": [48.86, 48.87, 48.88], "lon": [2.31, 2.36, 2.37]}
    ).to_json(d / "lamps.jsonl", orient="records", lines=True)
    pd.DataFrame(
        {
            "lamp": ["L1", "L2"],
            "signale": ["2026-11-01 18:00", "2026-11-02 20:00"],
            "repare": ["2026-11-03 09:00", ""],
        }
    ).to_csv(d / "faults.csv", index=False)
    with zipfile.ZipFile(d / "gtfs.zip", "w") as zf:
        zf.writestr(
            "agency.txt",
            "agency_id,agency_name,agency_url,agency_timezone\n1,RATP,http://x,Europe/Paris\n",
        )
        zf.writestr(
            "stops.txt",
            "stop_id,stop_name,stop_lat,stop_lon\nS1,Châtelet,48.86,2.33\nS2,Bastille,48.87,2.37\n",
        )
    pd.DataFrame(
        {"stop_id": ["S1", "S2"], "start": ["2026-11-02 08:00"] * 2, "entries": [500, 300]}
    ).to_csv(d / "validations.csv", index=False)
    pd.DataFrame(
        {
            "id": ["E1"],
            "titre": ["Concert"],
            "debut": ["2026-11-07 20:00"],
            "fin": ["2026-11-08 00:30"],
            "lat": [48.87],
            "lon": [2.36],
            "jauge": [40000],
            "type": ["concert"],
        }
    ).to_csv(d / "events.csv", index=False)
    pd.DataFrame(
        {"start": ["2026-11-02 00:00", "2026-11-02 01:00"], "t": [8.5, 8.1], "rr": [0.0, 1.2]}
    ).to_csv(d / "weather.csv", index=False)
    return write_yaml(
        d,
        """
area: {name: Paris test, timezone: Europe/Paris}
suppression_k: 10
zones: {path: zones.geojson, columns: {zone_id: code_iris, name: nom}}
presence:
  - placeholder
""".replace("presence:\n  - placeholder\n", "")
        + """
presence:
  path: presence.csv
  columns: {zone_id: id_zone, start: date_heure, present: volume, visitors: visiteurs}
  slot_minutes: 60
presence_origin: {path: origins.csv}
incidents:
  path: [crimes_1.csv, crimes_l93.tsv]
  columns: {incident_id: ID, occurred_at: Date, latitude: Latitude, longitude: Longitude, x: X, y: Y,
            category: Primary Type}
  crs: EPSG:2154
  time_format: "%m/%d/%Y %I:%M:%S %p"
lamps: {path: lamps.jsonl, columns: {lamp_id: lamp, latitude: lat, longitude: lon}}
lighting_faults: {path: faults.csv, columns: {lamp_id: lamp, reported_at: signale, repaired_at: repare}}
stops: {path: gtfs.zip}
ridership: {path: validations.csv}
events:
  path: events.csv
  columns: {event_id: id, name: titre, start: debut, end: fin, latitude: lat, longitude: lon,
            expected_attendance: jauge, category: type}
weather: {path: weather.csv, columns: {temperature_c: t, precipitation_mm: rr}}
""",
    )


def report(store: Path) -> dict:
    return json.loads((store / "ingest_report.json").read_text())


def test_every_source_loads_and_reconciles(study: Path, tmp_path: Path):
    """All ten sources in their varied formats load; rows read = kept + quarantined for each."""
    res = ingest(study, tmp_path / "store")
    rep = report(tmp_path / "store")
    assert rep["reconciled"] is True
    assert set(rep["sources"]) == {
        "zones",
        "presence",
        "presence_origin",
        "incidents",
        "lamps",
        "lighting_faults",
        "stops",
        "ridership",
        "events",
        "weather",
    }
    for name, r in rep["sources"].items():
        assert r["rows_read"] == r["rows_kept"] + r["rows_quarantined"], name
        assert all(len(f["sha256"]) == 64 for f in r["files"]), name
    assert rep["sources"]["presence"]["rows_kept"] == 96
    assert rep["sources"]["incidents"]["rows_kept"] == 5
    st = Store(tmp_path / "store")
    assert res.reconciled
    inc = st.validated("incidents")
    # Lambert-93 points came back to WGS84 and into the right zones
    assert inc.set_index("incident_id").loc["i4", "zone_id"] == "A"
    assert inc.set_index("incident_id").loc["i5", "zone_id"] == "B"
    assert abs(inc.set_index("incident_id").loc["i5", "latitude"] - 48.89) < 1e-6
    # 10:15 PM local on 2 Nov (CET, UTC+1) is 21:15 UTC
    assert inc.set_index("incident_id").loc["i1", "occurred_at"] == pd.Timestamp(
        "2026-11-02 21:15", tz="UTC"
    )
    pres = st.validated("presence")
    assert pres["present"].iloc[0] == pytest.approx(1000.5)  # decimal comma
    assert str(pres["start"].dt.tz) == "UTC"
    assert (pres["slot_minutes"] == 60).all()
    faults = st.validated("lighting_faults")
    assert faults["zone_id"].tolist() == ["A", "B"]
    assert faults["repaired_at"].isna().tolist() == [False, True]
    assert st.validated("stops")["zone_id"].tolist() == ["A", "B"]
    assert st.validated("ridership")["zone_id"].tolist() == ["A", "B"]
    assert st.validated("events")["zone_id"].tolist() == ["B"]
    assert st.zones()["zone_id"].tolist() == ["A", "B"]


def test_only_canonical_columns_enter_the_store(study: Path, tmp_path: Path):
    """Free text and addresses of a city's export are left out and listed as ignored."""
    ingest(study, tmp_path / "store")
    rep = report(tmp_path / "store")
    assert "Block" in rep["sources"]["incidents"]["ignored_columns"]
    assert "Lieu" in rep["sources"]["incidents"]["ignored_columns"]
    assert "residents" in rep["sources"]["presence"]["columns_mapped"]  # same name: taken as is
    inc = Store(tmp_path / "store").validated("incidents")
    assert "Block" not in inc.columns and "Lieu" not in inc.columns
    blob = (tmp_path / "store" / "validated" / "incidents.parquet").read_bytes()
    assert b"STATE ST" not in blob


@pytest.mark.parametrize(
    "fmt",
    ["geojson", "gpkg"],
    ids=["geojson", "geopackage"],
)
def test_zone_formats(tmp_path: Path, fmt: str):
    """Zones load from GeoJSON and GeoPackage."""
    z = write_zones(tmp_path, f"zones.{fmt}")
    y = write_yaml(tmp_path, f"zones: {{path: {z.name}, columns: {{zone_id: code_iris}}}}\n")
    ingest(y, tmp_path / "s")
    assert Store(tmp_path / "s").zones()["zone_id"].tolist() == ["A", "B"]


def test_stops_txt_and_latin1_semicolon(tmp_path: Path):
    """A bare stops.txt, and a Latin-1 semicolon CSV with accented names, read as they come."""
    write_zones(tmp_path)
    (tmp_path / "stops.txt").write_bytes(
        "stop_id;stop_name;stop_lat;stop_lon\nS1;Gare de l'Est — Hôtel;48,86;2,33\n".encode(
            "cp1252", errors="replace"
        )
    )
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nstops: {path: stops.txt}\n",
    )
    ingest(y, tmp_path / "s")
    stops = Store(tmp_path / "s").validated("stops")
    assert "Hôtel" in stops["stop_name"].iloc[0]
    assert stops["zone_id"].iloc[0] == "A"
    assert report(tmp_path / "s")["sources"]["stops"]["files"][0]["encoding"] in {
        "latin-1",
        "cp1252",
    }


def test_glob_and_list_paths(tmp_path: Path):
    """A glob takes every matching file in sorted order."""
    write_zones(tmp_path)
    for i in (1, 2):
        pd.DataFrame(
            {
                "incident_id": [f"x{i}"],
                "occurred_at": ["2026-11-02T10:00:00Z"],
                "zone_id": ["A"],
                "category": ["vol"],
            }
        ).to_csv(tmp_path / f"inc_{i}.csv", index=False)
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: 'inc_*.csv'}\n",
    )
    ingest(y, tmp_path / "s")
    r = report(tmp_path / "s")["sources"]["incidents"]
    assert [f["path"] for f in r["files"]] == ["inc_1.csv", "inc_2.csv"]
    assert r["rows_kept"] == 2


def test_bad_rows_are_quarantined_with_reasons(tmp_path: Path):
    """Unparseable times, non-numbers, out-of-range coordinates, points outside every zone,
    duplicates and missing required values each go to quarantine with their reason; nothing is lost."""
    write_zones(tmp_path)
    pd.DataFrame(
        {
            "incident_id": ["a", "b", "c", "d", "e", "a", "f", "g"],
            "occurred_at": [
                "2026-11-02T10:00",
                "yesterday",
                "2026-11-02T10:00",
                "2026-11-02T10:00",
                "2026-11-02T10:00",
                "2026-11-02T11:00",
                "2026-11-02T11:00",
                "2026-11-02T11:00",
            ],
            "latitude": ["48.86", "48.86", "abc", "95", "48.2", "48.86", "48.86", "48.86"],
            "longitude": [2.31, 2.31, 2.31, 2.31, 2.31, 2.31, 2.31, 2.31],
            "category": ["vol", "vol", "vol", "vol", "vol", "vol", "", "vol"],
        }
    ).to_csv(tmp_path / "inc.csv", index=False)
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: inc.csv}\n",
    )
    ingest(y, tmp_path / "s")
    r = report(tmp_path / "s")["sources"]["incidents"]
    assert r["rows_read"] == 8 and r["rows_kept"] == 2 and r["rows_quarantined"] == 6
    q = pd.read_csv(tmp_path / "s" / "quarantine" / "incidents.csv", dtype=str)
    by_id = dict(zip(q["row"].astype(int), q["reason"]))
    assert "unparseable time" in by_id[2]
    assert "latitude: not a number" in by_id[3]
    assert "latitude" in by_id[4] and "90" in by_id[4]
    assert "outside every zone" in by_id[5]
    assert "duplicate incident_id" in by_id[6]
    assert "category: missing required value" in by_id[7]
    assert sum(r["reasons"].values()) >= 6


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "is empty"),
        ("a,b,c\n1,2,3\n", "lacks the required column 'incident_id'"),
        ("1,2026-11-02T10:00,A,vol\n2,2026-11-02T11:00,A,vol\n", "does the file have a header row"),
    ],
    ids=["empty-file", "missing-column", "no-header"],
)
def test_unusable_files_stop_with_a_clear_message(tmp_path: Path, content: str, match: str):
    """Unusable input raises InputError naming the file and what was expected."""
    write_zones(tmp_path)
    (tmp_path / "inc.csv").write_text(content)
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: inc.csv}\n",
    )
    with pytest.raises(InputError, match=match) as exc:
        ingest(y, tmp_path / "s")
    assert "inc.csv" in str(exc.value)


def test_misnamed_column_gets_closest_match(tmp_path: Path):
    """A mapping onto a column the file does not have names the file's columns and the closest one."""
    write_zones(tmp_path)
    pd.DataFrame(
        {
            "incident_id": [1],
            "occured_at": ["2026-11-02T10:00"],
            "zone_id": ["A"],
            "category": ["x"],
        }
    ).to_csv(tmp_path / "inc.csv", index=False)
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: inc.csv}\n",
    )
    with pytest.raises(
        InputError, match="lacks the required column 'occurred_at'.*closest match 'occured_at'"
    ):
        ingest(y, tmp_path / "s")
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: inc.csv, columns: {occurred_at: date}}\n",
    )
    with pytest.raises(InputError, match="has no column 'date'"):
        ingest(y, tmp_path / "s")


@pytest.mark.parametrize(
    "text, match",
    [
        ("zones: {path: [unclosed\n", "not valid YAML at line"),
        ("crimes: {path: x.csv}\n", "unknown source 'crimes'"),
        ("incidnts: {path: x.csv}\n", "did you mean 'incidents'"),
        ("area: {timezone: Europe/Pariss}\n", "unknown time zone"),
        ("zones: {path: nothere.geojson}\n", "does not exist"),
        ("", "is empty"),
    ],
    ids=[
        "yaml-syntax",
        "unknown-source",
        "typo-source",
        "bad-timezone",
        "missing-file",
        "empty-yaml",
    ],
)
def test_bad_sources_yaml(tmp_path: Path, text: str, match: str):
    """Config problems raise ConfigError/InputError with the file and the field."""
    y = write_yaml(tmp_path, text)
    with pytest.raises((ConfigError, InputError), match=match):
        ingest(y, tmp_path / "s")


def test_cli_exits_nonzero_without_traceback(tmp_path: Path):
    """`vigie ingest` on a bad file prints one paragraph and exits 2, with no traceback."""
    y = write_yaml(tmp_path, "incidnts: {path: x.csv}\n")
    res = CliRunner().invoke(app, ["ingest", str(y), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert "did you mean 'incidents'" in res.output


def _presence_day(tmp_path: Path, tz: str, day: str, *, lat: float, lon: float) -> pd.DataFrame:
    """A presence series written in local clock times, as an exporter that repeats the
    fall-back hour and skips the spring-forward hour would write it, then ingested."""
    zones = gpd.GeoDataFrame(
        {"zone_id": ["Z"]}, geometry=[box(lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05)], crs=4326
    )
    zones.to_file(tmp_path / "zones.geojson", driver="GeoJSON")
    # the true instants of the local day, written as local wall-clock strings
    start = pd.Timestamp(day).tz_localize(tz)
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize(tz)
    instants = pd.date_range(start, end, freq="h", inclusive="left")
    local = instants.tz_convert(tz).strftime("%Y-%m-%d %H:%M")
    pd.DataFrame({"zone_id": "Z", "start": local, "present": np.arange(len(local)) + 100.0}).to_csv(
        tmp_path / "p.csv", index=False
    )
    y = write_yaml(
        tmp_path,
        f"area: {{timezone: {tz}}}\nzones: {{path: zones.geojson}}\npresence: {{path: p.csv, slot_minutes: 60}}\n",
    )
    ingest(y, tmp_path / "s")
    pres = Store(tmp_path / "s").validated("presence")
    return pres, instants


@pytest.mark.parametrize(
    "tz, day, hours, lat, lon",
    [
        ("Europe/Paris", "2026-03-29", 23, 48.85, 2.35),
        ("Europe/Paris", "2026-10-25", 25, 48.85, 2.35),
        ("Australia/Sydney", "2026-10-04", 23, -33.87, 151.2),
        ("Australia/Sydney", "2026-04-05", 25, -33.87, 151.2),
    ],
    ids=["paris-spring-forward", "paris-fall-back", "sydney-spring-forward", "sydney-fall-back"],
)
def test_dst_days_keep_every_hour(
    tmp_path: Path, tz: str, day: str, hours: int, lat: float, lon: float
):
    """On DST days a local hourly series has 23 or 25 rows; all are kept, in order, at the right
    UTC instants, none dropped or doubled, and the repeated hour is counted in the report."""
    pres, instants = _presence_day(tmp_path, tz, day, lat=lat, lon=lon)
    assert len(instants) == hours
    assert len(pres) == hours
    assert pres["start"].tolist() == list(instants.tz_convert("UTC"))
    assert pres["present"].tolist() == list(np.arange(hours) + 100.0)
    dst = report(tmp_path / "s")["sources"]["presence"]["dst"]
    if hours == 25:
        assert dst == {"nonexistent_shifted": 0, "ambiguous_first": 1, "ambiguous_second": 1}


def test_nonexistent_local_time_is_shifted_and_counted(tmp_path: Path):
    """02:30 on the Paris spring-forward day does not exist: read as 03:30 CEST (01:30 UTC)."""
    write_zones(tmp_path)
    pd.DataFrame(
        {
            "incident_id": ["a"],
            "occurred_at": ["2026-03-29 02:30"],
            "zone_id": ["A"],
            "category": ["vol"],
        }
    ).to_csv(tmp_path / "i.csv", index=False)
    y = write_yaml(
        tmp_path,
        "area: {timezone: Europe/Paris}\nzones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: i.csv}\n",
    )
    ingest(y, tmp_path / "s")
    inc = Store(tmp_path / "s").validated("incidents")
    assert inc["occurred_at"].iloc[0] == pd.Timestamp("2026-03-29 01:30", tz="UTC")
    assert report(tmp_path / "s")["sources"]["incidents"]["dst"]["nonexistent_shifted"] == 1


def test_offset_aware_times_are_taken_as_given(tmp_path: Path):
    """Times with Z or an offset are not re-localised."""
    write_zones(tmp_path)
    pd.DataFrame(
        {
            "incident_id": ["a", "b"],
            "occurred_at": ["2026-07-01T10:00:00Z", "2026-07-01T10:00:00-05:00"],
            "zone_id": ["A", "A"],
            "category": ["vol", "vol"],
        }
    ).to_csv(tmp_path / "i.csv", index=False)
    y = write_yaml(
        tmp_path,
        "area: {timezone: Europe/Paris}\nzones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: i.csv}\n",
    )
    ingest(y, tmp_path / "s")
    inc = Store(tmp_path / "s").validated("incidents").set_index("incident_id")
    assert inc.loc["a", "occurred_at"] == pd.Timestamp("2026-07-01 10:00", tz="UTC")
    assert inc.loc["b", "occurred_at"] == pd.Timestamp("2026-07-01 15:00", tz="UTC")


def test_h3_zones_without_zones_file(tmp_path: Path):
    """Without a zones file, points fall in H3 cells at the configured resolution."""
    import h3

    pd.DataFrame(
        {
            "incident_id": ["a", "b"],
            "occurred_at": ["2026-07-01T10:00:00Z"] * 2,
            "latitude": [41.88, 41.79],
            "longitude": [-87.63, -87.60],
            "category": ["THEFT"] * 2,
        }
    ).to_csv(tmp_path / "i.csv", index=False)
    y = write_yaml(
        tmp_path, "area: {timezone: America/Chicago, h3_resolution: 7}\nincidents: {path: i.csv}\n"
    )
    ingest(y, tmp_path / "s")
    st = Store(tmp_path / "s")
    inc = st.validated("incidents")
    assert inc["zone_id"].tolist() == [
        h3.latlng_to_cell(41.88, -87.63, 7),
        h3.latlng_to_cell(41.79, -87.60, 7),
    ]
    assert set(st.zones()["zone_id"]) == set(inc["zone_id"])
    assert st.study()["zones_kind"] == "h3"


def test_rerun_is_identical_and_replaces_only_what_changed(study: Path, tmp_path: Path):
    """Re-running on unchanged inputs leaves every stored byte as it was; changing one source
    re-reads that source only."""
    store = tmp_path / "store"
    first = ingest(study, store)
    assert all(r.status == "ingested" for r in first.sources.values())
    snap = {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}
    again = ingest(study, store)
    assert {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()} == snap
    assert all(r.status == "unchanged" for r in again.sources.values())
    # change the weather only
    w = pd.read_csv(study.parent / "weather.csv")
    w.loc[0, "t"] = 9.9
    w.to_csv(study.parent / "weather.csv", index=False)
    third = ingest(study, store)
    assert {n for n, r in third.sources.items() if r.status == "ingested"} == {"weather"}
    assert Store(store).validated("weather")["temperature_c"].iloc[0] == pytest.approx(9.9)
    for p, b in snap.items():
        if "weather" not in p.name and p.name not in {"ingest_report.json", "study.json"}:
            assert p.read_bytes() == b, p


def test_missing_zone_and_unknown_refs(tmp_path: Path):
    """Presence for an unknown zone, ridership for an unknown stop and faults for an unknown lamp
    are quarantined with the reason."""
    write_zones(tmp_path)
    pd.DataFrame(
        {"zone_id": ["A", "Q"], "start": ["2026-11-02 00:00"] * 2, "present": [1, 2]}
    ).to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "stops.txt").write_text("stop_id,stop_name,stop_lat,stop_lon\nS1,One,48.86,2.33\n")
    pd.DataFrame(
        {"stop_id": ["S1", "S9"], "start": ["2026-11-02 08:00"] * 2, "entries": [1, 2]}
    ).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"lamp_id": ["L1"], "latitude": [48.86], "longitude": [2.31]}).to_csv(
        tmp_path / "l.csv", index=False
    )
    pd.DataFrame(
        {
            "lamp_id": ["L1", "L9"],
            "reported_at": ["2026-11-02 20:00"] * 2,
            "repaired_at": ["2026-11-01 20:00", ""],
        }
    ).to_csv(tmp_path / "f.csv", index=False)
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\npresence: {path: p.csv}\nstops: {path: stops.txt}\n"
        "ridership: {path: r.csv}\nlamps: {path: l.csv}\nlighting_faults: {path: f.csv}\n",
    )
    ingest(y, tmp_path / "s")
    rep = report(tmp_path / "s")["sources"]
    assert rep["presence"]["reasons"] == {"zone_id: unknown zone": 1}
    assert rep["ridership"]["reasons"] == {"stop_id: unknown stop": 1}
    assert "repaired_at before reported_at" in rep["lighting_faults"]["reasons"]
    assert "lamp_id: unknown lamp" in rep["lighting_faults"]["reasons"]
    assert rep["lighting_faults"]["rows_kept"] == 0


def test_parquet_and_jsonl_sources(tmp_path: Path):
    """Parquet with native timestamps and JSON Lines load like CSV."""
    write_zones(tmp_path)
    pd.DataFrame(
        {
            "incident_id": [1, 2],
            "occurred_at": pd.to_datetime(["2026-11-02 10:00", "2026-11-02 11:00"]),
            "zone_id": ["A", "B"],
            "category": ["vol", "vol"],
        }
    ).to_parquet(tmp_path / "i.parquet")
    pd.DataFrame(
        {"start": ["2026-11-02T00:00:00+01:00"], "temperature_c": [5.0], "precipitation_mm": [0.0]}
    ).to_json(tmp_path / "w.jsonl", orient="records", lines=True)
    y = write_yaml(
        tmp_path,
        "area: {timezone: Europe/Paris}\nzones: {path: zones.geojson, columns: {zone_id: code_iris}}\nincidents: {path: i.parquet}\nweather: {path: w.jsonl}\n",
    )
    ingest(y, tmp_path / "s")
    st = Store(tmp_path / "s")
    inc = st.validated("incidents")
    assert inc["incident_id"].tolist() == ["1", "2"]
    assert inc["occurred_at"].iloc[0] == pd.Timestamp("2026-11-02 09:00", tz="UTC")  # local CET
    assert st.validated("weather")["start"].iloc[0] == pd.Timestamp("2026-11-01 23:00", tz="UTC")


def test_zone_geometry_problems(tmp_path: Path):
    """A zones file with a point, an empty geometry and a duplicate id keeps the good polygons."""
    g = gpd.GeoDataFrame(
        {"zone_id": ["A", "B", "C", "A"]}, geometry=[ZA, Point(2.3, 48.8), None, ZB], crs=4326
    )
    g.to_file(tmp_path / "z.geojson", driver="GeoJSON")
    y = write_yaml(tmp_path, "zones: {path: z.geojson}\n")
    ingest(y, tmp_path / "s")
    r = report(tmp_path / "s")["sources"]["zones"]
    assert r["rows_kept"] == 1 and r["rows_quarantined"] == 3
    assert set(r["reasons"]) == {
        "geometry: not a polygon",
        "geometry: missing or empty",
        "duplicate zone_id",
    }


def test_zone_assignment_matches_a_spatial_join():
    """The raster-accelerated point-in-zone assignment gives the same zone as geopandas'
    spatial join (computed independently) on irregular Voronoi zones, points outside included."""
    from shapely import MultiPoint, voronoi_polygons

    from features.zones import assign_codes, assign_points

    rng = np.random.default_rng(3)
    env = box(2.25, 48.80, 2.45, 48.92)
    seeds = MultiPoint(list(zip(rng.uniform(2.25, 2.45, 80), rng.uniform(48.80, 48.92, 80))))
    polys = [p.intersection(env) for p in voronoi_polygons(seeds, extend_to=env).geoms]
    zones = gpd.GeoDataFrame(
        {"zone_id": [f"V{i}" for i in range(len(polys))]}, geometry=polys, crs=4326
    )
    lat, lon = rng.uniform(48.79, 48.93, 20_000), rng.uniform(2.24, 2.46, 20_000)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326)
    joined = gpd.sjoin(pts, zones, predicate="within", how="left")
    joined = joined[~joined.index.duplicated(keep="first")].reindex(pts.index)
    expected = joined["zone_id"].fillna("-").to_numpy(dtype=object)
    got = pd.Series(assign_points(lat, lon, zones)).fillna("-").to_numpy(dtype=object)
    assert (got == expected).mean() > 0.9999  # a point exactly on a border may differ
    codes = assign_codes(lat, lon, zones)
    assert ((codes < 0) == (expected == "-")).all()
    assert (codes < 0).sum() > 100  # the test has points outside every zone


def test_duplicate_search_in_duckdb_matches_pandas():
    """Above 50 000 rows repeated keys are found by DuckDB; it agrees with pandas'
    duplicated(keep="first") on text and time keys."""
    from features.ingest.validation import _repeated

    rng = np.random.default_rng(5)
    n = 60_000
    keys = pd.DataFrame(
        {
            "zone_id": pd.array(rng.choice([f"Z{i}" for i in range(40)], n), dtype="str"),
            "start": pd.to_datetime("2026-01-01", utc=True)
            + pd.to_timedelta(rng.integers(0, 2_000, n), unit="h"),
        }
    )
    got = _repeated(keys)
    assert got.sum() > 1000  # the keys do repeat
    assert (got == keys.duplicated(keep="first").to_numpy()).all()
    one = keys[["zone_id"]].assign(zone_id=keys["zone_id"] + "-" + pd.Series(range(n)).astype(str))
    one.iloc[[10, 20_000, 59_999], 0] = one.iloc[5, 0]  # three late copies of row 5's id
    assert np.flatnonzero(_repeated(one)).tolist() == [10, 20_000, 59_999]


def ingest_incidents(d: Path, incidents: pd.DataFrame, spec: str = "") -> Path:
    """Ingest an incidents table (plus ``spec``, more keys of its sources.yaml entry) with the
    two Paris zones; returns the store folder."""
    write_zones(d)
    incidents.to_csv(d / "inc.csv", index=False)
    y = write_yaml(
        d,
        "area: {name: t, timezone: Europe/Paris}\n"
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\n"
        f"incidents: {{path: inc.csv{spec}}}\n",
    )
    ingest(y, d / "s")
    return d / "s"


@pytest.mark.parametrize("pad", [0, 60_000], ids=["small", "duckdb-and-threads"])
def test_a_repeated_key_whose_first_copy_is_quarantined_keeps_the_next(tmp_path: Path, pad: int):
    """Repeated keys are looked for while zones are assigned; a first copy quarantined later
    (outside every zone, or an out-of-range latitude found by validation) does not make the
    next copy a duplicate."""
    ids = ["a", "a", "b", "b", "c", "c"] + [f"p{i}" for i in range(pad)]
    lat = ["48.2", "48.86", "95", "48.87", "48.86", "48.86"] + ["48.88"] * pad
    ingest_incidents(
        tmp_path,
        pd.DataFrame(
            {
                "incident_id": ids,
                "occurred_at": "2026-11-02T10:00",
                "latitude": lat,
                "longitude": 2.31,
                "category": "vol",
            }
        ),
    )
    r = report(tmp_path / "s")["sources"]["incidents"]
    assert r["rows_read"] == 6 + pad and r["rows_quarantined"] == 3
    q = pd.read_csv(tmp_path / "s" / "quarantine" / "incidents.csv", dtype=str)
    by_row = dict(zip(q["row"].astype(int), q["reason"]))
    assert set(by_row) == {1, 3, 6}
    assert "outside every zone" in by_row[1] and "latitude" in by_row[3]
    assert by_row[6] == "duplicate incident_id (c)"
    kept = Store(tmp_path / "s").validated("incidents")
    assert kept["incident_id"].iloc[:3].tolist() == ["a", "b", "c"]
    assert kept["latitude"].iloc[:2].tolist() == [48.86, 48.87]


def test_dates_alone_offsets_and_out_of_range_years(tmp_path: Path):
    """A date alone is local midnight (not an offset '-01'); times with an offset sit beside
    local ones in one column; a year a nanosecond timestamp cannot hold is quarantined as out of
    range, not a crash."""
    ingest_incidents(
        tmp_path,
        pd.DataFrame(
            {
                "incident_id": ["d", "o", "l", "y1", "y2"],
                "occurred_at": [
                    "2026-07-01",
                    "2026-07-01T10:00:00+02:00",
                    "2026-01-15 08:30",
                    "9999-01-01 10:00",
                    "0225-05-01 10:00",
                ],
                "latitude": 48.86,
                "longitude": 2.31,
                "category": "vol",
            }
        ),
    )
    inc = Store(tmp_path / "s").validated("incidents").set_index("incident_id")["occurred_at"]
    assert inc["d"] == pd.Timestamp("2026-06-30 22:00", tz="UTC")
    assert inc["o"] == pd.Timestamp("2026-07-01 08:00", tz="UTC")
    assert inc["l"] == pd.Timestamp("2026-01-15 07:30", tz="UTC")
    q = pd.read_csv(tmp_path / "s" / "quarantine" / "incidents.csv", dtype=str)
    assert q["incident_id"].tolist() == ["y1", "y2"]
    assert q["reason"].str.contains("occurred_at: time out of range").all()
    assert q["occurred_at"].tolist() == ["9999-01-01 10:00", "0225-05-01 10:00"]


@pytest.mark.parametrize(
    "tz", ["Europe/Paris", "Australia/Sydney", "America/New_York", "Asia/Kolkata", "UTC"]
)
def test_local_to_utc_by_day_offsets_matches_pandas(tz: str):
    """Local times become UTC by their day's offset, pandas being asked only near an offset
    change; over random times from 1990 to 2045 (and two far years, 1748 and 2191) the result is
    pandas' own tz_localize under the same rule (a nonexistent time 1 h later, a repeated time
    first read in summer time)."""
    from features.ingest.rows import _Rows
    from features.ingest.times import _localize

    rng = np.random.default_rng(11)
    secs = rng.integers(pd.Timestamp("1990-01-01").value // 10**9, 2_366_841_600, 200_000)
    far = [-7_000_000_000, 7_000_000_000]  # 1748 and 2191
    t = pd.Series(pd.to_datetime(np.r_[secs, far], unit="s")).astype("datetime64[ns]")
    t.iloc[7] = pd.NaT
    rows = _Rows("incidents", pd.DataFrame(index=t.index), [], [], {}, pd.DataFrame())
    got = _localize(rows, t, np.arange(len(t)), tz, [])
    expected = t.dt.tz_localize(tz, ambiguous=np.ones(len(t), bool), nonexistent=pd.Timedelta("1h"))
    expected = expected.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().view(np.int64)
    assert (got == expected).all()
    if tz in ("Europe/Paris", "America/New_York"):
        assert sum(rows.dst.values()) > 0  # the sample does cross DST changes


def test_dictionary_encoding_only_where_values_repeat():
    import pyarrow as pa

    from features.ingest.writing import _dictionary_columns

    n = 30_000
    t = pa.table(
        {
            "incident_id": [str(i) for i in range(n)],
            "category": ["vol", "rixe", "incendie"] * (n // 3),
            "latitude": np.random.default_rng(0).uniform(48, 49, n),
            "start": pd.date_range("2026-01-01", periods=n // 100, freq="h").repeat(100),
            "present": np.random.default_rng(1).integers(0, 5_000, n),  # counts repeat
        }
    )
    assert _dictionary_columns(t, "incident_id") == ["category", "start", "present"]
    small = _dictionary_columns(t.slice(0, 500), "incident_id")
    assert small == ["category", "latitude", "start", "present"]


def test_xy_row_quarantined_after_parsing_shows_its_coordinates(tmp_path: Path):
    """A Lambert-93 point outside every zone (found after parsing, when raw text is no longer
    kept) still shows the x/y it was read with in the quarantine file."""
    ingest_incidents(
        tmp_path,
        pd.DataFrame(
            {
                "incident_id": ["in", "out"],
                "occurred_at": "2026-11-02T10:00",
                "x": [652500.0, 842000.0],  # Paris (zone B), Lyon
                "y": [6862000.0, 6519000.0],
                "category": "vol",
            }
        ),
        ", crs: 'EPSG:2154'",
    )
    q = pd.read_csv(tmp_path / "s" / "quarantine" / "incidents.csv")
    assert q["incident_id"].tolist() == ["out"] and "outside every zone" in q["reason"].iloc[0]
    assert (q["x"].iloc[0], q["y"].iloc[0]) == (842000.0, 6519000.0)
    kept = Store(tmp_path / "s").validated("incidents")
    assert kept["zone_id"].tolist() == ["B"] and "x" not in kept.columns


@pytest.mark.parametrize("with_points", [False, True], ids=["zone-only", "some-points"])
def test_event_given_by_zone_sits_at_the_zone_centroid(tmp_path: Path, with_points: bool):
    """An event placed by zone_id alone gets its zone's centroid as coordinates (maps, radii);
    one with coordinates keeps them."""
    write_zones(tmp_path)
    ev = pd.DataFrame(
        {
            "event_id": ["E1", "E2"],
            "name": ["Concert", "Match"],
            "start": ["2026-11-07 20:00"] * 2,
            "end": ["2026-11-07 23:00"] * 2,
            "zone_id": ["A", "B"],
            "expected_attendance": [1000, 2000],
            "category": ["concert", "match"],
        }
    )
    if with_points:
        ev["latitude"], ev["longitude"] = [None, 48.88], [None, 2.39]
    ev.to_csv(tmp_path / "events.csv", index=False)
    y = write_yaml(
        tmp_path,
        "zones: {path: zones.geojson, columns: {zone_id: code_iris}}\nevents: {path: events.csv}\n",
    )
    ingest(y, tmp_path / "s")
    got = Store(tmp_path / "s").validated("events").set_index("event_id")
    assert got.loc["E1", ["latitude", "longitude"]].tolist() == pytest.approx(
        [48.875, 2.325], abs=1e-5
    )
    expected_e2 = [48.88, 2.39] if with_points else [48.875, 2.375]
    assert got.loc["E2", ["latitude", "longitude"]].tolist() == pytest.approx(expected_e2, abs=1e-5)
