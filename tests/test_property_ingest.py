"""Property-based ingest (hypothesis): every canonical source, fed hostile files.

Each example writes one source's file the way a messy export might: wrong types, missing, extra
and renamed columns, empty cells, duplicates, odd encodings and delimiters, NUL bytes and BOMs
in the middle of values, huge, negative and non-finite numbers, far-away coordinates,
self-intersecting polygons, times around the DST changes of Europe/Paris and placeholder rows
at non-existent local times. Then ``ingest`` runs into a fresh store. The properties:

- nothing but a :class:`~features.errors.VigieError` escapes, and its message names the file;
- the reconciliation holds for every source (rows read = kept + quarantined), and the store
  agrees with the report (the validated table has the rows kept, the quarantine file the rows
  quarantined);
- no infinite number and no NUL byte or BOM reaches the validated tables.

Budget: ``max_examples=200`` per source, derandomized (the same examples on every run, so
``make test`` is reproducible and its time fixed), no deadline (the first example of a
process pays for imports).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import schemas
from features.errors import VigieError
from features.ingest import ingest
from features.store import Store

BUDGET = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# two zones side by side in Paris (the fixed zones file of every source but zones)
ZONES = {
    "A": [(2.30, 48.85), (2.35, 48.85), (2.35, 48.90), (2.30, 48.90), (2.30, 48.85)],
    "B": [(2.35, 48.85), (2.40, 48.85), (2.40, 48.90), (2.35, 48.90), (2.35, 48.85)],
}

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\ufeffA",
        "A\ufeff",
        "A\x00",
        "\x00",
        "B\ufeff\ufeff",
        "n/a",
        "NULL",
        "é",
        "東京",
        "a;b",
        'a"b',
        "a,b",
        "a\tb",
        "a\nb",
        "../x",
        "/etc/passwd",
        "a\\b",
        ".hidden",
        "x" * 300,
    ]
)
ID = st.one_of(st.sampled_from(["A", "B", "C", "a", " A ", "1", "1.0"]), HOSTILE_TEXT)
NUMBER = st.one_of(
    st.sampled_from(
        [
            "1",
            "0",
            "-5",
            "12,5",
            "1 200,5",
            "3.0",
            "1e308",
            "-1e308",
            "1e400",
            "inf",
            "-inf",
            "Infinity",
            "NaN",
            "nan",
            "",
            "abc",
            "0x10",
            "1_000",
            "1e8",
            "100000001",
            "\x00",
            "7\x00",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
)
# local times around the DST changes of Europe/Paris (2024-03-31 02:00 does not exist,
# 2024-10-27 02:00 happens twice), offset-aware ones, and times that are not times
TIME = st.one_of(
    st.builds(
        lambda day, h, m: f"{day} {h:02d}:{m:02d}",
        st.sampled_from(["2024-03-31", "2024-10-27", "2024-06-01"]),
        st.integers(0, 4),
        st.sampled_from([0, 0, 0, 30]),
    ),
    st.sampled_from(
        [
            "2024-03-31T02:00:00+02:00",
            "2024-10-27T02:00:00+01:00",
            "2024-10-27T00:30:00Z",
            "2024-03-31",
            "31/03/2024 02:00",
            "",
            "yesterday",
            "2024-13-40 25:61",
            "9999-12-31 23:00",
            "1677-09-21 00:00",
            "0001-01-01",
            "2024-03-31 02:00\x00",
            "\ufeff2024-06-01 10:00",
        ]
    ),
)
LAT = st.one_of(
    st.floats(48.85, 48.90).map(lambda v: f"{v:.5f}"),
    st.sampled_from(["48,87", "-91", "91", "0", "1e308", "inf", "NaN", "", "x"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
LON = st.one_of(
    st.floats(2.30, 2.40).map(lambda v: f"{v:.5f}"),
    st.sampled_from(["2,37", "-181", "181", "179.99", "-inf", "", "y"]),
)
BOOL = st.sampled_from(["true", "0", "oui", "non", "maybe", "", "1.0"])
SLOT = st.sampled_from(["60", "30", "15", "7", "0", "-60", "1440", "2880", "1e308", "", "x"])
DPS = st.sampled_from(["0.25", "0.30", "0.4", "0.9", "-1", "", "inf"])


def cell(source: str, col: schemas.Col) -> st.SearchStrategy[str]:
    """Values for one canonical column: mostly plausible, often hostile."""
    if col.name in ("latitude", "stop_lat"):
        return LAT
    if col.name in ("longitude", "stop_lon"):
        return LON
    if col.name == "slot_minutes":
        return SLOT
    if col.name.startswith("dps_"):
        return DPS
    if col.name in ("temperature_c", "precipitation_mm"):
        return st.one_of(st.sampled_from(["12.5", "0", "-90", "600"]), NUMBER)
    return {
        "str": ID,
        "time": TIME,
        "float": st.one_of(st.sampled_from(["10", "250.5", "1000"]), NUMBER),
        "int": NUMBER,
        "bool": BOOL,
    }[col.kind]


@st.composite
def table(draw, source: str) -> tuple[list[str], list[list[str]]]:
    """A header and rows for ``source``: canonical columns, some dropped, renamed or repeated,
    extra ones, rows duplicated and placeholder rows at the spring-forward hour."""
    cols = [c for c in schemas.SOURCES[source] if c.kind != "geometry"]
    keep = [c for c in cols if c.required or draw(st.booleans())]
    if draw(st.integers(0, 9)) == 0 and keep:
        keep.pop(draw(st.integers(0, len(keep) - 1)))  # a required column may go missing
    header = [c.name for c in keep]
    if header and draw(st.integers(0, 5)) == 0:
        i = draw(st.integers(0, len(header) - 1))
        header[i] = draw(
            st.sampled_from([header[i].upper(), f" {header[i]} ", "\ufeff" + header[i]])
        )
    extras = draw(st.lists(st.sampled_from(["notes", "Nom", "name_2", "", "x\x00"]), max_size=2))
    rows = draw(
        st.lists(
            st.tuples(*[cell(source, c) for c in keep], *[HOSTILE_TEXT for _ in extras]).map(list),
            min_size=0,
            max_size=12,
        )
    )
    if rows and draw(st.booleans()):
        rows += draw(st.lists(st.sampled_from(rows), max_size=3))  # repeated rows
    if "start" in header and rows and draw(st.booleans()):
        # a placeholder row at the non-existent 02:00 beside the real 03:00 of the same series
        real = list(rows[0])
        real[header.index("start")] = "2024-03-31 03:00"
        ghost = [real[i] if c in schemas.KEYS.get(source, []) else "" for i, c in enumerate(header)]
        ghost[header.index("start")] = "2024-03-31 02:00"
        rows += [ghost, real]
    return header + extras, rows


def encode(draw, header: list[str], rows: list[list[str]]) -> tuple[bytes, str | None]:
    """CSV bytes in an odd delimiter and encoding (or ragged, unquoted text); the delimiter to
    declare, if any."""
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    buf = io.StringIO()
    if draw(st.integers(0, 7)) == 0:
        # unquoted: delimiters inside values make ragged rows
        buf.write("\n".join(delim.join(r) for r in [header, *rows]) + "\n")
    else:
        csv.writer(
            buf, delimiter=delim, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
        ).writerows([header, *rows])
    text = buf.getvalue()
    enc = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    data = text.encode(enc, errors="replace")
    declared = draw(st.sampled_from([None, None, delim]))
    return data, declared


def study_yaml(source: str, filename: str, *, delimiter: str | None, zones: bool) -> str:
    spec: dict = {"path": filename}
    if delimiter is not None:
        spec["delimiter"] = delimiter
    if source in ("presence", "presence_origin", "ridership", "weather"):
        spec["slot_minutes"] = 60
    lines = ["area: {name: hostile, timezone: Europe/Paris}"]
    if zones:
        lines.append("zones: {path: zones.geojson}")
    lines.append(f"{source}: {json.dumps(spec)}")
    return "\n".join(lines) + "\n"


def zones_geojson(features: list[dict]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


def polygon(zone_id, ring) -> dict:
    return {
        "type": "Feature",
        "properties": {"zone_id": zone_id, "name": "zone", "population": 100},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


FIXED_ZONES = zones_geojson([polygon(z, ring) for z, ring in ZONES.items()])


def check(store: Path, yaml_path: Path, names: list[str]) -> None:
    """Run ingest; assert the properties of the module docstring."""
    try:
        result = ingest(yaml_path, store, force=True)
    except VigieError as exc:
        message = str(exc)
        assert message.strip()
        assert any(n in message for n in names), f"message names no file: {message}"
        return
    st_ = Store(store)
    for name, res in result.sources.items():
        assert res.rows_read == res.rows_kept + res.rows_quarantined, (name, res)
        assert sum(res.reasons.values()) >= res.rows_quarantined, (name, res.reasons)
        path = st_.validated_path(name)
        if path.exists():
            kept = pq.read_table(path)
            assert kept.num_rows == res.rows_kept, (name, kept.num_rows, res)
            for field in kept.schema:
                col = kept[field.name]
                if pa.types.is_floating(field.type):
                    assert not pc.any(pc.is_inf(col)).as_py(), (name, field.name)
                elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                    for bad in ("\x00", "\ufeff"):
                        assert not pc.any(pc.match_substring(col, bad)).as_py(), (name, field.name)
        quarantine = st_.quarantine_dir / f"{name}.csv"
        if res.rows_quarantined:
            assert (
                len(pd.read_csv(quarantine, dtype=str, keep_default_na=False))
                == res.rows_quarantined
            )


TABULAR = [
    "presence",
    "presence_origin",
    "incidents",
    "lamps",
    "lighting_faults",
    "ridership",
    "events",
    "weather",
]


@pytest.mark.parametrize("source", TABULAR)
def test_hostile_tables_never_crash_and_reconcile(source: str, tmp_path_factory):
    root = tmp_path_factory.mktemp(source)
    (root / "zones.geojson").write_text(FIXED_ZONES)
    counter = iter(range(10**6))

    @BUDGET
    @given(data=st.data())
    def run(data):
        header, rows = data.draw(table(source))
        raw, delim = encode(data.draw, header, rows)
        d = root / f"ex{next(counter)}"
        d.mkdir()
        (d / "zones.geojson").write_text(FIXED_ZONES)
        name = f"{source}.csv"
        (d / name).write_bytes(raw)
        yaml_path = d / "sources.yaml"
        yaml_path.write_text(
            study_yaml(source, name, delimiter=delim, zones=data.draw(st.integers(0, 4)) == 0)
        )
        check(d / "store", yaml_path, [name, "sources.yaml"])

    run()


RINGS = st.one_of(
    st.sampled_from(list(ZONES.values())),
    st.just([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]),  # a bow tie (self-intersecting)
    st.just([(2.3, 48.8), (2.4, 48.8), (2.3, 48.8)]),  # degenerate
    st.just([(170.0, 80.0), (-170.0, 80.0), (-170.0, 85.0), (170.0, 85.0), (170.0, 80.0)]),
    st.just([(1e308, 0), (0, 1e308), (0, 0), (1e308, 0)]),
    st.lists(st.tuples(st.floats(-200, 200), st.floats(-100, 100)), min_size=0, max_size=6),
)


@st.composite
def zone_features(draw) -> list:
    feats = []
    for _ in range(draw(st.integers(0, 6))):
        zid = draw(st.one_of(ID, st.integers(-3, 3), st.none(), st.floats()))
        ring = draw(RINGS)
        geom = draw(
            st.sampled_from(["polygon", "polygon", "polygon", "point", "null", "multipolygon"])
        )
        props = {"zone_id": zid, "name": draw(HOSTILE_TEXT), "population": draw(NUMBER)}
        if geom == "polygon":
            g = {"type": "Polygon", "coordinates": [ring]}
        elif geom == "multipolygon":
            g = {"type": "MultiPolygon", "coordinates": [[ring]]}
        elif geom == "point":
            g = {"type": "Point", "coordinates": [2.3, 48.8]}
        else:
            g = None
        feats.append({"type": "Feature", "properties": props, "geometry": g})
    return feats


def test_hostile_zones_never_crash_and_reconcile(tmp_path_factory):
    root = tmp_path_factory.mktemp("zones")
    counter = iter(range(10**6))

    @BUDGET
    @given(feats=zone_features(), mangle=st.integers(0, 9))
    def run(feats, mangle):
        d = root / f"ex{next(counter)}"
        d.mkdir()
        text = json.dumps({"type": "FeatureCollection", "features": feats}, allow_nan=True)
        if mangle == 0:
            text = text[: len(text) // 2]  # cut short
        elif mangle == 1:
            text = "\ufeff" + text
        (d / "zones.geojson").write_text(text)
        yaml_path = d / "sources.yaml"
        yaml_path.write_text("area: {timezone: Europe/Paris}\nzones: {path: zones.geojson}\n")
        check(d / "store", yaml_path, ["zones.geojson", "sources.yaml"])

    run()


def test_hostile_stops_never_crash_and_reconcile(tmp_path_factory):
    root = tmp_path_factory.mktemp("stops")
    counter = iter(range(10**6))

    @BUDGET
    @given(data=st.data())
    def run(data):
        header, rows = data.draw(table("stops"))
        raw, delim = encode(data.draw, header, rows)
        d = root / f"ex{next(counter)}"
        d.mkdir()
        (d / "zones.geojson").write_text(FIXED_ZONES)
        as_gtfs = data.draw(st.booleans())
        if as_gtfs:
            name = "gtfs.zip"
            with zipfile.ZipFile(d / name, "w") as zf:
                zf.writestr("stops.txt", raw)
        else:
            name = "stops.csv"
            (d / name).write_bytes(raw)
        yaml_path = d / "sources.yaml"
        yaml_path.write_text(
            study_yaml(
                "stops",
                name,
                delimiter=None if as_gtfs else delim,
                zones=data.draw(st.integers(0, 4)) == 0,
            )
        )
        check(d / "store", yaml_path, [name, "sources.yaml"])

    run()
