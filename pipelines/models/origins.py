"""Weekly origins of the rolling-origin backtest: the last complete weeks, or spread over a span.

An origin is a local Monday 00:00 (as a UTC timestamp) with ``min_history_weeks`` weeks of data
before it and a complete week after it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.timeutil import as_utc
from pipelines.models.baselines import WEEK


def weekly_origins(
    cube: pd.DataFrame, *, weeks: int, min_history_weeks: int = 4
) -> list[pd.Timestamp]:
    """Local Mondays 00:00 (as UTC timestamps) starting the last ``weeks`` complete weeks.

    An origin needs ``min_history_weeks`` weeks of data before it; fewer origins are returned
    when the cube is too short.
    """
    hours = pd.to_datetime(cube["hour"], utc=True)
    start, end = hours.min(), hours.max()
    mon = cube.loc[(cube["dow"] == 0) & (cube["local_hour"] == 0), "hour"]
    cands = sorted(pd.to_datetime(mon, utc=True).unique())
    cands = [pd.Timestamp(c) for c in cands]
    # a week is complete when the next Monday (or origin + 7 days) is not after the data's end
    slot = pd.Timedelta(hours=1) if (cube["local_hour"] != 0).any() else pd.Timedelta(days=1)
    complete = [c for c in cands if c + WEEK <= end + slot]
    ok = [c for c in complete if c - start >= min_history_weeks * WEEK - pd.Timedelta(hours=2)]
    return ok[-weeks:] if weeks > 0 else []


def spread_origins(
    cube: pd.DataFrame, *, n: int, start: pd.Timestamp, end: pd.Timestamp | None = None
) -> list[pd.Timestamp]:
    """``n`` weekly origins spread evenly over [start, end] (local Mondays with 4 weeks of
    history and a complete week after them; every one when there are fewer)."""
    cands = weekly_origins(cube, weeks=10**6)
    lo = as_utc(pd.Timestamp(start))
    hi = as_utc(pd.Timestamp(end)) if end is not None else cands[-1] if cands else lo
    cands = [c for c in cands if lo <= c <= hi]
    if n <= 0 or len(cands) <= n:
        return cands
    pick = np.unique(np.round(np.linspace(0, len(cands) - 1, n)).astype(int))
    return [cands[i] for i in pick]
