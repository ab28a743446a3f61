"""Time rules shared by every stage: UTC conversion and ISO weeks.

One copy of each rule: a naive time is taken as UTC; an ISO week is written ``2026-W46`` (the
dash and the case of the ``W`` are optional on input, so ``2026w46`` is the same week).
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from features.errors import InputError

WEEK_RE = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)


def as_utc(value: str | dt.datetime | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; naive values are taken as UTC.

    Examples
    --------
    >>> as_utc("2026-11-16 00:00")
    Timestamp('2026-11-16 00:00:00+0000', tz='UTC')
    >>> as_utc("2026-11-16T00:00+01:00")
    Timestamp('2026-11-15 23:00:00+0000', tz='UTC')
    """
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_ns(values) -> np.ndarray:
    """Timestamps as naive UTC ``datetime64[ns]`` (fast comparisons); naive values are UTC."""
    s = pd.to_datetime(pd.Series(values), utc=True)
    return s.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def utc_ns_scalar(value) -> np.datetime64:
    """One timestamp as a naive UTC ``datetime64[ns]``."""
    return np.datetime64(as_utc(value).tz_localize(None), "ns")


def parse_iso_week(week: str) -> tuple[dt.date, dt.date]:
    """An ISO week (``2026-W46``, ``2026W46``, ``2026w46``) as (its Monday, the next Monday).

    Raises
    ------
    InputError
        When the text is not an ISO week, or the year has no such week.

    Examples
    --------
    >>> parse_iso_week("2026-W46")
    (datetime.date(2026, 11, 9), datetime.date(2026, 11, 16))
    >>> parse_iso_week("2026w46")[0]
    datetime.date(2026, 11, 9)
    """
    m = WEEK_RE.match(str(week).strip())
    if not m:
        raise InputError(f"week {week!r}: expected an ISO week such as 2026-W46.")
    year, wk = int(m.group(1)), int(m.group(2))
    try:
        monday = dt.date.fromisocalendar(year, wk, 1)
    except ValueError:
        raise InputError(f"week {week!r}: ISO year {year} has no week {wk}.") from None
    return monday, monday + dt.timedelta(days=7)


def iso_week(day: dt.date | pd.Timestamp) -> str:
    """The ISO week ``YYYY-Www`` a date falls in.

    Examples
    --------
    >>> iso_week(dt.date(2026, 11, 15))
    '2026-W46'
    """
    y, w, _ = day.isocalendar()
    return f"{y}-W{w:02d}"


def last_full_week(end: str | dt.datetime, timezone: str) -> str:
    """The ISO week of the last whole local week of data ending at ``end`` (exclusive).

    ``end`` is a time (ISO text or datetime; naive means UTC) such as cube_meta.json's ``end``;
    ``timezone`` is the study's.

    Examples
    --------
    >>> last_full_week("2026-11-15T23:00:00+00:00", "Europe/Paris")  # Mon 16 Nov 00:00 Paris
    '2026-W46'
    >>> last_full_week("2026-11-15T22:00:00+00:00", "Europe/Paris")  # Sun 15 Nov 23:00 Paris
    '2026-W45'
    """
    end = dt.datetime.fromisoformat(end) if isinstance(end, str) else end
    end = end.replace(tzinfo=dt.UTC) if end.tzinfo is None else end
    last_day = end.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)  # last whole day
    return iso_week(last_day - dt.timedelta(days=(last_day.weekday() + 1) % 7))  # its Sunday
