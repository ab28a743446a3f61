"""The schedule: run what is due, catch up what was missed, never two runs at once.

``vigie schedule run --store DIR`` reads ``pipelines/schedule.yaml`` (or ``--config``), works out
which periods of which jobs are due at ``now`` (the study's local time), runs them oldest first,
and appends every run to ``store/schedule/ledger.jsonl``. It is meant for cron, every hour; a run
with nothing due does nothing.

Jobs
----
``weekly_report`` (``every: week``)
    ISO week W is due on the Monday after it at ``at``: the week's signals are computed when
    ``store/signals/W.json`` is missing (``vigie signals --week W``), then the weekly report.
``signals`` (``every: day``)
    Day D is due the next day at ``at``: ``vigie signals --from D --to D``.
``event_brief`` (``every: event``)
    For each event of the store not yet started, the brief (``pipelines.events.brief.make_brief``) and
    its report at each of ``days_before`` (D-7, D-1 local dates) at ``at``; when several
    milestones of one event are due (a missed D-7 found at D-1) only the latest runs and the
    others are recorded as superseded.

Catch-up: a job that has run before gets every period after its last successful one up to the
latest due (at most ``catch_up``, the most recent); a job that never ran starts with the latest
due period. Failed periods are retried on the next run. A period whose data is not in the cube
yet (it ends after ``cube_meta.json``'s end) waits, and is not recorded.

Lock: ``store/schedule/lock`` held with ``fcntl.flock`` for the whole run (released by the
operating system if the process dies, so a crash never leaves a stale lock); a second run while
one holds it fails at once with :class:`ScheduleLocked` naming the holder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.errors import ConfigError, VigieError
from features.store import Store
from features.timeutil import as_utc, iso_week

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parent / "schedule.yaml"
LEDGER = "schedule/ledger.jsonl"
LOCK = "schedule/lock"


class ScheduleLocked(VigieError):
    """Another schedule run holds the store's lock."""


class JobError(VigieError):
    """A scheduled job failed (the ledger records it; the next run retries it)."""


class JobSpec(BaseModel):
    """One job of schedule.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["weekly_report", "signals", "event_brief"]
    every: Literal["week", "day", "event"]
    at: str = Field("06:00", description="local time of day HH:MM when a period becomes due")
    catch_up: int = Field(8, ge=1, le=366)
    days_before: list[int] = Field(default_factory=lambda: [7, 1])

    @field_validator("at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        try:
            dt.time.fromisoformat(v)
        except ValueError:
            raise ValueError(f"expected a time of day HH:MM, got {v!r}") from None
        return v

    @field_validator("days_before")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(d < 0 for d in v):
            raise ValueError("expected a non-empty list of whole days >= 0, e.g. [7, 1]")
        return sorted(set(v), reverse=True)

    @property
    def at_time(self) -> dt.time:
        return dt.time.fromisoformat(self.at)


class ScheduleSpec(BaseModel):
    """A whole schedule.yaml."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSpec]


@dataclass(frozen=True)
class Task:
    """One period of one job that is due.

    Attributes
    ----------
    job, kind
        The job's name and kind.
    period
        ``2026-W46`` (week), ``2026-11-20`` (day) or ``<event_id>@D-7`` (event).
    due_at
        Local time when it became due.
    args
        What the runner needs (week; day; event_id and milestone).
    """

    job: str
    kind: str
    period: str
    due_at: dt.datetime
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What is due at ``now``: tasks to run, and periods waiting or superseded (not run)."""

    now: dt.datetime
    tasks: list[Task]
    waiting: list[tuple[Task, str]]
    superseded: list[Task]


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


# -- config ---------------------------------------------------------------------------------------
def load_schedule(path: str | Path | None = None) -> ScheduleSpec:
    """Read and validate a schedule YAML (default: ``pipelines/schedule.yaml``).

    Raises
    ------
    ConfigError
        Naming the file and the offending field.
    """
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.exists():
        raise ConfigError(f"{path}: no such schedule file.", file=str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}.", file=str(path)) from None
    try:
        spec = ScheduleSpec.model_validate(raw or {})
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"{path}: invalid schedule: {errs}. Expected jobs with name, kind (weekly_report, "
            "signals, event_brief), every (week, day, event), at (HH:MM).",
            file=str(path),
        ) from None
    pairs = {("weekly_report", "week"), ("signals", "day"), ("event_brief", "event")}
    for j in spec.jobs:
        if (j.kind, j.every) not in pairs:
            raise ConfigError(
                f"{path}: job {j.name}: kind {j.kind} runs every "
                f"{dict(pairs)[j.kind]}, not every {j.every}.",
                file=str(path),
            )
    return spec


# -- ledger and lock ------------------------------------------------------------------------------
def read_ledger(store: str | Path) -> list[dict[str, Any]]:
    """Every record of ``store/schedule/ledger.jsonl`` (oldest first; bad lines skipped)."""
    path = Path(store) / LEDGER
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("ledger %s: skipping an unreadable line", path)
    return out


def append_ledger(store: str | Path, record: dict[str, Any]) -> None:
    """Append one record (a JSON line, flushed and fsynced)."""
    path = Path(store) / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class ScheduleLock:
    """An exclusive, non-blocking lock on ``store/schedule/lock`` (``fcntl.flock``).

    Raises
    ------
    ScheduleLocked
        On entry, when another process holds it (the message names its pid, host and start).
    """

    def __init__(self, store: str | Path) -> None:
        self.path = Path(store) / LOCK
        self._fh: Any = None

    def __enter__(self) -> ScheduleLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown holder"
            fh.close()
            raise ScheduleLocked(
                f"{self.path}: another schedule run is in progress ({holder}); this run does "
                "nothing. Wait for it to finish (the lock goes with its process)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
        )
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


# -- planning -------------------------------------------------------------------------------------
def _parse_now(now: str | dt.datetime | None, tz: ZoneInfo) -> dt.datetime:
    if now is None:
        return dt.datetime.now(tz)
    if isinstance(now, str):
        try:
            now = dt.datetime.fromisoformat(now)
        except ValueError:
            raise VigieError(
                f"--now {now!r}: expected an ISO date-time such as 2026-11-16T08:00."
            ) from None
    return now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)


def _data_end(store: Path, tz: ZoneInfo) -> dt.datetime | None:
    """End of the cube's period (exclusive), local time; None when there is no cube."""
    path = store / "cube_meta.json"
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    if not meta.get("end"):
        return None
    # cube_meta's end is already exclusive (the local midnight after the last slot's day)
    return as_utc(meta["end"]).tz_convert(tz).to_pydatetime()


