"""Commands import their analysis stack when they run, not when the CLI starts.

``vigie --help`` and a quick ``vigie ingest`` should not pay for statsmodels, xgboost, papermill
and nbconvert. A command module names what it calls with :func:`lazy`; the import happens on the
first call. The names stay visible to a reader (and to the import contract of
tests/test_architecture.py, which reads the module names given here as dependencies).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module.name`` on its first call and forwards to it."""

    @functools.cache
    def target() -> Callable[..., Any]:
        return getattr(importlib.import_module(module), name)

    def call(*args: Any, **kwargs: Any) -> Any:
        return target()(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = name
    call.__doc__ = f"Calls :func:`{module}.{name}` (imported on first use)."
    return call
