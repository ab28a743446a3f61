"""The brief's hours: the UTC hours around an event, their phase, and the attendance curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipelines.events.crowd import arrival_density, arrived_share, remaining_share
from pipelines.events.params import StaffingParams

HOUR = pd.Timedelta(hours=1)


def event_hours(
    start: pd.Timestamp, end: pd.Timestamp, *, before: int, after: int
) -> pd.DatetimeIndex:
    """UTC hours from ``before`` h before the start to ``after`` h after the end (DST-safe)."""
    first = (start - before * HOUR).floor("h")
    last = (end + after * HOUR).ceil("h")
    return pd.date_range(first, last - HOUR, freq="h", tz="UTC")


def phase_keys(
    hours: pd.DatetimeIndex, start: pd.Timestamp, end: pd.Timestamp
) -> list[tuple[str, int]]:
    """Each hour's place relative to an event: ``("before", k)`` k hours before the start (k ≥ 1),
    ``("during", k)`` the k-th hour since the start, ``("after", k)`` the k-th hour after the end."""
    out = []
    for h in hours:
        if h + HOUR <= start:
            out.append(("before", int(math.ceil((start - h) / HOUR - 1e-9))))
        elif h >= end:
            out.append(("after", int((h - end) // HOUR)))
        else:
            out.append(("during", int(max(pd.Timedelta(0), h - start.floor("h")) // HOUR)))
    return out


def attendance_curve(
    hours: pd.DatetimeIndex, start: pd.Timestamp, end: pd.Timestamp, params: StaffingParams
) -> tuple[np.ndarray, np.ndarray]:
    """Share of attendees present (mean over each hour) and peak share arriving per minute.

    Minute by minute: before the start the arrived share of the triangular arrival curve,
    during the event everybody, after the end the remaining share of the departure curve
    (:mod:`pipelines.events.crowd`).
    """
    present = np.zeros(len(hours))
    arrivals = np.zeros(len(hours))
    offs = np.arange(60) + 0.5
    for i, h in enumerate(hours):
        t = h + pd.to_timedelta(offs, unit="min")
        to_start = ((start - t) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
        after_end = ((t - end) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
        occ = np.where(
            to_start > 0,
            arrived_share(to_start, params=params),
            np.where(after_end >= 0, remaining_share(after_end, params=params), 1.0),
        )
        present[i] = occ.mean()
        dens = np.where(to_start >= 0, arrival_density(to_start, params=params), 0.0)
        arrivals[i] = dens.max()
    return present, arrivals


def local_parts(hours: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    """Each hour with its local hour, day of week and local date."""
    loc = hours.tz_convert(tz)
    return pd.DataFrame(
        {
            "hour": hours,
            "local_hour": loc.hour.astype("int8"),
            "dow": loc.dayofweek.astype("int8"),
            "local_date": loc.date,
        }
    )
