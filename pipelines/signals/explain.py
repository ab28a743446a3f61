"""What explains a presence anomaly: a fact of *that* day.

An anomaly is explained, in either direction, by what happened on its own day: a known event in
the zone during its window (or within ``margin`` of it: crowds arrive before and leave after), a
public holiday or an observance of the study's country (python-holidays, categories ``public``
and ``unofficial``: Valentine's Day, Halloween, Easter Sunday...), or heavy precipitation that
day when the study gives weather: at least ``HEAVY_PRECIPITATION_MM`` over the local day, the
ETCCDI "heavy precipitation day" index R10mm (Zhang et al. 2011), or, when the weather gives the
temperature, a snow day: at least ``SNOW_MM`` of water fallen in the slots at or below
``SNOW_C`` (about an inch, 25 mm, of snow at the usual 10:1 ratio of snow to water: the
threshold of NOAA's climate normals' count of snow days, DSNW; 1 degree C, the mean air
temperature below which precipitation falls mostly as snow, Jennings et al. 2018). Snow stops a
city with a quarter of the water a rain day needs: on the Brooklyn Bridge, the blizzard of
2018-01-04 left 2.9 mm of water in the export and an emptied bridge. At daily grain the cube
gives the day's mean temperature, which decides for the whole day (snow at night on a mild day
is missed; rain on a cold day counts). The explanation names
which. Events in the weeks of the reference explain nothing: the reference leaves them out.

References
----------
Zhang, X. et al. (2011). Indices for monitoring changes in extremes based on daily temperature
and precipitation data. WIREs Climate Change 2(6), 851-870.
Jennings, K. S., Winchell, T. S., Livneh, B. & Molotch, N. P. (2018). Spatial variation of the
rain-snow temperature threshold across the Northern Hemisphere. Nature Communications 9, 1148.
NOAA NCEI, U.S. Climate Normals: DSNW, days with snowfall >= 1.0 inch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import holidays
import numpy as np
import pandas as pd

#: daily precipitation (mm) from which a day is a heavy-precipitation day (ETCCDI R10mm).
HEAVY_PRECIPITATION_MM = 10.0
#: daily precipitation (mm) below which a day is dry (the gathering test's day scale).
DRY_MM = 1.0
#: water (mm) fallen as snow from which a day is a snow day, and the temperature (degrees C) at
#: or below which precipitation counts as snow (NOAA's DSNW at 10:1; Jennings et al. 2018).
SNOW_MM, SNOW_C = 2.5, 1.0


@dataclass(frozen=True)
class DayFacts:
    """The facts that explain anomalies: holidays by local date, daily precipitation by local
    date (mm; empty without weather) and the part of it fallen as snow (mm of water; empty
    without temperature), known events by zone ``[(start, end, name)]``."""

    holidays: dict[dt.date, str] = field(default_factory=dict)
    precipitation: dict[dt.date, float] = field(default_factory=dict)
    events: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]] = field(default_factory=dict)
    heavy_mm: float = HEAVY_PRECIPITATION_MM
    margin: pd.Timedelta = pd.Timedelta(hours=6)
    snow: dict[dt.date, float] = field(default_factory=dict)
    snow_mm: float = SNOW_MM

    def dry(self, days: list[dt.date]) -> np.ndarray:
        """Which ``days`` had less than ``DRY_MM`` of precipitation (all, without weather)."""
        return np.array([self.precipitation.get(d, 0.0) < DRY_MM for d in days], dtype=bool)

    def heavy(self, day: dt.date) -> bool:
        """Whether ``day`` had heavy precipitation or was a snow day."""
        return self.precipitation.get(day, 0.0) >= self.heavy_mm or self.snowy(day)

    def snowy(self, day: dt.date) -> bool:
        """Whether ``day`` was a snow day (at least ``snow_mm`` of water fallen as snow)."""
        return self.snow.get(day, 0.0) >= self.snow_mm

    def explain(
        self, zone: str, day: dt.date, start: pd.Timestamp, end: pd.Timestamp, *, event_slot: bool
    ) -> tuple[list[str], list[str], str]:
        """``(kinds, event names, words)`` for an anomaly of ``zone`` on ``day`` in
        ``[start, end)``; ``event_slot``: the cube marks an event active in the window."""
        names = [
            nm
            for s, e, nm in self.events.get(zone, [])
            if s < end + self.margin and e > start - self.margin
        ]
        kinds, words = [], []
        if names or event_slot:
            kinds.append("event")
            words.append(
                f"the event {', '.join(dict.fromkeys(names[:2]))}" if names else "an event"
            )
        if day in self.holidays:
            kinds.append("holiday")
            words.append(f"the holiday {self.holidays[day]}")
        if self.precipitation.get(day, 0.0) >= self.heavy_mm:
            kinds.append("weather")
            words.append(f"heavy precipitation ({self.precipitation[day]:.0f} mm that day)")
        elif self.snowy(day):
            kinds.append("weather")
            words.append(
                f"snow ({self.snow[day]:.1f} mm of water fallen at or below {SNOW_C:g} °C that day)"
            )
        if not kinds:
            return kinds, names, "with no event, holiday, heavy precipitation or snow that day"
        return kinds, names, "explained by " + " and ".join(words)


def day_facts(
    frame: pd.DataFrame,
    *,
    events: pd.DataFrame | None,
    country: str | None,
    subdivision: str | None = None,
    heavy_mm: float = HEAVY_PRECIPITATION_MM,
    margin_hours: float = 6.0,
    snow_mm: float = SNOW_MM,
) -> DayFacts:
    """The facts of the frame's local days (holidays, precipitation, snow) and the known
    events."""
    dates = pd.Index(pd.unique(frame["local_date"]))
    return DayFacts(
        holidays=holiday_names(frame, dates, country=country, subdivision=subdivision),
        precipitation=daily_precipitation(frame),
        events=events_by_zone(events),
        heavy_mm=heavy_mm,
        margin=pd.Timedelta(hours=margin_hours),
        snow=daily_precipitation(frame, at_most_c=SNOW_C),
        snow_mm=snow_mm,
    )


def holiday_names(
    frame: pd.DataFrame, dates: pd.Index, *, country: str | None, subdivision: str | None
) -> dict[dt.date, str]:
    """Public holidays and observances of ``country`` on ``dates`` (python-holidays), and the
    days the cube marks as holidays (named "a public holiday" when no country is known)."""
    out: dict[dt.date, str] = {}
    if len(dates) and country:
        years = sorted({d.year for d in dates})
        try:
            cal = holidays.country_holidays(
                country, subdiv=subdivision, years=years, categories=("public", "unofficial")
            )
        except (NotImplementedError, ValueError, KeyError):
            cal = holidays.country_holidays(country, subdiv=subdivision, years=years)
        out = {d: str(cal[d]) for d in dates if d in cal}
    if "holiday" in frame:
        for d in pd.unique(frame.loc[frame["holiday"].fillna(0).astype(bool), "local_date"]):
            out.setdefault(d, "a public holiday")
    return out


def daily_precipitation(
    frame: pd.DataFrame, *, at_most_c: float | None = None
) -> dict[dt.date, float]:
    """Precipitation (mm) of each local day: the study-wide slots summed (one zone's rows: the
    weather is the same in every zone); empty without weather. Given ``at_most_c``, only the
    slots whose temperature is at most that (precipitation fallen as snow: at daily grain the
    day's mean temperature); empty without temperature."""
    if "precipitation_mm" not in frame or not frame["precipitation_mm"].notna().any():
        return {}
    one = frame[frame["zone_id"] == frame["zone_id"].iloc[0]]
    mm = one["precipitation_mm"]
    if at_most_c is not None:
        if "temperature_c" not in one or not one["temperature_c"].notna().any():
            return {}
        mm = mm.where(one["temperature_c"] <= at_most_c, 0.0)
    per_day = mm.groupby(one["local_date"]).sum(min_count=1)
    return {d: float(v) for d, v in per_day.items() if np.isfinite(v)}


def events_by_zone(
    events: pd.DataFrame | None,
) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]]:
    """``zone -> [(start, end, name)]`` of the known events."""
    out: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]] = {}
    if events is not None and len(events):
        for ev in events.itertuples(index=False):
            out.setdefault(str(ev.zone_id), []).append(
                (
                    pd.Timestamp(ev.start),
                    pd.Timestamp(ev.end),
                    str(getattr(ev, "name", ev.event_id)),
                )
            )
    return out