def _week_periods(now: dt.datetime, at: dt.time) -> list[tuple[str, dt.datetime, dt.date]]:
    """ISO weeks whose due time (the Monday after, at ``at``) is <= now: newest first, 60 weeks."""
    monday = now.date() - dt.timedelta(days=now.weekday())
    out = []
    for i in range(60):
        due_monday = monday - dt.timedelta(weeks=i)
        due = dt.datetime.combine(due_monday, at, tzinfo=now.tzinfo)
        if due > now:
            continue
        week_start = due_monday - dt.timedelta(days=7)
        out.append((iso_week(week_start), due, week_start))
    return out


def _day_periods(now: dt.datetime, at: dt.time, n: int) -> list[tuple[str, dt.datetime, dt.date]]:
    out = []
    for i in range(n + 2):
        day = now.date() - dt.timedelta(days=i + 1)
        due = dt.datetime.combine(day + dt.timedelta(days=1), at, tzinfo=now.tzinfo)
        if due <= now:
            out.append((day.isoformat(), due, day))
    return out


def plan(
    store: str | Path,
    *,
    now: str | dt.datetime | None = None,
    config: str | Path | ScheduleSpec | None = None,
) -> Plan:
    """Work out what is due at ``now`` (local time of the study) without running anything.

    Parameters
    ----------
    store
        The store folder (its study.json gives the time zone; its ledger what already ran).
    now
        ISO text or datetime; naive means the study's local time. Default: the current time.
    config
        Schedule YAML path or parsed spec (default: ``pipelines/schedule.yaml``).

    Returns
    -------
    Plan
    """
    root = Path(store)
    tz = ZoneInfo(Store(root).timezone)  # a clear message when root is not a store
    now_l = _parse_now(now, tz)
    spec = config if isinstance(config, ScheduleSpec) else load_schedule(config)
    ledger = read_ledger(root)
    done = {(r["job"], r["period"]) for r in ledger if r.get("status") in ("ok", "superseded")}
    data_end = _data_end(root, tz)
    tasks: list[Task] = []
    waiting: list[tuple[Task, str]] = []
    superseded: list[Task] = []
    for job in spec.jobs:
        if job.every in ("week", "day"):
            if job.every == "week":
                periods = _week_periods(now_l, job.at_time)
                length = dt.timedelta(days=7)
            else:
                periods = _day_periods(now_l, job.at_time, job.catch_up + 60)
                length = dt.timedelta(days=1)
            ran_before = any(r["job"] == job.name and r.get("status") == "ok" for r in ledger)
            if not ran_before:
                periods = periods[:1]
            else:
                last_ok = max(p for (j, p) in done if j == job.name)
                # ISO weeks and dates sort as text; newest first, at most catch_up of them
                periods = [p for p in periods if p[0] > last_ok][: job.catch_up]
            for pid, due, start in reversed(periods):
                args = {"week": pid} if job.every == "week" else {"day": pid}
                task = Task(job.name, job.kind, pid, due, args)
                end = dt.datetime.combine(start, dt.time(0), tzinfo=tz) + length
                if data_end is None:
                    waiting.append((task, "no cube in the store yet (run `vigie cube`)"))
                elif end > data_end:
                    waiting.append((task, f"data end at {data_end.isoformat(timespec='minutes')}"))
                else:
                    tasks.append(task)
        else:
            for ev in _upcoming_events(root, tz, now_l):
                due_ms = []
                for d in job.days_before:
                    day = ev["local_start"].date() - dt.timedelta(days=d)
                    due = dt.datetime.combine(day, job.at_time, tzinfo=tz)
                    if due <= now_l:
                        due_ms.append((d, due))
                if not due_ms:
                    continue
                pending = [
                    (d, due)
                    for d, due in due_ms
                    if (job.name, f"{ev['event_id']}@D-{d}") not in done
                ]
                latest = min(d for d, _ in due_ms)
                for d, due in pending:
                    task = Task(
                        job.name,
                        job.kind,
                        f"{ev['event_id']}@D-{d}",
                        due,
                        {"event_id": ev["event_id"], "days_before": d},
                    )
                    (tasks if d == latest else superseded).append(task)
    tasks.sort(key=lambda t: t.due_at)
    return Plan(now=now_l, tasks=tasks, waiting=waiting, superseded=superseded)


