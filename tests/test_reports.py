"""The report runner (papermill), small-count suppression, offline maps, and the project notebooks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest

from features.errors import InputError
from features.timeutil import parse_iso_week
from pipelines.events.spec import brief_key
from pipelines.reports import catalog, publish
from pipelines.reports.catalog import KINDS
from pipelines.reports.errors import ReportError
from pipelines.reports.exploration import (
    hourly_profile,
    lagged_spearman,
    plot_correlation,
    plot_hourly,
    spearman_matrix,
    top_zones,
    zone_days,
)
from pipelines.reports.export import external_resources
from pipelines.reports.figures import missing_step, ratio_effects
from pipelines.reports.index import list_reports
from pipelines.reports.kernel import check_parameters, notebook_parameters
from pipelines.reports.maps import excess_breaks, to_html, zones_map
from pipelines.reports.runner import NOTEBOOK_DIR, run_notebook
from pipelines.reports.weekly import (
    key_figures,
    lighting_figures,
    lighting_transit_text,
    plot_daily,
    reference_note,
    signals_note,
    week_bounds,
    week_heading,
    zone_period_figures,
)


# -- a tiny notebook made in the test -------------------------------------------------------------
def make_notebook(path: Path, *, kernel: bool = False) -> Path:
    """A 4-cell notebook: parameters (n, fail), a summary with a count, a cell that can fail."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 3\nfail = False\nlabel = 'tiny'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Tiny report"),
        params,
        nbformat.v4.new_code_cell(
            "from pipelines.reports.publish import emit_summary\n"
            "emit_summary({'title': f'Tiny {label}', 'incidents': n, 'ratio': n / 4}, k=10)"
        ),
        nbformat.v4.new_code_cell(
            "if fail:\n    raise ValueError('planted failure')\nprint('secret_code_line', n)"
        ),
    ]
    if kernel:
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_nb(tmp_path_factory) -> Path:
    """The tiny notebook, stripped (no kernelspec), in a temporary folder."""
    return make_notebook(tmp_path_factory.mktemp("nb") / "tiny.ipynb")


def test_parameters_checked_before_running(tiny_nb: Path, tmp_path: Path):
    """An unknown parameter is refused before any kernel starts, naming the declared ones."""
    with pytest.raises(ReportError, match=r"unknown parameter\(s\) week.*declares: fail.*label.*n"):
        run_notebook(
            tiny_nb, kind="weekly", report_id="x", parameters={"week": 3}, reports_dir=tmp_path
        )
    assert not (tmp_path / "weekly" / "x").exists()
    with pytest.raises(ReportError, match="parameter n must be a plain value"):
        check_parameters(tiny_nb, {"n": object()})


def test_notebook_without_parameters_cell_is_refused(tmp_path: Path):
    """A notebook with no cell tagged 'parameters' is not a report notebook."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "plain.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(ReportError, match="no cell tagged 'parameters'"):
        check_parameters(path, {})


def test_report_ids_must_be_folder_names(tiny_nb: Path, tmp_path: Path):
    """A report id with a path separator is refused (no writing outside reports/<kind>/)."""
    with pytest.raises(ReportError, match="not usable as a folder name"):
        run_notebook(tiny_nb, kind="weekly", report_id="../evil", reports_dir=tmp_path)


@pytest.fixture(scope="module")
def runs(tiny_nb: Path, tmp_path_factory):
    """Three runs into one reports tree: a@n=12, b@n=4, then a failing run over a."""
    root = tmp_path_factory.mktemp("reports")
    first = run_notebook(
        tiny_nb, kind="weekly", report_id="a", parameters={"n": 12}, reports_dir=root
    )
    second = run_notebook(
        tiny_nb, kind="explore", report_id="b", parameters={"n": 4}, reports_dir=root
    )
    before = (root / "weekly" / "a" / "report.html").read_bytes()
    with pytest.raises(ReportError) as err:
        run_notebook(
            tiny_nb, kind="weekly", report_id="a", parameters={"fail": True}, reports_dir=root
        )
    return {"root": root, "first": first, "second": second, "before": before, "err": err.value}


def test_report_files_and_hidden_code(runs):
    """A run writes report.html (no code shown), the executed .ipynb and summary.json."""
    r = runs["first"]
    assert r.html.exists() and r.notebook.exists() and r.summary_path.exists()
    page = r.html.read_text()
    assert "secret_code_line 12" in page  # the output is shown...
    assert "print(&#39;secret_code_line&#39;" not in page and "print('secret_code_line'" not in page
    assert "<title>Tiny tiny</title>" in page
    executed = nbformat.read(str(r.notebook), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 12" in injected[0].source


def test_summary_has_figures_and_provenance(runs):
    """summary.json holds the notebook's figures and the provenance: parameters, notebook hash, code version."""
    s = json.loads(runs["first"].summary_path.read_text())
    assert s["figures"] == {"title": "Tiny tiny", "incidents": 12, "ratio": 3.0}
    prov = s["provenance"]
    assert prov["parameters"] == {"n": 12}
    assert re.fullmatch(r"[0-9a-f]{64}", prov["notebook"]["sha256"])
    assert prov["code_version"]["vigie"]
    assert prov["kernel"]


