"""The calendar of the simulated daily presence panels (tests/test_presence_daily.py,
tests/test_presence_visitors.py): 40 weeks from Monday 2024-01-01, a weekend 15 % busier, a
summer dip of the whole city (-15 % around day 220), a school-holiday fortnight at -20 % and a
venue's games withheld from the events, about twice a week April-October."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAYS = 40 * 7
FIRST = pd.Timestamp("2024-01-01")
PERIOD = ("2024-06-03", "2024-10-06")  # 18 weeks in season, after 22 weeks of history
ZONES = [f"z{i:02d}" for i in range(12)]
VENUE = "z00"
HOLIDAY = ("2024-07-08", "2024-07-21")  # the whole city 20 % lower


@dataclass(frozen=True)
class Calendar:
    """The panel's days, each day's weekday and city-wide factors, and the venue's game days."""

    days: pd.DatetimeIndex
    weekday: np.ndarray
    city: np.ndarray
    game: np.ndarray

    @property
    def games(self) -> set[str]:
        return {str(d.date()) for d in self.days[self.game]}

    def rows(self, zone: str, present: np.ndarray, **more: np.ndarray) -> pd.DataFrame:
        """One zone's cube rows (daily grain: one slot a day, UTC)."""
        hour = self.days.tz_localize("UTC")
        return pd.DataFrame({"zone_id": zone, "hour": hour, "local_date": hour.date,
                             "local_hour": 0, "present": present, **more,
                             "present_baseline": np.nan, "events_active": 0})  # fmt: skip


def calendar(rng: np.random.Generator, *, venue: bool = True) -> Calendar:
    """The calendar (its games drawn first from ``rng``; none without ``venue``)."""
    days = pd.date_range(FIRST, periods=DAYS, freq="D")
    weekday = np.where(days.dayofweek >= 5, 1.15, 1.0)
    city = 1.0 - 0.15 * np.exp(-(((days.dayofyear - 220) / 12.0) ** 2))
    city = city * np.where((days >= HOLIDAY[0]) & (days <= HOLIDAY[1]), 0.8, 1.0)
    game = (rng.random(DAYS) < 2 / 7) & (days.month >= 4) & (days.month <= 10) & venue
    return Calendar(days, weekday, city, game)
