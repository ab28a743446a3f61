"""The presence anomalies' own reference: the level of a *quiet* day, which recurring gatherings
do not inflate.

The cube's ``present_baseline`` is the median of the same slot of the week over 8 weeks. At a
venue that hosts a game on a third or half of its days in season, that median sits between the
quiet days and the game days, so the games it should reveal hide under it; and 8 values per slot
of the week are too few to trim the games away. The reference here splits the value of a slot
into a *level* (how busy the zone is these weeks) and a *profile* (how a slot of the week stands
against the level), each a robust location from the zone's own past, learnt on the values that
look quiet (one-sided trimming, in the spirit of the Farrington algorithm's down-weighting of
past outbreaks: Farrington et al. 1996; Noufaily et al. 2013):

1. work on ``y = log(1 + present)`` per zone, local day and slot of the day (the local hour, or
   one slot at daily grain); values that a known fact explains (a known event in the zone that
   day, a public holiday, heavy precipitation or snow) and data gaps never enter the reference;
2. each 7-day block's median over all its slots is its *week level* (a week holds every weekday
   once, so it is balanced, and a few gathering days or hours hardly move a median);
3. the *profile* of a slot of the week is the trimmed location (below) of that slot's values
   minus their week level over the ``profile_weeks`` past weeks: a shape, stable over months, so
   it can be learnt on many weeks;
4. the *level* of a week is the trimmed location of the day levels of the ``weeks`` past weeks,
   pooled over the days of the week (7 x ``weeks`` values, not ``weeks``): a day's level is the
   median over its slots of its values minus the profile;
5. the reference is level + profile; its scale is 1.4826 x the median of the out-of-sample errors
   below zero (each value against the reference it had before it was observed), per slot of the
   day over the ``profile_weeks`` past weeks: the spread of the prediction errors on the zone's
   own quiet history (gatherings sit above: the lower half does not see them); with fewer than
   ``MIN_SLOT_ERRORS`` errors behind a slot (a short history), the slots of the day share one;
6. the *lower tail* of those errors, standardised, is read as a Student t's degrees of freedom
   (:func:`tail_df`): a zone whose counts drop far more often than a normal would (weather, low
   night counts) has its emptied tests judged against its own heavy tail;
7. with 10 zones or more, :func:`recentred` moves the reference by the study's common bias (a
   reference learnt on what looks quiet sits a little low) and reads the scale around it.

The trimmed location of values ``v`` starts from the lower quartile, ``q25 + 0.6745 s`` with
``s = (q25 - q10) / 0.6071`` (a normal's quartile gaps: both quantiles stay on the quiet side at
30 % contamination from above), then ``iterations`` times keeps the values within ``trim`` scales
above (``2 trim`` below) and takes their median as location and 1.4826 x the median deviation of
the kept values below it as scale. Everything is array arithmetic over ``(zones, weeks, 7,
slots)`` with sliding windows over the week axis, zones in chunks: the cost grows linearly with
the period's length.

References
----------
Farrington, C. P., Andrews, N. J., Beale, A. D. & Catchpole, M. A. (1996). A statistical
algorithm for the early detection of outbreaks of infectious disease. JRSS A 159(3), 547-563.
Noufaily, A. et al. (2013). An improved algorithm for outbreak detection in multiple surveillance
systems. Statistics in Medicine 32(7), 1206-1222.
Rousseeuw, P. J. & Croux, C. (1993). Alternatives to the median absolute deviation. JASA 88,
1273-1283 (the 1.4826 consistency factor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: weeks of history of the level (its 7 x weeks day levels).
REFERENCE_WEEKS = 8
#: weeks of history of the profile and of the scale.
PROFILE_WEEKS = 26
#: past values above their reference by more than this many scales are left out.
TRIM = 2.0
#: trimming passes after the start from the lower quartile.
ITERATIONS = 3
#: the smallest trimming scale of log(1 + present) (a 5 % change is never more than 1 SD).
FLOOR = 0.05
#: fewer past weeks than this behind a slot's profile: no reference (the slot is not tested).
MIN_WEEKS = 2
#: fewer out-of-sample errors than this behind a slot's scale: the day's slots share one scale.
MIN_SLOT_ERRORS = 50
#: fewer past day levels than this behind a level: no reference.
MIN_DAYS = 7
#: standardised errors below -TAIL_Z are counted to read the tail of the zone's own errors.
TAIL_Z = 3.0
#: pseudo-errors from the normal that the tail share is shrunk towards.
TAIL_PRIOR = 500.0
#: the degrees of freedom the tail can take (inf last: the normal).
_DF_GRID = np.array([2.0, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, np.inf])
#: zone-slot cells of one chunk's windows (memory bound; the result does not depend on it).
_CHUNK_CELLS = 8_000_000
#: weeks of history of the level when the study's shift of each day is removed first: the
#: zone's level against the city's moves slowly (:func:`~pipelines.signals.shift.city_shift`).
SHIFTED_REFERENCE_WEEKS = 26
#: fewer zones than this with a day level: no city shift that day (:func:`~pipelines.signals.shift.city_shift`).
MIN_CITY_ZONES = 10
#: standardised day errors beyond this count in the upper-tail excess (:func:`day_scale`).
EXCESS_Z = 2.0
#: weeks of history behind the upper-tail excess (:func:`day_scale`): a year, so that a venue's
#: last season counts when the next one opens.
EXCESS_WEEKS = 52
#: weeks of the recent window also read (:func:`day_scale`): a season under way.
RECENT_EXCESS_WEEKS = 8
#: weeks either side of a week whose period days also give its excess (:func:`day_scale`).
FOLD_WEEKS = 8
#: standard normal quantile gaps used by the start: q75 - q50 and q25 - q10.
_Q3, _Q1_Q10 = 0.6745, 0.6071


@dataclass(frozen=True)
class QuietReference:
    """The reference of every zone, day and slot, as arrays ``(zones, days, slots)``.

    Attributes
    ----------
    loc
        Location of ``log(1 + present)`` on a quiet day (NaN where the history is too short).
    scale
        Spread of the quiet days' out-of-sample errors (1.4826 x the median of the errors below
        zero), NaN where unknown.
    n_loc, n_scale
        Past day levels behind the level; out-of-sample errors behind the scale.
    tail_df
        Degrees of freedom of the Student t whose lower tail matches the zone's own standardised
        out-of-sample errors over the ``profile_weeks`` past weeks (:func:`tail_df`), per zone
        and day; ``inf`` where the errors look normal.
    """

    loc: np.ndarray
    scale: np.ndarray
    n_loc: np.ndarray
    n_scale: np.ndarray
    tail_df: np.ndarray

    @property
    def level(self) -> np.ndarray:
        """The reference in people: ``exp(loc) - 1``."""
        return np.expm1(self.loc)


def quiet_reference(
    y: np.ndarray,
    pool: np.ndarray,
    *,
    weeks: int = REFERENCE_WEEKS,
    profile_weeks: int = PROFILE_WEEKS,
    trim: float = TRIM,
    iterations: int = ITERATIONS,
    from_day: int = 0,
) -> QuietReference:
    """The quiet-day reference of ``y`` (method in the module's docstring).

    Parameters
    ----------
    y
        ``(zones, days, slots)`` values (``log(1 + present)``) over consecutive local days.
    pool
        Same shape: which values may enter the reference (False for explained days and gaps).
    weeks, profile_weeks
        Weeks of history of the level; of the profile and the scale.
    trim, iterations
        The trimming threshold in scales; the trimming passes.
    from_day
        The first day whose reference is needed: the location is computed from ``2 x
        profile_weeks + EXCESS_WEEKS`` weeks before its week on (the errors behind its scale,
        the scales behind its lower tail, and the year of errors behind a zone's rate of
        gathering days), NaN before; a short period after a long history pays for those weeks.

    Returns
    -------
    QuietReference
    """
    z, d, s = y.shape
    nw = -(-d // 7)
    fw = min(max(0, from_day // 7 - 2 * profile_weeks - EXCESS_WEEKS), nw - 1)
    step = max(1, _CHUNK_CELLS // max(1, (nw - fw) * 7 * s * max(weeks, profile_weeks)))
    parts = [
        _reference(
            y[a : a + step], pool[a : a + step], weeks, profile_weeks, trim, iterations, fw
        )  # fmt: skip
        for a in range(0, z, step)
    ]
    loc, scale, n_loc, n_scale, tdf = (
        np.concatenate([p[i] for p in parts])[:, :d] for i in range(5)
    )
    return QuietReference(loc=loc, scale=scale, n_loc=n_loc, n_scale=n_scale, tail_df=tdf)


def _reference(
    y: np.ndarray,
    pool: np.ndarray,
    weeks: int,
    profile_weeks: int,
    trim: float,
    iterations: int,
    fw: int = 0,
) -> tuple[np.ndarray, ...]:
    """:func:`quiet_reference` on one chunk of zones: ``(loc, scale, n_loc, n_scale, df)``;
    the location from week ``fw`` on (NaN before)."""
    z, d, s = y.shape
    nw = -(-d // 7)
    yw = _weekly(np.where(pool, y, np.nan), nw)  # (z, nw, 7, s): the values allowed in
    week_level = nan_quantile(yw.reshape(z, nw, 7 * s), 0.5)
    shape = yw - week_level[:, :, None, None]
    profile, _, n_prof = robust_location(_windows(shape, profile_weeks)[:, fw:], trim=trim,
                                         iterations=iterations)  # fmt: skip
    # day levels of the past `weeks` weeks against this week's profile: (z, nw, 7, s, weeks)
    past = _windows(yw, weeks)[:, fw:] - profile[..., None]
    day_levels = nan_quantile(past.transpose(0, 1, 2, 4, 3), 0.5)  # (z, nw - fw, 7, weeks)
    level, _, n_days = robust_location(day_levels.reshape(z, nw - fw, 7 * weeks), trim=trim,
                                       iterations=iterations)  # fmt: skip
    ok = (n_prof >= MIN_WEEKS) & (n_days >= MIN_DAYS)[:, :, None, None]
    loc = np.full(yw.shape, np.nan)
    loc[:, fw:] = np.where(ok, level[:, :, None, None] + profile, np.nan)
    n_days = np.concatenate([np.zeros((z, fw)), n_days], axis=1)
    err = _weekly(np.where(pool, y, np.nan), nw) - loc
    scale, n_scale, df = _scales(err, profile_weeks)
    n_loc = np.broadcast_to(n_days[:, :, None, None], loc.shape)
    return (
        loc.reshape(z, nw * 7, s)[:, :d],
        scale,
        np.ascontiguousarray(n_loc).reshape(z, nw * 7, s)[:, :d],
        n_scale,
        df,
    )


def _scales(err: np.ndarray, profile_weeks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the out-of-sample errors ``(zones, weeks, 7, slots)`` (NaN: not in the reference):
    the scale per slot of the day over the past ``profile_weeks`` weeks, the errors behind it
    and the degrees of freedom of their lower tail, as ``(zones, days, slots)`` arrays (the
    last ``(zones, days)``), days up to ``weeks * 7``."""
    z, nw, _, s = err.shape
    below = np.where(err <= 0, -err, np.nan).transpose(0, 1, 3, 2)  # (z, nw, s, 7)
    win = _windows(below, profile_weeks).reshape(z, nw, s, 7 * profile_weeks)
    scale = 1.4826 * nan_quantile(win, 0.5)
    n_err = _windows(np.isfinite(err).transpose(0, 1, 3, 2).astype(float), profile_weeks)
    n_scale = np.nansum(n_err.reshape(z, nw, s, 7 * profile_weeks), axis=-1)
    # a short history: one scale for all the slots of the day (more errors behind it)
    short = n_scale < MIN_SLOT_ERRORS
    if short.any() and s > 1:
        pooled = 1.4826 * nan_quantile(win.reshape(z, nw, -1), 0.5)
        n_all = n_scale.sum(axis=-1, keepdims=True)
        scale = np.where(short, pooled[..., None], scale)
        n_scale = np.where(short, n_all, n_scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = err / np.repeat(scale[:, :, None, :], 7, axis=2)
    low = (u < -TAIL_Z).reshape(z, nw, -1).sum(axis=-1)
    n_u = np.isfinite(u).reshape(z, nw, -1).sum(axis=-1)
    df = tail_df(_past_sum(low, profile_weeks), _past_sum(n_u, profile_weeks))

    def days(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[:, :, None, :], 7, axis=2).reshape(z, nw * 7, s)

    return days(scale), days(n_scale), np.repeat(df, 7, axis=1)


def _around(a: np.ndarray, weeks: int) -> np.ndarray:
    """``(zones, weeks)`` -> the sum over the ``weeks`` weeks either side of each week and itself."""
    c = np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)
    i = np.arange(a.shape[1])
    return c[:, np.minimum(i + weeks + 1, a.shape[1])] - c[:, np.maximum(i - weeks, 0)]


def _past_sum(a: np.ndarray, weeks: int) -> np.ndarray:
    """``(zones, weeks)`` -> the sum over the ``weeks`` weeks before each week."""
    c = np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)
    i = np.arange(a.shape[1])
    return c[:, i] - c[:, np.maximum(i - weeks, 0)]


