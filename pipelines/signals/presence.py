"""Presence anomalies: zones far above (gathering) or below (emptied) their usual presence.

Each slot's ``y = log(1 + present)`` is compared with the zone's *quiet-day* reference for that
slot of the week (:mod:`pipelines.signals.reference`: learnt on the past weeks by one-sided
trimming, so that recurring gatherings do not inflate it; days a known fact explains left out),
giving ``z = (y - loc) / max(scale, scale_floor)``; the scale is the spread of the zone's own
out-of-sample errors on quiet days. Data gaps (runs of zeros or flat lines where the zone is never
empty, :mod:`pipelines.signals.gaps`) are neither reference nor test: they become notes. Each
zone and local day of the period is tested both ways with the extreme slot's z, Sidak-corrected
for the number of slots that day: ``p = 1 - (1 - F(-|z|max))^n``, F a Student t with
``0.37 m - 1`` degrees of freedom for a scale from m deviations (the MAD's 37 % Gaussian
efficiency), so that a scale from few weeks does not turn noise into signals; for emptied zones,
no more degrees of freedom than the zone's own lower tail of errors shows (weather, idle hours). The reported window
is the run of consecutive slots with z beyond ``z_threshold`` around that slot. What explains an
anomaly is a fact of that day (:mod:`pipelines.signals.explain`): a known event in the zone, a
holiday or observance, heavy precipitation; the signal names which (``details.explained_by``).
Explained signals are kept but ranked after unexplained ones. Everything is array arithmetic over
``(zones, days, slots)``: the cost grows linearly with the period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.signals.explain import HEAVY_PRECIPITATION_MM, DayFacts, day_facts
from pipelines.signals.gaps import Gap, find_gaps, gap_runs
from pipelines.signals.panel import fmt_number, record, records_frame
from pipelines.signals.reference import (
    PROFILE_WEEKS,
    REFERENCE_WEEKS,
    QuietReference,
    quiet_reference,
)

_NEED = {"zone_id", "hour", "local_date", "local_hour", "present", "present_baseline"}


@dataclass(frozen=True)
class PresenceReview:
    """The presence part of a run: its tests, the data gaps found and their notes."""

    tests: pd.DataFrame
    gaps: tuple[Gap, ...]
    notes: tuple[str, ...]


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


def presence_anomalies(frame: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """The tests of :func:`presence_review` (same arguments)."""
    return presence_review(frame, **kwargs).tests


def presence_review(
    frame: pd.DataFrame,
    *,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    reference_weeks: int = REFERENCE_WEEKS,
    profile_weeks: int = PROFILE_WEEKS,
    z_threshold: float = 2.0,
    scale_floor: float = 0.05,
    events: pd.DataFrame | None = None,
    event_margin_hours: float = 6.0,
    country: str | None = None,
    subdivision: str | None = None,
    heavy_mm: float = HEAVY_PRECIPITATION_MM,
) -> PresenceReview:
    """Presence far above (gathering) or far below (emptied) its quiet-day reference.

    The method is in the module's docstring.

    Parameters
    ----------
    frame
        Cube rows with zone_id, hour (UTC), local_date, local_hour, present, present_baseline
        and, when known, events_active, holiday and precipitation_mm; the period and at least
        ``reference_weeks`` before it.
    period_start, period_end
        The period (UTC instants, end exclusive).
    reference_weeks, profile_weeks
        Weeks of history of the reference's level; of its profile and scale.
    z_threshold
        |z| that delimits the reported window.
    scale_floor
        Minimum scale of ``log(1 + present)`` (0.05: a 5 % change is never more than 1 SD).
    events
        Optional validated events (event_id, name, zone_id, start, end) to name.
    event_margin_hours
        Hours before and after an event during which an anomaly counts as explained by it.
    country, subdivision
        The study's country for holidays and observances (python-holidays).
    heavy_mm
        Daily precipitation (mm) of a heavy-precipitation day.

    Returns
    -------
    PresenceReview
        Tests with ``type`` ``"gathering"`` or ``"emptied"``, the gaps and their notes.

    References
    ----------
    Sidak, Z. (1967). Rectangular confidence regions for the means of multivariate normal
    distributions. JASA 62, 626-633. And those of :mod:`pipelines.signals.reference`.
    """
    missing = _NEED - set(frame.columns)
    if missing:
        raise ValueError(
            f"presence_anomalies needs columns {sorted(_NEED)}, missing {sorted(missing)}"
        )
    ps, pe = pd.Timestamp(period_start), pd.Timestamp(period_end)
    lay = layout(frame)
    facts = day_facts(
        frame, events=events, country=country, subdivision=subdivision, heavy_mm=heavy_mm,
        margin_hours=event_margin_hours,
    )  # fmt: skip
    ref, gaps = reference_without_gaps(
        lay, facts, weeks=reference_weeks, profile_weeks=profile_weeks
    )
    in_period = np.array([_in(lay, i, ps, pe) for i in range(len(lay.days))], dtype=bool)
    runs = [
        g for g in gap_runs(_flat(gaps), _flat(lay.present), _flat(lay.hour), lay.zones)
        if ps <= g.start < pe
    ]  # fmt: skip
    y = np.where(gaps, np.nan, np.log1p(lay.present))
    z = (y - ref.loc) / np.maximum(np.nan_to_num(ref.scale, nan=0.0), scale_floor)
    records = []
    for sign in (1.0, -1.0):
        records += _day_tests(lay, ref, z, sign, in_period, facts, z_threshold)
    return PresenceReview(tests=records_frame(records), gaps=tuple(runs), notes=_gap_notes(runs))


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


def reference_without_gaps(
    lay: Layout,
    facts: DayFacts,
    *,
    weeks: int = REFERENCE_WEEKS,
    profile_weeks: int = PROFILE_WEEKS,
) -> tuple[QuietReference, np.ndarray]:
    """The quiet reference without the days a fact explains, then without the data gaps it
    reveals (a second pass), and the gap mask."""
    explained = np.array([d in facts.holidays or facts.heavy(d) for d in lay.days], dtype=bool)
    known = lay.event.any(axis=2, keepdims=True) | explained[None, :, None]
    y = np.log1p(lay.present)
    pool = np.isfinite(y) & ~known
    ref = quiet_reference(y, pool, weeks=weeks, profile_weeks=profile_weeks)
    z, d, s = y.shape
    gaps = find_gaps(_flat(lay.present), _flat(ref.level)).reshape(z, d, s)
    if gaps.any():
        ref = quiet_reference(
            np.where(gaps, np.nan, y), pool & ~gaps, weeks=weeks, profile_weeks=profile_weeks
        )
    return ref, gaps


def _flat(a: np.ndarray) -> np.ndarray:
    """``(zones, days, slots)`` -> ``(zones, days * slots)`` in time order."""
    return a.reshape(a.shape[0], -1)


def _in(lay: Layout, i: int, ps: pd.Timestamp, pe: pd.Timestamp) -> bool:
    """Whether local day i has a slot in ``[ps, pe)``."""
    h = lay.hour[:, i].ravel()
    h = h[~np.isnat(h)]
    if not len(h):
        return False
    lo, hi = (
        np.datetime64(ps.tz_convert("UTC").tz_localize(None)),
        np.datetime64(pe.tz_convert("UTC").tz_localize(None)),
    )
    return bool(((h >= lo) & (h < hi)).any())


def _gap_notes(runs: list[Gap], limit: int = 20) -> tuple[str, ...]:
    """One note per gap run (the first ``limit``), and how many more."""
    notes = [g.note() for g in runs[:limit]]
    if len(runs) > limit:
        notes.append(f"... and {len(runs) - limit} more data gaps in presence.")
    return tuple(notes)


def _window(zs: np.ndarray, j: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """First and last slot of the run of consecutive slots beyond ``thr`` around slot j of each
    row of ``zs`` (``(rows, slots)``; a missing slot breaks the run)."""
    rows, s = zs.shape
    above = np.nan_to_num(zs, nan=-np.inf) > thr
    idx = np.arange(s)
    left = np.maximum.accumulate(np.where(~above, idx, -1), axis=1) + 1
    right = np.minimum.accumulate(np.where(~above, idx, s)[:, ::-1], axis=1)[:, ::-1] - 1
    r = np.arange(rows)
    on = above[r, j]
    return np.where(on, left[r, j], j), np.where(on, right[r, j], j)


def _day_tests(
    lay: Layout,
    ref: QuietReference,
    z: np.ndarray,
    sign: float,
    in_period: np.ndarray,
    facts: DayFacts,
    thr: float,
) -> list[dict]:
    """The tests of every zone and period day, one way (``sign`` 1: gathering, -1: emptied).

    The day's extreme slot gives z; ``p = 1 - (1 - F(-|z|max k))^n`` (Sidak over the day's n
    slots, F a Student t with ``0.37 m - 1`` degrees of freedom, ``k = 1.4826 F^-1(0.75)`` for
    the MAD scale). Below (emptied), the degrees of freedom are at most those of the zone's own
    lower tail (:func:`~pipelines.signals.reference.tail_df`); above (gathering) the tail cannot
    be read from a history that holds the very gatherings sought.
    """
    nz, _, s = z.shape
    days = np.flatnonzero(in_period)
    zs = sign * z[:, days].reshape(-1, s)
    ok = np.isfinite(zs)
    n = ok.sum(axis=1)
    j = np.argmax(np.where(ok, zs, -np.inf), axis=1)
    r = np.arange(len(zs))
    zmax = zs[r, j]
    m = ref.n_scale[:, days].reshape(-1, s)[r, j]
    df = np.maximum(3.0, 0.37 * m - 1.0)
    if sign < 0:
        df = np.minimum(df, ref.tail_df[:, days].reshape(-1))
    p1 = stats.t.sf(zmax * 1.4826 * stats.t.ppf(0.75, df), df=df)
    p = -np.expm1(n * np.log1p(-np.minimum(p1, 1 - 1e-16)))
    a, b = _window(zs, j, thr)
    pres = lay.present[:, days].reshape(-1, s)
    lev = ref.level[:, days].reshape(-1, s)
    hours = lay.hour[:, days].reshape(-1, s)
    evs = lay.event[:, days].reshape(-1, s)
    out = []
    for k in np.flatnonzero(n > 0):
        zone, day = str(lay.zones[k // len(days)]), lay.days[days[k % len(days)]]
        w = slice(a[k], b[k] + 1)
        start = pd.Timestamp(hours[k, a[k]], tz="UTC")
        end = pd.Timestamp(hours[k, b[k]], tz="UTC") + (
            pd.Timedelta(days=1) if lay.daily else pd.Timedelta(hours=1)
        )
        obs, exp = float(np.nanmean(pres[k, w])), float(np.nanmean(lev[k, w]))
        kinds, names, why = facts.explain(zone, day, start, end, event_slot=bool(evs[k, w].any()))
        out.append(_record(zone, sign, start, end, obs, exp, float(p[k]), float(zmax[k]), why,
                           kinds, names, int(b[k] - a[k] + 1)))  # fmt: skip
    return out


def _record(
    zone: str, sign: float, start, end, obs: float, exp: float, p: float, zmax: float,
    why: str, kinds: list[str], names: list[str], slots: int,
) -> dict:  # fmt: skip
    """One presence test as a record."""
    word = "above" if sign > 0 else "below"
    return record(
        "gathering" if sign > 0 else "emptied",
        detector=f"presence_{'high' if sign > 0 else 'low'}",
        zones=[zone],
        start=start,
        end=end,
        observed=obs,
        expected=exp,
        p_value=p,
        explanation=f"Zone {zone} held {fmt_number(obs)} people against a quiet-day reference "
        f"of {fmt_number(exp)} (x{obs / exp if exp else np.nan:.2f}, {word} normal by "
        f"{abs(zmax):.1f} robust SD) {why}.",
        statistic=zmax,
        explained=bool(kinds),
        explained_by=kinds,
        events=names,
        slots=slots,
    )
