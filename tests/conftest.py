"""Shared, session-scoped fixtures: the tiny synthetic city, built once per test run.

Tests must not modify these folders: copy them first (``shutil.copytree``) when a test writes
to a store.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory) -> Path:
    """Raw files, sources.yaml and truth.json of the tiny synthetic city (seed 0)."""
    from features.synth import generate

    out = tmp_path_factory.mktemp("tiny_city")
    generate("tiny", out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_store(tiny_city: Path, tmp_path_factory) -> Path:
    """The tiny city ingested and cubed (hourly grain). Read-only: copy before writing."""
    from features.cube import build_cube
    from features.ingest import ingest
    from features.store import Store

    root = tmp_path_factory.mktemp("tiny_store") / "store"
    ingest(tiny_city / "sources.yaml", root)
    build_cube(Store(root))
    return root


@pytest.fixture(scope="session")
def fitted_store(tiny_store: Path, tmp_path_factory) -> Path:
    """The tiny store with models fitted and backtested (`vigie fit`). Read-only."""
    from features.store import Store
    from pipelines.models import fit_all

    root = tmp_path_factory.mktemp("fitted_store") / "store"
    shutil.copytree(tiny_store, root)
    fit_all(Store(root), backtest_weeks=3)
    return root


@pytest.fixture
def store_copy(tmp_path: Path):
    """Copy a shared store into this test's tmp folder: ``store_copy(fitted_store)``."""

    def _copy(src: Path) -> Path:
        dst = tmp_path / "store"
        shutil.copytree(src, dst)
        return dst

    return _copy
