"""`vigie live` (issue 17): replay on the tiny city, feed faults, restart, DST night, webhook."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from features.config import load_study
from features.store import Store
from pipelines.live.alerts import read_jsonl
from pipelines.live.replay import make_drill, replay
from pipelines.live.run import LEDGER, LiveRunner
from pipelines.live.settings import LiveSettings

GATHER_ZONE = "750560021"


@pytest.fixture(scope="module")
def gathering_run(tiny_store: Path, tiny_city: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("live_gather")
    truth = json.loads((tiny_city / "truth.json").read_text())
    sig = next(s for s in truth["signals"] if s["type"] == "gathering")
    start = pd.Timestamp(sig["start"])
    runner = replay(
        Store(tiny_store),
        start=start - pd.Timedelta(hours=3),
        end=pd.Timestamp(sig["end"]) + pd.Timedelta(hours=2),
        drill=out / "drill",
        reports=out / "reports",
        settings=LiveSettings(),
        speed=0,
    )
    return runner, sig, out


def test_replay_raises_the_planted_gathering_within_two_slots(gathering_run):
    runner, sig, out = gathering_run
    alerts = read_jsonl(runner.store.root / "live" / "alerts.jsonl")
    hit = [a for a in alerts if a["zone_id"] in sig["zones"] and a["kind"] == "surge"]
    assert hit, alerts
    start = pd.Timestamp(sig["start"])
    assert pd.Timestamp(hit[0]["slot"]) <= start + pd.Timedelta(hours=1)  # the 2nd slot at most
    a = hit[0]
    for key in ("zone_name", "present", "reference", "ratio", "z", "persistence", "explanation"):
        assert a[key] is not None
    assert a["persistence"] == 2 and a["ratio"] > 1.5
    page = (out / "reports" / "live" / "index.html").read_text()
    assert GATHER_ZONE in page and "http-equiv='refresh'" in page
    # each replayed file exactly once in the ledger, every row reconciled
    ledger = read_jsonl(runner.store.root / LEDGER)
    assert len({e["file"] for e in ledger}) == len(ledger) == 8
    assert all(e["reconciled"] for e in ledger)


def test_quiet_night_with_dst_change_raises_no_false_alert(tiny_store: Path, tmp_path: Path):
    """W43 has no planted signal; its Sunday holds the end of summer time (25 local hours).
    False alerts: alerts outside the hours of events (+-3 h) in their zones."""
    runner = replay(
        Store(tiny_store),
        start="2026-10-24T22:00Z",
        end="2026-10-25T23:00Z",
        drill=tmp_path / "drill",
        reports=tmp_path / "reports",
        settings=LiveSettings(),
        speed=0,
    )
    ev = pd.read_parquet(Store(tiny_store).validated_path("events"))
    alerts = read_jsonl(runner.store.root / "live" / "alerts.jsonl")
    m = pd.Timedelta(hours=3)

    def in_event(a) -> bool:
        t = pd.Timestamp(a["slot"])
        e = ev[ev["zone_id"].astype(str) == a["zone_id"]]
        return bool(((e["start"] - m <= t) & (t < e["end"] + m)).any())

    false = [a for a in alerts if not in_event(a)]
    assert false == []
    ledger = read_jsonl(runner.store.root / LEDGER)
    assert len(ledger) == 25  # 25 hourly slots on the night summer time ends: none lost


# -- feed faults, in the study's own format --------------------------------------------------
def _study_file(path: Path, rows: pd.DataFrame, tz: str) -> Path:
    """Presence rows written as the tiny city's export (naive local times, its column names)."""
    local = pd.DatetimeIndex(rows["start"]).tz_convert(tz).tz_localize(None)
    out = pd.DataFrame(
        {
            "id_zone": rows["zone_id"].to_numpy(),
            "date_heure": local.strftime("%Y-%m-%d %H:%M:%S"),
            "duree_min": rows["slot_minutes"].to_numpy(),
            "volume_present": rows["present"].to_numpy(),
            "residents": rows["residents"].to_numpy(),
            "visiteurs": rows["visitors"].to_numpy(),
        }
    )
    out.to_csv(path, index=False)
    old = 1_000_000_000
    os.utime(path, (old, old + len(list(path.parent.iterdir()))))
    return path


