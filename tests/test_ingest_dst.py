"""Ingest on DST days as real exports write them: a placeholder row at the skipped hour of a
spring-forward day, a single row at the repeated hour of a fall-back day (issue 14, "A real
observation beats a placeholder").

The rule: a nonexistent local time whose shifted instant a real row of the same series holds is
quarantined as ``nonexistent local time (placeholder)`` and the real row is kept; a nonexistent
time that collides with nothing is shifted one hour forward; a single row at a repeated hour is
the first (summer-time) instant and the second hour stays missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from features.ingest import ingest
from features.ingest.times import PLACEHOLDER
from features.store import Store

PLACES = {
    "Europe/Paris": (48.85, 2.35),
    "America/New_York": (40.71, -74.00),
}


def _zones(d: Path, tz: str) -> None:
    lat, lon = PLACES[tz]
    gpd.GeoDataFrame(
        {"zone_id": ["A", "B"]},
        geometry=[
            box(lon - 0.1, lat - 0.1, lon, lat + 0.1),
            box(lon, lat - 0.1, lon + 0.1, lat + 0.1),
        ],
        crs=4326,
    ).to_file(d / "zones.geojson", driver="GeoJSON")


def _ingest(d: Path, tz: str, sources: str) -> dict:
    (d / "sources.yaml").write_text(
        f"area: {{timezone: {tz}}}\nzones: {{path: zones.geojson}}\n{sources}", encoding="utf-8"
    )
    ingest(d / "sources.yaml", d / "s")
    report = json.loads((d / "s" / "ingest_report.json").read_text())
    for name, src in report["sources"].items():
        assert src["rows_read"] == src["rows_kept"] + src["rows_quarantined"], name
    assert report["reconciled"]
    return report


def _quarantine(d: Path, source: str) -> pd.DataFrame:
    return pd.read_csv(d / "s" / "quarantine" / f"{source}.csv", dtype=str, keep_default_na=False)


def _wall_clock_day(day: str) -> list[str]:
    """The 24 wall-clock hours of a day, as an exporter that ignores DST writes them."""
    return [f"{day} {h:02d}:00" for h in range(24)]


def _instants(tz: str, day: str) -> pd.DatetimeIndex:
    """The true hourly instants of a local day (23, 24 or 25), in UTC."""
    start = pd.Timestamp(day).tz_localize(tz)
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize(tz)
    return pd.date_range(start, end, freq="h", inclusive="left").tz_convert("UTC")


def _utc(local: str, tz: str) -> pd.Timestamp:
    return pd.Timestamp(local).tz_localize(tz).tz_convert("UTC")


@pytest.mark.parametrize(
    "tz, day, gap_hour",
    [("Europe/Paris", "2026-03-29", 2), ("America/New_York", "2018-03-11", 2)],
    ids=["paris", "new-york"],
)
def test_spring_forward_placeholder_is_quarantined_and_the_real_hour_kept(
    tmp_path: Path, tz: str, day: str, gap_hour: int
):
    """Two zones, 24 wall-clock hours each: the skipped hour holds a placeholder (a 0 in zone A,
    a count in zone B). Both collide with the real next hour once shifted: both are quarantined
    with their reason, and every real hour is kept at its true instant with its own count."""
    _zones(tmp_path, tz)
    rows = []
    for z, placeholder in (("A", "0"), ("B", "77")):
        for h, t in enumerate(_wall_clock_day(day)):
            rows.append((z, t, placeholder if h == gap_hour else str(1000 + h)))
    pd.DataFrame(rows, columns=["zone_id", "start", "present"]).to_csv(
        tmp_path / "p.csv", index=False
    )
    rep = _ingest(tmp_path, tz, "presence: {path: p.csv, slot_minutes: 60}\n")
    src = rep["sources"]["presence"]
    assert (src["rows_read"], src["rows_kept"], src["rows_quarantined"]) == (48, 46, 2)
    assert src["reasons"] == {PLACEHOLDER: 2}
    assert src["dst"] == {
        "nonexistent_shifted": 0,
        "ambiguous_first": 0,
        "ambiguous_second": 0,
        "nonexistent_placeholder": 2,
    }
    pres = Store(tmp_path / "s").validated("presence")
    for z in ("A", "B"):
        got = pres[pres["zone_id"] == z].sort_values("start")
        assert got["start"].tolist() == list(_instants(tz, day))  # 23 hours, none doubled
        real = [1000.0 + h for h in range(24) if h != gap_hour]
        assert got["present"].tolist() == real
        at3 = got.loc[got["start"] == _utc(f"{day} 03:00", tz), "present"]
        assert at3.tolist() == [1003.0]  # the real next hour, not the placeholder
    q = _quarantine(tmp_path, "presence")
    assert q["reason"].tolist() == [PLACEHOLDER, PLACEHOLDER]
    assert q["zone_id"].tolist() == ["A", "B"]
    assert q["start"].tolist() == [f"{day} 02:00"] * 2  # the local time as written
    assert q["present"].astype(float).tolist() == [0.0, 77.0]


def test_nonexistent_time_without_a_real_slot_is_still_shifted(tmp_path: Path):
    """The collision is looked for in the row's own series: zone B wrote its 02:00 reading and no
    03:00 (its clock had not changed yet), so it is moved to 03:00 EDT and kept, while zone A's
    02:00 placeholder, whose 03:00 is real, is quarantined."""
    tz, day = "America/New_York", "2018-03-11"
    _zones(tmp_path, tz)
    rows = [("A", t, str(10 + h)) for h, t in enumerate(_wall_clock_day(day))]
    rows += [("B", t, str(20 + h)) for h, t in enumerate(_wall_clock_day(day)) if h != 3]
    pd.DataFrame(rows, columns=["zone_id", "start", "present"]).to_csv(
        tmp_path / "p.csv", index=False
    )
    rep = _ingest(tmp_path, tz, "presence: {path: p.csv, slot_minutes: 60}\n")
    src = rep["sources"]["presence"]
    assert (src["rows_read"], src["rows_kept"], src["rows_quarantined"]) == (47, 46, 1)
    assert src["dst"]["nonexistent_shifted"] == 1
    assert src["dst"]["nonexistent_placeholder"] == 1
    pres = Store(tmp_path / "s").validated("presence")
    b = pres[pres["zone_id"] == "B"].set_index("start")["present"]
    assert b.index.tolist() == list(_instants(tz, day))
    assert b[_utc(f"{day} 03:00", tz)] == 22.0  # the 02:00 reading, read one hour later
    assert b[pd.Timestamp(f"{day} 07:00", tz="UTC")] == 22.0
    a = pres[pres["zone_id"] == "A"].set_index("start")["present"]
    assert a[_utc(f"{day} 03:00", tz)] == 13.0
    q = _quarantine(tmp_path, "presence")
    assert q[["zone_id", "start", "reason"]].values.tolist() == [["A", f"{day} 02:00", PLACEHOLDER]]


@pytest.mark.parametrize(
    "tz, day, repeated",
    [("Europe/Paris", "2026-10-25", 2), ("America/New_York", "2017-11-05", 1)],
    ids=["paris", "new-york"],
)
def test_fall_back_single_row_is_the_first_instant_and_the_second_stays_missing(
    tmp_path: Path, tz: str, day: str, repeated: int
):
    """One row per wall-clock hour on a fall-back day (24 rows for 25 hours): the repeated hour's
    single row is its first (summer-time) instant; the second (winter-time) hour is not invented."""
    _zones(tmp_path, tz)
    rows = [(z, t, str(100 + h)) for z in ("A", "B") for h, t in enumerate(_wall_clock_day(day))]
    pd.DataFrame(rows, columns=["zone_id", "start", "present"]).to_csv(
        tmp_path / "p.csv", index=False
    )
    rep = _ingest(tmp_path, tz, "presence: {path: p.csv, slot_minutes: 60}\n")
    src = rep["sources"]["presence"]
    assert (src["rows_read"], src["rows_kept"], src["rows_quarantined"]) == (48, 48, 0)
    assert src["dst"] == {"nonexistent_shifted": 0, "ambiguous_first": 2, "ambiguous_second": 0}
    instants = _instants(tz, day)
    assert len(instants) == 25
    first = pd.Timestamp(f"{day} {repeated:02d}:00").tz_localize(tz, ambiguous=True)
    second = pd.Timestamp(f"{day} {repeated:02d}:00").tz_localize(tz, ambiguous=False)
    assert second - first == pd.Timedelta(hours=1)
    pres = Store(tmp_path / "s").validated("presence")
    for z in ("A", "B"):
        got = pres[pres["zone_id"] == z].set_index("start")["present"].sort_index()
        assert got.index.tolist() == [t for t in instants if t != second.tz_convert("UTC")]
        assert got[first.tz_convert("UTC")] == 100.0 + repeated
        assert second.tz_convert("UTC") not in got.index


def test_placeholder_in_one_file_real_hour_in_another(tmp_path: Path):
    """The real slot may come from another file of the source: the files are stacked first."""
    tz, day = "Europe/Paris", "2026-03-29"
    _zones(tmp_path, tz)
    pd.DataFrame(
        {"zone_id": ["A", "A"], "start": [f"{day} 01:00", f"{day} 02:00"], "present": [5, 0]}
    ).to_csv(tmp_path / "p1.csv", index=False)
    pd.DataFrame(
        {"zone_id": ["A", "A"], "start": [f"{day} 03:00", f"{day} 04:00"], "present": [7, 9]}
    ).to_csv(tmp_path / "p2.csv", index=False)
    rep = _ingest(tmp_path, tz, "presence: {path: 'p*.csv', slot_minutes: 60}\n")
    assert rep["sources"]["presence"]["reasons"] == {PLACEHOLDER: 1}
    pres = Store(tmp_path / "s").validated("presence")
    assert pres["present"].tolist() == [5.0, 7.0, 9.0]
    assert pres["start"].tolist() == [_utc(f"{day} {h}", tz) for h in ("01:00", "03:00", "04:00")]


def test_point_sources_collide_on_the_timestamp_and_their_key(tmp_path: Path):
    """Sources without series keys: weather collides on the timestamp alone; incidents on the
    timestamp and the incident id (the duplicate check's key), so a different incident at the
    shifted time is no collision and both are kept."""
    tz, day = "Europe/Paris", "2026-03-29"
    _zones(tmp_path, tz)
    lat, lon = PLACES[tz]
    pd.DataFrame(
        {
            "start": [f"{day} 01:00", f"{day} 02:00", f"{day} 03:00"],
            "temperature_c": ["8", "0", "7,5"],
            "precipitation_mm": ["0", "0", "1"],
        }
    ).to_csv(tmp_path / "w.csv", index=False, sep=";")
    pd.DataFrame(
        {
            "incident_id": ["x", "x", "y", "z"],
            "occurred_at": [f"{day} 02:30", f"{day} 03:30", f"{day} 02:30", f"{day} 03:30"],
            "latitude": [lat] * 4,
            "longitude": [lon - 0.05] * 4,
            "category": ["vol"] * 4,
        }
    ).to_csv(tmp_path / "i.csv", index=False)
    rep = _ingest(
        tmp_path,
        tz,
        "weather: {path: w.csv, slot_minutes: 60}\nincidents: {path: i.csv}\n",
    )
    w = rep["sources"]["weather"]
    assert (w["rows_kept"], w["reasons"]) == (2, {PLACEHOLDER: 1})
    weather = Store(tmp_path / "s").validated("weather")
    assert weather["start"].tolist() == [_utc(f"{day} {h}", tz) for h in ("01:00", "03:00")]
    assert weather["temperature_c"].tolist() == [8.0, 7.5]
    inc = rep["sources"]["incidents"]
    assert (inc["rows_read"], inc["rows_kept"], inc["reasons"]) == (4, 3, {PLACEHOLDER: 1})
    assert inc["dst"] == {
        "nonexistent_shifted": 1,
        "ambiguous_first": 0,
        "ambiguous_second": 0,
        "nonexistent_placeholder": 1,
    }
    kept = Store(tmp_path / "s").validated("incidents").set_index("incident_id")["occurred_at"]
    at_330 = _utc(f"{day} 03:30", tz)
    assert kept.to_dict() == {"x": at_330, "y": at_330, "z": at_330}
    q = _quarantine(tmp_path, "incidents")
    assert q[["incident_id", "occurred_at", "reason"]].values.tolist() == [
        ["x", f"{day} 02:30", PLACEHOLDER]
    ]


BROOKLYN = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyc-brooklyn-bridge"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "brooklyn-bridge" / "sources.yaml"


@pytest.mark.skipif(
    not BROOKLYN.is_dir(),
    reason=f"the real Brooklyn Bridge export is not here ({BROOKLYN}): see examples/brooklyn-bridge",
)
def test_brooklyn_bridge_export_keeps_every_real_hour(tmp_path: Path):
    """The NYC DOT export (7 296 hourly rows): the 2018-03-11 02:00 placeholder (a 0 with empty
    fields) is quarantined with its reason; every other row is kept, the 03:00 count (5) among
    them; the fall-back day's single 01:00 row is the EDT instant, and 01:00 EST stays missing."""
    rep = ingest(EXAMPLE, tmp_path / "s")
    src = rep.sources["presence"]
    assert (src.rows_read, src.rows_kept, src.rows_quarantined) == (7296, 7295, 1)
    assert src.reasons == {PLACEHOLDER: 1}
    assert src.dst == {
        "nonexistent_shifted": 0,
        "ambiguous_first": 1,
        "ambiguous_second": 0,
        "nonexistent_placeholder": 1,
    }
    assert rep.reconciled
    q = _quarantine(tmp_path, "presence")
    assert q[["start", "reason"]].values.tolist() == [["03/11/2018 02:00:00 AM", PLACEHOLDER]]
    pres = Store(tmp_path / "s").validated("presence").set_index("start")["present"]
    assert pres.index.is_unique
    tz = "America/New_York"
    assert pres[_utc("2018-03-11 03:00", tz)] == 5.0
    assert pres[_utc("2018-03-11 01:00", tz)] == 50.0
    assert pd.Timestamp("2018-03-11 07:00", tz="UTC") == _utc("2018-03-11 03:00", tz)
    first = pd.Timestamp("2017-11-05 01:00").tz_localize(tz, ambiguous=True).tz_convert("UTC")
    assert pres[first] == 29.0
    assert pd.Timestamp("2017-11-05 06:00", tz="UTC") not in pres.index  # 01:00 EST: missing
    # every real hourly count of the export is kept, at its own instant
    raw = pd.read_csv(
        next(BROOKLYN.glob("*.csv")), usecols=["hour_beginning", "Pedestrians"], dtype=str
    )
    local = pd.to_datetime(raw["hour_beginning"], format="%m/%d/%Y %I:%M:%S %p")
    real = raw[local != pd.Timestamp("2018-03-11 02:00")]
    assert len(real) == 7295
    assert sorted(pres.astype(int).tolist()) == sorted(real["Pedestrians"].astype(int).tolist())


@pytest.mark.parametrize("path", ["whole", "file-by-file", "workers"])
def test_fall_back_hour_split_across_two_files_keeps_both_copies(
    tmp_path: Path, monkeypatch, path: str
):
    """An export cut at 02:30 local on the fall-back day (half-hour slots): the first passage of
    02:00 and 02:30 (summer time) ends the first file, the second passage (winter time) opens
    the next. The copies are ranked across the files: both kept with distinct UTC instants,
    nothing quarantined, and the store is the one the same rows in a single file give. Read
    whole (small sources), file by file, and by the worker processes of a large source."""
    import features.ingest.run as run_mod
    import features.ingest.stream as stream_mod

    if path == "whole":
        monkeypatch.setattr(run_mod, "streamable", lambda name, kind: False)
    if path == "workers":
        monkeypatch.setattr(stream_mod, "POOL_BYTES", 0)
    tz, day = "Europe/Paris", "2026-10-25"
    first = ["01:00", "01:30", "02:00", "02:30"]  # 02:00 and 02:30 in summer time (UTC+2)
    second = ["02:00", "02:30", "03:00", "03:30"]  # 02:00 and 02:30 again, in winter time

    def frame(times: list[str], base: int) -> pd.DataFrame:
        rows = [(z, f"{day} {t}", base + 10 * i + k) for k, z in enumerate("AB")
                for i, t in enumerate(times)]  # fmt: skip
        return pd.DataFrame(rows, columns=["zone_id", "start", "present"])

    src = "presence: {path: 'p*.csv', slot_minutes: 30}\n"
    split, whole = tmp_path / "split", tmp_path / "one"
    for d in (split, whole):
        d.mkdir()
        _zones(d, tz)
    frame(first, 100).to_csv(split / "p1.csv", index=False)
    frame(second, 200).to_csv(split / "p2.csv", index=False)
    pd.concat([frame(first, 100), frame(second, 200)]).to_csv(whole / "p1.csv", index=False)
    rep = _ingest(split, tz, src)["sources"]["presence"]
    assert (rep["rows_read"], rep["rows_kept"], rep["rows_quarantined"]) == (16, 16, 0)
    assert rep["reasons"] == {}
    assert rep["dst"] == {"nonexistent_shifted": 0, "ambiguous_first": 4, "ambiguous_second": 4}
    assert _quarantine(split, "presence").empty
    pres = Store(split / "s").validated("presence")
    # 01:00 local is 23:00 UTC the day before; every half hour after it is the next instant
    t0 = pd.Timestamp("2026-10-24 23:00", tz="UTC")
    for k, z in enumerate("AB"):
        got = pres[pres["zone_id"] == z]
        assert got["start"].tolist() == [t0 + pd.Timedelta(minutes=30 * i) for i in range(8)]
        assert got["present"].tolist() == [100.0 + 10 * i + k for i in range(4)] + [
            200.0 + 10 * i + k for i in range(4)
        ]
    monkeypatch.undo()
    rep_one = _ingest(whole, tz, src)["sources"]["presence"]
    assert rep_one["dst"] == rep["dst"]
    one = Store(whole / "s").validated("presence")
    pd.testing.assert_frame_equal(
        pres.sort_values(["zone_id", "start"]).reset_index(drop=True),
        one.sort_values(["zone_id", "start"]).reset_index(drop=True),
    )


@pytest.mark.parametrize("path", ["whole", "file-by-file"])
def test_third_copy_of_a_repeated_hour_in_another_file_is_a_duplicate(
    tmp_path: Path, monkeypatch, path: str
):
    """Both passages of 02:00 in the first file, a third copy opening the second file: the
    first file says which copy is which, so the third stays the summer-time 02:00 (as a single
    copy in one file reads) and is quarantined as a duplicate of the first file's; the first
    file's two copies keep their instants."""
    import features.ingest.run as run_mod

    if path == "whole":
        monkeypatch.setattr(run_mod, "streamable", lambda name, kind: False)
    tz, day = "Europe/Paris", "2026-10-25"
    _zones(tmp_path, tz)
    pd.DataFrame(
        {"zone_id": ["A"] * 3, "start": [f"{day} {h}" for h in ("01:00", "02:00", "02:00")],
         "present": [1, 2, 3]}
    ).to_csv(tmp_path / "p1.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"zone_id": ["A"] * 2, "start": [f"{day} {h}" for h in ("02:00", "03:00")],
         "present": [30, 4]}
    ).to_csv(tmp_path / "p2.csv", index=False)  # fmt: skip
    rep = _ingest(tmp_path, tz, "presence: {path: 'p*.csv', slot_minutes: 60}\n")
    src = rep["sources"]["presence"]
    assert (src["rows_read"], src["rows_kept"], src["rows_quarantined"]) == (5, 4, 1)
    assert src["dst"] == {"nonexistent_shifted": 0, "ambiguous_first": 2, "ambiguous_second": 1}
    q = _quarantine(tmp_path, "presence")
    assert q[["file", "row"]].values.tolist() == [["p2.csv", "1"]]
    assert q["reason"].iloc[0] == "duplicate zone_id+start (A|2026-10-25 00:00:00+00:00)"
    pres = Store(tmp_path / "s").validated("presence")
    t0 = pd.Timestamp("2026-10-24 23:00", tz="UTC")
    assert pres["start"].tolist() == [t0 + pd.Timedelta(hours=i) for i in range(4)]
    assert pres["present"].tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("path", ["whole", "file-by-file", "workers"])
