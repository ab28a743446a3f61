"""The schedule: run what is due, catch up what was missed, never two runs at once.

``vigie schedule run --store DIR`` reads ``pipelines/reports/schedule.yaml`` (or ``--config``),
works out which periods of which jobs are due at ``now`` (the study's local time,
:mod:`pipelines.reports.due`), runs them oldest first (:mod:`pipelines.reports.jobs`: function
calls, not commands) and appends every run to ``store/schedule/ledger.jsonl``
(:mod:`pipelines.reports.ledger`). It is meant for cron, every hour; a run with nothing due does
nothing.

Jobs
----
``weekly_report`` (``every: week``)
    ISO week W is due on the Monday after it at ``at``: the week's signals are computed when
    ``store/signals/W.json`` is missing, then the weekly report.
``signals`` (``every: day``)
    Day D is due the next day at ``at``: the signals of D alone.
``event_brief`` (``every: event``)
    For each event of the store not yet started, the brief (``pipelines.events.brief.make_brief``)
    and its report at each of ``days_before`` (D-7, D-1 local dates) at ``at``; when several
    milestones of one event are due (a missed D-7 found at D-1) only the latest runs and the
    others are recorded as superseded.

Catch-up: a job that has run before gets every period after its last successful one up to the
latest due (at most ``catch_up``, the most recent); a job that never ran starts with the latest
due period. Failed periods are retried on the next run. A period whose data is not in the cube
yet (it ends after ``cube_meta.json``'s end) waits, and is not recorded.

Lock: ``store/schedule/lock`` held with ``fcntl.flock`` for the whole run (released by the
operating system if the process dies, so a crash never leaves a stale lock); a second run while
one holds it fails at once with :class:`~pipelines.reports.ledger.ScheduleLocked` naming the
holder, and writes nothing (no ledger line, no report). The run holding the lock first removes
what killed runs left in the store (:meth:`features.store.Store.clean_stale`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.store import Store
from pipelines.reports.due import Plan, ScheduleSpec, Task, load_schedule, plan
from pipelines.reports.jobs import JOBS, Job
from pipelines.reports.ledger import ScheduleLock, ScheduleLocked, append_ledger, read_ledger

log = logging.getLogger(__name__)

__all__ = [
    "ScheduleLock",
    "ScheduleLocked",
    "ScheduleResult",
    "load_schedule",
    "plan",
    "read_ledger",
    "run_schedule",
]


@dataclass(frozen=True)
class ScheduleResult:
    """What a schedule run did.

    Attributes
    ----------
    plan
        The plan it followed.
    records
        The ledger records written (one per task run), in order.
    """

    plan: Plan
    records: list[dict[str, Any]]
    dry_run: bool = False

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    def lines(self) -> list[str]:
        """Human-readable lines for the CLI."""
        out = [f"schedule at {self.plan.now.isoformat(timespec='minutes')}"]
        if self.dry_run:
            out += [f"due: {t.job} {t.period}" for t in self.plan.tasks]
        for r in self.records:
            extra = r.get("output") or r.get("error") or ""
            out.append(f"{r['status']}: {r['job']} {r['period']} ({r['seconds']:.1f} s) {extra}")
        out += [f"waiting: {t.job} {t.period}: {why}" for t, why in self.plan.waiting]
        out += [f"superseded: {t.job} {t.period}" for t in self.plan.superseded]
        if not self.plan.tasks and not self.plan.waiting:
            out.append("nothing due.")
        return out


def _now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _record(t: Task) -> dict[str, Any]:
    """The ledger fields every record of a task starts with."""
    return {"job": t.job, "kind": t.kind, "period": t.period}


def _supersede(root: Path, t: Task) -> None:
    rec = {**_record(t), "status": "superseded", "due_at": t.due_at.isoformat()}
    append_ledger(root, {**rec, "started_at": _now_utc(), "seconds": 0.0})


def _run_task(root: Path, t: Task, job: Job, reports_dir: Path) -> dict[str, Any]:
    """Run one task and append its ledger record (``ok`` with the output, or ``failed``)."""
    t0 = time.perf_counter()
    rec = {**_record(t), "due_at": t.due_at.isoformat(), "started_at": _now_utc()}
    try:
        rec.update(status="ok", output=job(root, t, reports_dir))
    except Exception as exc:  # one failed job must not stop the others
        log.error("scheduled %s %s failed: %s", t.job, t.period, exc)
        rec.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    rec["finished_at"] = _now_utc()
    append_ledger(root, rec)
    return rec


def run_schedule(
    store: str | Path,
    *,
    reports_dir: str | Path = "reports",
    config: str | Path | ScheduleSpec | None = None,
    now: str | dt.datetime | None = None,
    dry_run: bool = False,
    runners: dict[str, Job] | None = None,
) -> ScheduleResult:
    """Run, once, every task the schedule says is due, holding the store's lock.

    Parameters
    ----------
    store
        The store folder.
    reports_dir
        Where reports go.
    config
        Schedule YAML (default ``pipelines/reports/schedule.yaml``).
    now
        Local time to plan for (default: now).
    dry_run
        Plan only: nothing runs, nothing is recorded.
    runners
        Override the function run for a job kind (``(store, task, reports_dir) -> output``).

    Returns
    -------
    ScheduleResult
        One ledger record per task run; a failed task is recorded ``failed`` with its error and
        the run goes on with the next one.

    Raises
    ------
    ScheduleLocked
        When another run holds the lock.
    """
    root = Path(store)
    Store(root).study()  # not a store: say so before the lock creates schedule/ in it
    table = {**JOBS, **(runners or {})}
    with ScheduleLock(root):
        if not dry_run:  # what killed runs left in the store (theirs only: they are gone)
            Store(root).clean_stale()
        p = plan(root, now=now, config=config)
        if dry_run:
            return ScheduleResult(plan=p, records=[], dry_run=True)
        for t in p.superseded:
            _supersede(root, t)
        records = [_run_task(root, t, table[t.kind], Path(reports_dir)) for t in p.tasks]
    return ScheduleResult(plan=p, records=records)
