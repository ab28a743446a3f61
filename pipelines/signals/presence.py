"""Presence anomalies: zones far above (gathering) or below (emptied) their usual presence.

Each slot's ``y = log(1 + present)`` is compared with the zone's *quiet-day* reference for that
slot of the week (:mod:`pipelines.signals.reference`: learnt on the past weeks by one-sided
trimming, so that recurring gatherings do not inflate it; days a known fact explains left out,
and, in a second pass, the past values far above their own out-of-sample reference),
giving ``z = (y - loc) / max(scale, scale_floor)``; the scale is the spread of the zone's own
out-of-sample errors on quiet days. Data gaps (runs of zeros or flat lines where the zone is never
empty, :mod:`pipelines.signals.gaps`) are neither reference nor test: they become notes. Each
zone and local day of the period is tested both ways with the extreme slot's z, Sidak-corrected
for the number of slots that day: ``p = 1 - (1 - F(-|z|max))^n``, F a Student t with
``0.19 m`` degrees of freedom for a scale from the lower half of m errors (the MAD's 37 % Gaussian
efficiency on half of them), so that a scale from few weeks does not turn noise into signals (at
daily grain, where the scale is moderated, ``d0 + 0.19 m``:
:mod:`pipelines.signals.presence_pvalues`); for emptied zones, no more degrees of freedom than
the zone's own lower tail of errors shows (weather, idle hours). The reported window
is the run of consecutive slots with z beyond ``z_threshold`` around that slot. At hourly grain
the day's total is tested too (:func:`day_level`; Bonferroni over the two), with no more degrees
of freedom than the study's lower tail of day errors shows (:func:`.pooled_tail_df`). With 10 zones or
more, the study's shift of each day is taken out (at daily grain learnt with the reference, at
hourly grain the median over zones of their day errors added to it, for slot and day tests). The tests enter the run's Benjamini-Hochberg weighted: a zone's
gathering weight grows with the upper-tail excess of its own past day errors (recurring unlisted
gatherings), as the weights that find the most anomalies of a design effect for their expected
false ones (:func:`~.presence_pvalues.optimal_weights`), averaging 1 over the day's tests, each
at least ``WEIGHT_FLOOR`` (Genovese, Roeder & Wasserman 2006); at daily grain, in a study over a
period, the excess is also read on the period's other weeks (``PERIOD_FOLDS``). With 10 zones or
more the reference is moved by the study's common bias (``RECENTRE``). At daily grain, where the
export splits residents from visitors, a gathering test joins the visitor share's rise
(:mod:`pipelines.signals.crowd`, ``JOIN_SHARE``). What explains an anomaly is a fact of that day (:mod:`pipelines.signals.explain`):
a known event in the zone, a holiday or observance, heavy precipitation or snow; the signal names which
(``details.explained_by``).
Explained signals are kept but ranked after unexplained ones. Everything is array arithmetic over
``(zones, days, slots)``: the cost grows linearly with the period.

References
----------
Genovese, C. R., Roeder, K. & Wasserman, L. (2006). False discovery control with p-value
weighting. Biometrika 93(3), 509-524.
Farrington, C. P., Andrews, N. J., Beale, A. D. & Catchpole, M. A. (1996). A statistical
algorithm for the early detection of outbreaks of infectious disease. JRSS A 159(3), 547-563.
Ignatiadis, N. & Huber, W. (2021). Covariate powered cross-weighted multiple testing. JRSS B
83(4), 720-751.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pipelines.signals.crowd import ShareEvidence, joined, share_evidence, zone_correlation
from pipelines.signals.explain import HEAVY_PRECIPITATION_MM, DayFacts, day_facts
from pipelines.signals.gaps import Gap, find_gaps, gap_runs
from pipelines.signals.panel import fmt_number, record, records_frame
from pipelines.signals.presence_layout import Layout, layout
from pipelines.signals.presence_pvalues import (
    DayLevel,
    moderated_scale,
    optimal_weights,
    p_values,
    pooled_tail_df,
    slot_df,
)
from pipelines.signals.reference import (
    FLOOR,
    MIN_CITY_ZONES,
    PROFILE_WEEKS,
    REFERENCE_WEEKS,
    SHIFTED_REFERENCE_WEEKS,
    TRIM,
    QuietReference,
    day_scale,
    nan_quantile,
    quiet_reference,
    recentred,
)
from pipelines.signals.shift import city_shift

_NEED = {"zone_id", "hour", "local_date", "local_hour", "present", "present_baseline"}
#: prior rate of gathering days of a zone whose history shows none, and of emptied days (0.01
#: until the reference was moved by the common bias, ``RECENTRE``: with calibrated p values,
#: 0.003 took mean daily recall on the development seeds from 0.72 to 0.77 at precision 0.92
#: or more; 0.001, 0.79 at 0.91; docs/evaluation.md).
PRIOR_RATE = 0.003
#: weeks of a zone's first day errors (after its reference exists: about weeks 3 to 10 of what
#: the review reads) that never count in its rate of gathering days nor in the study's tail:
#: read against a reference still forming, their excess would weigh as recurring gatherings for
#: a year (:func:`day_level`). 4 and 12 gave mean daily recall 0.77 and 0.78 on the
#: development seeds of docs/evaluation.md, against 0.79 for 8.
MATURE_WEEKS = 8
#: passes of the reference without the past values far above it, and the scales above it beyond
#: which a value leaves, at hourly and daily grain (:func:`reference_without_gaps`).
HIGH_PASSES, HIGH_TRIM = {"hourly": 1, "daily": 2}, {"hourly": TRIM, "daily": 1.5}
#: at daily grain, a zone's rate of gathering days is also read on the period's other weeks, 8
#: either side of each week, never on the week's own days (:func:`day_level`): a retrospective
#: study over a season weighs a venue's first games by the games that follow them, as
#: independent hypothesis weighting learns each fold's weights on the other folds (Ignatiadis &
#: Huber 2021). A weekly run's period is its week, so its weights are read on the past alone.
#: Not at hourly grain, where the slot test finds the games and weights read on the weeks ahead
#: of a season only weigh its quiet days before it (development seed 4: precision 0.85, 0.92
#: without).
PERIOD_FOLDS = True
#: at daily grain, shrink each zone-day's scale towards the zones' (:func:`.moderated_scale`).
MODERATE_SCALE = True
#: move the reference by the study's common bias and read the scale around it
#: (:func:`~.reference.recentred`; without, 1.9 % of null p values below 0.01: tests).
RECENTRE = True
#: at hourly grain, the day-level gathering test reads no more degrees of freedom than the
#: study's lower tail of day errors shows (:func:`.pooled_tail_df`; tests/test_presence_hourly_null.py).
POOLED_TAIL = True
#: at daily grain, a gathering test joins the visitor share's rise where the export splits
#: residents from visitors (:mod:`pipelines.signals.crowd`).
JOIN_SHARE = True


@dataclass(frozen=True)
class PresenceReview:
    """The presence part of a run: its tests, the data gaps found and their notes."""

    tests: pd.DataFrame
    gaps: tuple[Gap, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """The quiet reference, the data-gap mask, which values could enter the reference
    (``pool``) and the study's shift of each day in ``ref.loc`` (daily grain:
    :func:`~pipelines.signals.shift.city_shift`; hourly: the median over zones of their day
    errors, :func:`_day_errors`); ``df``: the slot test's degrees of freedom (:func:`.slot_df`)."""

    ref: QuietReference
    gaps: np.ndarray
    pool: np.ndarray
    shift: np.ndarray
    df: np.ndarray


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
    """Presence far above (gathering) or far below (emptied) its quiet-day reference (the
    method: the module's docstring).

    Parameters
    ----------
    frame
        Cube rows with zone_id, hour (UTC), local_date, local_hour, present, present_baseline
        and, when known, events_active, holiday, precipitation_mm and temperature_c (snow); the period and at least
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
    distributions. JASA 62, 626-633. Genovese et al. (2006), :mod:`~.reference`'s.
    """
    if missing := _NEED - set(frame.columns):
        raise ValueError(
            f"presence_anomalies needs columns {sorted(_NEED)}, missing {sorted(missing)}"
        )
    ps, pe = pd.Timestamp(period_start), pd.Timestamp(period_end)
    lay = layout(frame)
    facts = day_facts(
        frame, events=events, country=country, subdivision=subdivision, heavy_mm=heavy_mm,
        margin_hours=event_margin_hours,
    )  # fmt: skip
    in_period = np.array([_in(lay, i, ps, pe) for i in range(len(lay.days))], dtype=bool)
    base = reference_without_gaps(
        lay, facts, weeks=reference_weeks, profile_weeks=profile_weeks,
        from_day=int(np.argmax(in_period)),
    )  # fmt: skip
    runs = [g for g in gap_runs(_flat(base.gaps), _flat(lay.present), _flat(lay.hour), lay.zones)
            if ps <= g.start < pe]  # fmt: skip
    day = day_level(lay, base, facts.dry(lay.days), scale_floor=scale_floor, weeks=profile_weeks,
                    folds=in_period)  # fmt: skip
    y = np.where(base.gaps, np.nan, np.log1p(lay.present))
    z = (y - base.ref.loc) / np.maximum(np.nan_to_num(base.ref.scale, nan=0.0), scale_floor)
    share = (
        share_evidence(frame, zones=lay.zones, days=lay.days) if lay.daily and JOIN_SHARE else None
    )
    records = [r for sign in (1.0, -1.0)
               for r in _day_tests(lay, base, z, sign, in_period, facts, z_threshold, day, share=share)]  # fmt: skip
    return PresenceReview(tests=records_frame(records), gaps=tuple(runs), notes=_gap_notes(runs))


