"""The Jupyter kernel a report runs on, and the check of its parameters before it runs.

The kernel is always named explicitly (a stripped notebook may carry none) and runs this very
interpreter. The parameters passed are checked against the notebook's cell tagged
``parameters`` (``papermill.inspect_notebook``) before anything runs, since papermill itself
only warns on an unknown name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from ipykernel.kernelspec import install
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from pipelines.reports.errors import ReportError

log = logging.getLogger(__name__)

KERNEL_NAME = "vigie"


def _same_python(argv0: str) -> bool:
    try:
        return Path(argv0).absolute() == Path(sys.executable).absolute()
    except (TypeError, ValueError):
        return False


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Name of a Jupyter kernel that runs this very interpreter, registering one if needed.

    A kernelspec called ``name`` whose ``argv[0]`` is ``sys.executable`` is used as it is. When
    there is none, one is installed (``ipykernel install``) into the virtual environment's
    ``share/jupyter`` (or the user's Jupyter folder outside a venv). When ``name`` exists but
    runs another interpreter (another checkout's venv), an interpreter-specific
    ``name-<hash>`` kernel is used instead, so a report never runs with the wrong packages.

    Returns
    -------
    str
        The kernel name to pass to papermill.
    """
    ksm = KernelSpecManager()
    candidates = [name, f"{name}-{hashlib.sha1(sys.executable.encode()).hexdigest()[:8]}"]
    for cand in candidates:
        try:
            spec = ksm.get_kernel_spec(cand)
        except NoSuchKernel:
            chosen = cand
            break
        if spec.argv and _same_python(spec.argv[0]):
            return cand
    else:  # pragma: no cover - both names taken by other interpreters
        chosen = candidates[1]
    in_venv = sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK)
    kwargs: dict[str, Any] = {"prefix": sys.prefix} if in_venv else {"user": True}
    install(kernel_name=chosen, display_name=f"Python ({chosen})", **kwargs)
    log.info("registered Jupyter kernel %r for %s", chosen, sys.executable)
    return chosen


def _read_notebook(path: Path) -> Any:
    if not path.exists():
        raise ReportError(f"{path}: no such notebook.")
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several types for unreadable files
        raise ReportError(f"{path}: not a readable Jupyter notebook ({exc}).") from None


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares (``papermill.inspect_notebook``).

    Raises
    ------
    ReportError
        When the notebook is missing or has no cell tagged ``parameters``.
    """
    path = Path(notebook)
    nb = _read_notebook(path)
    if nb.metadata.get("kernelspec", {}).get("name"):
        params = pm.inspect_notebook(str(path))
    else:
        # papermill's inspection needs a kernel name to pick the language translator; a
        # stripped notebook may carry none, so inspect a copy that names a Python kernel
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "language": "python",
            "display_name": "Python 3",
        }
        with tempfile.TemporaryDirectory() as td:
            copy = Path(td) / path.name
            nbformat.write(nb, str(copy))
            params = pm.inspect_notebook(str(copy))
    if not params:
        raise ReportError(
            f"{path}: the notebook has no cell tagged 'parameters'; a report notebook declares "
            "every parameter with a default in one cell tagged 'parameters'."
        )
    return params


def is_plain(value: Any) -> bool:
    """Whether papermill can write ``value`` as code: str, int, float, bool, None, or lists and
    mappings (with text keys) of them."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(x) for x in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(x) for k, x in value.items())
    return False


def check_parameters(notebook: str | Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Check ``parameters`` against the notebook's ``parameters`` cell before running it.

    Every name must be declared by the notebook, and every value must be a plain literal
    (:func:`is_plain`) that papermill can write as code.

    Returns
    -------
    dict
        The parameters, unchanged, when they are valid.

    Raises
    ------
    ReportError
        Naming the unknown parameters and the ones the notebook expects.
    """
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        expected = ", ".join(
            f"{n} (default {p.get('default')})" for n, p in sorted(declared.items())
        )
        raise ReportError(
            f"{Path(notebook).name}: unknown parameter(s) {', '.join(unknown)}; the notebook's "
            f"parameters cell declares: {expected}."
        )
    for n, v in parameters.items():
        if not is_plain(v):
            raise ReportError(
                f"{Path(notebook).name}: parameter {n} must be a plain value (text, number, "
                f"true/false, a list or a mapping of them), got {type(v).__name__}."
            )
    return dict(parameters)
