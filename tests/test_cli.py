"""The command line's conventions: --version, python -m vigie, -v/-q anywhere on the line."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipelines.cli import app, hoist_global_flags, version


def test_version_flag():
    """`vigie --version` prints the installed version and exits 0."""
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"vigie {version()}"
    assert version()[0].isdigit()


@pytest.mark.parametrize(
    ("argv", "hoisted"),
    [
        (["cube", "--store", "S", "-v"], ["-v", "cube", "--store", "S"]),
        (
            ["report", "weekly", "-q", "--week", "2026-W46"],
            ["-q", "report", "weekly", "--week", "2026-W46"],
        ),
        (["-v", "fit", "--store", "S"], ["-v", "fit", "--store", "S"]),
        (["brief", "E", "--", "-v"], ["brief", "E", "--", "-v"]),
    ],
    ids=["after", "middle", "before", "after-double-dash"],
)
def test_global_flags_anywhere(argv, hoisted):
    """-v/-q move before the command wherever they stand, but not past a `--`."""
    assert hoist_global_flags(argv) == hoisted


def test_verbose_after_the_subcommand_sets_logging(tmp_path):
    """`vigie cube --store S -v` is accepted (exit 2 for the missing store, not a usage error)
    and turns on INFO logging."""
    res = CliRunner().invoke(app, hoist_global_flags(["cube", "--store", str(tmp_path), "-v"]))
    assert res.exit_code == 2
    assert "not a vigie store" in res.output
    assert logging.getLogger().getEffectiveLevel() == logging.INFO
    res = CliRunner().invoke(app, hoist_global_flags(["cube", "--store", str(tmp_path), "-q"]))
    assert logging.getLogger().getEffectiveLevel() == logging.ERROR


@pytest.mark.parametrize("module", ["vigie", "pipelines.cli"])
def test_python_dash_m(module):
    """`python -m vigie --help` and `python -m pipelines.cli --help` list the commands."""
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for command in ("ingest", "cube", "fit", "signals", "brief", "report"):
        assert command in out.stdout
