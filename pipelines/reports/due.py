"""What the schedule says is due: the schedule file, and the plan at a given local time.

Weekly periods are ISO weeks, due on the Monday after at ``at``; daily periods are days, due the
next day at ``at``; event periods are the milestones ``<event_id>@D-<n>`` of the events not yet
started, due ``n`` local days before the start at ``at``.

Catch-up: a job that has run before gets every period after its last successful one up to the
latest due (at most ``catch_up``, the most recent); a job that never ran starts with the latest
due period. Failed periods are retried. A period whose data is not in the cube yet (it ends
after ``cube_meta.json``'s end) waits, and is not recorded. When several milestones of one event
are due (a missed D-7 found at D-1) only the latest runs; the others are superseded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.errors import ConfigError, StoreError, VigieError
from features.store import Store
from features.timeutil import as_utc, iso_week
from pipelines.reports.ledger import read_ledger

DEFAULT_CONFIG = Path(__file__).resolve().parent / "schedule.yaml"

#: the one period length each job kind runs on
_EVERY = {"weekly_report": "week", "signals": "day", "event_brief": "event"}


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
        What the job needs (week; day; event_id and milestone).
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


# -- config ---------------------------------------------------------------------------------------
def _validate(raw: Any, path: Path) -> ScheduleSpec:
    try:
        return ScheduleSpec.model_validate(raw or {})
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"{path}: invalid schedule: {errs}. Expected jobs with name, kind (weekly_report, "
            "signals, event_brief), every (week, day, event), at (HH:MM).",
            file=str(path),
        ) from None


def load_schedule(path: str | Path | None = None) -> ScheduleSpec:
    """Read and validate a schedule YAML (default: ``pipelines/reports/schedule.yaml``).

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
    spec = _validate(raw, path)
    for j in spec.jobs:
        if _EVERY[j.kind] != j.every:
            raise ConfigError(
                f"{path}: job {j.name}: kind {j.kind} runs every "
                f"{_EVERY[j.kind]}, not every {j.every}.",
                file=str(path),
            )
    return spec


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
    try:  # the cube's own metadata (a killed build may have left cube_meta.json behind)
        meta = Store(store).cube_meta()
    except StoreError:
        return None
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


@dataclass(frozen=True)
class _Context:
    """What planning reads once: the local time, the ledger, the cube's end."""

    now: dt.datetime
    tz: ZoneInfo
    ledger: list[dict[str, Any]]
    done: set[tuple[str, str]]
    data_end: dt.datetime | None


def _catch_up(job: JobSpec, periods: list[Any], ctx: _Context) -> list[Any]:
    """The periods to run, newest first: the latest for a job that never ran, else those after
    its last successful one (at most ``catch_up``)."""
    if not any(r["job"] == job.name and r.get("status") == "ok" for r in ctx.ledger):
        return periods[:1]
    last_ok = max(p for (j, p) in ctx.done if j == job.name)
    # ISO weeks and dates sort as text; newest first, at most catch_up of them
    return [p for p in periods if p[0] > last_ok][: job.catch_up]


def _periodic(job: JobSpec, ctx: _Context) -> tuple[list[Task], list[tuple[Task, str]]]:
    """The due periods of a weekly or daily job: (to run, waiting for data)."""
    if job.every == "week":
        periods = _week_periods(ctx.now, job.at_time)
        length = dt.timedelta(days=7)
    else:
        periods = _day_periods(ctx.now, job.at_time, job.catch_up + 60)
        length = dt.timedelta(days=1)
    tasks: list[Task] = []
    waiting: list[tuple[Task, str]] = []
    for pid, due, start in reversed(_catch_up(job, periods, ctx)):
        args = {"week": pid} if job.every == "week" else {"day": pid}
        task = Task(job.name, job.kind, pid, due, args)
        end = dt.datetime.combine(start, dt.time(0), tzinfo=ctx.tz) + length
        if ctx.data_end is None:
            waiting.append((task, "no cube in the store yet (run `vigie cube`)"))
        elif end > ctx.data_end:
            waiting.append((task, f"data end at {ctx.data_end.isoformat(timespec='minutes')}"))
        else:
            tasks.append(task)
    return tasks, waiting


def _upcoming_events(store: Path, tz: ZoneInfo, now: dt.datetime) -> list[dict[str, Any]]:
    """Events of the store that start after ``now`` (local start times)."""
    ev = Store(store).validated("events", columns=["event_id", "start"])
    if ev is None:
        return []
    start = pd.to_datetime(ev["start"], utc=True).dt.tz_convert(tz)
    out = []
    for eid, s in zip(ev["event_id"].astype(str), start, strict=True):
        if s.to_pydatetime() > now:
            out.append({"event_id": eid, "local_start": s.to_pydatetime()})
    return out


def _milestones(
    job: JobSpec, event: dict[str, Any], ctx: _Context
) -> tuple[list[Task], list[Task]]:
    """The due milestones of one event not run yet: (the latest, to run; older, superseded)."""
    due_ms = []
    for d in job.days_before:
        day = event["local_start"].date() - dt.timedelta(days=d)
        due = dt.datetime.combine(day, job.at_time, tzinfo=ctx.tz)
        if due <= ctx.now:
            due_ms.append((d, due))
    if not due_ms:
        return [], []
    latest = min(d for d, _ in due_ms)
    run: list[Task] = []
    superseded: list[Task] = []
    for d, due in due_ms:
        period = f"{event['event_id']}@D-{d}"
        if (job.name, period) in ctx.done:
            continue
        args = {"event_id": event["event_id"], "days_before": d}
        (run if d == latest else superseded).append(Task(job.name, job.kind, period, due, args))
    return run, superseded


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
        Schedule YAML path or parsed spec (default: ``pipelines/reports/schedule.yaml``).

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
    ctx = _Context(now_l, tz, ledger, done, _data_end(root, tz))
    tasks: list[Task] = []
    waiting: list[tuple[Task, str]] = []
    superseded: list[Task] = []
    for job in spec.jobs:
        if job.every in ("week", "day"):
            run, wait = _periodic(job, ctx)
            tasks += run
            waiting += wait
            continue
        for ev in _upcoming_events(root, tz, now_l):
            run, older = _milestones(job, ev, ctx)
            tasks += run
            superseded += older
    tasks.sort(key=lambda t: t.due_at)
    return Plan(now=now_l, tasks=tasks, waiting=waiting, superseded=superseded)
