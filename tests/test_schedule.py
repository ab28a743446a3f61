"""The schedule: what is due when, catch-up of missed periods, the ledger and the lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pandas as pd
import pytest

from features.errors import ConfigError
from pipelines.reports import jobs
from pipelines.reports.due import Task, load_schedule, plan
from pipelines.reports.ledger import ScheduleLock, ScheduleLocked, read_ledger
from pipelines.reports.schedule import run_schedule

TZ = "Europe/Paris"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store skeleton: study.json, a cube period (2026-09-01 .. 2026-11-30) and two events."""
    root = tmp_path / "store"
    (root / "validated").mkdir(parents=True)
    (root / "study.json").write_text(
        json.dumps({"area": {"name": "t", "timezone": TZ, "grain": "1h"}, "suppression_k": 10})
    )
    (root / "cube_meta.json").write_text(
        json.dumps(
            {
                "grain": "1h",
                "timezone": TZ,
                "start": "2026-08-31T22:00:00+00:00",
                "end": "2026-11-30T22:00:00+00:00",
            }
        )
    )
    pd.DataFrame(
        {
            "event_id": ["E1", "E2"],
            "start": pd.to_datetime(["2026-11-20T19:00:00Z", "2026-12-24T19:00:00Z"], utc=True),
        }
    ).to_parquet(root / "validated" / "events.parquet")
    return root


def fake_runners(calls: list[tuple[str, str]], fail: set[str] = frozenset()):
    """Runners that record (kind, period) and fail for the periods in ``fail``."""

    def make(kind: str):
        def run(store, task, reports_dir):
            calls.append((kind, task.period))
            if task.period in fail:
                raise RuntimeError(f"planted failure {task.period}")
            return f"{kind}:{task.period}"

        return run

    return {k: make(k) for k in ("weekly_report", "signals", "event_brief")}


def test_default_schedule_is_valid():
    """The shipped schedule.yaml has the weekly, daily and event jobs the design asks for."""
    spec = load_schedule()
    kinds = {j.kind: j for j in spec.jobs}
    assert set(kinds) == {"weekly_report", "signals", "event_brief"}
    assert kinds["event_brief"].days_before == [7, 1]
    assert kinds["weekly_report"].every == "week"


def test_bad_schedule_names_field(tmp_path: Path):
    """A schedule with a wrong field fails with a message naming the field and what is expected."""
    bad = tmp_path / "s.yaml"
    bad.write_text("jobs:\n  - {name: w, kind: weekly_report, every: month}\n")
    with pytest.raises(ConfigError, match=r"jobs\.0\.every.*week"):
        load_schedule(bad)
    bad.write_text("jobs:\n  - {name: w, kind: signals, every: week}\n")
    with pytest.raises(ConfigError, match="signals runs every day"):
        load_schedule(bad)


def test_weekly_due_monday_after_the_week(store: Path):
    """On Monday 2026-11-16 at 08:00 the past week 2026-W46 (Nov 9-15) is due; at 05:00 it is not."""
    p = plan(store, now="2026-11-16T08:00")
    weekly = [t.period for t in p.tasks if t.kind == "weekly_report"]
    assert weekly == ["2026-W46"]
    p = plan(store, now="2026-11-16T05:00")
    assert [t.period for t in p.tasks if t.kind == "weekly_report"] == ["2026-W45"]
    days = [t.period for t in p.tasks if t.kind == "signals"]
    assert days == ["2026-11-15"]  # yesterday, due at 05:00


def test_catch_up_after_missed_weeks_and_days(store: Path):
    """After a run on 2026-10-19, a run on 2026-11-16 catches up W43..W46 and every missed day."""
    calls: list[tuple[str, str]] = []
    run_schedule(store, now="2026-10-19T09:00", runners=fake_runners(calls))
    assert ("weekly_report", "2026-W42") in calls
    calls.clear()
    res = run_schedule(store, now="2026-11-16T09:00", runners=fake_runners(calls))
    weeks = [p for k, p in calls if k == "weekly_report"]
    assert weeks == ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]
    days = [p for k, p in calls if k == "signals"]
    # the daily job catches up at most 14 days (schedule.yaml), oldest first
    assert days == [str(d.date()) for d in pd.date_range("2026-11-02", "2026-11-15")]
    assert not res.failed
    # a third run at the same time has nothing left
    calls.clear()
    run_schedule(store, now="2026-11-16T09:30", runners=fake_runners(calls))
    assert [c for c in calls if c[0] != "event_brief"] == []