def test_small_counts_suppressed_in_summary_and_html(runs):
    """n=4 incidents with k=10 reads '<10' in summary.json; the raw 4 is nowhere in the figures."""
    s = runs["second"].summary
    assert s["figures"]["incidents"] == "<10"
    assert publish.find_unsuppressed(s["figures"], 10) == []


def test_failed_run_keeps_previous_report(runs):
    """A failing run names the failing cell, leaves the previous report byte-identical, saves the failure."""
    err = runs["err"]
    root = runs["root"]
    assert "failed in cell" in str(err) and "ValueError: planted failure" in str(err)
    assert "if fail:" in str(err)
    assert (root / "weekly" / "a" / "report.html").read_bytes() == runs["before"]
    failed = list((root / "_failed").glob("weekly-a-*.ipynb"))
    assert len(failed) == 1 and Path(err.failed_notebook) == failed[0]
    text = next((root / "_failed").glob("weekly-a-*.error.txt")).read_text()
    assert "planted failure" in text
    # no temporary folder is left behind
    assert not [p for p in (root / "weekly").iterdir() if p.name.startswith(".")]


def test_index_lists_reports_newest_first(runs):
    """index.html links every report, newest first, and lists the failed run."""
    root = runs["root"]
    rows = list_reports(root)
    assert [(r["kind"], r["id"]) for r in rows] == [("explore", "b"), ("weekly", "a")]
    page = (root / "index.html").read_text()
    assert page.index("explore/b/report.html") < page.index("weekly/a/report.html")
    assert "_failed/weekly-a-" in page


def test_report_page_loads_nothing_from_network(runs):
    """The exported page has no <script src> or <link href> to the network (MathJax, require.js dropped)."""
    assert external_resources(runs["first"].html.read_text()) == []


def test_parse_week():
    """ISO weeks parse to (Monday, next Monday); bad text says what is expected."""
    assert str(parse_iso_week("2026-W01")[0]) == "2025-12-29"
    with pytest.raises(InputError, match="expected an ISO week such as 2026-W46"):
        parse_iso_week("2026-46")
    with pytest.raises(InputError, match="has no week 53"):
        parse_iso_week("2025-W53")


def test_brief_report_named_like_the_brief_file(tmp_path: Path, monkeypatch):
    """An event id with characters unsafe in a path is reported under the brief's key, the name
    make_brief writes ``store/briefs/<key>.json`` under (the schedule passes the raw id)."""
    (tmp_path / "study.json").write_text(json.dumps({"area": {"timezone": "UTC"}}))
    seen = {}
    monkeypatch.setattr(catalog, "run_notebook", lambda nb, **kw: seen.update(kw))
    catalog.report_brief(tmp_path, "Fête: 14/07", reports_dir=tmp_path / "r")
    key = brief_key("Fête: 14/07")
    assert key == "Fete-14-07"  # accents folded (pipelines.events.spec.brief_key)
    assert seen["report_id"] == key and seen["parameters"]["event_id"] == key
    assert f"briefs/{key}.json" in seen["inputs"]


