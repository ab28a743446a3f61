"""The daily zone panel and the test records every detector returns.

Every detector returns a DataFrame of *tests* with the columns of :data:`SIGNAL_COLUMNS`
(``q_value`` left empty: the runner adjusts all tests of a run together with
:func:`~pipelines.signals.pvalues.benjamini_hochberg`). A test becomes a *signal* when its q
value is below the run's FDR level.

Conventions
-----------
- A :class:`Panel` holds daily counts per zone: ``observed[z, t]`` incidents and
  ``expected[z, t]`` their expectation (NaN where unknown), over days ``days[t]`` of which
  ``days[period[0]:period[1]]`` are the period under review and the days before it are history
  (look-back for drift, EARS baselines, correlations).
- p values are one-sided towards "more than expected" unless stated.
- Windows are ``[start, end)``: ``end`` is the first instant after the window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: the columns of every test / signal table, in order.
SIGNAL_COLUMNS = [
    "type",
    "detector",
    "zones",
    "start",
    "end",
    "observed",
    "expected",
    "ratio",
    "statistic",
    "p_value",
    "q_value",
    "score",
    "explained",
    "explanation",
    "details",
]

#: smallest p value reported (keeps -log10 finite).
P_FLOOR = 1e-300


# ------------------------------------------------------------------------------------------------
# containers and helpers
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """Daily incident counts and their expectation per zone.

    Parameters
    ----------
    zones
        Zone ids, shape (Z,).
    days
        Start of each day, shape (T,): a DatetimeIndex (tz-aware local midnights in the runner).
    observed, expected
        Arrays of shape (Z, T); NaN where the day is unknown (e.g. presence missing).
    period
        ``(first, stop)`` indices of the days under review; days before ``first`` are history.
    """

    zones: np.ndarray
    days: pd.DatetimeIndex
    observed: np.ndarray
    expected: np.ndarray
    period: tuple[int, int]
    day_ends: pd.DatetimeIndex = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        z, t = len(self.zones), len(self.days)
        for name in ("observed", "expected"):
            arr = getattr(self, name)
            if np.shape(arr) != (z, t):
                raise ValueError(
                    f"Panel.{name} should have shape (zones, days) = {(z, t)}, got {np.shape(arr)}"
                )
        p0, p1 = self.period
        if not (0 <= p0 < p1 <= t):
            raise ValueError(
                f"Panel.period should satisfy 0 <= first < stop <= {t}, got {self.period}"
            )
        if self.day_ends is None:
            days = pd.DatetimeIndex(self.days)
            if days.tz is None:
                ends = days + pd.Timedelta(days=1)
            else:  # the next local midnight, or its DST gap's end (as the runner's days start)
                ends = (days.tz_localize(None).normalize() + pd.Timedelta(days=1)).tz_localize(
                    days.tz, ambiguous=False, nonexistent="shift_forward"
                )
            object.__setattr__(self, "day_ends", ends)

    @property
    def valid(self) -> np.ndarray:
        """Days where both counts and expectation are known (and the expectation positive)."""
        return np.isfinite(self.observed) & np.isfinite(self.expected) & (self.expected > 0)

    def window(self, t0: int, t1: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """``[start, end)`` of days ``t0..t1-1``."""
        return self.days[t0], self.day_ends[t1 - 1]


def fmt_number(x: float) -> str:
    """A count for explanations: whole numbers without decimals, others with one; n/a if not finite."""
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


def day_label(ts: pd.Timestamp) -> str:
    """``YYYY-MM-DD`` of an instant (in its own time zone)."""
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Test records (from :func:`record`) as a table with the columns of :data:`SIGNAL_COLUMNS`."""
    df = pd.DataFrame.from_records(records, columns=SIGNAL_COLUMNS)
    for col in ("observed", "expected", "ratio", "statistic", "p_value", "q_value", "score"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["explained"] = df["explained"].astype(bool)
    return df


def record(
    type_: str,
    *,
    detector: str,
    zones: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    observed: float,
    expected: float,
    p_value: float,
    explanation: str,
    statistic: float = np.nan,
    ratio: float | None = None,
    explained: bool = False,
    **details: Any,
) -> dict[str, Any]:
    """One test as a row of :data:`SIGNAL_COLUMNS`.

    Parameters
    ----------
    type_
        The signal type (``excess``, ``drift``, ``cluster``, ``gathering``...).
    detector, zones, start, end, observed, expected, explanation, statistic, explained
        The columns of the same names (``[start, end)`` is the window).
    p_value
        Floored at :data:`P_FLOOR`; NaN for tests without a p value (event conflicts).
    ratio
        ``observed / expected`` when None.
    **details
        What goes into the ``details`` column (lag, window, events...).

    Returns
    -------
    dict
        The row; ``score`` is ``-log10 p`` (0 without a p value), ``q_value`` NaN.
    """
    if ratio is None:
        ratio = (
            observed / expected if expected and np.isfinite(expected) and expected > 0 else np.nan
        )
    p = float(p_value) if p_value is not None and np.isfinite(p_value) else np.nan
    if np.isfinite(p):
        p = min(max(p, P_FLOOR), 1.0)
    return {
        "type": type_,
        "detector": detector,
        "zones": [str(z) for z in zones],
        "start": pd.Timestamp(start),
        "end": pd.Timestamp(end),
        "observed": float(observed),
        "expected": float(expected),
        "ratio": float(ratio),
        "statistic": float(statistic),
        "p_value": p,
        "q_value": np.nan,
        "score": -math.log10(p) if np.isfinite(p) else 0.0,
        "explained": bool(explained),
        "explanation": explanation,
        "details": details,
    }


def aggregate_days(
    frame: pd.DataFrame, values: Mapping[str, str], *, zones: Sequence[str], days: pd.DatetimeIndex
) -> dict[str, np.ndarray]:
    """Pivot long zone x slot rows to (Z, T) arrays of daily sums keyed by ``local_date``.

    Parameters
    ----------
    frame
        Rows with zone_id, local_date and the value columns.
    values
        ``{output name: column}``; sums over the day (NaN when every slot is NaN).
    zones, days
        The panel's axes (``days`` as local midnights; matched on their calendar date).
    """
    key_days = pd.Index([d.date() for d in days])
    out = {}
    for name, col in values.items():
        g = frame.groupby(["zone_id", "local_date"], sort=False)[col].sum(min_count=1)
        wide = g.unstack("local_date")
        wide.columns = pd.Index([pd.Timestamp(c).date() for c in wide.columns])
        wide = wide.reindex(index=pd.Index(list(zones)), columns=key_days)
        out[name] = wide.to_numpy(dtype=float)
    return out
