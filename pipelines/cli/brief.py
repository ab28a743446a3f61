"""`vigie brief EVENT --store DIR`: the event-planning brief's analysis (store/briefs/<id>.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

from features.errors import InputError
from features.jsonio import json_default
from features.store import Store
from pipelines.cli.common import user_errors
from pipelines.cli.lazy import lazy
from pipelines.cli.naming import with_zone_names
from pipelines.cli.progress import REPORT_STEPS, progress
from pipelines.cli.reports import PDF_HELP

# the brief's stack (the models, the cube readers) loads only when the command runs
make_brief = lazy("pipelines.events.brief", "make_brief")
report_brief = lazy("pipelines.reports.catalog", "report_brief")


def _parse_params(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values read as YAML scalars (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(
                f"--param expects KEY=VALUE (e.g. visibility_ratio=200), got {item!r}."
            )
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


@user_errors
def brief(
    event: str = typer.Argument(
        ..., help="An event_id of the store's events, or a YAML event file."
    ),
    store: Path = typer.Option(..., "--store", help="The vigie store folder."),
    out: Path | None = typer.Option(None, "--out", help="Also write the brief JSON to this file."),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        "-p",
        help="Override a brief or staffing parameter, KEY=VALUE (repeatable).",
    ),
    reports: Path = typer.Option(
        Path("reports"), "--reports", help="Reports folder for the brief's HTML report."
    ),
    no_report: bool = typer.Option(
        False, "--no-report", help="Only write the brief JSON, not the HTML report."
    ),
    tiles: str = typer.Option(
        None, "--tiles", help="Base map of the report's map, e.g. OpenStreetMap (needs network)."
    ),
    pdf: bool = typer.Option(False, "--pdf", help=PDF_HELP),
) -> None:
    """Event brief: presence, incidents, staffing (rescuers, agents, lanes, barrier) and context."""
    s = Store(store)
    s.study()  # a clear message when the folder is not a store
    with progress(label=f"brief {event}: forecast and staffing"):
        result = make_brief(s, event, params=_parse_params(param))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = result.to_json()
        out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=json_default))
    typer.echo(with_zone_names(result.summary(), s))
    typer.echo(result.path or "")
    if out is not None:
        typer.echo(str(out))
    if not no_report:
        with progress(REPORT_STEPS, label=f"report brief {event}: running the notebook"):
            rep = report_brief(
                s.root, result.event.event_id, reports_dir=reports, tiles=tiles, pdf=pdf
            )
        typer.echo(f"report: {rep.html}")
        if rep.pdf is not None:
            typer.echo(f"pdf: {rep.pdf}")
