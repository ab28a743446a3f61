"""Anomalies of who is present: the visitor share and the people present against residents.

Two tests per zone and local day of the period, each on the zone's own history:

* ``visitor_share``: the day's ``Σ visitors / Σ present`` (on its own scale: a zone of
  residents going from 1 % to 4 % of visitors is not an anomaly of who is present, a zone going
  from 30 % to 5 % is);
* ``resident_ratio``: the day's peak of ``present / population`` (the cube's ``resident_ratio``,
  :mod:`features.cube.indicators`) on the log scale: a zone at 3x its residents at 2 am.

The expected value of a day is the median of the same weekday over the ``reference_weeks`` weeks
before it (robust to a past gathering among them); the scale is 1.4826 MAD of the zone's own
errors (day minus its weekday median) over the ``reference_weeks`` weeks before the day's ISO
week, floored (a day has the same test in a weekly run and in a study over a season); with 10
zones or more, the study's shift of each day (the median of the zones' errors that day: a
holiday, the summer) is taken out of every error first; ``z = error / scale`` with a two-sided
p value from a Student t with ``0.37 n - 1`` degrees of freedom for ``n`` errors (the MAD's
37 % Gaussian efficiency, as the presence anomalies). Days with fewer than ``MIN_DAYS``
reference days or ``MIN_ERRORS`` errors are not tested. A fact of the day (an event in the zone, a holiday, heavy precipitation or snow:
:mod:`pipelines.signals.explain`) explains an anomaly, which then ranks after unexplained ones.
The p values join the run's other tests in Benjamini-Hochberg. At daily grain the visitor share's
rise also joins the presence gathering test of its zone-day (:mod:`pipelines.signals.crowd`).

References
----------
Rousseeuw, P. J. & Croux, C. (1993). Alternatives to the median absolute deviation. JASA 88(424),
1273-1283. Orange Business, *Flux Vision* (residents and visitors present).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.signals.explain import DayFacts
from pipelines.signals.panel import record, records_frame

#: reference weeks (same weekday), the fewest reference days and errors for a test
REFERENCE_WEEKS, MIN_DAYS, MIN_ERRORS = 8, 4, 14
#: from this many zones, the study's shift of each day (median error over zones) is taken out
MIN_ZONES_SHIFT = 10
#: floors of the robust scale (the share, in points; the log of the ratio)
SCALE_FLOOR = {"visitor_share": 0.02, "resident_ratio": 0.05}


def daily_indicators(frame: pd.DataFrame) -> pd.DataFrame:
    """Per zone and local date: the day's visitor share (Σ visitors / Σ present) and peak
    resident ratio, where the cube has them."""
    cols = [c for c in ("zone_id", "local_date", "visitors", "present", "resident_ratio")
            if c in frame.columns]  # fmt: skip  # the columns used, not a copy of the frame
    f = frame[cols].assign(local_date=pd.to_datetime(frame["local_date"]).dt.date)
    g = f.groupby(["zone_id", "local_date"], sort=True)
    out = pd.DataFrame(index=g.size().index)
    if {"visitors", "present"} <= set(f.columns):
        vis = g["visitors"].sum(min_count=1)
        pre = g["present"].sum(min_count=1)
        out["visitor_share"] = (vis / pre.where(pre > 0)).clip(0, 1)
    if "resident_ratio" in f.columns:
        out["resident_ratio"] = g["resident_ratio"].max()
    return out.reset_index()


def _transform(name: str, v: np.ndarray) -> np.ndarray:
    if name == "visitor_share":
        return v
    return np.log(np.maximum(v, 1e-3))


@dataclass(frozen=True)
class IndicatorZ:
    """One indicator's tests over the period's days: ``z`` and ``n`` (the errors behind its scale)
    ``(zones, days)``, NaN where a zone-day is not tested; ``raw`` the day's value and ``usual``
    the median of the same weekday over the reference weeks."""

    zones: pd.Index
    days: pd.Index
    z: np.ndarray
    n: np.ndarray
    raw: np.ndarray
    usual: np.ndarray

    def p_above(self) -> np.ndarray:
        """One-sided p values of a rise (Student t with :func:`t_dof` degrees of freedom)."""
        return stats.t.sf(self.z, t_dof(self.n))


def t_dof(n: np.ndarray) -> np.ndarray:
    """Degrees of freedom of a MAD scale from ``n`` errors: ``0.37 n - 1`` (its 37 % Gaussian
    efficiency), at least 1."""
    return np.maximum(1.0, 0.37 * np.asarray(n, dtype=float) - 1.0)


def indicator_z(
    daily: pd.DataFrame,
    name: str,
    *,
    first: dt.date,
    last: dt.date,
    reference_weeks: int = REFERENCE_WEEKS,
) -> IndicatorZ | None:
    """The tests of indicator ``name`` of :func:`daily_indicators` over the days ``first..last``
    (None without the indicator). Each day's scale is read on the zone's errors of the
    ``reference_weeks`` weeks before its ISO week (Monday to Sunday): a day has the same test in a
    one-week run and in a study over many weeks."""
    if name not in daily.columns:
        return None
    wide = daily.pivot(index="zone_id", columns="local_date", values=name)
    days = pd.Index(wide.columns)
    raw = wide.to_numpy(dtype=float)
    y = _transform(name, raw)
    med, m = _weekday_median(y, days, reference_weeks)
    raw_med = _weekday_median(raw, days, reference_weeks)[0]
    resid = _study_shift_out(y - med)
    cols = np.flatnonzero([first <= d <= last for d in days])
    scale, n = _weekly_scale(resid, days, cols, reference_weeks, SCALE_FLOOR[name])
    ok = (m[:, cols] >= MIN_DAYS) & (n >= MIN_ERRORS) & np.isfinite(resid[:, cols])
    z = np.where(ok, resid[:, cols] / scale, np.nan)
    return IndicatorZ(wide.index, days[cols], z, n, raw[:, cols], raw_med[:, cols])


def mix_tests(
    frame: pd.DataFrame,
    *,
    first: dt.date,
    last: dt.date,
    timezone: str,
    reference_weeks: int = REFERENCE_WEEKS,
    facts: DayFacts | None = None,
) -> pd.DataFrame:
    """The indicator tests of the days ``first..last`` (see the module docstring); ``facts``
    (holidays, heavy precipitation, snow, events by zone) explain an anomaly of their day."""
    daily = daily_indicators(frame)
    recs = []
    for name in ("visitor_share", "resident_ratio"):
        iz = indicator_z(daily, name, first=first, last=last, reference_weeks=reference_weeks)
        if iz is None:
            continue
        for j, day in enumerate(iz.days):
            ok = np.isfinite(iz.z[:, j])
            recs += _day_records(name, iz.zones[ok], day, iz.z[ok, j], iz.raw[ok, j],
                                 iz.usual[ok, j], iz.n[ok, j], timezone=timezone,
                                 facts=facts)  # fmt: skip
    return records_frame(recs)


def _weekly_scale(
    resid: np.ndarray, days: pd.Index, cols: np.ndarray, weeks: int, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_scale` of the ``weeks`` weeks before each period day's ISO week, and the errors
    behind it, ``(zones, len(cols))``."""
    d = np.asarray(days, dtype="datetime64[D]")
    monday = d - ((d.astype(np.int64) + 3) % 7).astype("timedelta64[D]")  # 1970-01-01: Thursday
    scale = np.full((resid.shape[0], len(cols)), float(floor))
    n = np.zeros((resid.shape[0], len(cols)), dtype=int)
    for mon in np.unique(monday[cols]):
        win = (d >= mon - np.timedelta64(7 * weeks, "D")) & (d < mon)
        sel = monday[cols] == mon
        s, k = _scale(resid[:, win], floor)
        scale[:, sel], n[:, sel] = s[:, None], k[:, None]
    return scale, n