def test_failed_period_is_recorded_and_retried(store: Path):
    """A failing job is recorded 'failed' with its error, the others still run, the next run retries it."""
    calls: list[tuple[str, str]] = []
    run_schedule(store, now="2026-11-09T09:00", runners=fake_runners(calls))
    calls.clear()
    res = run_schedule(store, now="2026-11-16T09:00", runners=fake_runners(calls, {"2026-W46"}))
    assert [r["period"] for r in res.failed] == ["2026-W46"]
    assert "planted failure" in res.failed[0]["error"]
    assert ("signals", "2026-11-15") in calls
    ledger = read_ledger(store)
    assert any(r["period"] == "2026-W46" and r["status"] == "failed" for r in ledger)
    calls.clear()
    run_schedule(store, now="2026-11-16T10:00", runners=fake_runners(calls))
    assert ("weekly_report", "2026-W46") in calls


def test_event_briefs_at_d7_and_d1(store: Path):
    """E1 (Nov 20, 20:00 Paris) gets its brief on Nov 13 (D-7) and on Nov 19 (D-1); none after it starts."""
    calls: list[tuple[str, str]] = []
    run_schedule(store, now="2026-11-12T09:00", runners=fake_runners(calls))
    assert not [c for c in calls if c[0] == "event_brief"]
    run_schedule(store, now="2026-11-13T09:00", runners=fake_runners(calls))
    assert ("event_brief", "E1@D-7") in calls
    calls.clear()
    run_schedule(store, now="2026-11-19T09:00", runners=fake_runners(calls))
    assert [c for c in calls if c[0] == "event_brief"] == [("event_brief", "E1@D-1")]
    calls.clear()
    run_schedule(store, now="2026-11-21T09:00", runners=fake_runners(calls))
    assert not [c for c in calls if c[0] == "event_brief"]


def test_missed_d7_is_superseded_by_d1(store: Path):
    """A first run on D-1 runs only the D-1 brief and records D-7 as superseded."""
    calls: list[tuple[str, str]] = []
    res = run_schedule(store, now="2026-11-19T09:00", runners=fake_runners(calls))
    assert [c for c in calls if c[0] == "event_brief"] == [("event_brief", "E1@D-1")]
    assert [t.period for t in res.plan.superseded] == ["E1@D-7"]
    statuses = {r["period"]: r["status"] for r in read_ledger(store)}
    assert statuses["E1@D-7"] == "superseded"


def test_periods_after_the_data_wait(store: Path):
    """Weeks and days past the cube's end wait (not run, not recorded) until the data arrive."""
    p = plan(store, now="2026-12-08T09:00")
    assert [t.period for t, _ in p.waiting if t.kind == "weekly_report"] == ["2026-W49"]
    assert "data end" in p.waiting[0][1]
    res = run_schedule(store, now="2026-12-08T09:00", runners=fake_runners([]))
    assert not any(r["period"] == "2026-W49" for r in read_ledger(store))
    assert any(line.startswith("waiting: weekly-report 2026-W49") for line in res.lines())


def _hold_lock(store: str, ready, release) -> None:
    with ScheduleLock(store):
        ready.set()
        release.wait(20)


def test_lock_prevents_overlap(store: Path):
    """While one process holds the lock a second run fails at once naming the holder; after, it runs."""
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(store), ready, release))
    proc.start()
    try:
        assert ready.wait(20)
        with pytest.raises(ScheduleLocked, match=r"another schedule run is in progress \(pid \d+"):
            run_schedule(store, now="2026-11-16T09:00", runners=fake_runners([]))
    finally:
        release.set()
        proc.join(20)
    res = run_schedule(store, now="2026-11-16T09:00", runners=fake_runners([]))
    assert res.records


def test_dry_run_records_nothing(store: Path):
    """--dry-run lists what is due and writes no ledger line."""
    res = run_schedule(store, now="2026-11-16T09:00", dry_run=True, runners=fake_runners([]))
    assert any(line.startswith("due: weekly-report 2026-W46") for line in res.lines())
    assert read_ledger(store) == []


def test_daily_grain_week_missing_its_sunday_waits(store: Path):
    """cube_meta's end is exclusive: a daily cube ending before Sunday 2026-11-15 leaves W46 waiting.

    (The end used to be taken as the start of the last slot, one day was added for a daily
    grain, and the weekly report of a week without its Sunday ran.)
    """
    meta = json.loads((store / "cube_meta.json").read_text())
    meta.update(grain="1d", end="2026-11-14T23:00:00+00:00")  # Sun 15 Nov 00:00 Paris
    (store / "cube_meta.json").write_text(json.dumps(meta))
    p = plan(store, now="2026-11-16T09:00")
    assert [t.period for t, _ in p.waiting if t.kind == "weekly_report"] == ["2026-W46"]
    assert [t.period for t, _ in p.waiting if t.kind == "signals"] == ["2026-11-15"]
    meta["end"] = "2026-11-15T23:00:00+00:00"  # Mon 16 Nov 00:00 Paris: the week is whole
    (store / "cube_meta.json").write_text(json.dumps(meta))
    p = plan(store, now="2026-11-16T09:00")
    assert [t.period for t in p.tasks if t.kind == "weekly_report"] == ["2026-W46"]


