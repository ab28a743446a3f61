"""The presence reference value: a robust same-slot-of-week median over past weeks only.

Flux Vision-style presence products compare the people present in a zone with a *reference*
for the same zone and the same hour of the week. vigie's reference is the median of that zone's
presence at the same local day of week and local clock hour over the previous ``weeks`` weeks
(8 by default), using past values only, leaving out the hours when an event was running in the
zone, and NaN until at least ``min_weeks`` (2) such past values exist.

The median is the classic robust location estimate (breakdown point 50 %: up to half of the
past weeks can be outliers, e.g. an unflagged gathering, without moving it far), as in the
"same weekday, previous weeks" seasonal baselines of syndromic surveillance (EARS C1-C3 use a
mean over a 7-day window; Farrington-type methods use past years at the same week).

References
----------
Huber, P. J. and Ronchetti, E. M. (2009). *Robust Statistics*, 2nd ed., Wiley (the median and its
breakdown point).
Hutwagner, L. et al. (2003). The bioterrorism preparedness and response Early Aberration
Reporting System (EARS). *Journal of Urban Health* 80(1 Suppl 1): i89-i96.
"""

from __future__ import annotations

import warnings

import numpy as np

#: weeks of history in the reference (the median of up to this many past values).
LOOKBACK_WEEKS = 8
#: fewer past values than this gives NaN (the reference needs 2 weeks of history).
MIN_WEEKS = 2
#: hours before an event's start and after its end that the reference also leaves out: arrivals
#: and departures swell presence around an event, and recurring events (fortnightly matches, weekly
#: markets) would otherwise leak their crowds into the reference of the same hour of week.
EVENT_MARGIN_HOURS = 3


def same_slot_median(
    pool: np.ndarray,
    *,
    target_days: np.ndarray,
    target_slots: np.ndarray,
    weeks: int = LOOKBACK_WEEKS,
    min_weeks: int = MIN_WEEKS,
) -> np.ndarray:
    """Median of the same slot of the week over the previous weeks, past values only.

    Parameters
    ----------
    pool
        Array ``(zones, days, slots)`` of past values indexed by consecutive local calendar day
        and slot of the day (local clock hour at hourly grain, a single slot at daily grain).
        NaN marks a value that must not be used (missing, or an event running in the zone).
    target_days, target_slots
        Integer arrays of equal length ``n``: the day index into ``pool`` and the slot of each
        target. The reference of a target on day ``d`` uses days ``d - 7``, ``d - 14``, ...,
        ``d - 7 * weeks`` only, never day ``d`` or later.
    weeks
        Weeks of history (8).
    min_weeks
        Minimum number of usable past values; fewer gives NaN (2).

    Returns
    -------
    numpy.ndarray
        ``(zones, n)`` float64 reference values.

    Raises
    ------
    ValueError
        When ``pool`` is not 3-dimensional or the targets do not have equal lengths.

    Examples
    --------
    >>> import numpy as np
    >>> pool = np.full((1, 15, 1), np.nan)
    >>> pool[0, [0, 7], 0] = [10.0, 20.0]
    >>> same_slot_median(pool, target_days=np.array([14]), target_slots=np.array([0]))
    array([[15.]])
    """
    pool = np.asarray(pool, dtype=float)
    if pool.ndim != 3:
        raise ValueError(f"pool must be (zones, days, slots), got an array of shape {pool.shape}")
    target_days = np.asarray(target_days, dtype=np.int64)
    target_slots = np.asarray(target_slots, dtype=np.int64)
    if target_days.shape != target_slots.shape:
        raise ValueError(
            f"target_days and target_slots must have the same length, got {target_days.shape} "
            f"and {target_slots.shape}"
        )
    n_zones, n_days, n_slots = pool.shape
    n = target_days.size
    if n == 0:
        return np.empty((n_zones, 0))
    flat = np.ascontiguousarray(pool).reshape(n_zones, n_days * n_slots)
    past = np.empty((weeks, n_zones, n))
    for k in range(1, weeks + 1):  # one (zones, n) gather per past week
        day = target_days - 7 * k
        ok = (day >= 0) & (day < n_days)
        past[k - 1] = flat[:, np.where(ok, day, 0) * n_slots + target_slots]
        past[k - 1][:, ~ok] = np.nan
    count = np.sum(~np.isnan(past), axis=0)
    # median of the non-NaN values: sort (NaN last), average the two middle ones
    ordered = np.sort(past, axis=0)
    lo = np.take_along_axis(ordered, (np.maximum(count - 1, 0) // 2)[None], axis=0)[0]
    hi = np.take_along_axis(ordered, np.minimum(count // 2, weeks - 1)[None], axis=0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = (lo + hi) / 2.0
    med[count < max(min_weeks, 1)] = np.nan
    return med
