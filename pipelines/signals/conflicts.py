"""Event conflicts: events overlapping in time, close to each other or sharing transit stops."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.geo import haversine_m
from pipelines.signals.panel import fmt_number, record, records_frame


def event_conflicts(
    events: pd.DataFrame,
    *,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    max_distance_m: float = 1000.0,
    stops: pd.DataFrame | None = None,
    stop_radius_m: float = 400.0,
) -> pd.DataFrame:
    """Events that overlap in time and are close to each other or share transit stops.

    Two events conflict when their ``[start, end)`` intervals overlap within the period and
    either their venues are at most ``max_distance_m`` apart or some transit stop lies within
    ``stop_radius_m`` of both (their crowds use the same stop). These are planning signals, not
    tests: p and q values are NaN and they rank after the statistical signals.

    Parameters
    ----------
    events
        event_id, name, start, end, zone_id, latitude, longitude, expected_attendance.
    period_start, period_end
        The period (UTC).
    max_distance_m, stop_radius_m
        Distance rules.
    stops
        Optional stops (stop_id, stop_name, stop_lat, stop_lon).

    Returns
    -------
    pandas.DataFrame
        Rows with ``type="event_conflict"``, ``observed`` = combined expected attendance.

    References
    ----------
    Observatory practice of "incompatible events" calendars; distances by the haversine formula
    (Sinnott, R. W. 1984, Virtues of the haversine, Sky & Telescope 68(2), 159).
    """
    ev = _events_in_period(events, period_start, period_end)
    if ev is None:
        return records_frame([])
    lat = ev["latitude"].to_numpy(float)
    lon = ev["longitude"].to_numpy(float)
    dist = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    near_stops, stop_names = _stops_near(lat, lon, stops, radius_m=stop_radius_m)
    starts, ends = ev["start"].to_numpy(), ev["end"].to_numpy()
    att = pd.to_numeric(ev.get("expected_attendance"), errors="coerce").fillna(0).to_numpy(float)
    records = []
    for i in range(len(ev)):
        for j in range(i + 1, len(ev)):
            s, e = max(starts[i], starts[j]), min(ends[i], ends[j])
            if not s < e:
                continue
            shared = sorted(near_stops[i] & near_stops[j])
            close = dist[i, j] <= max_distance_m
            if not (close or shared):
                continue
            reasons = [f"{dist[i, j]:.0f} m apart"] if close else []
            if shared:
                reasons.append(
                    "sharing stop " + ", ".join(stop_names.get(x, x) for x in shared[:3])
                )
            records.append(
                _conflict(
                    ev.iloc[i],
                    ev.iloc[j],
                    pd.Timestamp(s),
                    pd.Timestamp(e),
                    attendance=att[i] + att[j],
                    reasons=reasons,
                    distance_m=float(dist[i, j]),
                    shared=shared,
                )
            )
    return records_frame(records)


def _events_in_period(
    events: pd.DataFrame | None, period_start: pd.Timestamp, period_end: pd.Timestamp
) -> pd.DataFrame | None:
    """The events overlapping the period (start and end in UTC); None when fewer than two."""
    if events is None or len(events) < 2:
        return None
    ev = events.copy()
    ev["start"] = pd.to_datetime(ev["start"], utc=True)
    ev["end"] = pd.to_datetime(ev["end"], utc=True)
    ps, pe = pd.Timestamp(period_start), pd.Timestamp(period_end)
    ev = ev[(ev["start"] < pe) & (ev["end"] > ps)].reset_index(drop=True)
    return ev if len(ev) >= 2 else None


def _stops_near(
    lat: np.ndarray, lon: np.ndarray, stops: pd.DataFrame | None, *, radius_m: float
) -> tuple[list[set[str]], dict[str, str]]:
    """The stop ids within ``radius_m`` of each venue, and the stops' names by id."""
    near: list[set[str]] = [set() for _ in range(len(lat))]
    if stops is None or not len(stops):
        return near, {}
    sd = haversine_m(
        lat[:, None],
        lon[:, None],
        stops["stop_lat"].to_numpy(float)[None, :],
        stops["stop_lon"].to_numpy(float)[None, :],
    )
    ids = stops["stop_id"].astype(str).to_numpy()
    names = stops.get("stop_name", stops["stop_id"]).astype(str).to_numpy()
    for i in range(len(lat)):
        near[i] = set(ids[sd[i] <= radius_m])
    return near, dict(zip(ids, names, strict=True))


def _conflict(
    a: pd.Series,
    b: pd.Series,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    attendance: float,
    reasons: list[str],
    distance_m: float,
    shared: list[str],
) -> dict:
    """The record of two conflicting events (no p value: a planning signal)."""
    return record(
        "event_conflict",
        detector="event_conflict",
        zones=list(dict.fromkeys([str(a["zone_id"]), str(b["zone_id"])])),
        start=start,
        end=end,
        observed=attendance,
        expected=np.nan,
        p_value=np.nan,
        explanation=f"Events {a.get('name', a['event_id'])} and {b.get('name', b['event_id'])} "
        f"overlap from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, "
        f"{' and '.join(reasons)}, {fmt_number(attendance)} expected in all.",
        events=[str(a["event_id"]), str(b["event_id"])],
        distance_m=distance_m,
        shared_stops=shared,
    )
