"""No published figure gives back a count below k, an incident id or a left-out column (issue 14).

Unit checks of secondary suppression (expected + excess, ratio × expected, numbers inside
sentences), then the audit (:mod:`pipelines.reports.audit`) on planted leaks (it is not blind),
on the tiny city's reports at the default k, and on the same store's reports at a k high enough
that many cells are suppressed. Provenance: every summary.json carries the input files' hashes
and the code version, and changing an input changes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from pipelines.reports import publish
from pipelines.reports.audit import audit_reports, findings_frame
from pipelines.reports.figures import signals_table
from pipelines.reports.maps import _value_frame, _zone_frame, zone_classes, zone_tooltips
from pipelines.reports.provenance import code_version, provenance, source_sha256

#: a k high enough that many of the tiny city's weekly zone counts are suppressed
HIGH_K = 100


# -- secondary suppression ------------------------------------------------------------------------
def test_expected_and_excess_do_not_rebuild_a_suppressed_count():
    """A zone row with incidents < k publishes neither its expected nor its excess (their sum is
    the count), nor a ratio; a row at or above k publishes them."""
    zones = pd.DataFrame(
        {
            "zone_id": ["a", "b"],
            "incidents": [7, 40],
            "expected": [2.5, 30.0],
            "excess": [4.5, 10.0],
            "ratio": [2.8, 1.33],
            "present_ratio": [1.1, 0.9],
        }
    )
    frame = publish.suppress_frame(zones, 10)
    assert frame.loc[0, ["incidents", "expected", "excess", "ratio"]].tolist() == [
        "<10",
        "c",
        "c",
        "c",
    ]
    assert frame.loc[1, ["incidents", "expected", "excess"]].tolist() == [40, 30.0, 10.0]
    assert frame.loc[0, "present_ratio"] == 1.1  # not a way back to the count
    records = publish.suppress_json({"zones": zones.to_dict(orient="records")}, 10)
    assert records["zones"][0] == {
        "zone_id": "a",
        "incidents": "<10",
        "expected": "c",
        "excess": "c",
        "ratio": "c",
        "present_ratio": 1.1,
    }
    assert publish.find_derivable(records, 10) == []
    leaky = {"zones": [{"incidents": "<10", "expected": 2.5, "excess": 4.5}]}
    assert publish.find_derivable(leaky, 10) == ["$.zones[0].expected", "$.zones[0].excess"]


def test_brief_tables_keep_suppression():
    """The brief's hour table (event_crowd 8.5 with k = 10) and stops table suppress their
    counts: publish.table never turns suppression off, ``columns`` only adds count columns."""
    hours = pd.DataFrame(
        {
            "hour (local)": ["20:00"],
            "event_crowd": [8.5],
            "venue_present_forecast": [9.0],
            "agents": [4],
        }
    )
    page = publish.table(hours, 10, columns=[]).to_html()
    assert "8.5" not in page and ">9<" not in page and page.count("&lt;10") == 2
    assert ">4<" in page  # staff are not counts of the public
    stops = pd.DataFrame(
        {"stop_name": ["Gare"], "usual_entries": [6.0], "peak_expected_entries": [3.2]}
    )
    page = publish.table(stops, 10).to_html()
    assert page.count("&lt;10") == 2 and "3.2" not in page
    extra = publish.table(pd.DataFrame({"things": [3]}), 10, columns=["things"]).to_html()
    assert "&lt;10" in extra


@pytest.mark.parametrize(
    ("text", "k", "secondary", "shown"),
    [
        # the case: a raw count beside its own suppressed value
        ("Zone Z1 had 241 incidents against 80.5 expected (x3.0).", 250, True,
         "Zone Z1 had <250 incidents against <250 expected (xc)."),
        ("Zone 12 held 241 people against a reference of 400 (x0.60).", 250, True,
         "Zone 12 held <250 people against a reference of c (xc)."),
        ("Zone Z1 had 359 incidents against 152.1 expected (x2.4).", 10, False,
         "Zone Z1 had 359 incidents against 152.1 expected (x2.4)."),
        ("barrier queue = 6 083 people; 1,204 entries", 2000, False,
         "barrier queue = 6 083 people; <2000 entries"),
        ("Events A and B overlap, 5000 expected in all.", 10, False,
         "Events A and B overlap, 5000 expected in all."),
    ],
)  # fmt: skip
def test_numbers_inside_sentences(text, k, secondary, shown):
    """Counts inside a sentence are suppressed; with a suppressed count in the record, the
    ratio and the other counts of its sentence are withheld too."""
    assert publish.suppress_text(text, k, secondary=secondary) == shown


def test_signals_table_explanations_are_suppressed():
    """The weekly signals table: an explanation never shows its signal's count below k, nor
    the ratio and expectation that would give it back."""
    payload = {
        "signals": [
            {
                "rank": 1, "type": "excess", "zones": ["Z1"], "start": "2026-01-05T00:00",
                "end": "2026-01-12T00:00", "observed": 241, "expected": 80.5, "ratio": 2.99,
                "q_value": 0.001,
                "explanation": "Zone Z1 had 241 incidents against 80.5 expected this week (x3.0).",
            },
            {
                "rank": 2, "type": "excess", "zones": ["Z2"], "start": "2026-01-05T00:00",
                "end": "2026-01-12T00:00", "observed": 400, "expected": 300.0, "ratio": 1.33,
                "q_value": 0.01,
                "explanation": "Zone Z2 had 400 incidents against 300.0 expected this week (x1.3).",
            },
        ]
    }  # fmt: skip
    table = signals_table(payload, k=250)
    assert table.loc[0, "explanation"] == (
        "Zone Z1 had <250 incidents against <250 expected this week (xc)."
    )
    assert table.loc[1, "explanation"] == payload["signals"][1]["explanation"]
    shown = publish.suppress_frame(table, 250, columns=["observed"])
    assert shown.loc[0, ["observed", "expected", "ratio"]].tolist() == ["<250", "c", "c"]
    assert signals_table(payload)["explanation"].tolist()[0].startswith("Zone Z1 had 241")


def test_map_tooltips_and_colours_do_not_rebuild_a_suppressed_count():
    """On the excess map, a zone whose count is below k shows no expected or excess in its
    tooltip and is not coloured by its excess."""
    gz = _zone_frame(
        gpd.GeoDataFrame(
            {"zone_id": ["a", "b"]}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs=4326
        )
    )
    vals = _value_frame(
        pd.DataFrame({"zone_id": ["a", "b"], "incidents": [3, 60], "expected": [1.0, 20.0],
                      "excess": [2.0, 40.0]})
    )  # fmt: skip
    classes, _, _ = zone_classes(vals, "excess", k=10)
    assert pd.isna(classes["a"]) and not pd.isna(classes["b"])
    props = zone_tooltips(gz, vals, classes, k=10).set_index("zone_id")
    assert props.loc["a", ["incidents", "expected", "excess"]].tolist() == ["&lt;10", "c", "c"]
    assert props.loc["b", ["incidents", "expected", "excess"]].tolist() == ["60", "20", "40"]
    assert props.loc["a", "_fill"] == "#bdbdbd"


def test_non_finite_values_are_never_published():
    """inf and NaN become missing in tables and JSON, never "inf"."""
    df = pd.DataFrame({"figure": ["x"], "this_week": [np.inf], "ratio": [np.inf]})
    page = publish.table(df, 10).to_html()
    assert "inf" not in page.lower().replace("info", "")
    assert publish.suppress_json({"ratio": float("inf"), "present": float("inf")}, 10) == {
        "ratio": None,
        "present": None,
    }


# -- the audit ------------------------------------------------------------------------------------
def _planted(tmp_path: Path) -> tuple[Path, Path]:
    """A store (incident ids, a left-out column) and a reports folder leaking each way."""
    store = tmp_path / "store"
    (store / "validated").mkdir(parents=True)
    (store / "study.json").write_text(
        json.dumps({"suppression_k": 10, "area": {"timezone": "UTC"}})
    )
    pd.DataFrame({"incident_id": ["MC000000042"], "occurred_at": [pd.Timestamp("2026-01-01", tz="UTC")]}).to_parquet(
        store / "validated" / "incidents.parquet"
    )  # fmt: skip
    (store / "ingest_report.json").write_text(
        json.dumps({"sources": {"lamps": {"ignored_columns": ["armoire"]}}})
    )
    rep = tmp_path / "reports" / "weekly" / "w"
    rep.mkdir(parents=True)
    figures = {
        "zones": [{"zone_id": "a", "incidents": "<10", "expected": 2.5, "excess": 4.5}],
        "signals": [{"observed": 4}],
        "lamps": [{"armoire": "ARM1"}],
        "ratio": float("inf"),
    }
    (rep / "summary.json").write_text(json.dumps({"figures": figures}))
    (rep / "report.html").write_text(
        "<html><body><p>Zone a had 7 incidents; see MC000000042.</p>"
        "<table><thead><tr><th>zone</th><th>incidents</th><th>expected</th></tr></thead>"
        "<tbody><tr><td>a</td><td>&lt;10</td><td>2.5</td></tr>"
        "<tr><td>b</td><td>3</td><td>1.0</td></tr></tbody></table>"
        "<p>ratio inf</p></body></html>"
    )
    return store, tmp_path / "reports"


def test_audit_finds_each_kind_of_leak(tmp_path: Path):
    """Control: a planted count below k, rebuildable cells, an incident id, a left-out column
    and an infinite figure are each found, in JSON and in HTML."""
    store, reports = _planted(tmp_path)
    found = findings_frame(audit_reports(reports, store, k=10))
    what = " | ".join(found["file"] + ": " + found["where"] + ": " + found["what"])
    for expected in (
        "summary.json: $.zones[0].expected: figure beside a suppressed count",
        "summary.json: $.signals[0].observed: count below k",
        "summary.json: $.ratio: non-finite number inf",
        "report.html: table 0 row 0: expected = 2.5 beside a suppressed count",
        "report.html: table 0 row 1: count below k: incidents = 3",
        "report.html: text: count below k in text: '7 incidents'",
        "report.html: text: non-finite figure in text: 'inf'",
        "report.html: anywhere: incident id 'MC000000042'",
        "summary.json: anywhere: non-canonical column 'armoire' as a key or header",
    ):
        assert expected in what, (expected, what)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny city's reports (shared build with tests/test_reports.py)."""
    from tests._tiny_reports import build

    return build(tmp_path_factory.getbasetemp() / "vigie_tiny")


