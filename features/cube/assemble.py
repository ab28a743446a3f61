"""The shared month builder: dense zone x slot columns from the engines' sparse aggregates.

Whatever the engine, the grid, the reference value (:func:`features.baseline.same_slot_median`),
darkness, the calendar and the daily roll-up are computed here, so the engines differ only in
how they aggregate each source (the engines' contract, :mod:`features.cube`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.baseline import EVENT_MARGIN_HOURS, same_slot_median
from features.cube.indicators import indicator_values
from features.cube.period import HOUR, MonthSpec, local_day, local_parts
from features.cube.plan import Plan


def _sweep(
    n_zones: int, a0: int, a1: int, zi: np.ndarray, k0: np.ndarray, k1: np.ndarray
) -> np.ndarray:
    """Number of intervals [k0, k1) covering each hour of [a0, a1), per zone (a sweep line)."""
    H = a1 - a0
    delta = np.zeros((n_zones, H + 1), dtype=np.int64)
    zi = np.asarray(zi, dtype=np.int64)
    np.add.at(delta, (zi, np.clip(np.asarray(k0, np.int64) - a0, 0, H)), 1)
    np.add.at(delta, (zi, np.clip(np.asarray(k1, np.int64) - a0, 0, H)), -1)
    return np.cumsum(delta[:, :H], axis=1)


def _dense(
    n_zones: int,
    h0: int,
    n_hours: int,
    zi: np.ndarray,
    eh: np.ndarray,
    values: np.ndarray,
    fill: float,
) -> np.ndarray:
    """Scatter sparse (zone, hour) values into a (zones, hours) array; out-of-range rows dropped."""
    out = np.full((n_zones, n_hours), fill, dtype=float)
    j = np.asarray(eh, dtype=np.int64) - h0
    ok = (j >= 0) & (j < n_hours)
    out[np.asarray(zi, dtype=np.int64)[ok], j[ok]] = np.asarray(values, dtype=float)[ok]
    return out


@dataclass(frozen=True)
class _Window:
    """The hours [w0, a1) read for a month: its target hours and the reference value's past."""

    day: np.ndarray  # local day of each hour (days since 1970-01-01)
    local_hour: np.ndarray
    dow: np.ndarray
    off: int  # index of the first target hour (a0 - w0)
    present: np.ndarray | None  # (zones, hours) presence, NaN where missing
    events: np.ndarray  # (zones, hours) an event (or its margin) is running in the zone

    @property
    def dayidx(self) -> np.ndarray:
        """Day of each hour counted from the window's first local day."""
        return self.day - self.day[0]

    @property
    def n_days(self) -> int:
        return int(self.day[-1] - self.day[0]) + 1