def tail_df(below: np.ndarray, n: np.ndarray, *, prior: float = TAIL_PRIOR) -> np.ndarray:
    """The Student t degrees of freedom whose lower tail matches the zone's own errors.

    A standardised error is ``u = error / scale`` with the MAD scale of the module, so under a
    Student t with ``v`` degrees of freedom ``P(u < -c) = F_v(-c k_v)`` with
    ``k_v = 1.4826 F_v^-1(0.75)``. The share of the past ``n`` errors below ``-TAIL_Z``
    (``below`` of them), shrunk towards the normal's by ``prior`` pseudo-errors, gives the
    largest ``v`` of the grid whose tail is at least that heavy (``inf``: normal). Only the lower
    tail is read: gatherings sit in the upper one.
    """
    g = _tail_prob(_DF_GRID)
    share = (below + prior * g[-1]) / (n + prior)
    idx = np.searchsorted(-g, -share, side="right") - 1  # last grid df with g >= share
    return _DF_GRID[np.clip(idx, 0, len(_DF_GRID) - 1)]


def _tail_prob(df: np.ndarray) -> np.ndarray:
    """``P(u < -TAIL_Z)`` for a MAD-standardised Student t with ``df`` degrees of freedom."""
    from scipy import stats

    k = 1.4826 * stats.t.ppf(0.75, df)
    return stats.t.cdf(-TAIL_Z * k, df)


