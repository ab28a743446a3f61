"""The study's shift of each day: how the whole city's presence moves that day.

School holidays, summer departures and city-wide weather move every zone at once, faster than
a level learnt on past weeks follows them. The presence reference at daily grain
(:func:`~pipelines.signals.presence.reference_without_gaps`) is learnt on ``y - shift`` and the
shift added back, so each zone is compared with its usual place in the city's day.
"""

from __future__ import annotations

import numpy as np

from pipelines.signals.reference import (
    _CHUNK_CELLS,
    MIN_CITY_ZONES,
    PROFILE_WEEKS,
    _weekly,
    _windows,
    nan_quantile,
)

#: day levels a zone needs in its past weeks to have a usual level
MIN_USUAL_DAYS = 14


def city_shift(
    y: np.ndarray, ok: np.ndarray, *, min_zones: int = MIN_CITY_ZONES, weeks: int = PROFILE_WEEKS
) -> np.ndarray:
    """The study's level of each day: the median over zones of each zone's day level against its
    own usual one.

    ``y`` is ``(zones, days, slots)``, ``ok`` which values to read (gaps left out). A zone's day
    level is the median of its slots; its usual level, the median of its day levels over the
    ``weeks`` 7-day blocks before the day's block (counted from the first day of ``y``; at least
    ``MIN_USUAL_DAYS`` of them): no later day enters a day's shift, so a study over a season and
    a run of one week that read the same history give a day the same shift. The shift of a day
    is the median over zones of the differences, 0 where fewer than ``min_zones`` zones have one
    (a study of a few zones cannot tell the city's day from its own).

    Returns
    -------
    numpy.ndarray
        ``(days,)``.
    """
    day = nan_quantile(np.where(ok, y, np.nan), 0.5)  # (zones, days)
    z, d = day.shape
    step = max(1, _CHUNK_CELLS // max(1, -(-d // 7) * 7 * weeks))
    usual = np.concatenate([_usual(day[a : a + step], weeks) for a in range(0, z, step)])
    dev = day - usual
    n = np.isfinite(dev).sum(axis=0)
    shift = nan_quantile(dev.T, 0.5)
    return np.where(n >= min_zones, np.nan_to_num(shift, nan=0.0), 0.0)


def _usual(day: np.ndarray, weeks: int) -> np.ndarray:
    """``(zones, days)``: each zone's median day level over the ``weeks`` blocks before."""
    z, d = day.shape
    nw = -(-d // 7)
    win = _windows(_weekly(day[:, :, None], nw)[..., 0], weeks).reshape(z, nw, 7 * weeks)
    usual = np.where(
        np.isfinite(win).sum(axis=-1) >= MIN_USUAL_DAYS, nan_quantile(win, 0.5), np.nan
    )
    return np.repeat(usual, 7, axis=1)[:, :d]
