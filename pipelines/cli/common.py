"""What every `vigie` command shares: one-paragraph errors and exit codes.

A `VigieError` (bad input, config or store) becomes its message and exit code 2; anything else
is a bug, said in one paragraph with exit code 1 (the traceback with ``-v``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import typer

from features.errors import VigieError

#: help of ``--scheduler`` on the heavy commands (cube, fit)
SCHEDULER_HELP = (
    "Run on Dask distributed: tcp://host:8786 (a running scheduler whose workers see the store at "
    "the same path) or local (a LocalCluster of this machine's cores, closed afterwards)."
)


def scheduler_option() -> Any:
    """The ``--scheduler`` option of the heavy commands (resolved by
    :func:`features.cube.dask_engine.scheduler`)."""
    return typer.Option(None, "--scheduler", help=SCHEDULER_HELP)


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
