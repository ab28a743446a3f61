"""The one exception family that the CLI turns into a one-paragraph message."""

from __future__ import annotations


class VigieError(Exception):
    """Base class of every error vigie reports to a user.

    Parameters
    ----------
    message
        What was expected and what came, in one paragraph.
    file, column, rows
        Where the problem is, when it is about an input file.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: list[int] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.column = column
        self.rows = rows or []

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class ConfigError(VigieError):
    """The sources.yaml (or another YAML input) is unreadable or invalid."""


class InputError(VigieError):
    """An input file cannot be used at all (missing, empty, no header, a required column missing)."""


class StoreError(VigieError):
    """The store lacks what a step needs (e.g. `vigie fit` before `vigie cube`)."""