def reference_without_gaps(
    lay: Layout,
    facts: DayFacts,
    *,
    weeks: int = REFERENCE_WEEKS,
    profile_weeks: int = PROFILE_WEEKS,
    from_day: int = 0,
) -> Reference:
    """The quiet reference without the days a fact explains, then (a second pass) without the
    data gaps it reveals and without the past values that stood more than ``HIGH_TRIM`` scales
    above the reference they had before they were observed (out of sample: no value leaves the
    pool on what came after it; at daily grain 1.5 scales and a second pass, against the first's
    reference: a game at 1.3x stands 2.9 scales up, so one on a low day stayed in at 2). Unlisted
    recurring gatherings, a third of a venue's days in season, otherwise pull the week levels
    and the weekday profile up and bias the lower half of the errors behind the scale; the
    trimming inside :func:`~.reference.robust_location` keeps those within ``TRIM`` scales of a
    contaminated start. This is the Farrington algorithm's
    down-weighting of past outbreaks (Farrington et al. 1996; Noufaily et al. 2013) as a hard
    exclusion. At daily grain, with the study's shift of each day
    (:func:`~pipelines.signals.shift.city_shift`), it is learnt on the values less the shift
    over ``SHIFTED_REFERENCE_WEEKS`` weeks at least, the shift added back; at hourly grain the
    shift, the median over zones of their day errors (:func:`_day_errors`), is added to the
    finished reference (slot and day-level tests read it). At daily grain each zone-day's scale is then shrunk towards
    the zones' (:func:`~.presence_pvalues.moderated_scale`, Smyth 2004). ``from_day``: the first day
    tested (:func:`~pipelines.signals.reference.quiet_reference`)."""
    explained = np.array([d in facts.holidays or facts.heavy(d) for d in lay.days], dtype=bool)
    known = lay.event.any(axis=2, keepdims=True) | explained[None, :, None]
    y = np.log1p(lay.present)
    pool = np.isfinite(y) & ~known
    z, d, s = y.shape
    # a day-level quantity: learnt with the reference at daily grain, added to it at hourly
    shift = city_shift(y, np.isfinite(y))[None, :, None] if lay.daily else np.zeros((1, d, 1))
    if shift.any():  # the zone's level against the city's: stable, learnt on more weeks
        weeks = max(weeks, SHIFTED_REFERENCE_WEEKS)
    ref = quiet_reference(
        y - shift, pool, weeks=weeks, profile_weeks=profile_weeks, from_day=from_day
    )
    gaps = find_gaps(_flat(lay.present), _flat(np.expm1(ref.loc + shift))).reshape(z, d, s)
    high, grain = np.zeros_like(pool), "daily" if lay.daily else "hourly"
    for _ in range(max(1, HIGH_PASSES[grain])):  # the first pass also takes out the gaps
        with np.errstate(invalid="ignore"):  # past values far above their out-of-sample reference
            high |= pool & (y - shift - ref.loc > HIGH_TRIM[grain] * np.fmax(ref.scale, FLOOR))
        zi = np.flatnonzero((gaps | high).any(axis=(1, 2)))  # zones are independent: redo those
        if len(zi):
            sub = quiet_reference(
                np.where(gaps[zi], np.nan, (y - shift)[zi]), (pool & ~gaps & ~high)[zi],
                weeks=weeks, profile_weeks=profile_weeks, from_day=from_day,
            )  # fmt: skip
            parts = {
                k: getattr(ref, k).copy() for k in ("loc", "scale", "n_loc", "n_scale", "tail_df")
            }
            for k, a in parts.items():
                a[zi] = getattr(sub, k)
            ref = QuietReference(**parts)
    if RECENTRE:
        ref = recentred(ref, y - shift, np.isfinite(y) & ~known & ~gaps, pool & ~gaps & ~high,
                        weeks=profile_weeks)  # fmt: skip
    d0 = np.zeros(d) if lay.daily else None  # daily: the moderation's prior df counted
    if lay.daily and MODERATE_SCALE:  # scales shrunk towards the zones' (Smyth 2004)
        sc, d0 = moderated_scale(ref.scale[..., 0], slot_df(ref.n_scale, d0)[..., 0])
        ref = replace(ref, scale=sc[..., None])
    df = slot_df(ref.n_scale, d0)
    if not lay.daily:  # the median over zones (10 or more) of their day errors
        err = _day_errors(lay, ref.level, gaps)[0]
        med = np.nan_to_num(nan_quantile(err.T, 0.5))
        shift = np.where(np.isfinite(err).sum(axis=0) >= MIN_CITY_ZONES, med, 0.0)[None, :, None]
    ref = replace(ref, loc=ref.loc + shift)
    return Reference(ref=ref, gaps=gaps, pool=pool & ~gaps, shift=shift[0, :, 0], df=df)


