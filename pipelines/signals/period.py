"""The period under review: an ISO week or a range of local calendar dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from features.errors import InputError
from features.timeutil import iso_week, parse_iso_week


def local_day(day: dt.date, tz: str) -> pd.Timestamp:
    """Start of a local calendar day: its midnight, or the first valid instant after it where
    midnight falls in a DST gap (Santiago, Havana, Asuncion...), as the cube starts its days."""
    return pd.Timestamp(day).tz_localize(tz, ambiguous=False, nonexistent="shift_forward")


@dataclass(frozen=True)
class Period:
    """A period under review, in local calendar dates.

    Attributes
    ----------
    label
        ``2026-W46`` for an ISO week, ``2026-11-01_2026-11-07`` for a date range.
    first, last
        First and last local dates (inclusive).
    """

    label: str
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def bounds(self, timezone: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """UTC instants of the period's local start and (exclusive) end."""
        a = local_day(self.first, timezone).tz_convert("UTC")
        b = local_day(self.last + dt.timedelta(days=1), timezone).tz_convert("UTC")
        return a, b


def parse_period(
    week: str | None = None, *, start: str | dt.date | None = None, end: str | dt.date | None = None
) -> Period:
    """A :class:`Period` from an ISO week (``2026-W46``) or from first and last dates.

    Raises
    ------
    InputError
        When both or neither are given, or a value does not parse.
    """
    if week is not None and (start is not None or end is not None):
        raise InputError("give either --week or --from/--to, not both.")
    if week is not None:
        first, _ = parse_iso_week(week)
        return Period(iso_week(first), first, first + dt.timedelta(days=6))
    if start is None or end is None:
        raise InputError("give a period: --week 2026-W46, or --from 2026-11-01 --to 2026-11-07.")
    try:
        a = start if isinstance(start, dt.date) else dt.date.fromisoformat(str(start))
        b = end if isinstance(end, dt.date) else dt.date.fromisoformat(str(end))
    except ValueError:
        raise InputError(
            f"--from/--to should be dates like 2026-11-01, got {start!r} and {end!r}."
        ) from None
    if b < a:
        raise InputError(f"--to ({b}) is before --from ({a}).")
    return Period(f"{a.isoformat()}_{b.isoformat()}", a, b)


def local_days(dates: Sequence[dt.date], tz: str) -> pd.DatetimeIndex:
    """The start of each local calendar day (see :func:`local_day`)."""
    return pd.DatetimeIndex([local_day(d, tz) for d in dates])
