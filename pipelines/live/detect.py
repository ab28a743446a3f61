"""The newest slots against their reference, zone by zone, and alerts when the gap persists.

The reference of a slot is :func:`features.baseline.same_slot_median` (the cube's rule: the
median of the same zone at the same local weekday and slot of the day over the previous 8
weeks, past values only, event hours +-3 h left out), computed for the new slots only. The
spread is the median absolute deviation of the same past values (the same function over their
absolute deviations), so the robust z of a slot is (present - reference) / scale with
scale = max(1.4826 MAD, sqrt(reference)) (the Poisson floor: a zone whose past weeks happen to
agree is not alarmed by a handful of people). A slot is out of band when |z| >= z_threshold and
present / reference >= ratio_threshold (surge) or <= 1 / ratio_threshold (drop). An event
running in the zone whose brief forecasts the crowd is a second reference: a surge within the
forecast's band is the expected crowd, not an alert.

References
----------
Leys, C. et al. (2013). Detecting outliers: do not use standard deviation around the mean, use
absolute deviation around the median. *J. Experimental Social Psychology* 49(4): 764-766.
Hutwagner, L. et al. (2003). The EARS system. *Journal of Urban Health* 80(1 Suppl 1): i89-i96.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.baseline import EVENT_MARGIN_HOURS, LOOKBACK_WEEKS, same_slot_median
from features.ingest.append import stored_presence
from features.store import Store

#: 1.4826 x MAD estimates a normal standard deviation
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class SlotTest:
    """Every zone's test at one slot: a frame with zone_id, present, reference, scale, ratio,
    z, forecast, event and band ("surge", "drop", "forecast" or "")."""

    slot: pd.Timestamp
    slot_minutes: int
    frame: pd.DataFrame


def _local_index(t: pd.DatetimeIndex, tz: str, slot_minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Local calendar day number and slot of the day of UTC instants."""
    loc = t.tz_convert(tz)
    day = (loc.normalize().tz_localize(None) - pd.Timestamp("1970-01-01")).days.to_numpy()
    slot = ((loc.hour * 60 + loc.minute) // slot_minutes).to_numpy()
    return day.astype(np.int64), slot.astype(np.int64)


def _store_events(st: Store) -> pd.DataFrame:
    """The store's events (zone_id, start, end)."""
    if not st.has("events"):
        return pd.DataFrame({"zone_id": [], "start": [], "end": []})
    ev = st.validated("events", columns=["zone_id", "start", "end"])
    assert ev is not None
    return ev.assign(zone_id=ev["zone_id"].astype(str))


def _event_hours(events: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """Events (zone_id, start, end) overlapping [lo, hi], widened by the reference's margin."""
    ev = events.dropna()
    m = pd.Timedelta(hours=EVENT_MARGIN_HOURS)
    ev = ev.assign(start=ev["start"] - m, end=ev["end"] + m, zone_id=ev["zone_id"].astype(str))
    return ev[(ev["end"] >= lo) & (ev["start"] <= hi)]


def score_slot(
    st: Store,
    slot: pd.Timestamp,
    *,
    zones: list[str],
    tz: str,
    slot_minutes: int,
    forecasts: pd.DataFrame,
    z_threshold: float,
    ratio_threshold: float,
    weeks: int = LOOKBACK_WEEKS,
) -> SlotTest:
    """Test every zone's value at ``slot`` against its reference, reading the store's history
    (:func:`score_history` on the store's presence of the lookback)."""
    lo = slot - pd.Timedelta(days=7 * weeks + 1)
    hist = stored_presence(st, start=lo, end=slot + pd.Timedelta(minutes=slot_minutes))
    return score_history(
        hist,
        _store_events(st),
        slot,
        zones=zones,
        tz=tz,
        slot_minutes=slot_minutes,
        forecasts=forecasts,
        z_threshold=z_threshold,
        ratio_threshold=ratio_threshold,
        weeks=weeks,
    )


def _same_time_of_week(
    start: pd.Series, slot: pd.Timestamp, *, lo: pd.Timestamp, slot_minutes: int
) -> np.ndarray:
    """Rows that can be the slot or one of its past same local times of the week: within 2 h of
    a whole number of weeks before it (a summer-time change moves the local clock by 1 h), in
    [lo, slot]. Only these reach the pool, which gives the same reference as all rows."""
    t = pd.DatetimeIndex(start).as_unit("ns").asi8
    d = slot.as_unit("ns").value - t
    week, margin = 7 * 86_400 * 10**9, 2 * 3_600 * 10**9
    r = d % week
    return (t >= lo.as_unit("ns").value) & (d >= 0) & ((r <= margin) | (r >= week - margin))


def score_history(
    hist: pd.DataFrame,
    events: pd.DataFrame,
    slot: pd.Timestamp,
    *,
    zones: list[str],
    tz: str,
    slot_minutes: int,
    forecasts: pd.DataFrame,
    z_threshold: float,
    ratio_threshold: float,
    weeks: int = LOOKBACK_WEEKS,
) -> SlotTest:
    """Test every zone's value at ``slot`` against its reference (see the module docstring).

    ``hist``: presence rows (zone_id, start, present) covering the lookback and ``slot``;
    ``events``: the store's events (zone_id, start, end).
    """
    lo = slot - pd.Timedelta(days=7 * weeks + 1)
    hist = hist[_same_time_of_week(hist["start"], slot, lo=lo, slot_minutes=slot_minutes)]
    hist = hist[hist["zone_id"].isin(zones)][["zone_id", "start", "present"]].copy()
    hist["zone_id"] = hist["zone_id"].astype(str)
    t = pd.DatetimeIndex(hist["start"])
    ev = _event_hours(events, lo, slot)  # past event hours (and their margin): not usable
    if len(ev) and len(hist):
        m = hist[["zone_id", "start"]].reset_index(drop=True).reset_index().merge(ev, on="zone_id")
        hit = m["index"][(m["start_x"] >= m["start_y"]) & (m["start_x"] < m["end"])]
        hit = hit[(t[hit.to_numpy()] < slot)].to_numpy()
        hist.iloc[hit, hist.columns.get_loc("present")] = np.nan
    zi = pd.Index(zones)
    day, sl = _local_index(t, tz, slot_minutes)
    tday, tsl = _local_index(pd.DatetimeIndex([slot]), tz, slot_minutes)
    d0 = int(tday[0]) - 7 * weeks - 1
    per_day = 1440 // slot_minutes
    pool = np.full((len(zi), 7 * weeks + 2, per_day), np.nan)
    now = t == slot
    past = ~now & (day - d0 >= 0) & (day - d0 < pool.shape[1] - 1)
    zpos = zi.get_indexer(hist["zone_id"])
    pool[zpos[past], day[past] - d0, sl[past]] = hist["present"].to_numpy(float)[past]
    target = (np.array([tday[0] - d0]), tsl)
    ref = same_slot_median(pool, target_days=target[0], target_slots=target[1], weeks=weeks)[:, 0]
    dev = pool.copy()
    for k in range(1, weeks + 1):
        dev[:, target[0][0] - 7 * k, tsl[0]] = np.abs(pool[:, target[0][0] - 7 * k, tsl[0]] - ref)
    mad = same_slot_median(dev, target_days=target[0], target_slots=target[1], weeks=weeks)[:, 0]
    present = np.full(len(zi), np.nan)
    present[zpos[now]] = hist["present"].to_numpy(float)[now]
    frame = _score(zi, present, ref, mad, z_threshold=z_threshold, ratio=ratio_threshold)
    frame = _with_forecast(frame, forecasts, slot, ratio_threshold)
    return SlotTest(slot, slot_minutes, frame)


def _score(zi, present, ref, mad, *, z_threshold: float, ratio: float) -> pd.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(MAD_SCALE * mad, np.sqrt(np.maximum(ref, 1.0)))
        z = (present - ref) / scale
        r = present / ref
    surge = (z >= z_threshold) & (r >= ratio)
    drop = (z <= -z_threshold) & (r <= 1.0 / ratio)
    band = np.where(surge, "surge", np.where(drop, "drop", ""))
    return pd.DataFrame(
        {
            "zone_id": zi.astype(str),
            "present": present,
            "reference": ref,
            "scale": scale,
            "ratio": r,
            "z": z,
            "band": band,
        }
    )


def _with_forecast(
    frame: pd.DataFrame, forecasts: pd.DataFrame, slot: pd.Timestamp, ratio: float
) -> pd.DataFrame:
    """The running events' forecast crowd as a second reference: a surge within
    [forecast / ratio, forecast x ratio] is the expected crowd ("forecast"), not an alert."""
    frame["forecast"] = np.nan
    frame["event"] = ""
    if forecasts.empty:
        return frame
    hour = slot.floor("h")
    now = forecasts[forecasts["hour"] == hour].drop_duplicates("zone_id")
    if now.empty:
        return frame
    m = frame.merge(now[["zone_id", "forecast", "event"]], on="zone_id", how="left")
    frame["forecast"] = m["forecast_y"].to_numpy()
    frame["event"] = m["event_y"].fillna("").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        within = (frame["present"] <= frame["forecast"] * ratio).to_numpy()
    frame.loc[(frame["band"] == "surge").to_numpy() & within, "band"] = "forecast"
    return frame