@pytest.fixture
def feed(tiny_store: Path, tiny_city: Path, tmp_path: Path):
    src = Store(tiny_store)
    start = pd.Timestamp("2026-10-24T20:00Z")
    st = make_drill(src, tmp_path / "store", start)
    pres = pd.read_parquet(src.validated_path("presence"))
    pres = pres[(pres["start"] >= start) & (pres["slot_minutes"] == 60)]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    spec = load_study(tiny_city / "sources.yaml").presence
    runner = LiveRunner(st, inbox, spec, LiveSettings(settle_seconds=1.0), tmp_path / "reports")
    return runner, pres, inbox


def _slot(pres, t):
    return pres[pres["start"] == pd.Timestamp(t)]


def test_twice_delivered_late_partial_malformed_and_restart(feed):
    runner, pres, inbox = feed
    tz = runner.tz
    _study_file(inbox / "a.csv", _slot(pres, "2026-10-24T21:00Z"), tz)
    _study_file(inbox / "b.csv", _slot(pres, "2026-10-24T22:00Z"), tz)
    _study_file(inbox / "b_again.csv", _slot(pres, "2026-10-24T22:00Z"), tz)  # delivered twice
    (inbox / "bad.csv").write_text("zone;when\n1;x\n")  # malformed: no presence columns
    os.utime(inbox / "bad.csv", (1_000_000_000, 1_000_000_100))
    _study_file(inbox / "late.csv", _slot(pres, "2026-10-24T20:00Z"), tz)  # arrives last
    partial = inbox / "partial.csv"
    partial.write_text("id_zone,date_heure,duree_min,volume_present\n750560001,2026-10-25 01:00")
    done = runner.process(files=runner.ready()[0])
    status = {e["file"]: e["status"] for e in done["files"]}
    assert status == {
        "a.csv": "ingested",
        "b.csv": "ingested",
        "b_again.csv": "repeat",
        "bad.csv": "malformed",
        "late.csv": "ingested",
    }  # the partial file (written just now) waits
    bad = next(e for e in done["files"] if e["file"] == "bad.csv")
    assert "volume_present" in bad["reason"] or "zone_id" in bad["reason"]
    assert (runner.store.root / "live" / "quarantine" / "files").is_dir()
    assert all(e["reconciled"] for e in done["files"] if e["status"] == "ingested")
    # the partial file, completed and marked done, is taken
    _study_file(partial, _slot(pres, "2026-10-24T23:00Z"), tz)
    partial.with_name("partial.csv.done").touch()
    again = runner.process(files=runner.ready()[0])
    assert [e["file"] for e in again["files"]] == ["partial.csv"]
    # a same slot, other content: quarantined as a duplicate of a stored slot
    dup = _slot(pres, "2026-10-24T21:00Z").assign(present=lambda d: d["present"] + 1)
    _study_file(inbox / "a_fix.csv", dup, tz)
    fix = runner.process(files=runner.ready()[0])["files"][0]
    assert fix["rows_kept"] == 0 and fix["rows_quarantined"] == len(dup)
    assert "duplicate of a stored slot" in next(iter(fix["reasons"]))
    # a restart processes nothing twice
    ledger = read_jsonl(runner.store.root / LEDGER)
    fresh = LiveRunner(runner.store, inbox, runner.spec, runner.settings, runner.reports)
    assert fresh.process(files=fresh.ready()[0])["files"] == []
    assert read_jsonl(runner.store.root / LEDGER) == ledger