@pytest.mark.parametrize(
    ("end", "week"),
    [
        ("2026-11-15T23:00:00+00:00", "2026-W46"),  # Mon 16 Nov 00:00 Paris: W46 is whole
        ("2026-11-15T22:00:00+00:00", "2026-W45"),  # Sun 23:00 Paris: W46 lacks an hour
        ("2026-11-18T23:00:00+00:00", "2026-W46"),  # Thu 00:00 Paris: W47 has begun
        ("2026-11-15T23:00:00", "2026-W46"),  # naive means UTC
        ("2026-03-29T22:00:00+00:00", "2026-W13"),  # Mon 30 Mar 00:00 CEST, after the DST change
    ],
    ids=["monday-midnight", "sunday-late", "midweek", "naive-utc", "dst-week"],
)
def test_last_full_week(end, week):
    """The last whole local week before the cube's (exclusive) end, in the study's time zone."""
    from features.timeutil import last_full_week

    assert last_full_week(end, "Europe/Paris") == week


# -- suppression ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "k", "shown"),
    [
        (0, 10, "<10"),
        (9, 10, "<10"),
        (10, 10, 10),
        (9.6, 10, "<10"),
        (10.04, 10, 10.0),
        (4, 5, "<5"),
    ],
    ids=["zero", "k-1", "k", "float-below", "float-at", "k5"],
)
def test_suppress_value(value, k, shown):
    """Counts below k read '<k' (zero included); counts at or above k are shown."""
    assert publish.suppress_value(value, k) == shown


def test_suppress_frame_and_json_only_touch_counts():
    """Count columns/keys are suppressed; ratios, zone ids and staff numbers are not."""
    df = pd.DataFrame(
        {
            "zone_id": ["1", "2"],
            "incidents": [3, 25],
            "present_ratio": [0.5, 1.5],
            "rescuers": [2, 8],
        }
    )
    out = publish.suppress_frame(df, 10)
    assert out["incidents"].tolist() == ["<10", 25]
    assert out["present_ratio"].tolist() == [0.5, 1.5] and out["rescuers"].tolist() == [2, 8]
    tree = {
        "zones": [{"zone_id": "1", "incidents": 3, "inc_theft": [1, 30]}],
        "n_zones": 2,
        "rows": [{"name": "present", "value": 7}, {"name": "ratio", "value": 0.3}],
    }
    pub = publish.suppress_json(tree, 10)
    assert pub["zones"][0]["incidents"] == "<10" and pub["zones"][0]["inc_theft"] == ["<10", 30]
    assert pub["n_zones"] == 2
    assert pub["rows"] == [{"name": "present", "value": "<10"}, {"name": "ratio", "value": 0.3}]
    assert publish.find_unsuppressed(tree, 10) == [
        "$.zones[0].incidents",
        "$.zones[0].inc_theft[0]",
        "$.rows[0].value",
    ]
    with pytest.raises(ValueError, match="positive integer"):
        publish.suppress_value(3, 0)


# -- maps -----------------------------------------------------------------------------------------
@pytest.fixture
def grid_zones():
    """Six square zones in a row, with names."""
    import geopandas as gpd
    from shapely.geometry import box

    return gpd.GeoDataFrame(
        {"zone_id": [f"Z{i}" for i in range(6)], "name": [f"zone {i}" for i in range(6)]},
        geometry=[box(2.30 + 0.01 * i, 48.85, 2.31 + 0.01 * i, 48.86) for i in range(6)],
        crs=4326,
    )


