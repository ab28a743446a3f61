"""The report commands' --pdf, and zone names beside codes in what the CLI prints (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from features.store import Store
from pipelines.cli import app
from pipelines.cli.naming import with_zone_names
from pipelines.reports.export import find_chromium, print_pdf

runner = CliRunner()


def _zones_store(root: Path, names: list[str | None]) -> Store:
    st = Store(root)
    path = st.validated_path("zones")
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [f"75056014{i}" for i in range(len(names))]
    gpd.GeoDataFrame(
        {"zone_id": ids, "name": names},
        geometry=[box(2.3 + i * 0.01, 48.8, 2.31 + i * 0.01, 48.81) for i in range(len(names))],
        crs=4326,
    ).to_parquet(path)
    return st


def test_cli_text_names_the_zones(tmp_path):
    st = _zones_store(tmp_path, ["Gare du Nord", None, "Les Tanneurs"])
    text = (
        "In zone 750560140, incidents run x2.1; zone 750560141 has no name; "
        "7505601420 is not a zone; zones 750560142, 750560140 together"
    )
    out = with_zone_names(text, st)
    assert out == (
        "In zone 750560140 (Gare du Nord), incidents run x2.1; zone 750560141 has no name; "
        "7505601420 is not a zone; zones 750560142 (Les Tanneurs), 750560140 (Gare du Nord) "
        "together"
    )


def test_cli_text_without_zones_is_unchanged(tmp_path):
    assert with_zone_names("In zone 750560140.", Store(tmp_path)) == "In zone 750560140."


@pytest.mark.parametrize("command", ["weekly", "brief", "evaluation", "explore"])
def test_every_report_command_offers_pdf_and_says_what_it_needs(command):
    res = runner.invoke(app, ["report", command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "--pdf" in text and "Chromium" in text and "apt-get install chromium" in text


def test_pdf_without_chromium_is_refused_before_the_notebook_runs(tmp_path, monkeypatch):
    from tests._toy_store import toy_store

    toy_store(tmp_path / "store", weeks=3)
    monkeypatch.setenv("VIGIE_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert find_chromium() is None
    res = runner.invoke(
        app,
        [
            "report",
            "evaluation",
            "--store",
            str(tmp_path / "store"),
            "--reports",
            str(tmp_path / "reports"),
            "--pdf",
        ],
    )
    assert res.exit_code == 2, res.output
    assert "no Chromium found" in res.output and "apt-get install chromium" in res.output
    assert not (tmp_path / "reports" / "evaluation").exists()


def test_print_pdf_keeps_a_wide_table_whole(tmp_path):
    """A table wider than A4 portrait keeps its last column in the PDF (print stylesheet)."""
    if find_chromium() is None:
        pytest.skip("headless Chromium is not installed: --pdf cannot be checked here")
    import pypdf

    from pipelines.reports.export import PAGE_STYLE

    head = "".join(f"<th>column number {i}</th>" for i in range(14))
    row = "".join(f"<td>value{i:02d}</td>" for i in range(14))
    page = tmp_path / "report.html"
    page.write_text(
        f"<html><head>{PAGE_STYLE}</head><body><div class='jp-OutputArea-output "
        f"jp-RenderedHTMLCommon'><table><tr>{head}</tr><tr>{row}</tr></table></div>"
        "</body></html>",
        encoding="utf-8",
    )
    pdf = print_pdf(page)
    assert pdf == tmp_path / "report.pdf"
    text = "".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    assert re.search(r"value13", text), text[:500]
    assert not list(tmp_path.glob(".report.tmp-*"))  # written atomically


def test_the_index_links_a_report_pdf(tmp_path):
    import json

    from pipelines.reports.index import write_index

    for rid, pdf in (("a", True), ("b", False)):
        folder = tmp_path / "weekly" / rid
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"kind": "weekly", "id": rid}))
        (folder / "report.html").write_text("<html></html>")
        if pdf:
            (folder / "report.pdf").write_bytes(b"%PDF-1.4")
    page = write_index(tmp_path).read_text()
    assert 'href="weekly/a/report.pdf">PDF</a>' in page
    assert "weekly/b/report.pdf" not in page
