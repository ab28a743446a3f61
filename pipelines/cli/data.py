"""`vigie ingest`: validate and load a study's sources into a store."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import user_errors
from pipelines.cli.progress import INGEST_STEPS, progress


@user_errors
def ingest_cmd(
    sources: Path = typer.Argument(..., help="The study's sources.yaml."),
    store: Path = typer.Option(..., "--store", help="Store folder (created when missing)."),
    force: bool = typer.Option(False, "--force", help="Re-read every source, even unchanged ones."),
) -> None:
    """Validate every source of a study; bad rows go to quarantine with their reason."""
    from features.ingest import ingest, summary_lines

    with progress(INGEST_STEPS, label=f"vigie ingest {sources.name}"):
        result = ingest(sources, store, force=force)
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(f"report: {result.report_path}")