def test_map_is_self_contained_with_layers(grid_zones):
    """The map inlines Leaflet, loads nothing from a CDN, and has zones, signals, lamps, stops, ring, layer control."""
    values = pd.DataFrame(
        {
            "zone_id": grid_zones.zone_id,
            "present_ratio": [0.4, 0.8, 1.0, 1.2, 1.6, None],
            "incidents": [3, 12, 0, 40, 5, 7],
        }
    )
    m = zones_map(
        grid_zones,
        values,
        signals=["Z1", "Z4"],
        lamps_out=pd.DataFrame({"latitude": [48.855], "longitude": [2.305], "lamp_id": ["L1"]}),
        stops=pd.DataFrame({"stop_lat": [48.853], "stop_lon": [2.325], "stop_name": ["Gare"]}),
        venue={"latitude": 48.855, "longitude": 2.33, "radius_m": 300, "name": "Stade"},
    )
    page = to_html(m)
    assert external_resources(page) == []
    assert "cdn." not in page and "Leaflet 1.9.4" in page
    assert "L.control.layers" in page
    for layer in ("weak signals", "lamps out (1)", "transit stops (1)", "venue and ring"):
        assert layer in page
    # colours: ratio 0.4 -> darkest blue, 1.6 -> class [1.4, 2) orange, missing -> grey
    for color in ("#2166ac", "#ef8a62", "#bdbdbd"):
        assert color in page
    # counts in tooltips are suppressed: 3 incidents in Z0 reads <10, 40 in Z3 is shown
    geo = json.loads(re.search(r"geo_json_\w+_add\((\{.*?\})\);", page, re.S).group(1))
    props = {f["properties"]["zone"]: f["properties"] for f in geo["features"]}
    # (tooltip fields are HTML: GeoJsonTooltip sets them as innerHTML)
    assert props["zone 0 (Z0)"]["incidents"] == "&lt;10"
    assert props["zone 3 (Z3)"]["incidents"] == "40"


def test_map_rejects_non_geodataframe():
    """zones_map says what it expected when given a plain DataFrame."""
    with pytest.raises(TypeError, match="zones should be a GeoDataFrame, got DataFrame"):
        zones_map(pd.DataFrame({"zone_id": ["a"]}))


def test_excess_breaks_symmetric():
    """Excess classes are symmetric around 0 and at least ±0.5 wide in the middle."""
    b = excess_breaks([0.1, -0.2, 0.3])
    assert b == (-2.5, -1.5, -0.5, 0.5, 1.5, 2.5)
    b = excess_breaks(list(range(-50, 51)))
    assert b[0] == -b[-1] and b[-1] == pytest.approx(45.0)


