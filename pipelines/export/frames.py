"""The layers `vigie export` writes: zones with indicators, signals with geometry, briefs.

Each layer is a GeoDataFrame in EPSG:4326, published: every count of people or incidents goes
through :func:`pipelines.reports.publish.suppress_frame` (the reports' rule, threshold ``k``
of the study), figure family by figure family, so that a suppressed count withholds the
figures that rebuild it (``ratio`` beside ``present``; ``expected`` and ``excess`` beside
``incidents``). A GIS column holds one type: a withheld figure is an empty (null) cell, and the
row's ``suppressed`` text says which figures were withheld and how (``incidents <10;
expected c; excess c``: below k, or withheld because it would rebuild one). Texts with numbers
(signal explanations) go through :func:`pipelines.reports.publish.suppress_text`. No incident
id is ever in a layer: signals carry their test id (``T00318``), briefs their event id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import Point
from shapely.ops import unary_union

from features.errors import StoreError
from features.store import Store
from pipelines.events.result import PUBLISHED_HOUR_COLUMNS, Brief
from pipelines.export.indicators import (
    INCIDENT_FIGURES,
    PRESENCE_FIGURES,
    SPLIT_FIGURES,
    zone_indicators,
)
from pipelines.reports.publish import (
    SECONDARY_LABEL,
    is_count_name,
    suppress_frame,
    suppress_text,
    suppressed_label,
)
from pipelines.signals.period import Period
from pipelines.signals.result import SignalRun

WGS84 = "EPSG:4326"
#: the columns of a signal that are published (those of the weekly report's table, plus ids,
#: detector and the UTC window); p values, statistics and details stay in the store
SIGNAL_FIELDS = (
    "rank",
    "id",
    "type",
    "detector",
    "zones",
    "start",
    "end",
    "start_local",
    "end_local",
    "observed",
    "expected",
    "ratio",
    "q_value",
    "explained",
    "explanation",
)
#: the brief's hour-by-hour columns that are published
HOUR_FIELDS = (
    "hour",
    *PUBLISHED_HOUR_COLUMNS[:2],
    "phase_hour",
    *PUBLISHED_HOUR_COLUMNS[2:],
    "arrivals_peak_per_min",
)


#: counts that add up to another one published beside them (residents + visitors = present):
#: where one is below k, the others are withheld too, or the total would give it back
PARTS = (("residents", "visitors"),)
#: shares and ratios that give a count back with a published figure (visitor_share x present =
#: visitors; peak_vs_population x population = present_peak): withheld where a count they
#: are computed from is withheld
GUARDED = {
    "visitor_share": ("visitors", "present"),
    "peak_vs_population": ("present_peak",),
    "resident_ratio": ("present",),
}


def guard_record(record: dict[str, Any], k: int) -> dict[str, Any]:
    """A published record with its :data:`GUARDED` figures withheld (:data:`SECONDARY_LABEL`)
    where a count behind them reads ``"<k"`` or ``"c"``."""
    out = dict(record)
    for col, behind in GUARDED.items():
        if col in out and any(isinstance(out.get(c), str) for c in behind):
            out[col] = SECONDARY_LABEL
    return out


def withhold_parts(record: dict[str, Any], k: int) -> dict[str, Any]:
    """A published record (``"<k"`` labels in it) with the other parts of a whole withheld
    (:data:`SECONDARY_LABEL`) beside a part below ``k`` (:data:`PARTS`)."""
    label = suppressed_label(k)
    out = dict(record)
    for group in PARTS:
        if any(out.get(c) == label for c in group):
            for c in group:
                if c in out and out[c] is not None and out[c] != label:
                    out[c] = SECONDARY_LABEL
    return out


def published(df: pd.DataFrame, k: int, *, families: Sequence[Iterable[str]]) -> pd.DataFrame:
    """``df`` with its counts suppressed below ``k``, one figure family at a time.

    Each family (counts with the figures derived from them) goes through
    :func:`~pipelines.reports.publish.suppress_frame`; the labels it writes (``"<k"`` and
    ``"c"``) become nulls in numeric columns, and the row's ``suppressed`` column names them.
    Count-named columns outside every family are suppressed as a family of their own. Parts of
    a whole (:data:`PARTS`) are withheld beside a part below ``k`` (:func:`withhold_parts`).
    """
    out = df.copy()
    notes: list[list[str]] = [[] for _ in range(len(out))]
    fams = [[c for c in fam if c in out.columns] for fam in families]
    rest = [c for c in out.columns if is_count_name(c) and not any(c in f for f in fams)]
    for fam in [*fams, rest]:
        if not fam:
            continue
        pub = suppress_frame(df[list(fam)].reset_index(drop=True), k)
        pub = pd.DataFrame([withhold_parts(r, k) for r in pub.to_dict("records")], columns=fam)
        for col in fam:
            labels = pub[col].map(lambda v: isinstance(v, str))
            for i in np.flatnonzero(labels.to_numpy()):
                notes[i].append(f"{col} {pub[col].iloc[i]}")
            out[col] = pd.to_numeric(pub[col].where(~labels), errors="coerce").to_numpy(float)
    _guard(out, notes)
    out["suppressed"] = ["; ".join(n) for n in notes]
    return out


def _guard(out: pd.DataFrame, notes: list[list[str]]) -> None:
    """Withhold the :data:`GUARDED` figures of rows where a count behind them is withheld."""
    for col, behind in GUARDED.items():
        if col not in out.columns:
            continue
        cols = [c for c in behind if c in out.columns]
        hidden = np.array([any(x.split(" ")[0] in cols for x in n) for n in notes], dtype=bool)
        for j in np.flatnonzero(hidden & out[col].notna().to_numpy()):
            notes[j].append(f"{col} {SECONDARY_LABEL}")
        out.loc[hidden, col] = np.nan


def zones_frame(store: Store) -> gpd.GeoDataFrame:
    """The zones in EPSG:4326 (zone_id, name, population where given, geometry)."""
    zones = store.zones()
    if zones.crs is None:
        zones = zones.set_crs(WGS84)
    zones = zones.to_crs(WGS84)
    zones["zone_id"] = zones["zone_id"].astype(str)
    return zones


def signal_run(store: Store, period: Period) -> SignalRun:
    """The signal run of ``period`` from the store (StoreError naming the command to run)."""
    data = store.read_json(store.signals_relpath(period.label))
    if data is None:
        made = sorted(p.stem for p in store.signals_dir.glob("*.json") if p.stem != "evaluation")
        raise StoreError(
            f"{store.root}: no signals for {period.label}; run `vigie signals --store "
            f"{store.root} --week {period.label}` first"
            + (f" (signals made: {', '.join(made)})." if made else ".")
        )
    return SignalRun.from_json(data)


def zone_signal_counts(run: SignalRun | None) -> pd.Series:
    """How many statistical signals (event conflicts left out) name each zone."""
    if run is None or run.signals.empty:
        return pd.Series(dtype=int)
    sig = run.signals[run.signals["type"] != "event_conflict"]
    return sig["zones"].explode().dropna().astype(str).value_counts()


def zones_layer(
    store: Store, period: Period, *, k: int, run: SignalRun | None = None
) -> gpd.GeoDataFrame:
    """Zones with their indicators of ``period`` (:func:`zone_indicators`), published.

    Columns: zone_id, name (and population) of the zones file, period, first_day, last_day,
    the indicators, ``signals`` (statistical signals of the period naming the zone, when the
    signals have run), ``suppressed``, geometry.
    """
    ind = zone_indicators(store, period)
    zones = zones_frame(store)
    if run is not None:
        ind["signals"] = ind["zone_id"].map(zone_signal_counts(run)).fillna(0).astype(int)
    fams = [PRESENCE_FIGURES, SPLIT_FIGURES, INCIDENT_FIGURES, ("present_peak",)]
    pub = published(ind, k, families=fams)
    keep = [c for c in zones.columns if c in ("zone_id", "name", "population", "geometry")]
    out = zones[keep].merge(pub, on="zone_id", how="left")
    out.insert(keep.index("geometry"), "period", period.label)
    out.insert(keep.index("geometry") + 1, "first_day", period.first.isoformat())
    out.insert(keep.index("geometry") + 2, "last_day", period.last.isoformat())
    return gpd.GeoDataFrame(out, geometry="geometry", crs=WGS84)


def _signal_geometry(zone_ids: Any, shapes: pd.Series) -> Any:
    ids = [str(z) for z in (zone_ids if isinstance(zone_ids, (list, tuple, np.ndarray)) else [])]
    geoms = [shapes[z] for z in ids if z in shapes.index]
    return unary_union(geoms) if geoms else None


def signal_table(run: SignalRun, *, k: int) -> pd.DataFrame:
    """The published fields of a run's signals (:data:`SIGNAL_FIELDS`), ranked, counts not yet
    suppressed but explanations already (as in the weekly report's table:
    :func:`~pipelines.reports.publish.suppress_text`, withholding the sentence's ratio and
    other counts too where the observed count is below ``k``); ``zones`` stays a list."""
    sig = run.signals.copy()
    if "rank" in sig:
        sig = sig.sort_values("rank")
    for col in ("start", "end"):
        sig[col] = pd.to_datetime(sig[col], utc=True)
        sig[f"{col}_local"] = sig[col].map(lambda t: t.tz_convert(run.timezone).isoformat())
    observed = pd.to_numeric(sig["observed"], errors="coerce")
    sig["explanation"] = [
        suppress_text(str(text), k, secondary=bool(obs < k))
        for text, obs in zip(sig["explanation"], observed, strict=True)
    ]
    sig["zones"] = sig["zones"].map(lambda z: [str(x) for x in z])
    sig["period"] = run.period.label
    cols = ["period", *[c for c in SIGNAL_FIELDS if c in sig.columns]]
    return sig[cols].reset_index(drop=True)


def signals_layer(store: Store, run: SignalRun, *, k: int) -> gpd.GeoDataFrame:
    """The ranked signals of a run (:func:`signal_table`), each with the union of its zones'
    geometry, published."""
    shapes = zones_frame(store).set_index("zone_id").geometry
    sig = signal_table(run, k=k)
    geometry = [_signal_geometry(z, shapes) for z in sig["zones"]]
    sig["zones"] = sig["zones"].map(",".join)
    pub = published(sig, k, families=[("observed", "expected", "ratio")])
    return gpd.GeoDataFrame(pub, geometry=geometry, crs=WGS84)


def brief_keys(store: Store) -> list[str]:
    """Keys of the briefs in the store (``briefs/<key>.json``), sorted."""
    return sorted(p.stem for p in store.briefs_dir.glob("*.json") if not p.name.startswith("."))


def _venue_point(brief: Brief, shapes: pd.Series) -> Any:
    ev = brief.event
    if ev.latitude is not None and ev.longitude is not None and np.isfinite(ev.latitude):
        return Point(float(ev.longitude), float(ev.latitude))
    shape = shapes.get(ev.zone_id)
    return None if shape is None else shape.representative_point()


def _lamp_points(store: Store) -> dict[str, Point]:
    lamps = store.validated("lamps")
    if lamps is None or not {"lamp_id", "latitude", "longitude"} <= set(lamps.columns):
        return {}
    lamps = lamps.dropna(subset=["latitude", "longitude"])
    return {
        str(i): Point(float(lon), float(lat))
        for i, lat, lon in zip(lamps["lamp_id"], lamps["latitude"], lamps["longitude"], strict=True)
    }


def _brief_rows(brief: Brief, venue: Any, lamps: dict[str, Point]) -> list[dict[str, Any]]:
    ev = brief.event
    head = {"event_id": ev.event_id, "event": ev.name, "venue_zone": ev.zone_id}
    rows = []
    for h in brief.hours_table().to_dict(orient="records"):
        row = {**head, "feature": "hour", **{c: h.get(c) for c in HOUR_FIELDS}}
        row["hour"] = pd.Timestamp(row["hour"]).tz_convert("UTC")
        rows.append({**row, "geometry": venue})
    for r in brief.context.lamps.to_repair:
        rows.append(
            {
                **head,
                "feature": "lamp_to_repair",
                "lamp_id": r.get("lamp_id"),
                "fault_id": r.get("fault_id"),
                "zone_id": r.get("zone_id"),
                "distance_m": r.get("distance_m"),
                "reported_at": pd.Timestamp(r["reported_at"]).tz_convert("UTC")
                if r.get("reported_at") is not None
                else pd.NaT,
                "geometry": lamps.get(str(r.get("lamp_id"))),
            }
        )
    return rows


def briefs_layer(store: Store, *, k: int, period: Period | None = None) -> gpd.GeoDataFrame:
    """Every brief's hour-by-hour staffing (``feature = "hour"``, at the venue) and the lamps to
    repair near it (``feature = "lamp_to_repair"``, at the lamp), published.

    With ``period``, only the briefs of events starting in it.
    """
    keys = brief_keys(store)
    if not keys:
        raise StoreError(
            f"{store.root}: no briefs in the store; run `vigie brief EVENT_ID --store "
            f"{store.root}` first."
        )
    shapes = zones_frame(store).set_index("zone_id").geometry
    lamps = _lamp_points(store)
    tz = store.timezone
    rows: list[dict[str, Any]] = []
    for key in keys:
        brief = Brief.load(store, key)
        if brief is None:
            continue
        if period is not None:
            day = pd.Timestamp(brief.event.start).tz_convert(tz).date()
            if not period.first <= day <= period.last:
                continue
        rows += _brief_rows(brief, _venue_point(brief, shapes), lamps)
    if not rows:
        raise StoreError(
            f"{store.root}: no brief of an event in {period.label if period else 'the store'} "
            f"(briefs made: {', '.join(keys)})."
        )
    df = pd.DataFrame(rows)
    geometry = df.pop("geometry")
    pub = published(df, k, families=[("venue_reference", "venue_present_forecast")])
    return gpd.GeoDataFrame(pub, geometry=list(geometry), crs=WGS84)


def layer_records(gdf: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    """A layer's rows as JSON-ready records (geometry left out)."""
    df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    return json.loads(df.to_json(orient="records", date_format="iso"))
