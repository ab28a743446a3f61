"""Weekly runs stitched over a long period, and outbreaks planted into real series.

The machinery of the real-data evaluation (``bench/eval_detectors.py``) and of the null test
(``tests/test_detectors_null.py``): :func:`weekly_flags` is what ``vigie signals --from --to``
does to the incident tests of every week (history-calibrated tests, Benjamini-Hochberg within
each week), reduced to the smallest q value of each zone-week; :func:`plant_outbreaks` adds
outbreaks after Noufaily et al. (2013) to a panel's observed counts.

References
----------
Noufaily, A., Enki, D. G., Farrington, P., Garthwaite, P., Andrews, N. & Charlett, A. (2013).
An improved algorithm for outbreak detection in multiple surveillance systems. Stat. Med.
32(7), 1206-1222.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.signals.calibration import Blocks, CalibrationSettings, calibrated_tests
from pipelines.signals.panel import Panel
from pipelines.signals.pvalues import benjamini_hochberg


@dataclass(frozen=True)
class WeeklyFlags:
    """The incident tests of every week of a period, as the weekly runs adjust them.

    Attributes
    ----------
    q_min
        Smallest BH q value of a test naming the zone, per zone and period week (1 where none),
        shape (Z, weeks).
    blocks
        The panel's weeks (:class:`~pipelines.signals.calibration.Blocks`).
    tests
        The tests with their week (``week``) and q value.
    """

    q_min: np.ndarray
    blocks: Blocks
    tests: pd.DataFrame

    def flagged(self, fdr: float = 0.05) -> np.ndarray:
        """Zone-weeks named by a signal at ``fdr``, shape (Z, weeks)."""
        return self.q_min < fdr


def weekly_flags(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    dispersion: float,
    cfg: CalibrationSettings | None = None,
) -> WeeklyFlags:
    """Each zone-week's smallest q value over the weekly runs of the panel's period."""
    cfg = cfg or CalibrationSettings()
    blocks = Blocks.of(panel)
    tests, _ = calibrated_tests(panel, neighbours, dispersion=dispersion, cfg=cfg)
    n_weeks = len(blocks.a) - blocks.first_period
    q_min = np.ones((len(panel.zones), n_weeks))
    if not len(tests):
        return WeeklyFlags(q_min, blocks, tests.assign(week=[], q_value=[]))
    week = tests["details"].map(lambda d: int(d["week"])).to_numpy()
    q = np.ones(len(tests))
    p = tests["p_value"].to_numpy(float)
    for w in np.unique(week):
        q[week == w] = benjamini_hochberg(p[week == w])
    index = {str(z): i for i, z in enumerate(panel.zones)}
    for zs, w, qq in zip(tests["zones"], week, q, strict=True):
        for z in zs:
            i = index[str(z)]
            q_min[i, w] = min(q_min[i, w], qq)
    return WeeklyFlags(q_min, blocks, tests.assign(week=week, q_value=q))


def weekly_sd(observed: np.ndarray, blocks: Blocks, *, weeks: int = 52) -> np.ndarray:
    """SD of each zone's weekly count over the ``weeks`` weeks before each week (past only),
    shape (Z, blocks); NaN with fewer than 8 weeks before."""
    o = np.nan_to_num(observed)
    wk = np.stack([o[:, a:b].sum(axis=1) for a, b in zip(blocks.a, blocks.b, strict=True)], 1)
    out = np.full(wk.shape, np.nan)
    for j in range(8, wk.shape[1]):
        out[:, j] = wk[:, max(0, j - weeks) : j].std(axis=1, ddof=1)
    return out


@dataclass(frozen=True)
class Outbreaks:
    """Outbreaks planted into a panel: the added counts and one row per outbreak."""

    added: np.ndarray  # (Z, T)
    table: pd.DataFrame  # zone (index), week (period week), start_day, size_sd, sd, cases


def plant_outbreaks(
    panel: Panel,
    rng: np.random.Generator,
    *,
    n: int,
    size_sd: float,
    eligible: np.ndarray,
    sd: np.ndarray,
    spacing: int = 8,
    onset_days: float = 2.0,
    sigma: float = 0.5,
) -> Outbreaks:
    """Plant ``n`` outbreaks of ``size_sd`` SD into distinct zone-weeks of the period.

    Each outbreak starts on one of the first three days of its week and holds
    ``max(1, Poisson(size_sd x sd))`` cases, ``sd`` being the SD of the zone's weekly count
    over the year before. Each case's onset is ``floor(onset_days x X)`` days after the start,
    ``X ~ lognormal(0, sigma)`` (Noufaily et al. 2013: lognormal(0, 0.5) onsets), so the cases
    of an outbreak may spill into the next week. Outbreaks in one zone are at least ``spacing``
    weeks apart.

    Parameters
    ----------
    eligible
        (Z, period weeks) zone-weeks that may receive an outbreak.
    sd
        (Z, period weeks) SD of each zone's weekly count before the week.
    """
    blocks = Blocks.of(panel)
    fp = blocks.first_period
    cand = np.argwhere(eligible & np.isfinite(sd) & (sd > 0))
    rng.shuffle(cand)
    taken: dict[int, list[int]] = {}
    rows: list[dict] = []
    added = np.zeros(panel.observed.shape)
    for z, w in cand:
        if len(rows) >= n:
            break
        if any(abs(int(w) - u) < spacing for u in taken.get(int(z), [])):
            continue
        taken.setdefault(int(z), []).append(int(w))
        start = int(blocks.a[fp + w]) + int(rng.integers(0, 3))
        cases = max(1, int(rng.poisson(size_sd * sd[z, w])))
        days = start + np.floor(onset_days * rng.lognormal(0.0, sigma, cases)).astype(int)
        days = days[days < panel.observed.shape[1]]
        np.add.at(added[z], days, 1.0)
        rows.append(
            {"zone": int(z), "week": int(w), "start_day": start, "size_sd": size_sd,
             "sd": float(sd[z, w]), "cases": int(len(days))}
        )  # fmt: skip
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} zone-weeks could take an outbreak ({n} asked)")
    return Outbreaks(added, pd.DataFrame(rows))