def test_correction_replaces_stored_slot(feed):
    runner, pres, inbox = feed
    runner.settings = LiveSettings(corrections=True)
    one = _slot(pres, "2026-10-24T21:00Z")
    _study_file(inbox / "a.csv", one, runner.tz)
    _study_file(inbox / "a_fix.csv", one.assign(present=one["present"] + 5), runner.tz)
    files = runner.process(files=runner.ready()[0])["files"]
    assert files[1]["replaced"] == len(one)
    from features.ingest.append import stored_presence

    got = stored_presence(runner.store, start=pd.Timestamp("2026-10-24T21:00Z"))
    assert (got["present"].to_numpy() == one["present"].to_numpy() + 5).all()


def test_crash_before_ledger_line_rewrites_the_same_partition(feed):
    """A run killed after writing a file's rows but before its ledger line: the restart
    processes the file again into the same partition; the store equals an uninterrupted run's."""
    runner, pres, inbox = feed
    f = _study_file(inbox / "a.csv", _slot(pres, "2026-10-24T21:00Z"), runner.tz)
    from features.ingest.append import append_presence, live_partitions
    from features.readers import sha256

    append_presence(f, runner.store, spec=runner.spec, tz=runner.tz, seq=1, sha=sha256(f))
    before = [p.read_bytes() for p in live_partitions(runner.store)]
    runner.process(files=runner.ready()[0])
    assert [p.read_bytes() for p in live_partitions(runner.store)] == before
    assert len(read_jsonl(runner.store.root / LEDGER)) == 1


def test_dst_night_repeated_hour_in_separate_files(feed):
    """01:00 UTC and 02:00 UTC on 25 Oct 2026 are both 02:00 local: two hourly files with the
    same naive local time become two slots, neither lost nor doubled."""
    runner, pres, inbox = feed
    for t in ("2026-10-25T00:00Z", "2026-10-25T01:00Z", "2026-10-25T02:00Z"):
        _study_file(inbox / f"p{t[:13]}.csv", _slot(pres, t), runner.tz)
    files = runner.process(files=runner.ready()[0])["files"]
    assert [e["rows_quarantined"] for e in files] == [0, 0, 0]
    assert [e["slots"] for e in files] == [
        ["2026-10-25T00:00:00+00:00"],
        ["2026-10-25T01:00:00+00:00"],
        ["2026-10-25T02:00:00+00:00"],
    ]


def test_gap_in_the_feed_is_said_on_the_page(feed):
    runner, pres, inbox = feed
    _study_file(inbox / "a.csv", _slot(pres, "2026-10-24T21:00Z"), runner.tz)
    runner.process(files=runner.ready()[0], now=pd.Timestamp("2026-10-24T22:30Z"))
    page = (runner.reports / "live" / "index.html").read_text()
    assert "no data since" not in page
    runner.render(now=pd.Timestamp("2026-10-25T03:00Z"))
    page = (runner.reports / "live" / "index.html").read_text()
    assert "no data since 00:00" in page  # 22:00 UTC = 00:00 local (CEST)


class _Flaky(BaseHTTPRequestHandler):
    fail_left = 4
    got: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Flaky.fail_left > 0:
            _Flaky.fail_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Flaky.got.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_webhook_down_then_up_delivers_each_alert_exactly_once(gathering_run, tmp_path):
    runner, _sig, _out = gathering_run
    import shutil

    st = Store(tmp_path / "store")
    shutil.copytree(runner.store.root, st.root)
    (st.root / "live" / "delivered.jsonl").unlink(missing_ok=True)
    server = HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        from pipelines.live.alerts import deliver

        cfg = LiveSettings(webhook=url, webhook_retries=2, webhook_timeout=2)
        assert deliver(st, cfg) == 0  # down: 2 attempts fail, the rest wait
        n = len(read_jsonl(st.root / "live" / "alerts.jsonl"))
        assert n >= 1
        while deliver(st, cfg) == 0 and _Flaky.fail_left > 0:
            pass
        deliver(st, cfg)
        assert sorted(a["id"] for a in _Flaky.got) == sorted(
            a["id"] for a in read_jsonl(st.root / "live" / "alerts.jsonl")
        )
        assert deliver(st, cfg) == 0  # nothing sent twice
        assert len(_Flaky.got) == n
    finally:
        server.shutdown()
