"""`vigie live`: presence against its reference as the slots arrive (watcher, --once, --replay)."""

from __future__ import annotations

from pathlib import Path

import typer

from features.errors import ConfigError
from pipelines.cli.common import user_errors
from pipelines.cli.lazy import lazy

# pandas, the ingest and the detectors load only when the command runs
_live = lazy("pipelines.live.main", "live_main")


@user_errors
def live_cmd(
    store: Path = typer.Option(..., "--store", help="Store folder (ingested, with zones)."),
    inbox: Path = typer.Option(None, "--inbox", help="Folder where new presence files land."),
    sources: Path = typer.Option(
        None, "--sources", help="The study's sources.yaml (its presence format and mapping)."
    ),
    once: bool = typer.Option(
        False, "--once", help="Process what is in the inbox and exit (cron)."
    ),
    replay: tuple[str, str] = typer.Option(
        (None, None), "--replay", help="Replay a stored period FROM TO (UTC or with offset)."
    ),
    speed: float = typer.Option(
        60.0, "--speed", min=0, help="Replay speed (0: as fast as it can)."
    ),
    drill: Path = typer.Option(
        None, "--drill", help="Drill store of a replay (default STORE.drill)."
    ),
    reports: Path = typer.Option(
        Path("reports"), "--reports", help="Reports folder (live/index.html)."
    ),
    settings: Path = typer.Option(None, "--settings", help="JSON file of live settings."),
    webhook: str = typer.Option(None, "--webhook", help="URL receiving each alert (JSON POST)."),
    persistence: int = typer.Option(
        None, "--persistence", min=1, help="Slots out of band before an alert (2)."
    ),
    corrections: bool = typer.Option(
        None, "--corrections/--no-corrections", help="Files repeating stored slots replace them."
    ),
) -> None:
    """Watch an inbox of presence files: append, compare with the reference, alert, show."""
    if replay[0] is None and (inbox is None or sources is None):
        raise ConfigError("vigie live needs --inbox and --sources (or --replay FROM TO).")
    summary = _live(
        store,
        inbox=inbox,
        sources=sources,
        once=once,
        replay=replay if replay[0] else None,
        speed=speed,
        drill=drill,
        reports=reports,
        settings=settings,
        overrides={"webhook": webhook, "persistence": persistence, "corrections": corrections},
    )
    typer.echo(summary)