@pytest.mark.slow
def test_audit_of_the_tiny_city_reports_at_the_default_k(tiny):
    """The four reports and the index of the tiny city show nothing the audit objects to."""
    found = audit_reports(tiny["reports"], tiny["store"], k=10)
    assert found == [], "\n".join(map(str, found[:20]))


@pytest.fixture(scope="module")
def high_k(tiny, tmp_path_factory) -> dict:
    """The tiny city's store with suppression_k = HIGH_K (the analyses copied, not rerun) and
    its four reports."""
    from pipelines.reports import catalog

    base = tmp_path_factory.mktemp("high_k")
    store = base / "store"
    shutil.copytree(tiny["store"], store)
    study = json.loads((store / "study.json").read_text())
    study["suppression_k"] = HIGH_K
    (store / "study.json").write_text(json.dumps(study, indent=2))
    out = base / "reports"
    catalog.report_weekly(store, week=tiny["week"], reports_dir=out)
    catalog.report_brief(store, tiny["event_id"], reports_dir=out)
    catalog.report_evaluation(store, reports_dir=out, report_id="high-k")
    catalog.report_explore(store, reports_dir=out, report_id="high-k")
    return {"store": store, "reports": out}


@pytest.mark.slow
def test_audit_at_a_high_k_with_many_cells_suppressed(high_k):
    """At k = HIGH_K many counts are suppressed (and many figures beside them withheld), and
    still nothing published gives one back."""
    summaries = list(Path(high_k["reports"]).glob("*/*/summary.json"))
    text = "".join(p.read_text() for p in summaries)
    assert text.count(f'"<{HIGH_K}"') >= 30, text.count(f'"<{HIGH_K}"')
    assert text.count('"c"') >= 10
    weekly = json.loads(next(Path(high_k["reports"]).glob("weekly/*/summary.json")).read_text())
    assert weekly["suppression_k"] == HIGH_K
    found = audit_reports(high_k["reports"], high_k["store"], k=HIGH_K)
    assert found == [], "\n".join(map(str, found[:20]))


