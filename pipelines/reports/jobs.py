"""What each kind of scheduled job runs: plain function calls, no command line in between.

Each job is ``(store, task, reports_dir) -> output``, the output being what the ledger records
(the report's page, or the signals file). A job raises on failure; the schedule records the
error and goes on with the next task.

``weekly_report``
    The week's signals (:func:`pipelines.signals.run.run_signals`) when
    ``store/signals/<week>.json`` is missing, then the weekly report.
``signals``
    The weak signals of one day.
``event_brief``
    The brief of an event (:func:`pipelines.events.brief.make_brief`), then its report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from features.errors import VigieError
from features.store import Store
from pipelines.events.brief import make_brief
from pipelines.reports.catalog import report_brief, report_weekly
from pipelines.reports.due import Task
from pipelines.signals.run import Period, parse_period, run_signals

#: a job: (store folder, task, reports folder) -> what the ledger records
Job = Callable[[Path, Task, Path], str]


class JobError(VigieError):
    """A scheduled job failed (the ledger records it; the next run retries it)."""


def _signals(store: Path, period: Period) -> Path:
    """Run the detectors on ``period`` (the defaults of ``vigie signals``); the JSON written."""
    st = Store(store)
    run_signals(st, period)
    path = st.signals_path(period.label)
    if not path.exists():
        raise JobError(f"the signals of {period.label} ran but wrote no {path}.")
    return path


def weekly_job(store: Path, task: Task, reports_dir: Path) -> str:
    """Signals for the week when missing, then the weekly report; returns the report's path."""
    week = task.args["week"]
    if not Store(store).signals_path(week).exists():
        _signals(store, parse_period(week))
    return str(report_weekly(store, week=week, reports_dir=reports_dir).html)


def signals_job(store: Path, task: Task, reports_dir: Path) -> str:
    """The weak signals of one day (as ``vigie signals --from D --to D``)."""
    day = task.args["day"]
    return f"signals: {_signals(store, parse_period(start=day, end=day))}"


def brief_job(store: Path, task: Task, reports_dir: Path) -> str:
    """The brief of an event (``make_brief``) and its report; returns the report's path."""
    make_brief(Store(store), task.args["event_id"])
    return str(report_brief(store, task.args["event_id"], reports_dir=reports_dir).html)


#: job kind -> the function it runs
JOBS: dict[str, Job] = {
    "weekly_report": weekly_job,
    "signals": signals_job,
    "event_brief": brief_job,
}
