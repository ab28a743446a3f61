"""What the API reads from a store, checked and cached; every answer is published here.

:class:`StoreView` holds what is read on every request (zones, the cube's metadata, the cube as
a pyarrow dataset, the suppression threshold) and re-reads it when the cube is rebuilt (its
``_meta.json`` changes). Requests that would read much (``/presence`` over months) are read one
month partition at a time and handed on record by record (:meth:`StoreView.presence_records`),
never whole. Every record leaves through :func:`pipelines.reports.publish.suppress_json`
(counts below k read ``"<k"``, figures that would rebuild them ``"c"``), as in ``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from features.errors import InputError, StoreError
from features.store import Store
from pipelines.events.result import Brief
from pipelines.export.frames import (
    HOUR_FIELDS,
    brief_keys,
    guard_record,
    signal_run,
    signal_table,
    withhold_parts,
    zones_frame,
    zones_layer,
)
from pipelines.export.indicators import (
    INCIDENT_FIGURES,
    PRESENCE_FIGURES,
    SPLIT_FIGURES,
    WHO_FIGURES,
    resolve_period,
    zone_indicators,
)
from pipelines.export.origins import origin_records, period_weeks
from pipelines.reports.publish import suppress_json, suppress_text
from pipelines.signals.period import Period

#: the cube's columns behind ``/presence`` and their names in the answer
PRESENCE_COLUMNS = {
    "present": "present",
    "present_baseline": "reference",
    "present_ratio": "ratio",
    "residents": "residents",
    "visitors": "visitors",
    "visitor_share": "visitor_share",
    "resident_ratio": "resident_ratio",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KEY = re.compile(r"^[\w.-]{1,128}$")


class NotFound(StoreError):
    """What the request names is not in the store (404)."""


class StoreView:
    """A read-only view of a store for the API (thread-safe; refreshed on a cube rebuild)."""

    def __init__(self, store: str | Path | Store) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._state: dict[str, Any] = {}

    def _meta_stamp(self) -> tuple[int, int]:
        for path in (
            self.store.cube_dir / Store.CUBE_META_INSIDE,
            self.store.root / "cube_meta.json",
        ):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            return (st.st_mtime_ns, st.st_ino)
        return (0, 0)

    def state(self) -> dict[str, Any]:
        """Zones, cube metadata, the cube dataset and k (read again after a cube rebuild)."""
        stamp = self._meta_stamp()
        with self._lock:
            if stamp != self._stamp or not self._state:
                meta = self.store.cube_meta()
                part = ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive")
                zones = zones_frame(self.store)
                self._state = {
                    "meta": meta,
                    "tz": meta.get("timezone") or self.store.timezone,
                    "k": self.store.suppression_k,
                    "zones": zones,
                    "zone_ids": set(zones["zone_id"]),
                    "cube": ds.dataset(self.store.cube_dir, format="parquet", partitioning=part),
                }
                self._stamp = stamp
            return self._state

    @property
    def k(self) -> int:
        return int(self.state()["k"])

    # -- checks ---------------------------------------------------------------------------------
    def check_zone(self, zone: str) -> str:
        """``zone`` when the store has it (NotFound otherwise)."""
        if zone not in self.state()["zone_ids"]:
            raise NotFound(f"unknown zone {zone!r}; GET /zones lists the zones of the store.")
        return zone

    def period(self, text: str | None) -> Period:
        """The period named by ``text`` inside the data (InputError otherwise)."""
        return resolve_period(self.store, text)

    def instant(self, text: str, *, name: str, end: bool = False) -> pd.Timestamp:
        """A UTC instant from a local date (``2026-11-09``: its midnight; with ``end``, the
        next midnight, so the day is included) or an ISO time (naive: local)."""
        tz = self.state()["tz"]
        try:
            if _DATE.match(text):
                day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
                t = pd.Timestamp(day).tz_localize(tz, nonexistent="shift_forward", ambiguous=False)
            else:
                t = pd.Timestamp(text)
                t = (
                    t.tz_localize(tz, nonexistent="shift_forward", ambiguous=False)
                    if t.tzinfo is None
                    else t
                )
        except (ValueError, TypeError):
            raise InputError(
                f"{name}={text!r}: expected a local date such as 2026-11-09 or an ISO time such "
                "as 2026-11-09T18:00:00+01:00."
            ) from None
        return t.tz_convert("UTC")

    def window(self, start: str | None, end: str | None) -> tuple[pd.Timestamp, pd.Timestamp]:
        """[from, to) in UTC, inside the data; default the last 7 days of data."""
        meta = self.state()["meta"]
        d0, d1 = pd.Timestamp(meta["start"]), pd.Timestamp(meta["end"])
        b = self.instant(end, name="to", end=True) if end else d1
        a = self.instant(start, name="from") if start else max(d0, b - pd.Timedelta(days=7))
        if b <= d0 or a >= d1:
            raise InputError(
                f"from={start or a.isoformat()!r} to={end or b.isoformat()!r} is outside the data "
                f"({d0.isoformat()} to {d1.isoformat()})."
            )
        if b <= a:
            raise InputError(f"from={start!r} is not before to={end!r}.")
        return max(a, d0), min(b, d1)

    # -- answers --------------------------------------------------------------------------------
    def presence_records(
        self, zone: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Iterator[dict[str, Any]]:
        """The zone's presence slot by slot over [start, end), published, one month partition
        read at a time."""
        st = self.state()
        k, tz, cube = st["k"], st["tz"], st["cube"]
        have = [c for c in PRESENCE_COLUMNS if c in cube.schema.names]
        months = pd.period_range(
            start.tz_convert(None), (end - pd.Timedelta(seconds=1)).tz_convert(None), freq="M"
        )
        a, b = (
            pa.scalar(t.to_pydatetime(), type=pa.timestamp("ns", tz="UTC")) for t in (start, end)
        )
        base = (ds.field("zone_id") == zone) & (ds.field("hour") >= a) & (ds.field("hour") < b)
        for month in months:
            table = cube.to_table(
                columns=["hour", *have], filter=base & (ds.field("month") == str(month))
            )
            if table.num_rows == 0:
                continue
            df = table.to_pandas().sort_values("hour")
            local = df["hour"].dt.tz_convert(tz)
            for row, loc in zip(df.itertuples(index=False), local, strict=True):
                rec: dict[str, Any] = {"hour": row.hour.isoformat(), "local": loc.isoformat()}
                for col in have:
                    v = getattr(row, col)
                    rec[PRESENCE_COLUMNS[col]] = None if pd.isna(v) else float(v)
                yield guard_record(withhold_parts(suppress_json(rec, k), k), k)

    def zone_features(self, period: Period | None) -> Iterator[dict[str, Any]]:
        """GeoJSON features of the zones (with their indicators of ``period`` when given)."""
        if period is None:
            gdf = self.state()["zones"]
            keep = [c for c in gdf.columns if c in ("zone_id", "name", "population")]
            gdf = gdf[[*keep, gdf.geometry.name]]
        else:
            gdf = zones_layer(self.store, period, k=self.k, run=self.signals_or_none(period))
        yield from gdf.iterfeatures(na="null", drop_id=True)

    def signals_or_none(self, period: Period):
        """The period's signal run, or None when the signals have not run."""
        return (
            signal_run(self.store, period)
            if self.store.signals_path(period.label).exists()
            else None
        )

    def signals(self, period: Period) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
        """The run's metadata and its published signals (NotFound when not run)."""
        try:
            run = signal_run(self.store, period)
        except StoreError as exc:
            raise NotFound(str(exc)) from None
        head = {
            "period": period.label,
            "first_day": period.first.isoformat(),
            "last_day": period.last.isoformat(),
            "timezone": run.timezone,
            "fdr": run.fdr,
            "n_tests": run.n_tests,
            "n_signals": run.n_signals,
            "k": self.k,
            "notes": [suppress_text(n, self.k) for n in run.notes],
        }
        table = signal_table(run, k=self.k)
        recs = (suppress_json(r, self.k) for r in _records(table))
        return head, recs

    def indicators(self, zone: str, period: Period) -> dict[str, Any]:
        """A zone's indicators of a period, each figure family suppressed on its own, with the
        period's signals that name the zone."""
        k = self.k
        ind = zone_indicators(self.store, period, zones=[zone])
        row = ind.iloc[0].to_dict() if len(ind) else {}
        zones = self.state()["zones"].set_index("zone_id")

        def family(names: tuple[str, ...]) -> dict[str, Any]:
            return withhold_parts(
                suppress_json({n: _num(row.get(n)) for n in names if n in row}, k), k
            )

        who = guard_record(
            {**family(PRESENCE_FIGURES), **family(SPLIT_FIGURES), **family(WHO_FIGURES)}, k
        )
        sig: list[dict[str, Any]] = []
        run = self.signals_or_none(period)
        if run is not None:
            table = signal_table(run, k=k)
            mine = table[table["zones"].map(lambda z: zone in z)]
            sig = [suppress_json(r, k) for r in _records(mine)]
        return {
            "zone_id": zone,
            "name": str(zones.at[zone, "name"]) if "name" in zones.columns else None,
            "period": period.label,
            "first_day": period.first.isoformat(),
            "last_day": period.last.isoformat(),
            "k": k,
            "slots": int(row.get("slots", 0)),
            "presence": family(PRESENCE_FIGURES),
            "residents_visitors": family(SPLIT_FIGURES),
            "who": {c: v for c, v in who.items() if c in WHO_FIGURES},
            "safety": family(INCIDENT_FIGURES),
            "signals_run": run is not None,
            "signals": sig,
        }

    def origins(self, zone: str | None, period: Period) -> dict[str, Any]:
        """The published origins of the period's ISO weeks, for one zone or all
        (:func:`pipelines.export.origins.origin_records`)."""
        try:
            rec = origin_records(
                self.store, period, k=self.k, zones=None if zone is None else [zone]
            )
        except StoreError as exc:
            raise NotFound(str(exc)) from None
        head = {"period": period.label, "weeks": period_weeks(period), "k": self.k, "zone": zone}
        return {**head, "origins": [suppress_json(r, self.k) for r in _records(rec)]}

    def brief_ids(self) -> list[str]:
        return brief_keys(self.store)

    def brief(self, event_id: str) -> dict[str, Any]:
        """An event's brief, published: the event, the hours, the peak staffing with its
        arithmetic, the lamps to repair, notes and limitations (NotFound when not made)."""
        if not _KEY.match(event_id) or event_id not in self.brief_ids():
            raise NotFound(
                f"no brief for event {event_id!r}; GET /briefs lists the briefs made "
                "(`vigie brief EVENT_ID --store DIR` makes one)."
            )
        brief = Brief.load(self.store, event_id)
        if brief is None:  # removed since listed
            raise NotFound(f"no brief for event {event_id!r}.")
        k = self.k
        s = brief.staffing
        parts = {"dps": s.dps, "lanes": s.lanes, "barrier": s.barrier, "egress": s.egress}
        lamps = brief.context.lamps.to_json()
        out = {
            "event": brief.event.to_json(),
            "generated_at": brief.generated_at,
            "presence_method": brief.presence_method,
            "hours": [{c: h.get(c) for c in HOUR_FIELDS} for h in _records(brief.hours_table())],
            "peak": s.to_dict().get("peak"),
            "arithmetic": {n: p.arithmetic for n, p in parts.items() if p is not None},
            "lamps": lamps,
            "notes": [suppress_text(n, k) for n in brief.notes],
            "limitations": [suppress_text(n, k) for n in brief.limitations],
            "k": k,
        }
        return suppress_json(_records_json(out), k)


def _num(v: Any) -> Any:
    return None if v is None or pd.isna(v) else float(v)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (times as ISO text, NaN as None, lists kept)."""
    return [_records_json(r) for r in df.to_dict(orient="records")]


def _records_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _records_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_records_json(v) for v in obj]
    if isinstance(obj, (pd.Timestamp, dt.datetime, dt.date)):
        return obj.isoformat()
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and pd.isna(obj):
        return None
    return obj
