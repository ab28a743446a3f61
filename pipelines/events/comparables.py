"""Comparable past events: which they are, the crowd learnt from them, and what happened there.

A past event is comparable when it has the same category, an attendance within a factor
``comparable_size_ratio`` and a local start within ``comparable_hour_window`` hours
(:func:`find_comparables`). Its observed presence above the reference, per attendee and hour by
hour relative to its start and end, gives the uplift of the event briefed (:func:`learn_crowd`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.events.history import History, as_history, observed_uplift, reference
from pipelines.events.spec import BriefParams, EventSpec, num_or_none, spec_from_row
from pipelines.events.timeline import HOUR, attendance_curve, event_hours, phase_keys


def _hour_gap(a: int, b: int) -> int:
    d = abs(int(a) - int(b)) % 24
    return min(d, 24 - d)


def find_comparables(
    events: pd.DataFrame | None, ev: EventSpec, tz: str, params: BriefParams
) -> pd.DataFrame:
    """Past events of the same category, similar size and similar local start hour, best first."""
    if events is None or events.empty or ev.attendance <= 0:
        return pd.DataFrame()
    e = events[(events["event_id"].astype(str) != ev.event_id)].copy()
    e = e[e["category"].astype(str).str.strip().str.lower() == ev.category.strip().lower()]
    e = e[pd.to_datetime(e["end"], utc=True) <= ev.start]
    e = e[e["expected_attendance"] > 0]
    if e.empty:
        return e
    ratio = e["expected_attendance"].astype(float) / ev.attendance
    r = params.comparable_size_ratio
    e = e[(ratio >= 1 / r) & (ratio <= r)]
    own = ev.start.tz_convert(tz).hour
    gaps = (
        pd.to_datetime(e["start"], utc=True)
        .dt.tz_convert(tz)
        .dt.hour.map(lambda x: _hour_gap(x, own))
    )
    e = e[gaps <= params.comparable_hour_window]
    if e.empty:
        return e
    e["size_gap"] = np.abs(np.log(e["expected_attendance"].astype(float) / ev.attendance))
    e["hour_gap"] = gaps[e.index]
    e["score"] = e["size_gap"] + e["hour_gap"] / max(params.comparable_hour_window, 1)
    return e.sort_values(["score", "start"], ascending=[True, False]).head(params.max_comparables)


def _key_lookup(keys: list[tuple[str, int]], values: np.ndarray) -> dict[tuple[str, int], float]:
    return {k: float(v) for k, v in zip(keys, values, strict=False) if np.isfinite(v)}


def _align(table: dict[tuple[str, int], float], key: tuple[str, int]) -> float:
    if key in table:
        return table[key]
    if key[0] == "during":
        during = [k for k in table if k[0] == "during"]
        if during:
            last = max(during, key=lambda k: k[1])
            if key[1] > last[1]:
                return table[last]
    return float("nan")


def events_around(
    events: pd.DataFrame | None, ev: EventSpec, hours: pd.DatetimeIndex, bp: BriefParams
) -> list[EventSpec]:
    """Other events whose arrival-to-departure window overlaps ``hours``."""
    if events is None or events.empty or len(hours) == 0:
        return []
    s = pd.to_datetime(events["start"], utc=True) - pd.Timedelta(hours=bp.hours_before)
    e = pd.to_datetime(events["end"], utc=True) + pd.Timedelta(hours=bp.hours_after)
    hit = events[
        (s < hours[-1] + HOUR) & (e > hours[0]) & (events["event_id"].astype(str) != ev.event_id)
    ]
    return [spec_from_row(r) for _, r in hit.iterrows()]


@dataclass(frozen=True)
class LearntCrowd:
    """An event's crowd above the reference on the brief's hours, and how it was obtained.

    Attributes
    ----------
    crowd, ring_crowd
        People above the reference in the event's zone and in each zone of its ring.
    method, method_text
        ``comparables`` or ``attendance curve``, and the method in words.
    gaps
        Hours the comparables did not cover (filled from the attendance curve).
    comparables
        What happened at each comparable (see :func:`comparable_summary`).
    """

    crowd: np.ndarray
    ring_crowd: np.ndarray
    method: str
    method_text: str
    gaps: int
    comparables: list[dict[str, Any]]


def _uplift_tables(
    comps: pd.DataFrame,
    comp_zones: dict[str, list[str]],
    hist: History,
    tz: str,
    bp: BriefParams,
    *,
    summarise: bool,
) -> tuple[list[dict], list[dict], list[dict]]:
    """Per comparable with observed presence, its uplift per attendee by phase in its zone and
    its ring; and the comparables' summaries."""
    venue_table: list[dict] = []
    ring_table: list[dict] = []
    summaries: list[dict] = []
    have_presence = hist.cube is not None and "present" in hist.cube.columns
    for _, c in comps.iterrows():
        cs = pd.Timestamp(c["start"]).tz_convert("UTC")
        ce = pd.Timestamp(c["end"]).tz_convert("UTC")
        cz = str(c["zone_id"])
        used = False
        if have_presence:
            ch = event_hours(cs, ce, before=bp.hours_before, after=bp.hours_after)
            ck = phase_keys(ch, cs, ce)
            att = float(c["expected_attendance"])
            up = observed_uplift(hist, [cz], ch, tz, bp.baseline_weeks)
            if np.isfinite(up).sum() >= max(1, len(ch) // 2):
                used = True
                venue_table.append(_key_lookup(ck, up / att))
                rup = observed_uplift(hist, comp_zones.get(cz, []), ch, tz, bp.baseline_weeks)
                ring_table.append(_key_lookup(ck, rup / att))
        if summarise:
            summaries.append(
                comparable_summary(c, hist, cz, comp_zones.get(cz, []), cs, ce, tz, bp, used=used)
            )
    return venue_table, ring_table, summaries


def learn_crowd(
    ev: EventSpec,
    hours: pd.DatetimeIndex,
    comps: pd.DataFrame,
    comp_zones: dict[str, list[str]],
    hist: History,
    tz: str,
    bp: BriefParams,
    *,
    summarise: bool = True,
) -> LearntCrowd:
    """An event's crowd above the reference, in its zone and in each ring zone, on ``hours``.

    From its comparables (median per-attendee uplift, hour by hour relative to start and end)
    when some have observed presence, else from the attendance curve (nothing in the ring).
    """
    sp = bp.staffing
    keys = phase_keys(hours, ev.start, ev.end)
    share, _ = attendance_curve(hours, ev.start, ev.end, sp)
    curve_crowd = ev.attendance * share
    venue_table, ring_table, summaries = _uplift_tables(
        comps, comp_zones, hist, tz, bp, summarise=summarise
    )
    if venue_table:
        per_att = np.array([_median_at(venue_table, k) for k in keys])
        gaps = ~np.isfinite(per_att)
        # an event adds people: a learnt uplift below zero (noise around the reference in the
        # hours before and after) is taken as none
        crowd = np.maximum(np.where(gaps, curve_crowd, per_att * ev.attendance), 0.0)
        ring_att = np.array([_median_at(ring_table, k) for k in keys])
        ring_crowd = np.maximum(np.where(np.isfinite(ring_att), ring_att, 0.0) * ev.attendance, 0.0)
        text = (
            f"uplift learnt from {len(venue_table)} comparable past event(s) of category {ev.category!r} "
            "(observed present − reference per attendee, hour by hour relative to start and end, "
            f"median) × {ev.attendance:,.0f} attendees"
        ).replace(",", " ")
        return LearntCrowd(crowd, ring_crowd, "comparables", text, int(gaps.sum()), summaries)
    text = (
        f"attendance curve: {ev.attendance:,.0f} attendees, arrivals over {sp.entry_window_minutes:g} min "
        f"peaking {sp.arrival_peak_minutes_before:g} min before the start, departures within "
        f"{sp.departure_window_minutes:g} min of the end"
    ).replace(",", " ")
    return LearntCrowd(curve_crowd, np.zeros(len(hours)), "attendance curve", text, 0, summaries)


def _median_at(tables: list[dict[tuple[str, int], float]], key: tuple[str, int]) -> float:
    vals = np.array([_align(t, key) for t in tables], dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else float("nan")


def comparable_summary(c, hist, zone_id, ring, start, end, tz, bp, *, used: bool) -> dict[str, Any]:
    """What happened at a comparable past event: presence peak and incidents against usual."""
    start, end = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    out: dict[str, Any] = {
        "event_id": str(c["event_id"]),
        "name": str(c["name"]),
        "start_local": start.tz_convert(tz).isoformat(),
        "end_local": end.tz_convert(tz).isoformat(),
        "zone_id": zone_id,
        "expected_attendance": float(c["expected_attendance"]),
        "used_for_uplift": used,
        "present_peak": None,
        "present_peak_local": None,
        "reference_at_peak": None,
        "incidents_observed": None,
        "incidents_usual": None,
    }
    hist = as_history(hist)
    cube = hist.cube
    if cube is None or "present" not in cube.columns:
        return out
    hours = pd.date_range(start.floor("h"), end.ceil("h") - HOUR, freq="h", tz="UTC")
    obs = pd.Series(hist.observed(zone_id, hours), index=hours)
    if obs.notna().any():
        h = obs.idxmax()
        ref, _ = reference(hist, zone_id, pd.DatetimeIndex([h]), tz, weeks=bp.baseline_weeks)
        out.update(
            present_peak=float(obs[h]),
            present_peak_local=h.tz_convert(tz).isoformat(),
            reference_at_peak=num_or_none(ref[0]),
        )
    if "incidents" in cube.columns:
        area = cube[cube["zone_id"].isin([zone_id, *ring])]
        during = area[area["hour"].isin(hours)]
        out["incidents_observed"] = int(during["incidents"].sum())
        quiet = area if "events_active" not in area else area[area["events_active"].fillna(0) == 0]
        quiet = quiet[~quiet["hour"].isin(hours)]
        per = quiet.groupby(["zone_id", "dow", "local_hour"])["incidents"].mean()
        loc = hours.tz_convert(tz)
        usual = 0.0
        for z in [zone_id, *ring]:
            for h in loc:
                usual += float(per.get((z, h.dayofweek, h.hour), 0.0))
        out["incidents_usual"] = usual
    return out
