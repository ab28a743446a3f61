"""Who makes a gathering: the visitors' share joined to presence's own test at daily grain.

A crowd at a venue is mostly people who do not live there, so a real gathering raises the day's
total *and* the share of visitors among those present, while the day-to-day noise of a zone's
count (a delivered total a few per cent off, a busier day for everyone there) moves residents
and visitors together and leaves their share alone. At daily grain, where one day's total
stands a 1.3x game only a few of its scales up (docs/evaluation.md gives how many), the share
is the evidence a total lacks. Where the export splits residents from visitors (Flux Vision does), the gathering
test of a zone-day whose total stands above its reference also reads Stouffer's Z for
correlated tests (Strube 1985):

``Z = (z_presence + z_share) / sqrt(2 + 2 rho)``,

each z the normal quantile of its own one-sided p value: the presence test's
(:func:`~pipelines.signals.presence_pvalues.p_values`) and the rise of the share, the test that
``visitor_share`` signals report: against the median of the same weekday over the 8 weeks before
and the zone's own MAD over the 8 weeks before the day's ISO week
(:func:`~pipelines.signals.mix.indicator_z`). On its own that test is a little liberal in its
upper tail (a share's day-to-day changes are skewed); the share's log odds were tried instead
and dropped, their tests flagging many more zone-days on the synthetic city's ordinary days.
``rho`` is the zone's own correlation of the two over its quiet days (no known event, holiday,
heavy precipitation or data gap) of the ``RHO_WEEKS`` weeks before
the day's ISO week (so a day has the same test in a weekly run and in a study over a season):
Pearson's on the z values clipped at ``WINSOR_Z`` (a winsorized correlation: the zone's past
gatherings do not set it; Wilcox 2012), raised by one standard error on Fisher's scale and
floored at 0 (too high a rho only makes the test conservative: the zones whose visitors vary
most move their total and their share together the most). The test is then
``p = min(1, 2 min(p_presence, p_Z))`` (Bonferroni over the two): a crowd of residents (a
neighbourhood fete) still stands out by its count, its share down. A zone-day with fewer than
``MIN_PAIRS`` quiet days behind its correlation, whose total does not stand above its
reference (visitors replacing residents who left are not a gathering), an emptied test, hourly
grain (where the slot test sees a crowd's hours) and counts without a split keep presence's
test alone.

References
----------
Strube, M. J. (1985). Combining and comparing significance levels from nonindependent hypothesis
tests. Psychological Bulletin 97(2), 334-341.
Wilcox, R. R. (2012). Introduction to Robust Estimation and Hypothesis Testing, 3rd ed.,
section 9.3 (the winsorized correlation). Academic Press.
Orange Business, *Flux Vision* (residents and visitors present).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.signals.mix import daily_indicators, indicator_z

#: weeks of a zone's quiet days behind its correlation of the two tests
RHO_WEEKS = 26
#: fewest quiet days with both tests behind a zone's correlation (8 weeks); fewer: not joined
MIN_PAIRS = 56
#: |z| at which both tests are clipped before their correlation (winsorized)
WINSOR_Z = 2.5


@dataclass(frozen=True)
class ShareEvidence:
    """The rise of the visitors' share over every day read, ``z`` ``(zones, days)`` aligned with
    the presence layout (the one-sided p value of the share's rise as a normal quantile, NaN
    where not tested), and each day's ISO weekday (0: Monday). The share itself is not carried
    into a gathering's record: beside the people present it would give the number of visitors,
    which may be below the suppression threshold."""

    z: np.ndarray
    weekday: np.ndarray


@dataclass(frozen=True)
class Joined:
    """Gathering tests with the share joined: ``p`` (presence's own where not joined), ``used``
    which were joined, and the share's ``z_share`` and correlation ``rho`` each read (NaN where
    not joined)."""

    p: np.ndarray
    used: np.ndarray
    z_share: np.ndarray
    rho: np.ndarray


def share_evidence(
    frame: pd.DataFrame, *, zones: np.ndarray, days: list[dt.date]
) -> ShareEvidence | None:
    """The visitor share's evidence over ``days`` for ``zones`` (None where the frame has no
    visitors or no zone-day of the share is tested)."""
    if not days or not {"visitors", "present"} <= set(frame.columns):
        return None
    if not frame["visitors"].notna().any():
        return None
    iz = indicator_z(daily_indicators(frame), "visitor_share", first=days[0], last=days[-1])
    if iz is None or not np.isfinite(iz.z).any():
        return None
    zi = pd.Index(iz.zones.astype(str)).get_indexer([str(z) for z in zones])
    di = pd.Index(iz.days).get_indexer(days)
    out = np.full((len(zones), len(days)), np.nan)
    r, c = np.flatnonzero(zi >= 0), np.flatnonzero(di >= 0)
    out[np.ix_(r, c)] = _normal_quantile(iz.p_above())[np.ix_(zi[r], di[c])]
    return ShareEvidence(z=out, weekday=np.array([d.weekday() for d in days]))


def zone_correlation(
    z1: np.ndarray,
    z2: np.ndarray,
    weekday: np.ndarray,
    *,
    weeks: int = RHO_WEEKS,
    min_pairs: int = MIN_PAIRS,
) -> np.ndarray:
    """``(zones, days)``: each zone's winsorized correlation of ``z1`` and ``z2`` (NaN where a
    day may not count) over the ``weeks`` weeks before each day's ISO week (``weekday`` of
    each consecutive day), raised by one standard error on Fisher's scale, in [0, 1]; NaN with
    fewer than ``min_pairs`` pairs."""
    ok = np.isfinite(z1) & np.isfinite(z2)
    x = np.where(ok, np.clip(z1, -WINSOR_Z, WINSOR_Z), 0.0)
    y = np.where(ok, np.clip(z2, -WINSOR_Z, WINSOR_Z), 0.0)
    i = np.arange(z1.shape[1])
    hi = np.maximum(i - weekday, 0)  # the day's Monday (or the first day read)
    lo = np.maximum(hi - 7 * weeks, 0)

    def window(a: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((len(a), 1)), np.cumsum(a, axis=1)], axis=1)
        return c[:, hi] - c[:, lo]

    n, sx, sy = window(ok.astype(float)), window(x), window(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = window(x * y) - sx * sy / n
        r = cov / np.sqrt((window(x * x) - sx**2 / n) * (window(y * y) - sy**2 / n))
        up = np.tanh(np.arctanh(np.clip(r, -0.999, 0.999)) + 1.0 / np.sqrt(np.maximum(n - 3, 1)))
    return np.where((n >= min_pairs) & np.isfinite(r), np.clip(up, 0.0, 1.0), np.nan)


def joined(p: np.ndarray, z_share: np.ndarray, rho: np.ndarray, *, above: np.ndarray) -> Joined:
    """The presence tests' one-sided p values ``p`` with the share's ``z_share`` joined (all
    flat over the zone-days), where both exist, the zone has a correlation ``rho`` and the
    day's total stands ``above`` its reference: ``min(1, 2 min(p, p_Z))``."""
    z1 = _normal_quantile(p)
    used = np.isfinite(z1) & np.isfinite(z_share) & np.isfinite(rho) & above
    with np.errstate(invalid="ignore"):
        pz = stats.norm.sf((z1 + z_share) / np.sqrt(2.0 + 2.0 * rho))
    both = np.minimum(1.0, 2.0 * np.minimum(p, pz))
    return Joined(p=np.where(used, both, p), used=used, z_share=np.where(used, z_share, np.nan),
                  rho=np.where(used, rho, np.nan))  # fmt: skip


def _normal_quantile(p: np.ndarray) -> np.ndarray:
    """``Phi^-1(1 - p)`` of one-sided p values, clipped away from 0 and 1."""
    return stats.norm.isf(np.clip(p, 1e-300, 1.0 - 1e-16))
