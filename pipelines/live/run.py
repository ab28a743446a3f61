"""`vigie live` from start to end: files found in the inbox, appended once, tested, alerted, shown.

:meth:`LiveRunner.process` is one pass (``--once``, each watcher wake-up, each replayed slot):
the files ready in the inbox, in order of arrival, each appended
(:func:`features.ingest.append.append_presence`), its slots tested, the alerts written; then the
undelivered alerts posted and the page rewritten. :func:`watch` runs passes whenever the inbox
changes (``watchfiles``), and every ``settle_seconds`` while a file is still settling.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import SourceSpec
from features.errors import InputError
from features.ingest.append import LIVE_PRESENCE, LIVE_QUARANTINE, append_presence
from features.readers import sha256
from features.store import Store, clean_stale
from pipelines.live.alerts import ALERTS, STATE, deliver, read_jsonl, update
from pipelines.live.cube_update import LIVE_CUBE, LiveWindow
from pipelines.live.detect import SlotTest, score_history
from pipelines.live.ledger import Ledger
from pipelines.live.settings import LiveSettings

log = logging.getLogger(__name__)

LEDGER = "live/ledger.jsonl"
REJECTED = "live/quarantine/files"


def load_forecasts(st: Store) -> pd.DataFrame:
    """Every brief's venue forecast: zone_id, hour (UTC), forecast, event (name)."""
    from pipelines.events.result import Brief

    rows = []
    for p in sorted(st.briefs_dir.glob("*.json")) if st.briefs_dir.is_dir() else []:
        try:
            b = Brief.load(st, p.stem)
        except Exception as exc:  # a brief of another version: said, skipped
            log.warning("%s: brief not read (%s)", p, exc)
            continue
        if b is None:
            continue
        for h in b.hours:
            rows.append(
                {
                    "zone_id": str(b.event.zone_id),
                    "hour": pd.Timestamp(h.hour),
                    "forecast": float(h.venue_present_forecast),
                    "event": b.event.name,
                }
            )
    return pd.DataFrame(rows, columns=["zone_id", "hour", "forecast", "event"])