# -- provenance -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_summary_carries_input_hashes_and_code_version(tiny):
    """Each report's summary.json names the store files it read with their SHA-256, the raw
    input files of the study with theirs, the notebook's hash and the code version."""
    for made in tiny["made"].values():
        prov = json.loads(Path(made["summary"]).read_text())["provenance"]
        inputs = prov["inputs"]
        assert inputs[0]["path"] == "study.json" and len(inputs) >= 2
        for item in inputs:
            assert item.get("absent") or len(item["sha256"]) == 64, item
        files = [f for src in prov["sources"].values() for f in src["files"]]
        assert len(files) >= 10 and all(len(f["sha256"]) == 64 for f in files)
        code = prov["code_version"]
        assert code["vigie"] and len(code["source_sha256"]) == 64
        assert len(prov["notebook"]["sha256"]) == 64


@pytest.mark.slow
def test_changing_an_input_changes_the_provenance(tiny, tmp_path: Path):
    """Re-ingesting the study with one incident file changed changes that file's hash and the
    hash of study.json in the provenance, and nothing else of the sources."""
    from features.ingest import ingest

    raw = tmp_path / "raw"
    shutil.copytree(Path(tiny["store"]).parent / "raw", raw)
    first = sorted((raw / "incidents").glob("*.csv"))[0]
    lines = first.read_text(encoding="utf-8").splitlines(keepends=True)
    first.write_text("".join(lines[:-1]), encoding="utf-8")  # one incident less
    store = tmp_path / "store"
    ingest(raw / "sources.yaml", store)
    nb = Path(__file__).resolve().parent.parent / "notebooks" / "explore.ipynb"
    before = provenance(nb, parameters={}, kernel="k", store=tiny["store"], inputs=[])
    after = provenance(nb, parameters={}, kernel="k", store=store, inputs=[])
    assert before["inputs"][0]["sha256"] != after["inputs"][0]["sha256"]  # study.json

    def hashes(prov: dict) -> dict[str, str]:
        return {f["path"]: f["sha256"] for s in prov["sources"].values() for f in s["files"]}

    b, a = hashes(before), hashes(after)
    changed = {p for p in b if b[p] != a.get(p)}
    assert changed == {first.relative_to(raw).as_posix()}


