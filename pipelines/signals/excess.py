"""Excess incidents: a zone's count over a day or a week against its expectation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.signals.panel import Panel, day_label, fmt_number, record, records_frame
from pipelines.signals.pvalues import count_upper_p


def week_blocks(first: int, stop: int, *, length: int = 7) -> list[tuple[int, int]]:
    """Consecutive blocks of ``length`` days ending at ``stop`` (the last one may be shorter).

    A period shorter than ``length`` is one block.
    """
    blocks = []
    end = stop
    while end > first:
        start = max(first, end - length)
        blocks.append((start, end))
        end = start
    return blocks[::-1]


def excess_tests(
    panel: Panel,
    *,
    windows: Sequence[str] = ("day", "week"),
    dispersion: float = 0.0,
) -> pd.DataFrame:
    """Excess incidents per zone and window: observed vs expected with a count tail probability.

    Each zone is tested on each day of the period (``"day"``) and on 7-day blocks ending at the
    period end (``"week"``; a shorter period is one block). The p value is P(X >= observed) for
    X ~ Poisson(expected) or NB2(expected, dispersion).

    Parameters
    ----------
    panel
        Daily observed and expected counts.
    windows
        Any of ``"day"`` and ``"week"``.
    dispersion
        NB2 dispersion (0 = Poisson).

    Returns
    -------
    pandas.DataFrame
        One row per test, columns :data:`SIGNAL_COLUMNS`, ``type="excess"``.

    References
    ----------
    Farrington, C. P. et al. (1996). JRSS A 159(3), 547-563.
    Benjamini, Y. & Hochberg, Y. (1995). JRSS B 57(1), 289-300 (applied by the runner).
    """
    bad = set(windows) - {"day", "week"}
    if bad:
        raise ValueError(f"windows should be among 'day', 'week', got {sorted(bad)}")
    p0, p1 = panel.period
    records: list[dict] = []
    for kind, a, b in _spans(p0, p1, windows):
        records += _span_tests(panel, kind, a, b, dispersion=dispersion)
    return records_frame(records)


def _spans(p0: int, p1: int, windows: Sequence[str]) -> list[tuple[str, int, int]]:
    """The tested windows: each day, then the 7-day blocks (unless a block is one day)."""
    spans: list[tuple[str, int, int]] = []
    if "day" in windows:
        spans += [("day", t, t + 1) for t in range(p0, p1)]
    if "week" in windows:
        spans += [
            ("week", a, b) for a, b in week_blocks(p0, p1) if b - a > 1 or "day" not in windows
        ]
    return spans


def _span_tests(panel: Panel, kind: str, a: int, b: int, *, dispersion: float) -> list[dict]:
    """One test per zone with a known expectation over days ``a..b-1``."""
    valid = panel.valid
    o = np.where(valid, panel.observed, 0.0)[:, a:b].sum(axis=1)
    e = np.where(valid, panel.expected, 0.0)[:, a:b].sum(axis=1)
    has = valid[:, a:b].any(axis=1)
    p = count_upper_p(o, e, dispersion=dispersion)
    start, end = panel.window(a, b)
    if kind == "day":
        when = f"on {day_label(start)}"
    else:
        when = f"from {day_label(start)} to {day_label(end - pd.Timedelta(1))}"
    out = []
    for i in np.flatnonzero(has & (e > 0)):
        zone = panel.zones[i]
        out.append(
            record(
                "excess",
                detector=f"excess_{kind}",
                zones=[zone],
                start=start,
                end=end,
                observed=o[i],
                expected=e[i],
                p_value=p[i],
                explanation=f"Zone {zone} had {fmt_number(o[i])} incidents against "
                f"{fmt_number(e[i])} expected {when} (x{o[i] / e[i]:.1f}).",
                statistic=o[i] - e[i],
                window=kind,
            )
        )
    return out
