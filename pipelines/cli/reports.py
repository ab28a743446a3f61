"""`vigie report weekly|brief|evaluation|explore` and `vigie schedule run`."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import user_errors
from pipelines.cli.lazy import lazy
from pipelines.cli.progress import REPORT_STEPS, progress

# The report stack (papermill, nbconvert, the models) loads only when a command runs, so that
# `vigie --help` and the other commands stay fast.
report_weekly = lazy("pipelines.reports.catalog", "report_weekly")
report_brief = lazy("pipelines.reports.catalog", "report_brief")
report_evaluation = lazy("pipelines.reports.catalog", "report_evaluation")
report_explore = lazy("pipelines.reports.catalog", "report_explore")
run_schedule = lazy("pipelines.reports.schedule", "run_schedule")
shoot_reports = lazy("pipelines.reports.index", "shoot_reports")

report_app = typer.Typer(
    help="Run a report notebook with papermill and write reports/<kind>/<id>/.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(help="Run what the schedule says is due.", no_args_is_help=True)

store_opt = typer.Option(..., "--store", help="The vigie store folder.")
reports_opt = typer.Option(
    Path("reports"), "--reports", help="Root of the reports tree (index.html is there)."
)
#: the help of every report command's --pdf
PDF_HELP = (
    "Also write report.pdf beside report.html (A4 landscape, every table whole). Needs headless "
    "Chromium: `apt-get install chromium` on Debian/Ubuntu, or VIGIE_CHROMIUM=/path/to/chrome."
)
pdf_opt = typer.Option(False, "--pdf", help=PDF_HELP)
tiles_help = (
    "Base map under the zones, e.g. OpenStreetMap (fetched when the report is opened; "
    "default: the study's area.tiles, else the offline base: the zones' outlines and names)."
)


def _done(result) -> None:
    typer.echo(f"report: {result.html}")
    typer.echo(f"summary: {result.summary_path}")
    if result.pdf is not None:
        typer.echo(f"pdf: {result.pdf}")
    typer.echo(f"index: {result.html.parent.parent.parent / 'index.html'}")


@report_app.command("weekly")
@user_errors
def weekly_cmd(
    store: Path = store_opt,
    week: str = typer.Option(..., "--week", help="ISO week, e.g. 2026-W46."),
    reports: Path = reports_opt,
    tiles: str = typer.Option(None, "--tiles", help=tiles_help),
    pdf: bool = pdf_opt,
) -> None:
    """The weekly report: key figures against the reference, weak signals, maps, events."""
    with progress(REPORT_STEPS, label=f"report weekly {week}: running the notebook"):
        result = report_weekly(store, week=week, reports_dir=reports, tiles=tiles, pdf=pdf)
    _done(result)


@report_app.command("brief")
@user_errors
def brief_cmd(
    event: str = typer.Argument(..., help="The event_id whose brief `vigie brief` made."),
    store: Path = store_opt,
    reports: Path = reports_opt,
    tiles: str = typer.Option(None, "--tiles", help=tiles_help),
    pdf: bool = pdf_opt,
) -> None:
    """The event brief's report from its saved analysis (run `vigie brief EVENT` first)."""
    with progress(REPORT_STEPS, label=f"report brief {event}: running the notebook"):
        result = report_brief(store, event, reports_dir=reports, tiles=tiles, pdf=pdf)
    _done(result)


@report_app.command("evaluation")
@user_errors
def evaluation_cmd(
    store: Path = store_opt,
    reports: Path = reports_opt,
    report_id: str = typer.Option(None, "--id", help="Report id (default: today's date)."),
    pdf: bool = pdf_opt,
) -> None:
    """The model evaluation: backtest metrics against baselines, effects with intervals."""
    with progress(REPORT_STEPS, label="report evaluation: running the notebook"):
        result = report_evaluation(store, reports_dir=reports, report_id=report_id, pdf=pdf)
    _done(result)


@report_app.command("explore")
@user_errors
def explore_cmd(
    store: Path = store_opt,
    reports: Path = reports_opt,
    report_id: str = typer.Option(None, "--id", help="Report id (default: today's date)."),
    pdf: bool = pdf_opt,
) -> None:
    """The exploration notebook run on a store (slicing the cube, correlations)."""
    with progress(REPORT_STEPS, label="report explore: running the notebook"):
        result = report_explore(store, reports_dir=reports, report_id=report_id, pdf=pdf)
    _done(result)


@report_app.command("screenshots")
@user_errors
def screenshots_cmd(
    reports: Path = reports_opt,
    out: Path = typer.Option(Path("docs/img"), "--out", help="Folder of the PNGs."),
    width: int = typer.Option(1280, "--width", min=320, help="Page width in CSS pixels."),
    height: int = typer.Option(1800, "--height", min=200, help="Height pictured (CSS px)."),
) -> None:
    """PNGs of the newest weekly, brief, evaluation and explore reports (`make screenshots`,
    the README's pictures). Needs headless Chromium, as --pdf does."""
    for png in shoot_reports(reports, out, width=width, height=height):
        typer.echo(f"{png} ({png.stat().st_size / 1024:.0f} KB)")


@schedule_app.command("run")
@user_errors
def schedule_run_cmd(
    store: Path = store_opt,
    reports: Path = reports_opt,
    config: Path = typer.Option(
        None, "--config", help="Schedule YAML (default: pipelines/reports/schedule.yaml)."
    ),
    now: str = typer.Option(
        None, "--now", help="Pretend it is this local time (ISO), e.g. to backfill."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what is due; run nothing."),
) -> None:
    """Run, once, every job the schedule says is due (missed periods are caught up)."""
    result = run_schedule(store, reports_dir=reports, config=config, now=now, dry_run=dry_run)
    for line in result.lines():
        typer.echo(line)
    if result.failed:
        raise typer.Exit(1)
