"""The error a report raises, and the check of the names that become report folders."""

from __future__ import annotations

import re

from features.errors import VigieError

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ReportError(VigieError):
    """A report could not be produced (bad parameters, notebook failure, export failure).

    Attributes
    ----------
    cell_index, exec_count
        Where the notebook failed (index in the executed notebook, execution count), if it did.
    ename, evalue
        The exception raised in the kernel.
    failed_notebook
        Path of the failed notebook saved under ``reports/_failed/``.
    """

    def __init__(
        self,
        message: str,
        *,
        cell_index: int | None = None,
        exec_count: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
        failed_notebook: str | None = None,
    ) -> None:
        super().__init__(message, file=failed_notebook)
        self.cell_index = cell_index
        self.exec_count = exec_count
        self.ename = ename
        self.evalue = evalue
        self.failed_notebook = failed_notebook


def check_id(value: str, what: str) -> str:
    """``value`` when it is usable as a folder name (a report kind or id).

    Raises
    ------
    ReportError
        Naming ``what`` and the characters allowed.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ReportError(
            f"{what} {value!r} is not usable as a folder name; expected letters, digits, '.', "
            "'_' or '-' (at most 128, not starting with '.', '_' or '-')."
        )
    return value