def _study_shift_out(resid: np.ndarray) -> np.ndarray:
    """Errors less the study's shift of each day (the median over zones), with 10 zones or more:
    a holiday or the summer moves every zone's mix together."""
    if resid.shape[0] < MIN_ZONES_SHIFT:
        return resid
    with warnings.catch_warnings():  # a day without any value has no shift
        warnings.simplefilter("ignore", RuntimeWarning)
        shift = np.nanmedian(resid, axis=0)
    return resid - np.nan_to_num(shift)[None, :]


def _weekday_median(y: np.ndarray, days: pd.Index, weeks: int) -> tuple[np.ndarray, np.ndarray]:
    """Each day's median over the same weekday of the ``weeks`` weeks before, and how many."""
    pos = {d: i for i, d in enumerate(days)}
    med = np.full(y.shape, np.nan)
    cnt = np.zeros(y.shape, dtype=int)
    for j, d in enumerate(days):
        refs = [
            pos[r] for r in (d - dt.timedelta(days=7 * w) for w in range(1, weeks + 1)) if r in pos
        ]
        if refs:
            with np.errstate(all="ignore"), warnings.catch_warnings():  # a zone without values
                warnings.simplefilter("ignore", RuntimeWarning)
                med[:, j] = np.nanmedian(y[:, refs], axis=1)
            cnt[:, j] = np.isfinite(y[:, refs]).sum(axis=1)
    return med, cnt