def test_changing_the_code_changes_the_code_version(tmp_path: Path):
    """The code's SHA-256 covers every .py file of features/ and pipelines/: editing one, or
    adding one, changes it."""
    for pkg in ("features", "pipelines"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("x = 1\n")
    first = source_sha256(tmp_path)
    (tmp_path / "pipelines" / "__init__.py").write_text("x = 2\n")
    second = source_sha256(tmp_path)
    (tmp_path / "features" / "new.py").write_text("")
    assert len({first, second, source_sha256(tmp_path)}) == 3
    assert len(code_version()["source_sha256"]) == 64


def test_brief_hours_forecast_withheld_when_the_crowd_is_suppressed():
    """venue forecast = venue reference + event crowd: with the crowd below k, the forecast
    would give it back by subtraction, so it reads "c" (table and JSON alike)."""
    from pipelines.reports.publish import suppress_frame, suppress_json

    hours = pd.DataFrame(
        {
            "venue_reference": [800.0, 800.0],
            "venue_present_forecast": [805.0, 1800.0],
            "event_crowd": [5.0, 1000.0],
        }
    )
    out = suppress_frame(hours, 10)
    assert list(out["event_crowd"]) == ["<10", 1000.0]
    assert list(out["venue_present_forecast"]) == ["c", 1800.0]
    assert list(out["venue_reference"]) == [800.0, 800.0]
    rec = suppress_json(hours.iloc[0].to_dict(), 10)
    assert rec == {"venue_reference": 800.0, "venue_present_forecast": "c", "event_crowd": "<10"}
