"""Reports and messages people read without an engineer beside them (issue 15): clear refusals,
config typos answered with the closest valid key, tables in words with units."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.config import load_study
from features.errors import ConfigError
from pipelines.cli import app


@pytest.mark.parametrize(
    ("week", "side"), [("2020-W01", "before"), ("2031-W10", "after")], ids=["before", "after"]
)
def test_weekly_report_week_outside_the_data_exits_2(tiny_store: Path, tmp_path: Path, week, side):
    """`vigie report weekly --week` outside the cube exits 2 before any notebook runs, naming
    the weeks the cube holds (tiny city: 2026-W39 to 2026-W46)."""
    from features.store import Store
    from pipelines.reports.catalog import cube_weeks

    first, last, whole = cube_weeks(Store(tiny_store))
    reports = tmp_path / "reports"
    res = CliRunner().invoke(
        app,
        ["report", "weekly", "--store", str(tiny_store), "--week", week, "--reports", str(reports)],
    )
    assert res.exit_code == 2, res.output
    assert f"week {week} is {side} the data" in res.output
    assert f"{first} to {last}" in res.output and f"--week {whole}" in res.output
    assert "Traceback" not in res.output
    # refused before the notebook ran: no report folder, no failed notebook kept
    assert not (reports / "weekly").exists() and not (reports / "_failed").exists()


def test_cube_weeks_of_the_tiny_city(tiny_store: Path):
    """The weeks named in the refusal are those of the cube's first and last local hours."""
    import pandas as pd

    from features.store import Store
    from features.timeutil import iso_week
    from pipelines.reports.catalog import check_week, cube_weeks

    st = Store(tiny_store)
    meta = st.cube_meta()
    first, last, whole = cube_weeks(st)
    start = pd.Timestamp(meta["start"]).tz_convert(st.timezone)
    assert first == iso_week(start)
    assert whole <= last
    check_week(st, first)  # inside: no error
    check_week(st, last)


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sources.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "incidents: {path: x.csv, time_fromat: '%Y'}\n",
            "incidents.time_fromat: unknown key 'time_fromat' (did you mean 'time_format'?)",
        ),
        (
            "area: {name: x, timezne: UTC}\n",
            "area.timezne: unknown key 'timezne' (did you mean 'timezone'?)",
        ),
        ("supression_k: 5\n", "unknown setting 'supression_k' (did you mean 'suppression_k'?)"),
        ("incidnts: {path: x.csv}\n", "unknown source 'incidnts' (did you mean 'incidents'?)"),
    ],
    ids=["source-key", "area-key", "setting", "source"],
)
def test_config_typos_get_the_closest_valid_key(tmp_path: Path, text: str, expected: str):
    """A misspelt key is named with the closest valid one, and a setting is not called a source."""
    with pytest.raises(ConfigError) as err:
        load_study(_yaml(tmp_path, text))
    assert expected in str(err.value)
    assert "extra_forbidden" not in str(err.value) and "Extra inputs" not in str(err.value)


@pytest.fixture(scope="session")
def tiny_reports(tmp_path_factory):
    """The tiny city's store and its four reports (shared build with tests/test_reports.py)."""
    from tests._tiny_reports import build

    return build(tmp_path_factory.getbasetemp() / "vigie_tiny")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["weekly_report", "event_brief", "model_evaluation", "explore"], ids=str
)
def test_make_lab_notebooks_run_all_with_their_defaults(tiny_reports, tmp_path: Path, name):
    """Run All in `make lab` (notebooks/ as the working folder) with the default parameters
    succeeds on the store where `make demo` writes it (demo/city/store beside notebooks/)."""
    import papermill as pm

    from pipelines.reports.kernel import ensure_kernel, notebook_parameters
    from pipelines.reports.runner import NOTEBOOK_DIR

    (tmp_path / "demo" / "city").mkdir(parents=True)
    (tmp_path / "demo" / "city" / "store").symlink_to(Path(tiny_reports["store"]))
    (tmp_path / "notebooks").mkdir()
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    assert notebook_parameters(src)["store"]["default"].strip("\"'") == "../demo/city/store"
    out = tmp_path / "notebooks" / f"{name}.out.ipynb"
    pm.execute_notebook(
        str(src),
        str(out),
        kernel_name=ensure_kernel(),
        cwd=str(tmp_path / "notebooks"),
        progress_bar=False,
    )
    assert out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["weekly", "event-brief", "evaluation", "explore"])
def test_tables_read_in_words_with_zone_names(tiny_reports, kind):
    """Every table header is in words (no underscore), every zone code in a table cell comes
    with its zone's name, and every map legend reads in words (about usual, of usual, incidents
    more/fewer), not bare numeric classes."""
    import html as _html
    import re

    from bs4 import BeautifulSoup

    from features.store import Store

    page = Path(tiny_reports["made"][kind]["html"]).read_text()
    soup = BeautifulSoup(page, "html.parser")
    headers = [th.get_text(" ", strip=True) for th in soup.select("table th")]
    assert [h for h in headers if "_" in h] == []
    zones = Store(tiny_reports["store"]).zones()
    names = dict(zip(zones["zone_id"].astype(str), zones["name"].astype(str), strict=True))
    for td in soup.select("table td"):
        text = td.get_text(" ", strip=True)
        for code in re.findall(r"\b\d{9}\b", text):
            if code in names:
                assert names[code] in text, (code, text)
    for doc in re.findall(r'srcdoc="([^"]*)"', page):
        inner = _html.unescape(doc)
        if "vigie-legend" in inner:
            assert re.search(r"usual", inner), "legend without words"
