"""Presence as arrays ``(zones, days, slots)`` over consecutive local days, the shape every
presence test reads (:mod:`pipelines.signals.presence`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Layout:
    """Presence as arrays ``(zones, days, slots)`` over consecutive local days (slots: the local
    hour, or one slot at daily grain): ``present`` (NaN where none), the slot start ``hour``
    (UTC, NaT where none) and ``event`` (an event active in the zone)."""

    zones: np.ndarray
    days: list[dt.date]
    present: np.ndarray
    hour: np.ndarray
    event: np.ndarray
    daily: bool


def layout(frame: pd.DataFrame) -> Layout:
    """The frame's presence as :class:`Layout` arrays (the first row of a repeated local hour)."""
    f = frame.sort_values(["zone_id", "hour"], kind="stable")
    zones, zi = np.unique(f["zone_id"].astype(str).to_numpy(), return_inverse=True)
    dates = pd.to_datetime(f["local_date"])
    first = dates.min()
    di = ((dates - first).dt.days).to_numpy()
    nd = int(di.max()) + 1
    hours = pd.DatetimeIndex(f["hour"])
    step = pd.Series(hours[1:] - hours[:-1])
    daily = bool(len(step) and (step[step > pd.Timedelta(0)].min() >= pd.Timedelta(hours=23)))
    si = np.zeros(len(f), int) if daily else f["local_hour"].to_numpy(int)
    ns = 1 if daily else 24
    shape = (len(zones), nd, ns)
    present = np.full(shape, np.nan)
    hour = np.full(shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    event = np.zeros(shape, bool)
    rev = slice(None, None, -1)  # the first of repeated local hours wins: assign in reverse
    present[zi[rev], di[rev], si[rev]] = f["present"].to_numpy(float)[rev]
    hour[zi[rev], di[rev], si[rev]] = hours.tz_convert("UTC").tz_localize(None).to_numpy()[rev]
    if "events_active" in f:
        event[zi, di, si] = f["events_active"].fillna(0).to_numpy(float) > 0
    days = [(first + pd.Timedelta(days=i)).date() for i in range(nd)]
    return Layout(zones, days, present, hour, event, daily)