def robust_location(
    v: np.ndarray, *, trim: float = TRIM, iterations: int = ITERATIONS, floor: float = FLOOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trimmed location of the values on the last axis (NaN: absent), its scale and the
    number of values kept (method in the module's docstring); the trimming scale is at least
    ``floor`` (a few nearly equal values must not trim every other one away).

    Returns
    -------
    tuple
        ``(location, scale, kept)``, each of shape ``v.shape[:-1]``.
    """
    finite = np.isfinite(v)
    q10, q25 = nan_quantile(v, 0.10), nan_quantile(v, 0.25)
    scale = np.maximum((q25 - q10) / _Q1_Q10, floor)
    loc = q25 + _Q3 * scale
    keep = finite
    for _ in range(iterations):
        dev = v - loc[..., None]
        sc = scale[..., None]
        with np.errstate(invalid="ignore"):
            keep = finite & (dev <= trim * sc) & (dev >= -2 * trim * sc)
        loc = nan_quantile(np.where(keep, v, np.nan), 0.5)
        with np.errstate(invalid="ignore"):
            low = np.where(keep & (v <= loc[..., None]), loc[..., None] - v, np.nan)
        scale = np.maximum(1.4826 * nan_quantile(low, 0.5), floor)
    return loc, scale, keep.sum(axis=-1)


def nan_quantile(a: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of the finite values on the last axis (linear interpolation, as
    :func:`numpy.nanquantile`), NaN where there are none; by one sort, not a loop over rows."""
    srt = np.sort(a, axis=-1)  # NaN last
    n = np.isfinite(srt).sum(axis=-1)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    vlo = np.take_along_axis(srt, lo[..., None], axis=-1)[..., 0]
    vhi = np.take_along_axis(srt, hi[..., None], axis=-1)[..., 0]
    out = vlo + (pos - lo) * (vhi - vlo)
    return np.where(n > 0, out, np.nan)


def _weekly(a: np.ndarray, nw: int) -> np.ndarray:
    """``(zones, days, slots)`` -> ``(zones, weeks, 7, slots)``, NaN-padded at the end."""
    z, d, s = a.shape
    out = np.full((z, nw * 7, s), np.nan)
    out[:, :d] = a
    return out.reshape(z, nw, 7, s)


def _windows(a: np.ndarray, weeks: int) -> np.ndarray:
    """For each week w, the values of weeks ``w - weeks .. w - 1`` on a new last axis."""
    pad = np.full((a.shape[0], weeks, *a.shape[2:]), np.nan)
    full = np.concatenate([pad, a], axis=1)[:, :-1]
    return sliding_window_view(full, weeks, axis=1)


def day_scale(
    err: np.ndarray,
    *,
    weeks: int = PROFILE_WEEKS,
    excess_weeks: int = EXCESS_WEEKS,
    high: np.ndarray | None = None,
    counted: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scale of day-level errors and the excess of their upper tail, from each zone's past.

    ``err`` is ``(zones, days)``: each day's out-of-sample error (NaN where the day may not enter
    the reference). Over the ``weeks`` weeks before each day's week the scale is 1.4826 x the
    median of the errors below zero (as :func:`quiet_reference`). ``excess`` reads the
    ``excess_weeks`` weeks before (a longer memory: a venue's recurring gatherings are a
    property of the place, and a season of games should still count when the next one opens),
    each past error standardised by the scale it had then (out of sample): the share of
    standardised errors above ``EXCESS_Z`` minus the share below ``-EXCESS_Z``, at least 0.
    Quiet errors are symmetric, so what the upper tail holds beyond the mirror of the lower one
    (and beyond two standard errors of that difference) is the zone's own rate of gathering days
    (the second component of a two-component history: a venue with recurring unlisted events).
    ``high`` (default ``err``): the errors whose upper tail is counted, when more days may show a
    gathering than may set the scale (wet days: rain lowers presence, so they widen the lower
    tail but never make a rise); the lower tail's share of ``err`` is then scaled to their
    number (wet days' upper tail is thinner than a dry day's: the mirror is conservative).
    ``counted`` (default: all): which days' errors may enter either tail's count (the scale
    reads them all), e.g. not those read while the reference was still forming. ``folds``
    (``(days,)``, default none): the days of a period under review; each week's excess is then
    also read on those days of the ``FOLD_WEEKS`` weeks either side of it, never on its own (a
    7-day block of ``err``): the weights of a week's tests do not depend on its own p values,
    as in independent hypothesis weighting's folds (Ignatiadis & Huber 2021), and a venue's
    first gatherings of a period are weighted by its later ones.

    References
    ----------
    Ignatiadis, N. & Huber, W. (2021). Covariate powered cross-weighted multiple testing.
    JRSS B 83(4), 720-751.

    Returns
    -------
    tuple
        ``(scale, n, excess, df)``, each ``(zones, days)``; ``n`` the errors behind the scale,
        ``df`` the degrees of freedom of their lower tail (:func:`tail_df`).
    """
    z, d = err.shape
    nw = -(-d // 7)
    ew = _weekly(err[:, :, None], nw)[..., 0]  # (z, nw, 7)
    win = _windows(ew, weeks).reshape(z, nw, 7 * weeks)  # (z, nw, 7 * weeks)
    scale = 1.4826 * nan_quantile(np.where(win <= 0, -win, np.nan), 0.5)
    n = np.isfinite(win).sum(axis=-1).astype(float)
    hw = ew if high is None else _weekly(high[:, :, None], nw)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = win / scale[..., None]
        own = ew / scale[..., None]  # each week's errors against the scale it had then
        own_high = hw / scale[..., None]
    if counted is not None:
        cw = _weekly(counted[:, :, None].astype(float), nw)[..., 0] > 0
        own, own_high = np.where(cw, own, np.nan), np.where(cw, own_high, np.nan)
    df = tail_df((u < -TAIL_Z).sum(axis=-1), n)
    cells = (own_high > EXCESS_Z, np.isfinite(own_high), own < -EXCESS_Z, np.isfinite(own))
    counts = [c.sum(axis=-1).astype(float) for c in cells]
    sums = [[_past_sum(c, w) for c in counts] for w in sorted({RECENT_EXCESS_WEEKS, excess_weeks})]
    if folds is not None:  # the period's other weeks (each week left out of its own weights)
        fw = _weekly(folds[None, :, None].astype(float), nw)[..., 0] > 0
        per = [(c & fw).sum(axis=-1).astype(float) for c in cells]
        sums.append([_around(c, FOLD_WEEKS) - c for c in per])
    excess = np.zeros((z, nw))
    for up, m, low, m_low in sums:
        r = m / np.maximum(m_low, 1.0)  # the lower tail's count scaled to the days read above
        # beyond two standard errors of the difference (Var ~ up + r^2 low)
        ex = np.maximum(up - r * low - 2.0 * np.sqrt(up + r * r * low), 0.0)
        excess = np.maximum(excess, ex / np.maximum(m, 1.0))

    def back(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, 7, axis=1)[:, :d]

    return back(scale), back(n), back(excess), back(df)


def recentred(
    ref: QuietReference,
    y: np.ndarray,
    seen: np.ndarray,
    pool: np.ndarray,
    *,
    weeks: int = PROFILE_WEEKS,
    min_zones: int = MIN_CITY_ZONES,
) -> QuietReference:
    """The reference moved by the study's common bias, its scale read around it.

    A reference learnt on values that look quiet (trimmed, the past values far above it left
    out) sits a little below the centre of a quiet day's values: a normal sample kept below
    1.5 scales has its median 0.08 scales low, and the lower-half scale read around zero is
    then short too. Each week, ``b`` is the median over the ``weeks`` weeks before of each
    week's median over every zone's errors ``y - loc`` (``seen``: the values observed, high ones
    included), a week counting only when ``min_zones`` zones or more have an error in it (one
    venue among them cannot move it), and ``b`` only when ``MIN_WEEKS`` such weeks or more are
    behind it (0 otherwise); ``loc + b`` is the reference, and the scale and the lower tail are
    read on the errors ``y - loc - b`` of the ``pool`` (:func:`_scales`, by blocks of zones as
    :func:`quiet_reference`). Without any such week the reference is left as it is.
    """
    z, d, s = y.shape
    if z < min_zones:
        return ref
    nw = -(-d // 7)
    err = _weekly(np.where(seen, y - ref.loc, np.nan), nw)  # (z, nw, 7, s)
    zones = np.isfinite(err).any(axis=(2, 3)).sum(axis=0)  # the zones with an error, each week
    week = nan_quantile(err.transpose(1, 0, 2, 3).reshape(nw, -1), 0.5)  # over zones, each week
    past = _windows(np.where(zones >= min_zones, week, np.nan)[None, :], weeks)[0]
    enough = np.isfinite(past).sum(axis=-1) >= MIN_WEEKS  # the weeks before
    b = np.where(enough, nan_quantile(past, 0.5), np.nan)
    if not np.isfinite(b).any():
        return ref
    bd = np.repeat(np.nan_to_num(b, nan=0.0), 7)[:d][None, :, None]
    step = max(1, _CHUNK_CELLS // max(1, nw * 7 * s * weeks))
    parts = [
        _scales(_weekly(np.where(pool[i : i + step], y[i : i + step] - ref.loc[i : i + step] - bd,
                                 np.nan), nw), weeks)
        for i in range(0, z, step)
    ]  # fmt: skip
    scale, n_scale, df = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return replace(ref, loc=ref.loc + bd, scale=scale[:, :d], n_scale=n_scale[:, :d],
                   tail_df=df[:, :d])  # fmt: skip