def assemble(
    plan: Plan, spec: MonthSpec, inputs: dict[str, dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Dense (zones x slots) columns of one month from the engines' sparse hourly aggregates."""
    Z = len(plan.zone_ids)
    a0, a1, w0 = spec.a0, spec.a1, spec.w0
    H, W = a1 - a0, a1 - w0
    day_w, lh_w, dow_w = local_parts(np.arange(w0, a1, dtype=np.int64) * HOUR, plan.tz)
    off = a0 - w0  # first target hour within the window
    present_w = None

    hourly: dict[str, np.ndarray] = {}  # (Z, H) arrays over target hours
    ev_flag_w = np.zeros((Z, W), dtype=bool)
    ev = inputs.get("events")
    if ev is not None:
        j = ev["eh"].astype(np.int64) - w0
        ev_flag_w[ev["zi"].astype(np.int64), j] = True
        # the reference also leaves out the hours around events (arrivals and departures)
        core = ev_flag_w.copy()
        for shift in range(1, EVENT_MARGIN_HOURS + 1):
            ev_flag_w[:, :-shift] |= core[:, shift:]
            ev_flag_w[:, shift:] |= core[:, :-shift]
    if "presence" in inputs:
        pr = inputs["presence"]
        present_w = _dense(Z, w0, W, pr["zi"], pr["eh"], pr["present"], np.nan)
        hourly["present"] = present_w[:, off:]
        for c in plan.presence_cols:
            hourly[c] = _dense(Z, a0, H, pr["zi"], pr["eh"], pr[c], np.nan)
    if "incidents" in inputs:
        inc = inputs["incidents"]
        j = inc["eh"].astype(np.int64) - a0
        ok = (j >= 0) & (j < H)
        counts = np.zeros((len(plan.categories), Z, H), dtype=np.int64)
        np.add.at(
            counts,
            (inc["ci"][ok].astype(np.int64), inc["zi"][ok].astype(np.int64), j[ok]),
            inc["n"][ok].astype(np.int64),
        )
        for i, c in enumerate(plan.categories):
            hourly[f"inc_{c}"] = counts[i]
        hourly["incidents"] = counts.sum(axis=0)
    if plan.lamps is not None:
        hourly["lamps"] = np.repeat(plan.lamps[:, None], H, axis=1)
        if "lamps_out" in inputs:
            hourly["lamps_out"] = _sweep(Z, a0, a1, **inputs["lamps_out"])
    if "ridership" in inputs:
        rd = inputs["ridership"]
        hourly["ridership_entries"] = _dense(Z, a0, H, rd["zi"], rd["eh"], rd["entries"], 0.0)
    if "weather" in inputs:
        wx = inputs["weather"]
        for c in ("temperature_c", "precipitation_mm"):
            row = np.full(H, np.nan)
            j = wx["eh"].astype(np.int64) - a0
            ok = (j >= 0) & (j < H)
            row[j[ok]] = wx[c][ok]
            hourly[c] = row  # study-wide: broadcast at the end

    win = _Window(day_w, lh_w, dow_w, off, present_w, ev_flag_w)
    if plan.grain == "1h":
        return _hourly_columns(plan, spec, hourly, inputs, win)
    return _daily_columns(plan, spec, hourly, inputs, win)


def _hourly_columns(
    plan: Plan,
    spec: MonthSpec,
    hourly: dict[str, np.ndarray],
    inputs: dict[str, dict[str, np.ndarray]],
    win: _Window,
) -> dict[str, Any]:
    Z = len(plan.zone_ids)
    a0, a1 = spec.a0, spec.a1
    H = a1 - a0
    hours = np.arange(a0, a1, dtype=np.int64)
    off = win.off
    day_t, lh_t, dow_t = win.day[off:], win.local_hour[off:], win.dow[off:]
    data: dict[str, Any] = {
        "zone_id": np.repeat(plan.zone_ids, H),
        "hour": np.tile(hours * HOUR * 10**9, Z),
        "local_hour": np.tile(lh_t, Z),
        "dow": np.tile(dow_t, Z),
        "local_date": np.tile(day_t.astype(np.int32), Z),
    }
    if win.present is not None:
        usable = np.where(win.events, np.nan, win.present)
        pool = _pool(usable, win.dayidx, win.local_hour, win.n_days, 24)
        base = same_slot_median(
            pool, target_days=win.dayidx[off:], target_slots=lh_t.astype(np.int64)
        )
        _presence_out(data, hourly, base, plan)
    for c in (
        "incidents",
        *(f"inc_{c}" for c in plan.categories),
        "lamps",
        "lamps_out",
        "ridership_entries",
    ):
        if c in hourly:
            data[c] = hourly[c].ravel()
    # darkness at the slot midpoint, from sunrise/sunset by location cell and local date
    mid = hours * HOUR + HOUR // 2
    mid_day = local_day(mid, plan.tz) - plan.day0
    # the hourly grain always has the sun tables (Plan computes them when grain is 1h)
    assert plan.sun_rise is not None and plan.sun_set is not None
    rise = plan.sun_rise[plan.zone_cell][:, mid_day]
    sset = plan.sun_set[plan.zone_cell][:, mid_day]
    data["dark"] = ((mid[None, :] < rise) | (mid[None, :] >= sset)).ravel()
    if "events" in inputs:
        ev = inputs["events"]
        j = ev["eh"].astype(np.int64) - a0
        ok = (j >= 0) & (j < H)
        _events_out(data, (Z, H), ev["zi"][ok], j[ok], ev["att"][ok])
    _calendar_out(data, plan, day_t, Z)
    _weather_out(data, hourly, Z)
    return data


def _pool(
    values_w: np.ndarray, dayidx: np.ndarray, slot: np.ndarray, n_days: int, n_slots: int
) -> np.ndarray:
    """(zones, days, slots) means of the usable values (NaN = not usable, or no value)."""
    Z, W = values_w.shape
    flat = (np.arange(Z)[:, None] * n_days + dayidx[None, :]) * n_slots + slot[None, :].astype(
        np.int64
    )
    ok = ~np.isnan(values_w)
    size = Z * n_days * n_slots
    sums = np.bincount(flat[ok], weights=values_w[ok], minlength=size)
    counts = np.bincount(flat[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        pool = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return pool.reshape(Z, n_days, n_slots)


def _presence_out(
    data: dict[str, Any], dense: dict[str, np.ndarray], base: np.ndarray, plan: Plan
) -> None:
    present = dense["present"]
    data["present"] = present.ravel()
    data["present_missing"] = np.isnan(present).ravel()
    data["present_baseline"] = base.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(base > 0, present / np.where(base > 0, base, 1.0), np.nan)
    data["present_ratio"] = ratio.ravel()
    for c in plan.presence_cols:
        data[c] = dense[c].ravel()
    split = {c: dense[c] for c in plan.presence_cols}
    data.update(indicator_values(present, split, population=plan.population))


def _events_out(data: dict[str, Any], shape: tuple[int, int], zi: Any, slot: Any, att: Any) -> None:
    """events_active and event_attendance from one row per (event, zone, slot) it is active in."""
    zi, slot = np.asarray(zi, dtype=np.int64), np.asarray(slot, dtype=np.int64)
    active = np.zeros(shape, dtype=np.int64)
    total = np.zeros(shape)
    np.add.at(active, (zi, slot), 1)
    np.add.at(total, (zi, slot), np.asarray(att, dtype=float))
    data["events_active"] = active.ravel()
    data["event_attendance"] = total.ravel()


def _calendar_out(data: dict[str, Any], plan: Plan, days: np.ndarray, Z: int) -> None:
    j = days - plan.day0
    data["holiday"] = np.tile(plan.holiday[j], Z)
    data["school_holiday"] = np.tile(plan.school_holiday[j], Z)


def _weather_out(data: dict[str, Any], dense: dict[str, np.ndarray], Z: int) -> None:
    for c in ("temperature_c", "precipitation_mm"):
        if c in dense:
            data[c] = np.tile(dense[c], Z)


class _DayRollup:
    """Roll (zones, target hours) arrays up to the month's local days."""

    def __init__(self, days: np.ndarray, target_day: np.ndarray, n_zones: int) -> None:
        self.D = len(days)
        self.Z = n_zones
        self.seg = np.searchsorted(days, target_day)  # index into the month's days
        self.seg_ok = (self.seg < self.D) & (days[np.minimum(self.seg, self.D - 1)] == target_day)

    def __call__(self, arr: np.ndarray, how: str) -> np.ndarray:
        """``max`` (0 for a day without hours), ``sum``, ``sum_nan`` (NaN for a day without
        values) or ``mean`` (NaN-aware) of each day's hours."""
        arr = arr[:, self.seg_ok]
        s = self.seg[self.seg_ok]
        Z, D = arr.shape[0], self.D
        out = np.zeros((Z, D))
        if how == "max":
            out[:] = -np.inf
            for d in range(D):
                cols = s == d
                if cols.any():
                    out[:, d] = arr[:, cols].max(axis=1)
            out[np.isinf(out)] = 0
            return out
        ok = ~np.isnan(arr)
        sums = np.zeros((Z, D))
        cnt = np.zeros((Z, D))
        for d in range(D):
            cols = s == d
            sums[:, d] = np.where(ok[:, cols], arr[:, cols], 0).sum(axis=1)
            cnt[:, d] = ok[:, cols].sum(axis=1)
        if how == "sum":
            return sums
        if how == "sum_nan":
            return np.where(cnt > 0, sums, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)


def _daily_presence(
    data: dict[str, Any],
    plan: Plan,
    *,
    days: np.ndarray,
    hourly: dict[str, np.ndarray],
    win: _Window,
    roll: _DayRollup,
) -> None:
    """Daily presence (mean of the day's hours) against the same rule over past days, event
    days left out."""
    assert win.present is not None  # called only when the window has presence
    dayidx, ones = win.dayidx, np.zeros_like(win.day)
    daily_w = _pool(win.present, dayidx, ones, win.n_days, 1)
    ev_day = _pool(np.where(win.events, 1.0, np.nan), dayidx, ones, win.n_days, 1)
    usable = np.where(np.isnan(ev_day), daily_w, np.nan)
    target_idx = days - win.day[0]
    base = same_slot_median(
        usable, target_days=target_idx, target_slots=np.zeros(len(days), np.int64)
    )
    daily = {"present": daily_w[:, target_idx, 0]}
    for c in plan.presence_cols:
        daily[c] = roll(hourly[c], "mean")
    _presence_out(data, daily, base, plan)


def _daily_events(
    data: dict[str, Any], ev: dict[str, np.ndarray], *, a0: int, n_hours: int, roll: _DayRollup
) -> None:
    """events_active and event_attendance per day: distinct events active in the zone that day."""
    j = ev["eh"].astype(np.int64) - a0
    ok = (j >= 0) & (j < n_hours)
    jd = np.where(ok, j, 0)
    day = np.where(ok & roll.seg_ok[jd], roll.seg[jd], -1)
    frame = pd.DataFrame({"zi": ev["zi"], "ev": ev["ev"], "att": ev["att"], "d": day})
    frame = frame[frame["d"] >= 0].drop_duplicates(["zi", "ev", "d"])
    _events_out(data, (roll.Z, roll.D), frame["zi"], frame["d"], frame["att"])


def _daily_columns(
    plan: Plan,
    spec: MonthSpec,
    hourly: dict[str, np.ndarray],
    inputs: dict[str, dict[str, np.ndarray]],
    win: _Window,
) -> dict[str, Any]:
    """Daily grain: local days of the month, rolled up from the hourly arrays."""
    Z = len(plan.zone_ids)
    # a daily-grain month always has its local days and slot starts (_daily_months)
    assert spec.day_index is not None and spec.day_starts is not None
    days = spec.day_index.astype(np.int64)
    D = len(days)
    target_day = win.day[win.off :]  # local day of each target hour
    roll = _DayRollup(days, target_day, Z)
    dow = ((days + 3) % 7).astype(np.int8)  # 1970-01-01 was a Thursday (3)
    data: dict[str, Any] = {
        "zone_id": np.repeat(plan.zone_ids, D),
        "hour": np.tile(spec.day_starts.astype(np.int64) * 10**9, Z),
        "local_hour": np.zeros(Z * D, dtype=np.int8),
        "dow": np.tile(dow, Z),
        "local_date": np.tile(days.astype(np.int32), Z),
    }
    if win.present is not None:
        _daily_presence(data, plan, days=days, hourly=hourly, win=win, roll=roll)
    for c in ("incidents", *(f"inc_{c}" for c in plan.categories), "ridership_entries"):
        if c in hourly:
            data[c] = roll(hourly[c].astype(float), "sum").ravel()
    if "lamps" in hourly:
        assert plan.lamps is not None  # hourly["lamps"] is only made from plan.lamps
        data["lamps"] = np.repeat(plan.lamps, D)
    if "lamps_out" in hourly:
        data["lamps_out"] = roll(hourly["lamps_out"], "max").ravel()
    if "events" in inputs:
        _daily_events(data, inputs["events"], a0=spec.a0, n_hours=len(target_day), roll=roll)
    _calendar_out(data, plan, days, Z)
    if "temperature_c" in hourly:
        data["temperature_c"] = np.tile(roll(hourly["temperature_c"][None, :], "mean")[0], Z)
        data["precipitation_mm"] = np.tile(
            roll(hourly["precipitation_mm"][None, :], "sum_nan")[0], Z
        )
    return data