def day_level(
    lay: Layout,
    base: Reference,
    dry: np.ndarray,
    *,
    scale_floor: float,
    weeks: int = PROFILE_WEEKS,
    prior_rate: float = PRIOR_RATE,
    mature_weeks: int = MATURE_WEEKS,
    folds: np.ndarray | None = None,
) -> DayLevel:
    """The day-level test and the tests' weights.

    A day's error is ``log(1 + sum present) - log(1 + sum reference)`` over its valid slots (at
    least three quarters of them; gaps left out); its scale and lower tail come from the zone's
    quiet days of the ``weeks`` past weeks (:func:`~pipelines.signals.reference.day_scale`), the
    gathering test's from the ``dry`` ones only (``DayFacts.dry``: every day without weather):
    rain only lowers presence, so wet days widen the lower half of the errors without being
    noise a rise must exceed. The prior of a zone's gathering test is ``prior_rate`` plus the
    upper-tail excess of its past day errors (its own rate of gathering days, read on every
    quiet day, wet ones too, over the last 8 and 52 weeks: a season under way, last season;
    not the errors of the first ``mature_weeks`` weeks read, against a reference still forming;
    at daily grain, given ``folds``, the period's days, also over the period's other weeks
    within 8 weeks either side, each week's own days left out of its weights: ``PERIOD_FOLDS``);
    that of its emptied test is ``prior_rate``; those rates give the weights
    (:func:`optimal_weights`), which average 1 over the zones with a test that day (a value, not
    a gap, and a reference) and both directions each day
    (weighted Benjamini-Hochberg: Genovese, Roeder & Wasserman 2006).
    """
    err, ok = _day_errors(lay, base.ref.level, base.gaps)  # the study's day taken out (base)
    quiet = (base.pool & ok).sum(axis=2) >= 0.75 * lay.present.shape[2]
    scale_e, n_e, _, df = day_scale(np.where(quiet, err, np.nan), weeks=weeks)
    seen = np.cumsum(np.isfinite(err), axis=1)  # the zone's days of errors so far
    scale_g, n_g, excess, _ = day_scale(
        np.where(quiet & dry[None, :], err, np.nan), weeks=weeks, high=np.where(quiet, err, np.nan),
        counted=seen > 7 * mature_weeks, folds=folds if PERIOD_FOLDS and lay.daily else None,
    )  # fmt: skip
    z = np.stack([err / np.maximum(np.nan_to_num(sc, nan=0.0), scale_floor)
                  for sc in (scale_g, scale_e)])  # fmt: skip
    w = np.stack([prior_rate + excess, np.full(excess.shape, prior_rate)])
    tested = (np.isfinite(lay.present) & ~base.gaps & np.isfinite(base.ref.loc)).any(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):  # unfloored; not the first weeks' scales
        u = np.where(quiet & dry & (seen > 7 * mature_weeks), err / scale_g, np.nan)
    pooled = pooled_tail_df(u, weeks=weeks) if POOLED_TAIL and not lay.daily else None
    return DayLevel(z=z, n=np.stack([n_g, n_e]), df=df, weights=optimal_weights(w, tested=tested),
                    df_pooled=pooled)  # fmt: skip


