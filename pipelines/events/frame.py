"""The model frame: cube-like rows for the venue and ring zones at the brief's hours.

Where the cube has the row, its columns are kept; elsewhere calendar columns are computed
(darkness, holidays), lamps and weather carried from the cube's history (the latest lamps count;
the mean temperature of that local hour; no rain), and the event's attendance set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from features import calendar as cal
from features.config import default_country
from pipelines.events.spec import EventSpec
from pipelines.events.timeline import HOUR
from pipelines.events.venue import ZoneInfo


def _zone_rows(
    zone_ids: list[str], parts: pd.DataFrame, zone_forecasts: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """One row per zone and hour with the forecast presence."""
    rows = []
    for z in zone_ids:
        f = parts.copy()
        f.insert(0, "zone_id", z)
        f["present"] = zone_forecasts[z]
        rows.append(f)
    return pd.concat(rows, ignore_index=True)


def _with_cube_columns(frame: pd.DataFrame, cube: pd.DataFrame | None) -> pd.DataFrame:
    """The cube's other columns where it has the row (not its incident counts)."""
    if cube is None:
        return frame
    extra = [
        c
        for c in cube.columns
        if c not in frame.columns
        and c not in ("present_missing",)
        and not c.startswith("inc_")
        and c != "incidents"
    ]
    known = cube.set_index(["zone_id", "hour"])[extra]
    idx = pd.MultiIndex.from_frame(frame[["zone_id", "hour"]])
    return pd.concat([frame, known.reindex(idx).reset_index(drop=True)], axis=1)


def _fill_dark(frame: pd.DataFrame, zone_ids: list[str], zones: ZoneInfo) -> None:
    """Darkness at the zones' centroids where the cube has none."""
    need = frame.get("dark")
    if need is not None and not need.isna().any():
        return
    cents = {z: zones.centroid(z) for z in zone_ids}
    lat = frame["zone_id"].map(lambda z: cents[z][0]).to_numpy(dtype=float)
    lon = frame["zone_id"].map(lambda z: cents[z][1]).to_numpy(dtype=float)
    if np.isfinite(lat).all():
        dark = cal.dark_mask(pd.DatetimeIndex(frame["hour"]), lat, lon)
        frame["dark"] = (
            frame["dark"].fillna(pd.Series(dark)).astype(bool) if "dark" in frame else dark
        )


def _fill_holidays(frame: pd.DataFrame, area: Mapping[str, Any], tz: str) -> None:
    """Public and school holidays of the study's country and zone where the cube has none."""
    calendars: tuple[tuple[str, Callable[[Any], Any]], ...] = (
        (
            "holiday",
            lambda d: cal.public_holidays(
                d,
                country=area.get("country") or default_country(tz),
                subdivision=area.get("subdivision"),
            ),
        ),
        ("school_holiday", lambda d: cal.school_holidays(d, zone=area.get("school_zone"))),
    )
    for col, fn in calendars:
        if col not in frame or frame[col].isna().any():
            try:
                vals = fn(frame["local_date"])
            except (ValueError, NotImplementedError):
                vals = np.zeros(len(frame), dtype=bool)
            frame[col] = frame[col].fillna(pd.Series(vals)).astype(bool) if col in frame else vals


def _fill_from_history(frame: pd.DataFrame, cube: pd.DataFrame, limitations: list[str]) -> None:
    """Lamps, ridership and weather carried from the cube's history past its end."""
    for col in ("lamps", "lamps_out"):
        if col in cube.columns and frame[col].isna().any():
            last = cube.dropna(subset=[col]).groupby("zone_id")[col].last()
            frame[col] = frame[col].fillna(frame["zone_id"].map(last)).fillna(0)
    if "ridership_entries" in cube.columns and frame["ridership_entries"].isna().any():
        usual = cube.groupby(["zone_id", "dow", "local_hour"])["ridership_entries"].median()
        key = pd.MultiIndex.from_frame(frame[["zone_id", "dow", "local_hour"]])
        frame["ridership_entries"] = (
            frame["ridership_entries"].fillna(pd.Series(usual.reindex(key).to_numpy())).fillna(0)
        )
    if "temperature_c" in cube.columns and frame["temperature_c"].isna().any():
        by_hour = cube.groupby("local_hour")["temperature_c"].mean()
        frame["temperature_c"] = frame["temperature_c"].fillna(frame["local_hour"].map(by_hour))
        limitations.append(
            "weather at the event is unknown: the mean temperature of each hour and no rain are assumed"
        )
    if "precipitation_mm" in cube.columns:
        frame["precipitation_mm"] = frame["precipitation_mm"].fillna(0.0)


def _set_events(frame: pd.DataFrame, ev: EventSpec, concurrent: list[dict[str, Any]]) -> None:
    """The event (and any concurrent one in the same zones) active during its hours."""
    active = np.zeros(len(frame))
    att = np.zeros(len(frame))
    spans = [(ev.zone_id, ev.start, ev.end, ev.attendance)] + [
        (c["zone_id"], c["start"], c["end"], c["expected_attendance"]) for c in concurrent
    ]
    for zone_id, start, end, attendance in spans:
        on = (frame["zone_id"] == zone_id) & (frame["hour"] < end) & (frame["hour"] + HOUR > start)
        active += on.to_numpy()
        att += on.to_numpy() * float(attendance)
    frame["events_active"] = active.astype(int)
    frame["event_attendance"] = att


def model_frame(
    cube: pd.DataFrame | None,
    *,
    ev: EventSpec,
    ring: list[str],
    parts: pd.DataFrame,
    zone_forecasts: Mapping[str, np.ndarray],
    concurrent: list[dict[str, Any]],
    zones: ZoneInfo,
    area: Mapping[str, Any],
    tz: str,
    limitations: list[str],
) -> pd.DataFrame:
    """Cube-like rows for the venue and ring zones at the brief's hours, with forecast presence.

    Parameters
    ----------
    cube
        The cube's rows of those zones (None without a cube).
    ev, ring
        The event and its ring of zones.
    parts
        The brief's hours with their local parts (:func:`pipelines.events.timeline.local_parts`).
    zone_forecasts
        Forecast presence per zone and hour.
    concurrent
        Concurrent events (:func:`pipelines.events.context.concurrent_events`).
    zones, area, tz
        The study's zones, its ``area`` settings (country, subdivision, school zone), time zone.
    limitations
        Appended to when the weather has to be assumed.
    """
    zone_ids = [ev.zone_id, *ring]
    frame = _with_cube_columns(_zone_rows(zone_ids, parts, zone_forecasts), cube)
    _fill_dark(frame, zone_ids, zones)
    _fill_holidays(frame, area, tz)
    if cube is not None:
        _fill_from_history(frame, cube, limitations)
    if "present_baseline" in frame:
        frame["present_ratio"] = frame["present"] / frame["present_baseline"].replace(0, np.nan)
    frame["present_missing"] = False
    _set_events(frame, ev, concurrent)
    return frame