def _upcoming_events(store: Path, tz: ZoneInfo, now: dt.datetime) -> list[dict[str, Any]]:
    """Events of the store that start after ``now`` (local start times)."""
    import pandas as pd

    ev = Store(store).validated("events", columns=["event_id", "start"])
    if ev is None:
        return []
    start = pd.to_datetime(ev["start"], utc=True).dt.tz_convert(tz)
    out = []
    for eid, s in zip(ev["event_id"].astype(str), start, strict=True):
        if s.to_pydatetime() > now:
            out.append({"event_id": eid, "local_start": s.to_pydatetime()})
    return out


# -- running --------------------------------------------------------------------------------------
Runner = Callable[[Path, Task, Path], str]


def _vigie(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``vigie`` command in a child process (its own memory, its own failure)."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise JobError(f"{what} exited {proc.returncode}: {' '.join(msg[-3:])}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def run_weekly(store: Path, task: Task, reports_dir: Path) -> str:
    """Signals for the week when missing, then the weekly report; returns the report's path."""
    from pipelines.reports.runner import report_weekly

    week = task.args["week"]
    if not (store / "signals" / f"{week}.json").exists():
        _check(
            _vigie("signals", "--store", str(store), "--week", week), f"vigie signals --week {week}"
        )
    return str(report_weekly(store, week=week, reports_dir=reports_dir).html)


def run_signals(store: Path, task: Task, reports_dir: Path) -> str:
    """The weak signals of one day (``vigie signals --from D --to D``)."""
    day = task.args["day"]
    out = _check(
        _vigie("signals", "--store", str(store), "--from", day, "--to", day),
        f"vigie signals --from {day} --to {day}",
    )
    return out


def run_brief(store: Path, task: Task, reports_dir: Path) -> str:
    """The brief of an event (``pipelines.events.brief.make_brief``) and its report."""
    from pipelines.events.brief import make_brief
    from pipelines.reports.runner import report_brief

    make_brief(Store(store), task.args["event_id"])
    return str(report_brief(store, task.args["event_id"], reports_dir=reports_dir).html)


RUNNERS: dict[str, Runner] = {
    "weekly_report": run_weekly,
    "signals": run_signals,
    "event_brief": run_brief,
}


def run_schedule(
    store: str | Path,
    *,
    reports_dir: str | Path = "reports",
    config: str | Path | ScheduleSpec | None = None,
    now: str | dt.datetime | None = None,
    dry_run: bool = False,
    runners: dict[str, Runner] | None = None,
) -> ScheduleResult:
    """Run, once, every task the schedule says is due, holding the store's lock.

    Parameters
    ----------
    store
        The store folder.
    reports_dir
        Where reports go.
    config
        Schedule YAML (default ``pipelines/schedule.yaml``).
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
    table = {**RUNNERS, **(runners or {})}
    with ScheduleLock(root):
        p = plan(root, now=now, config=config)
        records: list[dict[str, Any]] = []
        if dry_run:
            return ScheduleResult(plan=p, records=[], dry_run=True)
        for t in p.superseded:
            rec = {
                "job": t.job,
                "kind": t.kind,
                "period": t.period,
                "status": "superseded",
                "due_at": t.due_at.isoformat(),
                "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "seconds": 0.0,
            }
            append_ledger(root, rec)
        for t in p.tasks:
            t0 = time.perf_counter()
            rec = {
                "job": t.job,
                "kind": t.kind,
                "period": t.period,
                "due_at": t.due_at.isoformat(),
                "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            try:
                out = table[t.kind](root, t, Path(reports_dir))
                rec.update(status="ok", output=out)
            except Exception as exc:  # one failed job must not stop the others
                log.error("scheduled %s %s failed: %s", t.job, t.period, exc)
                rec.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            rec["seconds"] = round(time.perf_counter() - t0, 2)
            rec["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            append_ledger(root, rec)
            records.append(rec)
    return ScheduleResult(plan=p, records=records)