def test_not_a_store_is_refused_before_anything_is_written(tmp_path: Path):
    """A mistyped --store fails with the not-a-store message and leaves no schedule/ folder."""
    from features.errors import StoreError

    with pytest.raises(StoreError, match="not a vigie store"):
        run_schedule(tmp_path / "typo", now="2026-11-16T09:00", runners=fake_runners([]))
    assert not (tmp_path / "typo").exists()


def test_jobs_call_the_functions_not_the_command_line(store: Path, monkeypatch):
    """The daily job runs the detectors on the day through run_signals and records the file it
    wrote; the weekly job runs them only when the week's signals are missing, then the report."""
    import datetime as dt

    calls: list[tuple[str, object]] = []

    def fake_signals(st, period):
        calls.append(("signals", period.label))
        st.signals_path(period.label).parent.mkdir(parents=True, exist_ok=True)
        st.signals_path(period.label).write_text("{}")

    def fake_weekly(store, *, week, reports_dir):
        calls.append(("weekly", week))
        return type("R", (), {"html": Path(reports_dir) / "weekly" / week / "report.html"})()

    monkeypatch.setattr(jobs, "run_signals", fake_signals)
    monkeypatch.setattr(jobs, "report_weekly", fake_weekly)
    due = dt.datetime(2026, 11, 16, 6)
    out = jobs.signals_job(
        store, Task("d", "signals", "2026-11-15", due, {"day": "2026-11-15"}), store
    )
    assert out == f"signals: {store / 'signals' / '2026-11-15_2026-11-15.json'}"
    week = Task("w", "weekly_report", "2026-W46", due, {"week": "2026-W46"})
    assert jobs.weekly_job(store, week, tmp := store / "r").endswith("2026-W46/report.html")
    assert calls == [
        ("signals", "2026-11-15_2026-11-15"),
        ("signals", "2026-W46"),
        ("weekly", "2026-W46"),
    ]
    calls.clear()
    jobs.weekly_job(store, week, tmp)  # the week's signals are there now: only the report
    assert calls == [("weekly", "2026-W46")]


def _concurrent_run(store: str, reports: str, barrier, out) -> None:
    """One `vigie schedule run`, started with another at the same instant (fork context)."""
    from features.store import staged_folder

    def weekly(st, task, reports_dir):
        with staged_folder(Path(reports_dir) / "weekly" / task.period) as tmp:
            (tmp / "report.html").write_text(f"<p>{task.period}</p>")
            time.sleep(1.0)  # long enough for the other run to try while this one works
            (tmp / "summary.json").write_text(json.dumps({"id": task.period}))
        return str(Path(reports_dir) / "weekly" / task.period)

    runners = {**fake_runners([]), "weekly_report": weekly}
    barrier.wait(20)
    try:
        res = run_schedule(store, reports_dir=reports, now="2026-11-16T09:00", runners=runners)
        out.put(("ran", len(res.records)))
    except ScheduleLocked as exc:
        out.put(("locked", str(exc)))


def test_two_concurrent_runs_make_one_run(store: Path, tmp_path: Path):
    """Two schedule runs started at the same instant: one runs, the other is refused at once; the
    ledger shows one run (no period twice) and each report is whole, with no temporary folder."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    reports = tmp_path / "reports"
    procs = [
        ctx.Process(target=_concurrent_run, args=(str(store), str(reports), barrier, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert [r[0] for r in results] == ["locked", "ran"], results
    assert "another schedule run is in progress" in results[0][1]
    ledger = read_ledger(store)
    assert len(ledger) == results[1][1] > 0
    keys = [(r["job"], r["period"]) for r in ledger]
    assert len(keys) == len(set(keys))
    weekly = [r for r in ledger if r["kind"] == "weekly_report"]
    assert weekly and all(r["status"] == "ok" for r in weekly)
    for r in weekly:
        folder = reports / "weekly" / r["period"]
        assert json.loads((folder / "summary.json").read_text()) == {"id": r["period"]}
    assert not [p for p in reports.rglob(".*")]
