"""The install story: pyproject.toml is the single source; environment.yml mirrors it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {
    "duckdb": "python-duckdb",
    "h3": "h3-py",
    "xgboost-cpu": "py-xgboost-cpu",
    "dask[dataframe]": "dask",
}
#: on PyPI only: installed by the pip section of environment.yml.
PIP_ONLY = {"vacances-scolaires-france"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req.strip())
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_mirrors_pyproject():
    """Every dependency of pyproject.toml (with dev extras) is in environment.yml with the same
    lower bound, and environment.yml has nothing pyproject.toml lacks."""
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = dict(_split(r) for r in py["dependencies"] + py["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for p in dep["pip"]:
                if not p.startswith("-e"):
                    n, v = _split(p)
                    pip[n] = v
            continue
        n, v = _split(dep)
        conda[n] = v
    expected_conda = {CONDA_NAMES.get(n, n): v for n, v in reqs.items() if n not in PIP_ONLY}
    expected_pip = {n: v for n, v in reqs.items() if n in PIP_ONLY}
    conda.pop("python", None)
    conda.pop("pip", None)
    assert conda == expected_conda
    assert pip == expected_pip
    assert any(
        str(p).startswith("-e .[dev]")
        for d in env["dependencies"]
        if isinstance(d, dict)
        for p in d["pip"]
    )


def test_console_script_points_at_the_cli():
    """`vigie` enters through pipelines.cli.run (the typer app, -v/-q hoisted)."""
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert py["scripts"]["vigie"] == "pipelines.cli:run"


def test_features_never_imports_pipelines():
    """One direction only (DESIGN.md): features/ never imports pipelines/."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "features").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+pipelines\b", p.read_text(), re.M)
    ]
    assert offenders == []