def _scale(resid: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """1.4826 MAD of each zone's reference errors (floored) and how many errors."""
    n = np.isfinite(resid).sum(axis=1)
    if resid.shape[1] == 0:
        return np.full(len(resid), floor), n
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a zone without errors: floor
        warnings.simplefilter("ignore", RuntimeWarning)
        c = np.nanmedian(resid, axis=1)
        mad = np.nanmedian(np.abs(resid - c[:, None]), axis=1)
    return np.maximum(np.nan_to_num(1.4826 * mad, nan=floor), floor), n


def _day_records(
    name: str,
    zones: pd.Index,
    day: dt.date,
    z: np.ndarray,
    raw: np.ndarray,
    raw_med: np.ndarray,
    n: np.ndarray,
    *,
    timezone: str,
    facts: DayFacts | None,
) -> list[dict]:
    start = pd.Timestamp(day).tz_localize(timezone, nonexistent="shift_forward", ambiguous=False)
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize(
        timezone, nonexistent="shift_forward", ambiguous=False
    )
    what = "visitor share" if name == "visitor_share" else "people present against residents"
    fmt = "{:.0%}" if name == "visitor_share" else "{:.2f}x"
    out = []
    for i in range(len(zones)):
        p = float(2 * stats.t.sf(abs(z[i]), t_dof(n[i])))
        word = "above" if z[i] > 0 else "below"
        kinds: list[str] = []
        why = "with no event, holiday, heavy precipitation or snow that day"
        if facts is not None:
            kinds, _, why = facts.explain(
                str(zones[i]), day, start.tz_convert("UTC"), end.tz_convert("UTC"), event_slot=False
            )
        out.append(
            record(
                name,
                detector=f"{name}_robust_z",
                zones=[str(zones[i])],
                start=start.tz_convert("UTC"),
                end=end.tz_convert("UTC"),
                observed=raw[i],
                expected=raw_med[i],
                p_value=p,
                statistic=float(z[i]),
                explanation=(
                    f"zone {zones[i]}, {day}: {what} {fmt.format(raw[i])}, {word} its usual "
                    f"{fmt.format(raw_med[i])} on this weekday (robust z {z[i]:+.1f} against "
                    f"{int(n[i])} days of the zone's own errors, the study's shift of the day "
                    f"taken out), {why}"
                ),
                explained=bool(kinds),
                explained_by=kinds,
                direction="up" if z[i] > 0 else "down",
                reference_errors=int(n[i]),
            )  # fmt: skip
        )
    return out