@dataclass
class LiveRunner:
    """One live store fed from one inbox."""

    store: Store
    inbox: Path
    spec: SourceSpec
    settings: LiveSettings
    reports: Path
    _sizes: dict[str, tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        study = self.store.study()
        self.tz: str = study["area"]["timezone"]
        self.k = int(study.get("suppression_k", 10))
        self._zones_raw = self.store.zones()
        zones = self._zones_raw.copy()
        zones["zone_id"] = zones["zone_id"].astype(str)
        self.zones = zones
        self.zone_ids = list(zones["zone_id"])
        self.names = dict(zip(zones["zone_id"], zones["name"].fillna(zones["zone_id"])))
        self.forecasts = load_forecasts(self.store)
        live = self.store.root / "live"
        clean_stale(
            live, *(self.store.root / d for d in (LIVE_PRESENCE, LIVE_CUBE, LIVE_QUARANTINE))
        )
        clean_stale(self.reports / "live")
        ledger = Ledger(self.store.root / LEDGER)
        drop_orphans(self.store, ledger)
        self.window = LiveWindow.load(
            self.store, zone_ids=self.zone_ids, tz=self.tz, ledger=ledger.entries
        )
        self.latest: pd.DataFrame = pd.DataFrame(
            columns=["zone_id", "present", "reference", "ratio", "z"]
        )

    # -- the inbox -------------------------------------------------------------------------
    def ready(self, now: float | None = None) -> tuple[list[Path], int]:
        """The files complete in the inbox, oldest first, and how many are still settling."""
        now = time.time() if now is None else now
        files, waiting = [], 0
        for p in sorted(self.inbox.iterdir()) if self.inbox.is_dir() else []:
            if not p.is_file() or p.name.startswith(".") or p.suffix in (".done", ".tmp", ".part"):
                continue
            st = p.stat()
            marker = p.with_name(p.name + ".done").exists()
            seen = self._sizes.get(p.name)
            self._sizes[p.name] = (st.st_size, st.st_mtime)
            stable = (
                seen == (st.st_size, st.st_mtime)
                or now - st.st_mtime >= self.settings.settle_seconds
            )
            if marker or (stable and not self.settings.require_done and st.st_size > 0):
                files.append((st.st_mtime, p.name, p))
            else:
                waiting += 1
        return [p for *_, p in sorted(files)], waiting

    # -- one pass ----------------------------------------------------------------------------
    def process(
        self, *, now: pd.Timestamp | None = None, files: list[Path] | None = None
    ) -> dict[str, Any]:
        """Process the ready files (or ``files``), deliver, rewrite the page; what was done."""
        ledger = Ledger(self.store.root / LEDGER)
        todo = files if files is not None else self.ready()[0]
        done: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        for path in todo:
            entry, new = self._one(path, ledger)
            if entry is not None:
                done.append(entry)
                alerts += new
        try:
            delivered = deliver(self.store, self.settings)
        except Exception as exc:  # delivery never stops ingestion
            log.warning("webhook delivery failed: %s", exc)
            delivered = 0
        self.render(now=now)
        return {"files": done, "alerts": alerts, "delivered": delivered}

    def _one(
        self, path: Path, ledger: Ledger
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        sha = sha256(path)
        if ledger.done(path.name, sha):
            return None, []
        prior = ledger.seen(sha)
        if prior is not None:  # a file delivered twice: recorded, not read again
            entry = {
                "file": path.name,
                "sha256": sha,
                "status": "repeat",
                "same_as": prior["file"],
                "at": _now(),
            }
            ledger.append(entry)
            return entry, []
        seq = ledger.next_seq
        base = {"seq": seq, "file": path.name, "sha256": sha, "mtime": path.stat().st_mtime}
        try:
            res = append_presence(
                path,
                self.store,
                spec=self.spec,
                tz=self.tz,
                seq=seq,
                sha=sha,
                corrections=self.settings.corrections,
                stored=self.window.rows[["zone_id", "start"]],
                zones=self._zones_raw,
            )
        except InputError as exc:
            dest = self.store.root / REJECTED / f"{seq:08d}-{path.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            entry = {**base, "status": "malformed", "reason": str(exc), "at": _now()}
            ledger.append(entry)
            log.warning("%s: quarantined whole: %s", path.name, exc)
            return entry, []
        new = []
        slot_minutes = 60
        if res.partition is not None:
            kept = pd.read_parquet(self.store.root / res.partition)
            slot_minutes = int(kept["slot_minutes"].mode().iloc[0]) if len(kept) else 60
            self.window.add(kept)
            hours = _hours_touched(kept)
            self.window.write_cube(self.store, Path(res.partition).stem, hours)
        for s in res.slots:
            new += self.test(pd.Timestamp(s), slot_minutes)
        entry = {
            **base,
            "status": "ingested",
            **res.to_json(),
            "alerts": [a["id"] for a in new],
            "at": _now(),
        }
        ledger.append(entry)
        return entry, new

    def _score(self, slot: pd.Timestamp, slot_minutes: int) -> SlotTest:
        return score_history(
            self.window.rows,
            self.window.events,
            slot,
            zones=self.zone_ids,
            tz=self.tz,
            slot_minutes=slot_minutes,
            forecasts=self.forecasts,
            z_threshold=self.settings.z_threshold,
            ratio_threshold=self.settings.ratio_threshold,
        )

    def test(self, slot: pd.Timestamp, slot_minutes: int) -> list[dict[str, Any]]:
        """Test one slot and advance the runs; its alerts."""
        t = self._score(slot, slot_minutes)
        self.latest = t.frame.assign(slot=slot)
        return update(self.store, t, settings=self.settings, names=self.names, tz=self.tz, k=self.k)

    # -- the page ----------------------------------------------------------------------------
    def render(self, *, now: pd.Timestamp | None = None) -> Path:
        from pipelines.live.page import render

        now = now or pd.Timestamp.now(tz="UTC")
        last_end, minutes = self._last_slot()
        if len(self.latest) == 0 and last_end is not None:
            self.latest = self._score(last_end - pd.Timedelta(minutes=minutes), minutes).frame
        state = self.store.read_json(STATE) or {}
        alerts = [a for a in read_jsonl(self.store.root / ALERTS) if self._open(a, state)]
        return render(
            self.reports / "live" / "index.html",
            zones=self.zones,
            latest=self.latest,
            alerts=alerts,
            events=self._events(now),
            last_slot_end=last_end,
            now=now,
            tz=self.tz,
            k=self.k,
            gap=pd.Timedelta(minutes=minutes * self.settings.gap_slots),
            refresh=self.settings.refresh_seconds,
        )

    def _open(self, alert: dict[str, Any], state: dict[str, Any]) -> bool:
        z = state.get(alert["zone_id"], {})
        return z.get("band") == alert["kind"] and z.get("since") == alert["since"]

    def _last_slot(self) -> tuple[pd.Timestamp | None, int]:
        """The end of the newest slot held, and its length in minutes."""
        rows = self.window.rows
        if rows.empty:
            return None, 60
        last = rows.loc[rows["start"].idxmax()]
        minutes = int(last["slot_minutes"])
        return pd.Timestamp(last["start"]) + pd.Timedelta(minutes=minutes), minutes

    def _events(self, now: pd.Timestamp) -> pd.DataFrame:
        """Each running event's hours up to now: crowd present against the forecast."""
        f = self.forecasts
        cols = ["event", "hour", "present", "forecast"]
        if f.empty:
            return pd.DataFrame(columns=cols)
        span = f.groupby("event")["hour"].agg(["min", "max"])
        running = span[(span["min"] <= now) & (span["max"] + pd.Timedelta(hours=1) >= now)].index
        f = f[f["event"].isin(running) & (f["hour"] <= now)]
        if f.empty:
            return pd.DataFrame(columns=cols)
        pres = self.window.between(f["hour"].min(), now)
        pres = pres.assign(zone_id=pres["zone_id"].astype(str))
        pres = pres.assign(hour=pd.DatetimeIndex(pres["start"]).floor("h"))
        pres = pres.groupby(["zone_id", "hour"], as_index=False)["present"].mean()
        m = f.merge(pres, on=["zone_id", "hour"], how="left")
        m["present"] = m["present"].astype(float)
        return m[cols]


def _hours_touched(kept: pd.DataFrame) -> list[pd.Timestamp]:
    """The UTC hours the slots of a file overlap (a 2-hour slot touches two)."""
    slots = kept[["start", "slot_minutes"]].drop_duplicates()
    hours: set[pd.Timestamp] = set()
    for start, minutes in zip(pd.DatetimeIndex(slots["start"]), slots["slot_minutes"]):
        end = start + pd.Timedelta(minutes=int(minutes))
        hours.update(pd.date_range(start.floor("h"), end - pd.Timedelta(seconds=1), freq="h"))
    return sorted(hours)


def drop_orphans(st: Store, ledger: Ledger) -> list[Path]:
    """Remove what a run killed before its ledger line left (the file's partition, cube rows and
    quarantined rows): the file is processed again and writes them anew."""
    known = {f"{e['seq']:08d}-{e['sha256'][:16]}" for e in ledger.entries if "seq" in e}
    gone = []
    for folder in (LIVE_PRESENCE, LIVE_CUBE, LIVE_QUARANTINE):
        d = st.root / folder
        for p in sorted(d.glob("[0-9]*.*")) if d.is_dir() else []:
            if p.is_file() and p.name.split(".")[0] not in known:
                p.unlink()
                gone.append(p)
    return gone


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat()


def watch(
    runner: LiveRunner,
    *,
    stop_after: float | None = None,
    on_pass: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run passes whenever the inbox changes (and every settle period while a file settles).

    The first pass runs once the inbox is watched (at the first settle period), so a file
    landing while the watcher starts is never missed. ``on_pass`` receives each pass's result;
    ``stop_after`` (seconds) ends the watch after the pass that passes it.
    """
    from watchfiles import watch as wf_watch

    t0 = time.time()
    step = max(int(runner.settings.settle_seconds * 1000), 200)
    for _changes in wf_watch(runner.inbox, rust_timeout=step, yield_on_timeout=True):
        done = runner.process()
        if on_pass is not None:
            on_pass(done)
        if stop_after is not None and time.time() - t0 > stop_after:
            return
