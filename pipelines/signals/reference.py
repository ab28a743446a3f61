"""The presence anomalies' own reference: the level of a *quiet* day, which recurring gatherings
do not inflate.

The cube's ``present_baseline`` is the median of the same slot of the week over 8 weeks. At a
venue that hosts a game on half of its days in season, that median sits between the quiet days
and the game days, so the games it should reveal hide under it. The reference here is learnt on
the days that look quiet, by one-sided trimming in the spirit of the Farrington algorithm's
down-weighting of past outbreaks (Farrington et al. 1996; Noufaily et al. 2013):

1. work on ``y = log(1 + present)`` per zone, local day and slot of the day (the local hour, or
   one slot at daily grain); values that a known fact explains (a known event in the zone that
   day, a public holiday, heavy precipitation) and data gaps never enter the reference;
2. start from the lower quartile of the same slot of the week over the ``weeks`` past weeks
   (past values only) and a scale from the deviations below it;
3. repeat ``iterations`` times: leave out the past values more than ``trim`` scales above (or
   ``3 trim / 2`` below) *their own* reference, then take the median of the rest as the location
   and ``1.4826 x`` the median absolute deviation of the rest from their own references, pooled
   over the seven days of the week of that slot, as the scale.

Each value's deviation is taken from the reference it had before it was observed, so the scale
is the spread of out-of-sample prediction errors on the zone's own quiet history: it carries the
location's own estimation error, and it is what a new value's z score needs. Everything is array
arithmetic over ``(zones, weeks, 7, slots)`` (sliding windows over the week axis), so the cost
grows linearly with the period's length.

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

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: weeks of history in the reference.
REFERENCE_WEEKS = 8
#: past values above their own reference by more than this many scales are left out.
TRIM = 2.5
#: trimming passes after the start from the lower quartile.
ITERATIONS = 3
#: the upper quartile of the standard normal: the start's location is the lower quartile plus
#: this many scales (unbiased on quiet history, still below the crowds at 50 % contamination).
_Q3 = 0.6745
#: fewer past values than this at a slot of the week: no location (the slot is not tested).
MIN_VALUES = 3


@dataclass(frozen=True)
class QuietReference:
    """The reference of every zone, day and slot, as arrays ``(zones, days, slots)``.

    Attributes
    ----------
    loc
        Location of ``log(1 + present)`` on a quiet day (NaN where fewer than ``MIN_VALUES``
        past values).
    scale
        Spread of the quiet days' out-of-sample deviations (1.4826 x MAD), NaN where unknown.
    n_loc, n_scale
        Past values behind the location and behind the scale.
    """

    loc: np.ndarray
    scale: np.ndarray
    n_loc: np.ndarray
    n_scale: np.ndarray

    @property
    def level(self) -> np.ndarray:
        """The reference in people: ``exp(loc) - 1``."""
        return np.expm1(self.loc)


def quiet_reference(
    y: np.ndarray,
    pool: np.ndarray,
    *,
    weeks: int = REFERENCE_WEEKS,
    trim: float = TRIM,
    iterations: int = ITERATIONS,
) -> QuietReference:
    """The quiet-day reference of ``y`` (method in the module's docstring).

    Parameters
    ----------
    y
        ``(zones, days, slots)`` values (``log(1 + present)``) over consecutive local days.
    pool
        Same shape: which values may enter the reference (False for explained days and gaps).
    weeks, trim, iterations
        Weeks of history; the trimming threshold in scales; the trimming passes.

    Returns
    -------
    QuietReference
    """
    z, d, s = y.shape
    nw = -(-d // 7)
    yw = _weekly(y, nw)
    keep = _weekly(np.where(pool, y, np.nan), nw)
    base = np.isfinite(keep)
    keep = base
    vals = np.where(keep, yw, np.nan)
    q1 = _past_stat(vals, weeks, q=0.25)
    scale, n_scale = _spread(vals, q1, weeks, lower=True)
    loc = q1 + _Q3 * scale[:, :, None, :]
    for _ in range(iterations):
        dev = yw - loc
        sc = np.broadcast_to(scale[:, :, None, :], dev.shape)
        with np.errstate(invalid="ignore"):
            keep = base & ~(dev > trim * sc)
        loc = _past_stat(np.where(keep, yw, np.nan), weeks, q=0.5)
        dev = yw - loc
        with np.errstate(invalid="ignore"):
            scale, n_scale = _predictive_spread(np.where(base & (dev <= 0), dev, np.nan), weeks)
    n_loc = _past_count(keep & np.isfinite(yw), weeks)
    loc = np.where(n_loc >= MIN_VALUES, loc, np.nan)

    def back(a: np.ndarray) -> np.ndarray:
        return a.reshape(z, nw * 7, s)[:, :d]

    scale_days = np.repeat(scale[:, :, None, :], 7, axis=2)
    n_scale_days = np.repeat(n_scale[:, :, None, :], 7, axis=2)
    return QuietReference(
        loc=back(loc), scale=back(scale_days), n_loc=back(n_loc), n_scale=back(n_scale_days)
    )


def _weekly(a: np.ndarray, nw: int) -> np.ndarray:
    """``(zones, days, slots)`` -> ``(zones, weeks, 7, slots)``, NaN-padded at the end."""
    z, d, s = a.shape
    out = np.full((z, nw * 7, s), np.nan)
    out[:, :d] = a
    return out.reshape(z, nw, 7, s)


def _windows(a: np.ndarray, weeks: int) -> np.ndarray:
    """For each week w, the values of weeks ``w - weeks .. w - 1`` on the last axis."""
    pad = np.full((a.shape[0], weeks, *a.shape[2:]), np.nan)
    full = np.concatenate([pad, a], axis=1)[:, :-1]
    return sliding_window_view(full, weeks, axis=1)


def _past_stat(a: np.ndarray, weeks: int, *, q: float) -> np.ndarray:
    """The ``q`` quantile of the same slot of the week over the past ``weeks`` weeks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(_windows(a, weeks), q, axis=-1)


def _past_count(a: np.ndarray, weeks: int) -> np.ndarray:
    """How many of the past ``weeks`` values at the same slot of the week are True."""
    c = np.cumsum(a.astype(np.int32), axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    lo = np.maximum(np.arange(a.shape[1]) - weeks, 0)
    return c[:, np.arange(a.shape[1])] - c[:, lo]


def _predictive_spread(dev: np.ndarray, weeks: int) -> tuple[np.ndarray, np.ndarray]:
    """1.4826 x the median |deviation| of the past ``weeks`` weeks' values from the references
    they had before they were observed (out-of-sample errors), the seven days of the week of each
    slot pooled. Returns ``(zones, weeks, slots)`` scales and the counts behind them."""
    z, nw, _, s = dev.shape
    win = _windows(np.abs(dev).transpose(0, 1, 3, 2), weeks)  # (z, nw, s, 7, weeks)
    flat = win.reshape(z, nw, s, 7 * weeks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mad = np.nanmedian(flat, axis=-1)
    return 1.4826 * mad, np.isfinite(flat).sum(axis=-1)


def _spread(
    vals: np.ndarray, loc: np.ndarray, weeks: int, *, lower: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The spread of the past values behind each reference around that reference.

    ``1.4826 x`` the median absolute deviation of the past ``weeks`` values of each slot of the
    week from the reference they give, the seven days of the week pooled, times
    ``sqrt(1 + pi / (2 n))`` for the location's own error (the variance of a median of n normal
    values). With ``lower`` (the start, from the lower quartile) only the values below the
    reference count: a half-normal's median is the normal's MAD. Returns ``(zones, weeks,
    slots)`` scales and the counts of values behind them.
    """
    z, nw, _, s = vals.shape
    dev = _windows(vals, weeks) - loc[..., None]  # (z, nw, 7, s, weeks)
    if lower:
        dev = np.where(dev <= 0, dev, np.nan)
    flat = np.abs(dev).transpose(0, 1, 3, 2, 4).reshape(z, nw, s, 7 * weeks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mad = np.nanmedian(flat, axis=-1)
    n = np.isfinite(flat).sum(axis=-1)
    per_slot = np.maximum(_past_count(np.isfinite(vals), weeks).mean(axis=2), 1.0)
    return 1.4826 * mad * np.sqrt(1 + np.pi / (2 * per_slot)), n
