"""The `vigie` command line (typer).

Each area registers its own commands from a module of its own (`register(app)`), so that the
CLI stays one place to read while the work stays in the modules. Every command turns a
`VigieError` into a one-paragraph message and exit code 2; a bare traceback is a bug.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

import typer

from features.errors import VigieError

app = typer.Typer(
    name="vigie",
    help="Public-safety data-science workbench: presence, incidents, lighting, transport, events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: modules that define `register(app)`; a module that does not exist yet is skipped.
COMMAND_MODULES = (
    "pipelines.cmd_data",
    "pipelines.cmd_models",
    "pipelines.cmd_signals",
    "pipelines.cmd_brief",
    "pipelines.cmd_reports",
    "pipelines.cmd_synth",
    "pipelines.cmd_cube",
)


def fail(message: str, code: int = 2) -> None:
    """Print a one-paragraph error to stderr and exit."""
    typer.echo(f"vigie: error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for commands: VigieError (and bad values) become a clean message, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VigieError as exc:
            fail(str(exc))
        except (FileNotFoundError, PermissionError) as exc:
            fail(f"{exc.filename}: {exc.strerror}.")
        except KeyboardInterrupt:
            fail("interrupted.", code=130)
        except typer.Exit:
            raise
        except Exception as exc:  # a bug: say so in one paragraph, traceback with -v
            if logging.getLogger().isEnabledFor(logging.INFO):
                raise
            fail(
                f"internal error in `{fn.__name__}`: {type(exc).__name__}: {exc}. "
                "This is a bug in vigie; rerun with -v for the traceback and report it.",
                code=1,
            )

    return wrapper


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress.")) -> None:
    """vigie: crowd presence, incidents, lighting, transport and events on one zone x hour grid."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    _mod.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