def _day_errors(lay: Layout, level: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(zones, days)`` ``log(1 + sum present) - log(1 + sum level)`` over a day's valid slots
    (at least three quarters of them; gaps left out), NaN otherwise; and the valid slots."""
    ok = np.isfinite(lay.present) & ~gaps & np.isfinite(level)
    with np.errstate(invalid="ignore"):
        e = np.log1p(np.where(ok, lay.present, 0.0).sum(2)) - np.log1p(
            np.where(ok, level, 0.0).sum(2)
        )
    return np.where(ok.sum(axis=2) >= 0.75 * lay.present.shape[2], e, np.nan), ok


def _flat(a: np.ndarray) -> np.ndarray:
    """``(zones, days, slots)`` -> ``(zones, days * slots)`` in time order."""
    return a.reshape(a.shape[0], -1)


def _in(lay: Layout, i: int, ps: pd.Timestamp, pe: pd.Timestamp) -> bool:
    """Whether local day i has a slot in ``[ps, pe)``."""
    h = lay.hour[:, i].ravel()
    h = h[~np.isnat(h)]
    if not len(h):
        return False
    lo, hi = (np.datetime64(t.tz_convert("UTC").tz_localize(None)) for t in (ps, pe))
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
    base: Reference,
    z: np.ndarray,
    sign: float,
    in_period: np.ndarray,
    facts: DayFacts,
    thr: float,
    day: DayLevel,
    *,
    share: ShareEvidence | None = None,
) -> list[dict]:
    """The tests of every zone and period day, one way (``sign`` 1: gathering, -1: emptied):
    p values by :func:`~.presence_pvalues.p_values` (a gathering's joined to the visitor share's
    rise where ``share`` is given: :mod:`pipelines.signals.crowd`); the window is the run of slots
    beyond ``thr`` around the extreme slot, or the whole day when the day-level test decides."""
    _, _, s = z.shape
    days = np.flatnonzero(in_period)
    zs = sign * z[:, days].reshape(-1, s)
    ref = base.ref
    p, pw, w, j, zmax, use_day, n = p_values(base.df, ref.tail_df, day, zs, sign, days=days,
                                             daily=lay.daily)  # fmt: skip
    join = None
    if sign > 0 and share is not None:  # the visitors' share joins the gathering test (daily)
        rho = zone_correlation(
            np.where(base.pool[..., 0], z[..., 0], np.nan), share.z, share.weekday
        )
        join = joined(p, share.z[:, days].reshape(-1), rho[:, days].reshape(-1), above=zmax > 0)
        p_own, p = p, join.p
        pw = np.minimum(1.0, p / w)
    a, b = _window(zs, j, thr)
    ok = np.isfinite(zs)
    first = np.argmax(ok, axis=1)
    last = s - 1 - np.argmax(ok[:, ::-1], axis=1)
    a, b = np.where(use_day, first, a), np.where(use_day, last, b)
    pres = lay.present[:, days].reshape(-1, s)
    lev = ref.level[:, days].reshape(-1, s)
    hours = lay.hour[:, days].reshape(-1, s)
    evs = lay.event[:, days].reshape(-1, s)
    out = []
    for k in np.flatnonzero(n > 0):
        zone, dday = str(lay.zones[k // len(days)]), lay.days[days[k % len(days)]]
        win = slice(a[k], b[k] + 1)
        start = pd.Timestamp(hours[k, a[k]], tz="UTC")
        end = pd.Timestamp(hours[k, b[k]], tz="UTC") + (
            pd.Timedelta(days=1) if lay.daily else pd.Timedelta(hours=1)
        )
        obs, exp = float(np.nanmean(pres[k, win])), float(np.nanmean(lev[k, win]))
        kinds, names, why = facts.explain(
            zone, dday, start, end, event_slot=bool(evs[k, win].any())
        )
        crowd = None
        if join is not None and join.used[k]:
            crowd = {"p_presence": float(p_own[k]), "share_z": float(join.z_share[k]),
                     "rho": float(join.rho[k])}  # fmt: skip
        out.append(_record(zone, sign, start, end, obs, exp, (float(p[k]), float(pw[k])), float(zmax[k]), why,
                           kinds, names, int(b[k] - a[k] + 1), weight=float(w[k]),
                           level="day" if use_day[k] or lay.daily else "hour", crowd=crowd))  # fmt: skip
    return out


def _record(
    zone: str, sign: float, start, end, obs: float, exp: float, ps: tuple[float, float], zmax: float,
    why: str, kinds: list[str], names: list[str], slots: int, *, weight: float, level: str,
    crowd: dict | None = None,
) -> dict:  # fmt: skip
    """One presence test as a record; ``ps`` its unweighted and weighted p values (the latter is
    ``p_value``; the former and the weight go into the details); ``crowd``: the visitor share
    joined to the test (:mod:`pipelines.signals.crowd`), into the details."""
    word = "above" if sign > 0 else "below"
    note = ""
    if sign > 0 and weight >= 2.0:
        note = f"; the zone's own history holds recurring gatherings (test weight x{weight:.1f})"
    if crowd:
        note += f"; its visitors' share, {crowd['share_z']:.1f} SD above usual, joins the test"
    return record(
        "gathering" if sign > 0 else "emptied",
        detector=f"presence_{'high' if sign > 0 else 'low'}",
        zones=[zone],
        start=start,
        end=end,
        observed=obs,
        expected=exp,
        p_value=ps[1],
        explanation=f"Zone {zone} held {fmt_number(obs)} people against a quiet-day reference "
        f"of {fmt_number(exp)} (x{obs / exp if exp else np.nan:.2f}, {word} normal by "
        f"{abs(zmax):.1f} robust SD{' over the whole day' if level == 'day' else ''}) "
        f"{why}{note}.",
        statistic=zmax,
        explained=bool(kinds),
        explained_by=kinds,
        events=names,
        slots=slots,
        p_unweighted=ps[0],
        weight=weight,
        level=level,
        **(crowd or {}),
    )