def test_overlapping_re_export_of_the_fall_back_hour_keeps_the_real_winter_row(
    tmp_path: Path, monkeypatch, path: str
):
    """The first file ends with the summer-time 02:00; the second, a re-export overlapping it,
    starts at 01:00 and holds both passages of 02:00. The second file says which copy is which:
    its summer-time 02:00 is the duplicate of the first file's (quarantined), its winter-time
    02:00 is kept at the winter instant with its own value (a summer-time value is never moved
    onto the winter-time instant)."""
    import features.ingest.run as run_mod
    import features.ingest.stream as stream_mod

    if path == "whole":
        monkeypatch.setattr(run_mod, "streamable", lambda name, kind: False)
    if path == "workers":
        monkeypatch.setattr(stream_mod, "POOL_BYTES", 0)
    tz, day = "Europe/Paris", "2026-10-25"
    _zones(tmp_path, tz)
    pd.DataFrame(
        {"zone_id": ["A"] * 2, "start": [f"{day} {h}" for h in ("01:00", "02:00")],
         "present": [1, 2]}
    ).to_csv(tmp_path / "p1.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"zone_id": ["A"] * 4, "start": [f"{day} {h}" for h in ("01:00", "02:00", "02:00", "03:00")],
         "present": [1, 2, 3, 4]}
    ).to_csv(tmp_path / "p2.csv", index=False)  # fmt: skip
    rep = _ingest(tmp_path, tz, "presence: {path: 'p*.csv', slot_minutes: 60}\n")
    src = rep["sources"]["presence"]
    assert (src["rows_read"], src["rows_kept"], src["rows_quarantined"]) == (6, 4, 2)
    q = _quarantine(tmp_path, "presence")
    assert sorted(q[["file", "row"]].values.tolist()) == [["p2.csv", "1"], ["p2.csv", "2"]]
    pres = Store(tmp_path / "s").validated("presence")
    t0 = pd.Timestamp("2026-10-24 23:00", tz="UTC")
    assert pres["start"].tolist() == [t0 + pd.Timedelta(hours=i) for i in range(4)]
    assert pres["present"].tolist() == [1.0, 2.0, 3.0, 4.0]
