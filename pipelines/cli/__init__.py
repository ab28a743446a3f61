"""The `vigie` command line (typer): one module per command group, wired here explicitly.

Each module holds its commands as plain functions; this file is the one place that says which
command name runs which function, so a module that fails to import fails loudly. The installed
`vigie` script, ``python -m vigie`` and ``python -m pipelines.cli`` all enter through :func:`run`,
which accepts ``-v``/``-q`` anywhere on the line (``vigie cube --store S -v``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

import typer

from pipelines.cli import brief, cube, data, export, live, models, reports, serve, signals, synth

app = typer.Typer(
    name="vigie",
    help="Public-safety data-science workbench: presence, incidents, lighting, transport, events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: options that may stand anywhere on the line: they are moved before the command by :func:`run`
GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")


def version() -> str:
    """The installed vigie version (the source tree's when not installed)."""
    try:
        return _dist_version("vigie")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"vigie {version()}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log progress (anywhere on the line)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Errors only (anywhere on the line)."),
    show_version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """vigie: crowd presence, incidents, lighting, transport and events on one zone x hour grid."""
    level = logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(level)


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """``-v``/``-q`` moved before the command, wherever they stand (up to a ``--``).

    Examples
    --------
    >>> hoist_global_flags(["cube", "--store", "S", "-v"])
    ['-v', 'cube', '--store', 'S']
    >>> hoist_global_flags(["brief", "E", "--", "-v"])
    ['brief', 'E', '--', '-v']
    """
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:cut] if a in GLOBAL_FLAGS]
    rest = [a for a in argv[:cut] if a not in GLOBAL_FLAGS]
    return flags + rest + argv[cut:]


def run(argv: Sequence[str] | None = None) -> None:
    """The `vigie` program: global flags hoisted, then the typer app."""
    args = hoist_global_flags(sys.argv[1:] if argv is None else argv)
    app(args=args, prog_name="vigie")


app.command("synth")(synth.synth)
app.command("ingest")(data.ingest_cmd)
app.command("cube")(cube.cube_cmd)
app.command("fit")(models.fit_cmd)
app.command("signals")(signals.signals_cmd)
app.command("brief")(brief.brief)
app.command("export")(export.export_cmd)
app.command("serve")(serve.serve_cmd)
app.command("live")(live.live_cmd)
app.add_typer(reports.report_app, name="report")
app.add_typer(reports.schedule_app, name="schedule")

__all__ = ["app", "run"]
