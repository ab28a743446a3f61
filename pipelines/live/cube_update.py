"""The live window: the newest slots of the cube and their reference values, without a rebuild.

`vigie live` never re-reads history for a new file. :class:`LiveWindow` reads the presence of
the reference's lookback (8 weeks and 2 days before the newest stored slot) and the events once,
when the runner starts; each appended file's rows are then added in memory and the rows older
than the lookback dropped, so memory stays flat however long the feed runs. From it:

* the store's slots near a new file (the duplicate check of
  :func:`features.ingest.append.append_presence`), and the history a slot is tested against
  (:func:`pipelines.live.detect.score_history`);
* the cube rows of the hours a file touched (:meth:`LiveWindow.cube_rows`), written to
  ``live/cube/<seq>-<sha>.parquet``: ``present`` (time-weighted mean of the slots overlapping
  the hour, so four 15-minute files fill their hour one by one), ``present_missing``,
  ``present_baseline`` (the cube's rule, :func:`features.baseline.same_slot_median` over the
  same local weekday and clock hour of the previous 8 weeks, event hours +-3 h left out, a
  fall-back day's repeated hour the mean of its two occurrences), ``present_ratio``,
  ``residents``, ``visitors`` and the calendar keys (``local_hour``, ``dow``, ``local_date``).
  They equal what ``vigie cube`` gives for those hours once the slots are ingested (tested).
  :func:`live_cube` reads the cube with these rows laid over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.baseline import EVENT_MARGIN_HOURS, LOOKBACK_WEEKS, same_slot_median
from features.cube.assemble import _pool
from features.cube.pandas_engine import _hour_overlaps
from features.cube.period import HOUR, local_parts
from features.ingest.append import live_partitions
from features.store import Store, atomic_file

#: the live cube rows, one file per appended file (named as its presence partition)
LIVE_CUBE = "live/cube"
#: the presence columns the window keeps
WINDOW_COLUMNS = ["zone_id", "start", "slot_minutes", "present", "residents", "visitors"]
#: the cube columns the live update writes
CUBE_COLUMNS = [
    "zone_id",
    "hour",
    "local_hour",
    "dow",
    "local_date",
    "present",
    "present_missing",
    "present_baseline",
    "present_ratio",
    "residents",
    "visitors",
]
#: history kept: the reference's 8 weeks, a day for the local calendar, a day of late files
LOOKBACK = pd.Timedelta(days=7 * LOOKBACK_WEEKS + 2)


def _live_slots(st: Store, ledger: list[dict[str, Any]] | None) -> list[tuple[Path, pd.Timestamp]]:
    """Each live partition (in the order appended) with its newest slot: from the ledger's
    entries when given (no partition read), else from the partitions themselves."""
    if ledger is not None:
        return [
            (st.root / e["partition"], max(pd.Timestamp(s) for s in e["slots"]))
            for e in ledger
            if e.get("status") == "ingested" and e.get("partition") and e.get("slots")
        ]
    out = []
    for p in live_partitions(st):
        s = pd.read_parquet(p, columns=["start"])["start"]
        if len(s):
            out.append((p, pd.Timestamp(s.max())))
    return out


def _newest(st: Store, live: list[tuple[Path, pd.Timestamp]]) -> pd.Timestamp | None:
    """The newest slot start of the store (validated presence's statistics, live partitions)."""
    from features.cube.period import min_max

    hi = None
    if st.has("presence"):
        mm = min_max(str(st.validated_path("presence")), "start")
        hi = pd.Timestamp(mm[1]) if mm is not None and mm[1] is not None else None
    for _p, t in live:
        hi = t if hi is None or t > hi else hi
    return hi


@dataclass
class LiveWindow:
    """The presence of the lookback window and the store's events (zone_id, start, end)."""

    zone_ids: list[str]
    tz: str
    rows: pd.DataFrame
    events: pd.DataFrame

    @classmethod
    def load(
        cls,
        st: Store,
        *,
        zone_ids: list[str],
        tz: str,
        ledger: list[dict[str, Any]] | None = None,
    ) -> LiveWindow:
        """Read the lookback window once (the runner's start). With the ledger's entries, only
        the live partitions holding slots of the lookback are read."""
        live = _live_slots(st, ledger)
        newest = _newest(st, live)
        lo = newest - LOOKBACK if newest is not None else None
        parts = [p for p, t in live if lo is None or t >= lo]
        rows = _read_window(st, lo, parts)
        events = pd.DataFrame({"zone_id": [], "start": [], "end": []})
        if st.has("events"):
            ev = st.validated("events", columns=["zone_id", "start", "end"])
            assert ev is not None
            events = ev.dropna(subset=["start"]).assign(zone_id=ev["zone_id"].astype(str))
        return cls(zone_ids, tz, _clean(rows, zone_ids), events.reset_index(drop=True))

    # -- what the window holds ----------------------------------------------------------------
    @property
    def newest(self) -> pd.Timestamp | None:
        return pd.Timestamp(self.rows["start"].max()) if len(self.rows) else None

    def add(self, frame: pd.DataFrame) -> None:
        """Add an appended file's rows (they replace the same slots); drop what is too old."""
        new = _clean(_with_columns(frame, WINDOW_COLUMNS), self.zone_ids)
        new = new.drop_duplicates(["zone_id", "start"], keep="last")
        old = self.rows
        t_old = pd.DatetimeIndex(old["start"]).as_unit("ns").asi8
        t_new = pd.DatetimeIndex(new["start"]).as_unit("ns").asi8
        newest = max(t_old.max(initial=t_new.max(initial=0)), t_new.max(initial=0))
        keep = t_old >= newest - LOOKBACK.value
        same = np.isin(t_old, t_new)  # only rows of the new file's slots can be replaced
        if same.any():
            z = old["zone_id"].cat.codes.to_numpy()
            key_old = z[same].astype(np.int64) * 2**40 + t_old[same] // 10**9
            key_new = new["zone_id"].cat.codes.to_numpy().astype(np.int64) * 2**40 + t_new // 10**9
            keep[np.flatnonzero(same)[np.isin(key_old, key_new)]] = False
        self.rows = pd.concat([old[keep], new], ignore_index=True)

    def between(self, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        """The rows with lo <= start < hi."""
        s = self.rows["start"]
        return self.rows[(s >= lo) & (s < hi)]

    # -- the cube's newest hours ---------------------------------------------------------------
    def cube_rows(self, hours: list[pd.Timestamp]) -> pd.DataFrame:
        """Every zone's cube row (:data:`CUBE_COLUMNS`) at each of ``hours`` (UTC hour starts)."""
        targets = np.unique(np.array([int(h.value // 10**9 // HOUR) for h in hours], np.int64))
        a1 = int(targets.max()) + 1
        w0 = int(targets.min()) - (LOOKBACK_WEEKS * 7 + 1) * 24
        zi = pd.Index(self.zone_ids)
        Z, W = len(zi), a1 - w0
        dense = {c: np.full((Z, W), np.nan) for c in ("present", "residents", "visitors")}
        t = pd.DatetimeIndex(self.rows["start"]).as_unit("s").asi8
        r = self.rows[_near_weeks(t, targets * HOUR, lo=w0 * HOUR)]
        s = pd.DatetimeIndex(r["start"]).as_unit("s").asi8.astype(float)
        e = s + r["slot_minutes"].to_numpy(float) * 60
        row, k, w = _hour_overlaps(s, e, w0, a1)
        z = r["zone_id"].cat.codes.to_numpy().astype(np.int64)[row]
        for c in dense:
            v = r[c].to_numpy(float)[row]
            ok = ~np.isnan(v)
            flat = z[ok] * W + (k[ok] - w0)
            num = np.bincount(flat, weights=v[ok] * w[ok], minlength=Z * W)
            den = np.bincount(flat, weights=w[ok], minlength=Z * W)
            with np.errstate(invalid="ignore", divide="ignore"):
                dense[c] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan).reshape(Z, W)
        day, lh, dow = local_parts(np.arange(w0, a1, dtype=np.int64) * HOUR, self.tz)
        usable = np.where(self._event_hours(zi, w0, a1), np.nan, dense["present"])
        dayidx = day - day[0]
        pool = _pool(usable, dayidx, lh, int(day[-1] - day[0]) + 1, 24)
        j = targets - w0
        base = same_slot_median(pool, target_days=dayidx[j], target_slots=lh[j].astype(np.int64))
        present = dense["present"][:, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(base > 0, present / np.where(base > 0, base, 1.0), np.nan)
        n = len(j)
        return pd.DataFrame(
            {
                "zone_id": np.repeat(np.asarray(zi, dtype=object), n),
                "hour": pd.to_datetime(np.tile(targets * HOUR, Z), unit="s", utc=True),
                "local_hour": np.tile(lh[j], Z).astype(np.int8),
                "dow": np.tile(dow[j], Z).astype(np.int8),
                "local_date": pd.to_datetime(np.tile(day[j], Z), unit="D").date,
                "present": present.ravel(),
                "present_missing": np.isnan(present).ravel(),
                "present_baseline": base.ravel(),
                "present_ratio": ratio.ravel(),
                "residents": dense["residents"][:, j].ravel(),
                "visitors": dense["visitors"][:, j].ravel(),
            }
        )

    def _event_hours(self, zi: pd.Index, w0: int, a1: int) -> np.ndarray:
        """(zones, hours) an event, or its +-3 h margin, runs in the zone (the cube's rule)."""
        flag = np.zeros((len(zi), a1 - w0), dtype=bool)
        ev = self.events
        if ev.empty:
            return flag
        s = pd.DatetimeIndex(ev["start"]).as_unit("s").asi8.astype(float)
        e = np.fmax(pd.DatetimeIndex(ev["end"]).as_unit("s").asi8.astype(float), s + 1)
        near = (e >= (w0 - EVENT_MARGIN_HOURS - 1) * HOUR) & (s < (a1 + EVENT_MARGIN_HOURS) * HOUR)
        ev, s, e = ev[near], s[near], e[near]
        k0 = np.floor(s / HOUR).astype(np.int64) - EVENT_MARGIN_HOURS - w0
        k1 = np.ceil(e / HOUR).astype(np.int64) + EVENT_MARGIN_HOURS - w0
        z = zi.get_indexer(ev["zone_id"])
        for zz, lo, hi in zip(z, np.maximum(k0, 0), np.minimum(k1, a1 - w0)):
            if zz >= 0 and hi > lo:
                flag[zz, lo:hi] = True
        return flag

    def write_cube(self, st: Store, name: str, hours: list[pd.Timestamp]) -> Path:
        """Write the cube rows of ``hours`` to ``live/cube/<name>.parquet`` (atomic)."""
        path = st.root / LIVE_CUBE / f"{name}.parquet"
        with atomic_file(path) as tmp:
            self.cube_rows(hours).to_parquet(tmp, index=False)
        return path


def _near_weeks(t: np.ndarray, targets: np.ndarray, *, lo: int) -> np.ndarray:
    """Rows (UTC seconds ``t``) within 2 h of a whole number of weeks before one of ``targets``
    (UTC seconds), from ``lo``: the only rows that reach the targets' hours or their reference
    (a summer-time change moves the local clock by 1 h, a slot starts up to 1 h before its
    hour)."""
    week, margin = 7 * 86_400, 2 * 3_600
    ok = np.zeros(len(t), dtype=bool)
    for target in targets:
        d = int(target) - t
        r = d % week
        ok |= (d >= -margin) & ((r <= margin) | (r >= week - margin))
    return ok & (t >= lo)


def _read_window(st: Store, start: pd.Timestamp | None, live: list[Path]) -> pd.DataFrame:
    """The store's presence from ``start`` (validated, then the live partitions ``live`` in
    order; a later row of a slot replaces an earlier one)."""
    import pyarrow.parquet as pq

    paths = [st.validated_path("presence")] if st.has("presence") else []
    parts = []
    for p in paths + live:
        have = set(pq.read_schema(p).names)
        cols = [c for c in WINDOW_COLUMNS if c in have]
        filters = [("start", ">=", start)] if start is not None else None
        parts.append(
            _with_columns(pd.read_parquet(p, columns=cols, filters=filters), WINDOW_COLUMNS)
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in WINDOW_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    return out.drop_duplicates(["zone_id", "start"], keep="last").reset_index(drop=True)


def _with_columns(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in cols:
        if c not in out.columns:
            out[c] = 60 if c == "slot_minutes" else np.nan
    return out[cols]


def _clean(rows: pd.DataFrame, zone_ids: list[str]) -> pd.DataFrame:
    """The window's dtypes (zone_id categorical over the study's zones); other zones dropped."""
    rows = rows.assign(zone_id=pd.Categorical(rows["zone_id"].astype(str), categories=zone_ids))
    rows["start"] = pd.to_datetime(rows["start"], utc=True)
    for c in ("present", "residents", "visitors"):
        rows[c] = pd.to_numeric(rows[c], errors="coerce").astype(float)
    rows["slot_minutes"] = rows["slot_minutes"].fillna(60).astype(int)
    return rows[rows["zone_id"].notna().to_numpy()].reset_index(drop=True)


def live_cube(
    st: Store,
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """The cube of ``[start, end)`` with the live rows laid over it (a later file's row of an
    hour replaces an earlier one; hours the cube does not hold yet are added)."""
    from features.timeutil import as_utc

    cols = columns or CUBE_COLUMNS
    base = st.cube(columns=cols, start=start, end=end) if (st.root / "cube").exists() else None
    parts = sorted((st.root / LIVE_CUBE).glob("[0-9]*.parquet"))
    live = [pd.read_parquet(p) for p in parts]
    lv = pd.concat(live, ignore_index=True) if live else pd.DataFrame(columns=CUBE_COLUMNS)
    if start is not None:
        lv = lv[lv["hour"] >= as_utc(start)]
    if end is not None:
        lv = lv[lv["hour"] < as_utc(end)]
    lv = lv.drop_duplicates(["zone_id", "hour"], keep="last")
    keep = [c for c in (base.columns if base is not None else cols) if c in lv.columns]
    if base is None or base.empty:
        return lv[keep].sort_values(["zone_id", "hour"]).reset_index(drop=True)
    out = base.set_index(["zone_id", "hour"])
    upd = lv[keep].set_index(["zone_id", "hour"])
    out = out.reindex(out.index.union(upd.index))
    out.update(upd)
    return out.reset_index().sort_values(["zone_id", "hour"]).reset_index(drop=True)
