"""Progress bars of the long CLI steps (pipelines/cli/progress.py, issue 15).

The bars are fed by the analysis modules' own log records; they are drawn only for a person at a
terminal (no -q, no -v), so a pipe, a log or a test sees nothing of them.
"""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from pipelines.cli.progress import (
    CUBE_STEPS,
    EVALUATION_STEPS,
    FIT_STEPS,
    INGEST_STEPS,
    REPORT_STEPS,
    Step,
    progress,
    watched,
)


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.fixture
def root_at_warning():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield root
    root.setLevel(level)


def test_bars_advance_on_the_steps_records_and_hand_on_the_rest(root_at_warning):
    step = Step("vigie.test.step", r"^origin (?P<n>\d+) of (?P<total>\d+) done", "origins")
    open_ended = Step("vigie.test.step", r"^group \w+ fitted", "groups")
    lg = logging.getLogger("vigie.test.step")
    before = (lg.level, lg.propagate)
    console, out = _console()
    with progress([step], label="whole", console=console) as bars:
        for i in range(3):
            lg.info("origin %d of 3 done", i + 1)
        lg.info("a detail nobody asked for")  # INFO: not shown at the default level
        lg.warning("something worth saying")  # WARNING: shown as before
        task = bars.tasks[1]
        assert (task.completed, task.total) == (3, 3)
        assert task.fields["count"] == "3/3"
        assert bars.tasks[0].description == "whole"
    text = _plain(out.getvalue())
    assert "3/3" in text and "origins" in text
    assert "something worth saying" in text
    assert "a detail nobody asked for" not in text
    assert (lg.level, lg.propagate) == before  # restored
    assert not any(type(h).__name__ == "_Bridge" for h in lg.handlers)
    # a step with no known total counts without an end
    console, out = _console()
    with progress([open_ended], console=console) as bars:
        lg.info("group all fitted")
        lg.info("group violence fitted")
        assert bars.tasks[0].fields["count"] == "2/?"
    assert "2/?" in _plain(out.getvalue())


def test_loggers_restored_after_an_error(root_at_warning):
    lg = logging.getLogger("pipelines.models.backtest")
    before = (lg.level, lg.propagate, list(lg.handlers))
    console, _ = _console()
    with pytest.raises(RuntimeError), progress(FIT_STEPS, console=console):
        raise RuntimeError("boom")
    assert (lg.level, lg.propagate, list(lg.handlers)) == before


def test_nothing_happens_when_nobody_watches(root_at_warning, capsys):
    """Not a terminal (pytest captures stderr): no bar, loggers untouched, nothing printed."""
    lg = logging.getLogger("pipelines.models.fit")
    before = (lg.level, lg.propagate, list(lg.handlers))
    with progress(FIT_STEPS, label="fit") as bars:
        assert bars is None
        assert (lg.level, lg.propagate, list(lg.handlers)) == before
        lg.info("fitted group all (poisson, 10 incidents)")
    assert capsys.readouterr().err == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("level", "tty", "expected"),
    [
        (logging.WARNING, True, True),
        (logging.INFO, True, False),  # -v: the log lines are the progress
        (logging.ERROR, True, False),  # -q
        (logging.WARNING, False, False),  # a pipe or a file
    ],
)
def test_watched_only_at_a_terminal_without_v_or_q(level, tty, expected, monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    root = logging.getLogger()
    saved = root.level
    root.setLevel(level)
    try:
        assert watched(_Tty() if tty else io.StringIO()) is expected
    finally:
        root.setLevel(saved)


def test_the_patterns_match_what_the_modules_log(root_at_warning):
    """The steps listen to the messages the models and the harness really write (their format
    strings, read from the source), so a reworded message is caught here."""
    from pathlib import Path

    import features.cube.build as cube_build
    import features.ingest.run as ingest_run
    import pipelines.models.backtest as bt
    import pipelines.models.fit as fit
    import pipelines.reports.runner as runner
    import pipelines.signals.harness as harness

    said = {  # logger: (its module, a message it writes, the start of its format string)
        "pipelines.models.fit": (fit, "fitted group all (negbin, 12 incidents)", "fitted group"),
        "pipelines.models.backtest": (bt, "backtest origin 2026-11-09 done", "backtest origin"),
        "pipelines.signals.harness": (harness, "outbreak replicate 3 of 400", "outbreak replicate"),
        "pipelines.reports.runner": (runner, "report cell 3 of 7", "report cell"),
        "features.ingest.run": (ingest_run, "reading incidents", "reading "),
        "features.cube.build": (cube_build, "cube 2026-11: 40 rows", "cube "),
    }
    for step in (*INGEST_STEPS, *CUBE_STEPS, *FIT_STEPS, *EVALUATION_STEPS, *REPORT_STEPS):
        module, example, start = said[step.logger]
        assert re.search(step.pattern, example), (step, example)
        source = Path(module.__file__).read_text()
        assert re.search(rf'log\.(info|debug)\(\s*"{re.escape(start)}', source), step
