"""The `vigie` command line (typer): one module per command group, wired here explicitly.

Each module holds its commands as plain functions; this file is the one place that says which
command name runs which function, so a module that fails to import fails loudly.
"""

from __future__ import annotations

import logging
import sys

import typer

from pipelines.cli import brief, cube, data, models, reports, signals, synth

app = typer.Typer(
    name="vigie",
    help="Public-safety data-science workbench: presence, incidents, lighting, transport, events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress.")) -> None:
    """vigie: crowd presence, incidents, lighting, transport and events on one zone x hour grid."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


app.command("synth")(synth.synth)
app.command("ingest")(data.ingest_cmd)
app.command("cube")(cube.cube_cmd)
app.command("fit")(models.fit_cmd)
app.command("signals")(signals.signals_cmd)
app.command("brief")(brief.brief)
app.add_typer(reports.report_app, name="report")
app.add_typer(reports.schedule_app, name="schedule")

__all__ = ["app"]