# -- the project's notebooks ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_project_notebooks_are_parameterised_and_stripped(kind):
    """Each notebook has one 'parameters' cell declaring store, no outputs, and defines no
    function, lambda or class."""
    path = NOTEBOOK_DIR / KINDS[kind]
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "store" in notebook_parameters(path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert not re.search(r"^\s*(def|class)\s|\blambda\b", cell.source, re.M)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny city's store and its four reports, run through papermill (built once per session)."""
    from tests._tiny_reports import build

    return build(tmp_path_factory.getbasetemp() / "vigie_tiny")


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_notebook_runs_on_the_tiny_city(tiny, kind):
    """Every report notebook ran through papermill on the tiny city: HTML offline, summary with no small count."""
    made = tiny["made"][kind]
    page = Path(made["html"]).read_text()
    assert external_resources(page) == []
    assert "Traceback" not in page
    summary = json.loads(Path(made["summary"]).read_text())
    assert summary["figures_emitted"] >= 1
    assert publish.find_unsuppressed(summary["figures"], summary["suppression_k"]) == []
    absent = [i["path"] for i in summary["provenance"]["inputs"] if i.get("absent")]
    assert absent == [], f"inputs the report expected but the store lacked: {absent}"
    index = (Path(tiny["reports"]) / "index.html").read_text()
    assert f"{kind}/{made['id']}/report.html" in index


@pytest.mark.slow
def test_weekly_key_figures_match_validated_incidents(tiny):
    """The weekly report's incident total equals the validated incidents of the local ISO week, counted independently."""
    from features.store import Store

    st = Store(tiny["store"])
    inc = st.validated("incidents")
    monday, next_monday = parse_iso_week(tiny["week"])
    start = pd.Timestamp(monday).tz_localize(st.timezone)
    end = pd.Timestamp(next_monday).tz_localize(st.timezone)
    expected = int(((inc["occurred_at"] >= start) & (inc["occurred_at"] < end)).sum())
    summary = json.loads(Path(tiny["made"]["weekly"]["summary"]).read_text())
    rows = {r["figure"]: r for r in summary["figures"]["key_figures"]}
    assert rows["incidents (all)"]["this_week"] == publish.suppress_value(expected, 10)
    # categories read in words (the tiny city's are codes such as accident_circulation)
    assert "incidents: accident circulation" in rows
    assert not [f for f in rows if "_" in f]
    assert summary["figures"]["signals_status"] == "ok"
    # the maps drew every zone: one GeoJSON feature per zone in each map frame
    page = Path(tiny["made"]["weekly"]["html"]).read_text()
    assert page.count("<iframe") == 2 and "Leaflet 1.9.4" in page


@pytest.mark.slow
def test_brief_report_shows_the_staffing_of_the_store_brief(tiny):
    """The brief report carries the DPS tier and peak staffing of store/briefs/<event>.json."""
    brief = json.loads((Path(tiny["store"]) / "briefs" / f"{tiny['event_id']}.json").read_text())
    summary = json.loads(Path(tiny["made"]["event-brief"]["summary"]).read_text())
    assert summary["figures"]["status"] == "ok"
    assert summary["figures"]["staffing_peak"]["rescuers"] == brief["staffing"]["peak"]["rescuers"]
    assert summary["figures"]["dps"]["tier"] == brief["staffing"]["dps"]["tier"]
    page = Path(tiny["made"]["event-brief"]["html"]).read_text()
    assert brief["staffing"]["dps"]["tier"] in page


@pytest.mark.slow
def test_evaluation_report_lists_models_and_baselines(tiny):
    """The evaluation report lists the fitted models and the seasonal-naive and hotspot baselines."""
    summary = json.loads(Path(tiny["made"]["evaluation"]["summary"]).read_text())
    models = {m["model"] for m in summary["figures"]["metrics"]}
    assert {"glm", "xgb", "recent_hotspot"} <= models
    assert any(m.startswith("seasonal_naive") for m in models)
    assert summary["figures"]["effects"]


# -- figures the notebooks show (pipelines.reports.figures, weekly, exploration) ---------------------------------------
def test_lighting_transit_text():
    """The weekly report's lighting and transit sentences: shares as %, small counts suppressed,
    and a plain sentence where the study has no such data."""
    figures = pd.DataFrame(
        {
            "figure": ["incidents (all)", "transit entries"],
            "this_week": [40.0, 1234.0],
            "reference_mean": [35.0, 8.4],
            "ratio": [40 / 35, 1234 / 8.4],
        }
    )
    lighting = {
        "lamps": 120,
        "night_share_out": 0.025,
        "night_share_out_reference": None,
        "faults_open_at_end": 3,
    }
    assert lighting_transit_text(lighting, figures, k=10) == [
        "Lamps out at night: 2.5 % of 120 lamps (reference –); 3 lamp(s) still out at the end "
        "of the week.",
        # the ratio would give the suppressed reference back (1234 / 146.9 = 8.4): withheld
        "Transit entries: 1234 against a reference of <10 (×c).",
    ]
    assert lighting_transit_text(None, figures.iloc[:1], k=10) == [
        "No lighting data in this study.",
        "No transit data in this study.",
    ]


def test_ratio_effects_keeps_group_all_irrs_and_outage_study():
    """The forest plot shows the IRRs of group 'all' and the outage event study, nothing else."""
    eff = pd.DataFrame(
        {
            "kind": ["irr", "irr", "outage_event_study", "event_uplift"],
            "group": ["all", "theft", None, None],
            "name": ["dark", "dark", "outage", "uplift"],
        }
    )
    assert ratio_effects(eff)["name"].tolist() == ["dark", "outage"]
    assert ratio_effects(eff, top=1)["name"].tolist() == ["dark"]
    assert ratio_effects(eff.drop(columns="group"))["name"].tolist() == ["outage"]
    assert ratio_effects(eff.iloc[[3]]) is None and ratio_effects(None) is None


def test_zone_days_and_lagged_spearman():
    """Zone-days sum counts and average presence; incidents that follow outages by one day in
    the same zone correlate perfectly at lag 1 (and the lag never crosses zones)."""
    days = pd.date_range("2026-11-01", periods=6, freq="D").date
    out = [0, 3, 1, 4, 2, 5]
    cube = pd.DataFrame(
        {
            "zone_id": ["A"] * 12 + ["B"] * 12,
            "local_date": list(days.repeat(2)) * 2,
            "present": [10.0, 20.0] * 12,
            "incidents": [i for o in [9, *out[:-1]] for i in (o, 0)]
            + [i for o in [0, *out[:-1]] for i in (0, o)],
            "lamps_out": [x for o in out for x in (o, 0)] * 2,
        }
    )
    zd = zone_days(cube)
    assert list(zd.columns) == ["present", "incidents", "lamps_out"]
    assert len(zd) == 12 and (zd["present"] == 15.0).all()
    assert zd.loc["A", "lamps_out"].tolist() == out
    assert zd.loc["B", "incidents"].tolist() == [0, *out[:-1]]
    rho = lagged_spearman(zd, "lamps_out", lags=3)
    assert rho["lag_days"].tolist() == [0, 1, 2]
    assert rho.loc[1, "spearman_rho"] == pytest.approx(1.0)
    assert rho.loc[0, "spearman_rho"] < 0.9


@pytest.fixture
def three_week_store(tmp_path: Path) -> Path:
    """A store with a hand-made hourly cube (UTC study, zones A and B, 2026-11-02 .. 11-23).

    A has 2 incidents a week in the two reference weeks and 7 in the week of 11-16; B has none
    but 1 in the last week. Presence: A 100 present against a baseline of 50, B 10 against 10
    (its baseline unknown on the last day). Lamps: 10 in A, 1 out every dark hour of the last
    week, none before.
    """
    root = tmp_path / "store"
    (root / "cube").mkdir(parents=True)
    (root / "study.json").write_text(
        json.dumps({"area": {"name": "t", "timezone": "UTC"}, "suppression_k": 10})
    )
    hours = pd.date_range("2026-11-02", "2026-11-23", freq="h", tz="UTC", inclusive="left")
    frames = []
    for zone in ("A", "B"):
        f = pd.DataFrame({"zone_id": zone, "hour": hours})
        f["present"] = 100.0 if zone == "A" else 10.0
        f["present_baseline"] = 50.0 if zone == "A" else 10.0
        f["incidents"] = 0
        f["lamps"] = 10 if zone == "A" else 0
        f["lamps_out"] = 0
        f["dark"] = (f["hour"].dt.hour < 6) | (f["hour"].dt.hour >= 18)
        frames.append(f)
    cube = pd.concat(frames, ignore_index=True)
    a, b = cube["zone_id"] == "A", cube["zone_id"] == "B"
    last = cube["hour"] >= "2026-11-16"
    for day in ("2026-11-03", "2026-11-05", "2026-11-10", "2026-11-12"):
        cube.loc[a & (cube["hour"] == pd.Timestamp(day + " 12:00", tz="UTC")), "incidents"] = 1
    cube.loc[a & last & (cube["hour"].dt.hour == 12) & (cube["hour"].dt.day < 23), "incidents"] = 1
    cube.loc[b & (cube["hour"] == pd.Timestamp("2026-11-20 12:00", tz="UTC")), "incidents"] = 1
    cube.loc[b & (cube["hour"] >= "2026-11-22"), "present_baseline"] = float("nan")
    cube.loc[a & last & cube["dark"], "lamps_out"] = 1
    cube.to_parquet(root / "cube" / "part.parquet")
    meta = {
        "start": "2026-11-02T00:00:00+00:00",
        "end": "2026-11-23T00:00:00+00:00",
        "timezone": "UTC",
        "grain": "1h",
        "columns": [c for c in cube.columns if c not in ("zone_id", "hour")],
    }
    (root / "cube_meta.json").write_text(json.dumps(meta))
    return root


def test_zone_period_figures_against_the_weeks_before(three_week_store: Path):
    """The weekly maps' figures: expected = mean incidents of the whole weeks before (only two
    in the data, though eight are asked for), excess = incidents - expected, presence ratio over
    the slots where both presence and baseline are known."""
    out = zone_period_figures(three_week_store, start="2026-11-16", end="2026-11-23")
    assert out["incidents"].to_dict() == {"A": 7, "B": 1}
    assert out["expected"].to_dict() == {"A": 2.0, "B": 0.0}
    assert out["excess"].to_dict() == {"A": 5.0, "B": 1.0}
    assert out["present_ratio"].to_dict() == {"A": 2.0, "B": 1.0}
    first = zone_period_figures(three_week_store, start="2026-11-02", end="2026-11-09")
    assert "expected" not in first  # no whole week of data before the first one


def test_lighting_figures_share_out_at_night(three_week_store: Path):
    """Share of lamps out over the dark zone-hours of the week against the weeks before."""
    out = lighting_figures(three_week_store, start="2026-11-16T00:00Z", end="2026-11-23T00:00Z")
    assert out["lamps"] == 10
    assert out["night_share_out"] == pytest.approx(0.1)
    assert out["night_share_out_reference"] == 0.0
    assert out["faults_open_at_end"] is None  # no lighting_faults source


def test_missing_analysis_is_said_not_hidden(tmp_path: Path):
    """Where the store lacks an analysis, the report text names the command that produces it."""
    (tmp_path / "study.json").write_text(json.dumps({"area": {"timezone": "UTC"}}))
    msg = missing_step(tmp_path, "signals/2026-W46.json", period="2026-W46")
    assert "has not been run" in msg and f"vigie signals --store {tmp_path} --week 2026-W46" in msg


def test_week_heading_and_reference_note(three_week_store: Path):
    """The weekly report's first line gives the local dates of the week, the reference and k;
    the reference note says how many whole weeks the reference had, and the heading agrees
    with the key figures' table (3 weeks of data: 2 whole weeks before the third, not 8)."""
    start, end = week_bounds(three_week_store, "2026-W47")
    text = week_heading(three_week_store, "2026-W47", start=start, end=end, reference_weeks=8)
    assert text == (
        "**t**, week **2026-W47** (Mon 16 Nov 2026 – Sun 22 Nov 2026, UTC). Reference: the mean "
        "of the 2 whole week(s) before (of the 8 asked: the data start later). Suppression "
        "threshold k = 10."
    )
    figures = key_figures(three_week_store, start=start, end=end, reference_weeks=8)
    assert int(figures["reference_periods"].min()) == 2
    note = reference_note(pd.DataFrame({"reference_periods": [2, 3]}))
    assert note.startswith("Reference = mean of the 2 whole week(s)")


def test_signals_note_says_missing_none_or_how_many(three_week_store: Path):
    """Signals not run name the command; none found says so with the tests counted; otherwise
    how many out of how many tests, with the expectation's source."""
    missing = signals_note(three_week_store, "2026-W47", None, None)
    assert "signals/2026-W47.json is not in the store" in missing
    assert "vigie signals" in missing and "--week 2026-W47" in missing
    run = SimpleNamespace(n_tests=40, n_signals=3, expectation=SimpleNamespace(source="model"))
    none = signals_note(three_week_store, "2026-W47", run, pd.DataFrame())
    assert none == "No signal passed the false-discovery threshold this week (40 tests)."
    some = signals_note(three_week_store, "2026-W47", run, pd.DataFrame({"rank": [1, 2]}))
    assert some == "3 signal(s) out of 40 tests; expectation: model. Top 2:"


def test_plots_have_one_panel_per_series():
    """The daily series and hourly profiles draw one panel per column; the week is in red."""
    days = pd.date_range("2026-11-02", periods=14, freq="D")
    daily = pd.DataFrame({"incidents": range(14), "present": 1.0}, index=days)
    fig = plot_daily(daily, start=pd.Timestamp("2026-11-09", tz="UTC"), week="W", timezone="UTC")
    assert len(fig.axes) == 2
    red = fig.axes[0].lines[1]
    assert len(red.get_xdata()) == 7 and red.get_label() == "W"
    cube = pd.DataFrame(
        {
            "zone_id": ["A", "B", "A", "B"],
            "local_hour": [0, 0, 1, 1],
            "present": [1.0, 3.0, 5.0, 7.0],
            "incidents": [0, 2, 1, 1],
        }
    )
    by_hour = hourly_profile(cube)
    assert by_hour.to_dict() == {"present": {0: 2.0, 1: 6.0}, "incidents": {0: 1.0, 1: 1.0}}
    assert len(plot_hourly(by_hour).axes) == 2
    assert top_zones(cube, n=1).to_dict("records") == [{"zone_id": "B", "incidents": 3}]


def test_spearman_matrix_and_its_plot():
    """The correlation matrix of zone-days is Spearman's (ranks: a monotone pair gives 1)."""
    days = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 4.0, 9.0, 100.0]})
    corr = spearman_matrix(days)
    assert corr.loc["a", "b"] == pytest.approx(1.0)
    fig = plot_correlation(corr)
    assert fig.axes[0].get_title() == "Spearman correlation, zone-days"
