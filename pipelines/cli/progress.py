"""Progress bars (rich) for the long steps of the command line, on stderr.

The analysis modules say what they have done through their loggers (``fitted group all``,
``backtest origin 2026-11-09 done``, ``outbreak replicate 12 of 400``). :func:`progress` turns
those records into rich progress bars for the length of one command, in the command line's
layer only: the analysis code knows nothing of the terminal. A step is a logger, a pattern of its
messages, a label and, when known, a total.

The bars are drawn only when a person watches: stderr is a terminal, and neither ``-q`` (errors
only) nor ``-v`` (the log lines themselves are the progress) was given. Elsewhere (a pipe, a log
file, a test) :func:`progress` changes nothing, so logs and tests stay clean. While the bars are
drawn, the records they consume are not printed, and every other record at the level the user
asked for is printed as before.

References
----------
rich.progress: https://rich.readthedocs.io/en/stable/progress.html
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


@dataclass(frozen=True)
class Step:
    """One long step shown as a bar.

    Attributes
    ----------
    logger
        Name of the logger whose records advance the bar (e.g. ``pipelines.models.backtest``).
    pattern
        Regular expression a record's message must match to advance the bar; its named group
        ``total``, when present, sets the bar's total.
    label
        What the bar says (e.g. ``backtest origins``).
    total
        Number of advances expected (None: unknown, the bar counts without an end).
    level
        Lowest level of the records the step listens to (the logger is lowered to it while the
        bars are shown).
    """

    logger: str
    pattern: str
    label: str
    total: int | None = None
    level: int = logging.INFO


#: the steps of `vigie ingest` (one advance per source read)
INGEST_STEPS = (Step("features.ingest.run", r"^reading \w+", "ingest: sources"),)

#: the steps of `vigie cube` (one advance per month written; not with the dask engine)
CUBE_STEPS = (Step("features.cube.build", r"^cube \S+: \d+ rows", "cube: months"),)

#: the steps of `vigie fit`
FIT_STEPS = (
    Step("pipelines.models.fit", r"^fitted group", "fit: category groups"),
    Step("pipelines.models.backtest", r"^backtest origin .* done", "backtest: origins"),
)

#: the steps of `vigie signals --evaluate`
EVALUATION_STEPS = (
    Step(
        "pipelines.signals.harness",
        r"^outbreak replicate \d+ of (?P<total>\d+)",
        "evaluation: outbreak replicates",
        level=logging.DEBUG,
    ),
)


#: the steps of a report run (`vigie report ...`, `vigie brief`)
REPORT_STEPS = (
    Step(
        "pipelines.reports.runner",
        r"^report cell \d+ of (?P<total>\d+)",
        "report: notebook cells",
        level=logging.DEBUG,
    ),
)


def watched(stream: Any = None) -> bool:
    """Whether bars should be drawn: ``stream`` (stderr) is a terminal, ``TERM`` is not
    ``dumb``, and the root logger is at its default level (no ``-v``, no ``-q``)."""
    stream = sys.stderr if stream is None else stream
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return (
        tty
        and os.environ.get("TERM") != "dumb"
        and logging.getLogger().getEffectiveLevel() == logging.WARNING
    )


class _Bridge(logging.Handler):
    """Turns the steps' records into advances of their bars; hands the others on."""

    def __init__(self, bars: Progress, steps: Sequence[Step], tasks: list[TaskID]) -> None:
        super().__init__(level=logging.DEBUG)
        self.bars = bars
        self.steps = [(s, re.compile(s.pattern), t) for s, t in zip(steps, tasks, strict=True)]
        self.shown_from = logging.getLogger().getEffectiveLevel()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        for step, pattern, task in self.steps:
            m = pattern.search(msg) if record.name == step.logger else None
            if m is None:
                continue
            total = m.groupdict().get("total")
            if total:
                self.bars.update(task, total=int(total))
            self.bars.update(task, advance=1, visible=True)
            t = self.bars.tasks[task]
            of = "?" if t.total is None else f"{t.total:g}"
            self.bars.update(task, count=f"{t.completed:g}/{of}")
            return
        if record.levelno >= self.shown_from:  # what the user would have seen anyway
            self.bars.console.print(self.format(record), markup=False, highlight=False)


@contextmanager
def progress(
    steps: Sequence[Step] = (), *, label: str | None = None, console: Console | None = None
) -> Iterator[Progress | None]:
    """Bars for ``steps`` while the block runs (stderr), when :func:`watched` (or a ``console``
    is given, e.g. by a test); otherwise nothing at all happens and None is yielded.

    ``label``: a first line with a spinner and the time elapsed for the whole block (for steps
    that say nothing while they work, e.g. a report's notebook). The steps' loggers are lowered
    to the steps' levels and stop propagating for the length of the block; they are restored
    after it, even on error.
    """
    if console is None:
        if not watched():
            yield None
            return
        console = Console(stderr=True)
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    if label:
        bars.add_task(label, total=None, count="")
    tasks = [bars.add_task(s.label, total=s.total, visible=False, count="") for s in steps]
    bridge = _Bridge(bars, steps, tasks)
    bridge.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = []
    for name in dict.fromkeys(s.logger for s in steps):
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.setLevel(min(s.level for s in steps if s.logger == name))
        lg.propagate = False
        lg.addHandler(bridge)
    try:
        with bars:
            yield bars
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(bridge)
            lg.setLevel(level)
            lg.propagate = propagate
