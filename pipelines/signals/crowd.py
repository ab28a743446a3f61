"""Who makes a gathering: the visitors' share joined to presence's own test at daily grain.

A crowd at a venue is mostly people who do not live there, so a real gathering raises the day's
total *and* the share of visitors among those present, while the day-to-day noise of a zone's
count (a delivered total a few per cent off, a busier day for everyone there) moves residents
and visitors together and leaves their share alone. At daily grain, where one day's total
stands a 1.3x game only 2 to 3 of its scales up, the share is the evidence a total lacks. Where
the export splits residents from visitors (Flux Vision does), the gathering test of a zone-day
whose total stands above its reference joins the two one-sided tests by Stouffer's Z for
correlated tests (Strube 1985):

``Z = (z_presence + z_share) / sqrt(2 + 2 rho)``,

each z the normal quantile of its own one-sided p value: the presence test's
(:func:`~pipelines.signals.presence_pvalues.p_values`) and the visitor share's rise
(:func:`~pipelines.signals.mix.indicator_z`, the test that ``visitor_share`` signals report).
``rho`` is the study's correlation of the two over the period's quiet zone-days (no known
event, holiday or heavy precipitation; from Spearman's rank correlation as ``2 sin(pi r / 6)``,
robust to the gatherings among them, Kendall & Gibbons 1990), at least 0; with fewer than
``MIN_PAIRS`` pairs it is taken as 1, where ``Z`` is the mean of the two and valid whatever their
dependence. A day whose total does not stand above its reference keeps its presence test alone:
visitors replacing residents who left (a holiday) are not a gathering. Emptied zones, hourly grain
(where the slot test sees a crowd's hours) and counts without a split keep presence's test alone.

References
----------
Strube, M. J. (1985). Combining and comparing significance levels from nonindependent hypothesis
tests. Psychological Bulletin 97(2), 334-341.
Kendall, M. & Gibbons, J. D. (1990). Rank Correlation Methods, 5th ed. Arnold.
Orange Business, *Flux Vision* (residents and visitors present).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.signals.mix import daily_indicators, indicator_z

#: fewest quiet zone-days with both tests from which the study's correlation is estimated
MIN_PAIRS = 30
#: p values are clipped to [TINY, 1 - TINY] before their normal quantile
TINY = 1e-300


@dataclass(frozen=True)
class ShareEvidence:
    """The visitor share's rise on the period's days, ``(zones, days)`` aligned with the presence
    layout: its one-sided p value as a normal quantile (NaN where not tested). The share itself
    is not carried into a gathering's record: beside the people present it would give the
    number of visitors, which may be below the suppression threshold."""

    z: np.ndarray


@dataclass(frozen=True)
class Joined:
    """Joined gathering tests: ``p`` (the presence test's own where not joined), ``used`` which
    were joined, ``rho`` the correlation used and ``pairs`` the quiet zone-days behind it."""

    p: np.ndarray
    used: np.ndarray
    rho: float
    pairs: int


def share_evidence(
    frame: pd.DataFrame, *, zones: np.ndarray, days: list[dt.date]
) -> ShareEvidence | None:
    """The visitor share's evidence over ``days`` for ``zones`` (None where the frame has no
    visitors or no day of the share is tested)."""
    if not days or not {"visitors", "present"} <= set(frame.columns):
        return None
    if not frame["visitors"].notna().any():
        return None
    iz = indicator_z(daily_indicators(frame), "visitor_share", first=days[0], last=days[-1])
    if iz is None or not np.isfinite(iz.z).any():
        return None
    zi = pd.Index(iz.zones.astype(str)).get_indexer([str(z) for z in zones])
    di = pd.Index(iz.days).get_indexer(days)

    def aligned(a: np.ndarray) -> np.ndarray:
        out = np.full((len(zones), len(days)), np.nan)
        r, c = np.flatnonzero(zi >= 0), np.flatnonzero(di >= 0)
        out[np.ix_(r, c)] = a[np.ix_(zi[r], di[c])]
        return out

    with np.errstate(invalid="ignore"):
        z = stats.norm.isf(np.clip(iz.p_above(), TINY, 1.0 - 1e-16))
    return ShareEvidence(z=aligned(z))


def study_correlation(z1: np.ndarray, z2: np.ndarray, *, min_pairs: int = MIN_PAIRS) -> float:
    """The correlation of two tests' z over pairs (Spearman's, as ``2 sin(pi r / 6)``), at least
    0; 1 with fewer than ``min_pairs`` pairs."""
    ok = np.isfinite(z1) & np.isfinite(z2)
    if ok.sum() < min_pairs:
        return 1.0
    r = stats.spearmanr(z1[ok], z2[ok]).statistic
    if not np.isfinite(r):
        return 1.0
    return float(min(1.0, max(0.0, 2.0 * np.sin(np.pi * r / 6.0))))


def joined(p: np.ndarray, z_share: np.ndarray, *, above: np.ndarray, quiet: np.ndarray) -> Joined:
    """Stouffer's Z of the presence test's one-sided p values ``p`` and the share's ``z_share``
    (both flat over the zone-days), where both exist and the day's total stands ``above`` its
    reference; ``quiet`` marks the zone-days that estimate the correlation."""
    z1 = stats.norm.isf(np.clip(p, TINY, 1.0 - 1e-16))
    both = np.isfinite(z1) & np.isfinite(z_share)
    rho = study_correlation(z1[both & quiet], z_share[both & quiet])
    used = both & above
    with np.errstate(invalid="ignore"):
        pj = stats.norm.sf((z1 + z_share) / np.sqrt(2.0 + 2.0 * rho))
    return Joined(p=np.where(used, pj, p), used=used, rho=rho, pairs=int((both & quiet).sum()))
