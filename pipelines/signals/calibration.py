"""Incident detectors calibrated on the study's own history (one test per zone and week).

A weekly run asks, for each zone: *is this week unusual for this study?* The answer's null
distribution comes from the study's own past weeks, not from the fitted model alone: a model's
Poisson or NB tails are too thin on real data (day-level variation, reporting bursts, trends);
on real transit crimes the model-based p values flagged 21 % of outbreak-free zone-weeks.

The method, for a period split into 7-day blocks ending at its last day (a longer period is a
run of weekly reviews, each calibrated on the weeks before it):

1. **Out-of-sample expectation.** Every block, past or under review, gets the run's expectation
   (fitted model or per-capita fallback) rescaled by the zone's observed/expected ratio over the
   ``level_weeks`` (4) weeks *before* the block, shrunk by ``prior`` pseudo-incidents: each block is
   predicted from its past only, as it would have been in its own weekly run.
2. **Statistics per zone-week** (larger is more alarming; :data:`COMPONENTS`):
   ``excess_week``, ``excess_3d`` and ``excess_day`` (-log10 of the count's upper-tail
   probability over the week, and the largest over its 3-day windows and its days),
   ``excess_sd`` (the week's excess in SDs of the zone's own weekly residuals over the year
   before), ``cusum`` and ``ewma`` (the charts' maxima over the week, restarted ``drift_lead``
   days before it, so a drift never reaches back months) and ``scan`` (the largest
   expectation-based Poisson LLR of a space-time cylinder holding the zone and ending in the
   week). ``components`` chooses which are combined (by default the 3-day and week excesses).
3. **Calibration on past zone-weeks.** The same statistics on the zone-weeks of the
   ``calibration_weeks`` weeks before the block (all zones pooled) are the reference sample.
   The zone-week's statistic is the largest of its components (all -log10 count p values),
   and its p value is its conformal rank in the reference's (Bates et al. 2023: valid under
   exchangeability of the zone-week with its past, and PRDS, so Benjamini-Hochberg keeps its
   FDR); beyond the reference's 90th percentile, a generalised Pareto tail (shape 0.1)
   anchored on its 90th and 98th percentiles (:func:`anchored_tail_pvalue`). Components on
   other scales (drift, scan) are combined by min-p (Westfall & Young 1993) instead.

One test per zone and week; it names the statistic that fired (its window and counts) and
carries the component p values in its details. Past zone-weeks are not screened for
outbreaks: the anchored tail ignores the reference's top 2 %, where they sit.

References
----------
Bates, S., Candes, E., Lei, L., Romano, Y. & Sesia, M. (2023). Testing for outliers with
conformal p-values. Ann. Statist. 51(1), 149-178.
Westfall, P. H. & Young, S. S. (1993). Resampling-Based Multiple Testing. Wiley (min-p).
Pickands, J. (1975) Ann. Statist. 3, 119-131 (GPD); Farrington, C. P. et al. (1996) JRSS A 159, 547.
Page, E. S. (1954). Biometrika 41, 100-115; Roberts, S. W. (1959). Technometrics 1, 239-250.
Neill, D. B. et al. (2005). Proc. 11th ACM SIGKDD, 218-227 (expectation-based scan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.signals.drift import standardised_residuals
from pipelines.signals.excess import week_blocks
from pipelines.signals.panel import Panel, day_label, fmt_number, record, records_frame
from pipelines.signals.pvalues import anchored_tail_pvalue, count_upper_p, tail_pvalue

#: the statistics combined into one test per zone-week, and the signal type of each.
COMPONENTS = {
    "excess_3d": "excess", "excess_sd": "excess", "excess_week": "excess", "excess_day": "excess",
    "cusum": "drift", "ewma": "drift", "scan": "cluster",
}  # fmt: skip


@dataclass(frozen=True)
class CalibrationSettings:
    """How the history calibration runs (see the module's docstring).

    Attributes
    ----------
    calibration_weeks
        Past weeks whose zone-weeks form the reference sample.
    min_weeks
        Fewest usable past weeks for a calibrated test (otherwise the runner falls back on
        the model-based tests and says so).
    level_weeks, prior
        Weeks of the out-of-sample level correction (4 adapts like EARS; 8 found fewer
        outbreaks on the development seeds) and its pseudo-incidents.
    drift_lead
        Days before the week where the CUSUM and EWMA charts restart.
    k, lam
        CUSUM reference value and EWMA smoothing constant.
    max_window
        Longest scan window (days); neighbours come from the runner.
    strata
        Reference zone-weeks are pooled within this many groups of zones of similar expected
        counts (1: all zones together).
    components
        The statistics combined (any of :data:`COMPONENTS`); by default the 3- and 7-day
        excesses (on Chicago with outbreaks planted from a seed the evaluation does not
        score, the 1-day excess, CUSUM, EWMA and scan lowered the detection at equal real
        false-alarm rate: their null tails are heavy).
    combine
        ``"max"``: the largest of the components (all -log10 count p values, one scale),
        calibrated once; ``"minp"``: each calibrated, then their min-p calibrated again (for
        components on different scales: drift, scan).
    tail, tail_body, tail_upper, tail_shape
        ``"anchored"``: beyond the reference's ``1 - tail_body`` quantile, a generalised
        Pareto tail of shape ``tail_shape`` through its ``1 - tail_body`` and ``1 -
        tail_upper`` quantiles (:func:`~pipelines.signals.pvalues.anchored_tail_pvalue`:
        past outbreaks in the reference barely move it); ``"gpd"``: a GPD fitted to the
        reference's top values (:func:`~pipelines.signals.pvalues.tail_pvalue`).
    """

    calibration_weeks: int = 52
    min_weeks: int = 26
    level_weeks: int = 4
    prior: float = 2.0
    drift_lead: int = 14
    k: float = 0.5
    lam: float = 0.2
    max_window: int = 14
    strata: int = 1
    components: tuple[str, ...] = ("excess_3d", "excess_week")
    combine: str = "max"
    tail: str = "anchored"
    tail_body: float = 0.10
    tail_upper: float = 0.02
    tail_shape: float = 0.1

    def pvalue(self, obs: np.ndarray, ref: np.ndarray, *, loo: bool = False) -> np.ndarray:
        """p values of ``obs`` against the reference sample ``ref`` (see ``tail``)."""
        if self.tail == "gpd":
            return tail_pvalue(obs, ref, leave_one_out=loo)
        return anchored_tail_pvalue(
            obs, ref, body=self.tail_body, upper=self.tail_upper, shape=self.tail_shape,
            leave_one_out=loo,
        )  # fmt: skip

    @property
    def history_days(self) -> int:
        """Days of history a run needs for full calibration."""
        return 7 * (self.calibration_weeks + self.level_weeks)


@dataclass(frozen=True)
class Blocks:
    """7-day blocks ``[a, b)`` over a panel: full weeks of history, then the period's blocks."""

    a: np.ndarray
    b: np.ndarray
    first_period: int

    @classmethod
    def of(cls, panel: Panel, length: int = 7) -> Blocks:
        p0, p1 = panel.period
        hist = [(s - length, s) for s in range(p0, length - 1, -length)][::-1]
        allb = hist + week_blocks(p0, p1, length=length)
        a, b = (np.array(x, dtype=int) for x in zip(*allb, strict=True))
        return cls(a, b, len(hist))

    @property
    def day_block(self) -> np.ndarray:
        """Block index of every day (-1 before the first block)."""
        out = np.full(int(self.b[-1]), -1)
        for j, (a, b) in enumerate(zip(self.a, self.b, strict=True)):
            out[a:b] = j
        return out


def rolling_expected(panel: Panel, blocks: Blocks, cfg: CalibrationSettings) -> np.ndarray:
    """The expectation of each block rescaled by the zone's level over the weeks before it."""
    valid = panel.valid
    co = _prefix(np.where(valid, panel.observed, 0.0))
    ce = _prefix(np.where(valid, panel.expected, 0.0))
    lo = np.maximum(blocks.a - 7 * cfg.level_weeks, 0)
    ratio = (co[:, blocks.a] - co[:, lo] + cfg.prior) / (ce[:, blocks.a] - ce[:, lo] + cfg.prior)
    db = blocks.day_block
    out = np.full(panel.expected.shape, np.nan)
    t = np.flatnonzero(db >= 0)
    out[:, t] = panel.expected[:, t] * ratio[:, db[t]]
    return out


def _prefix(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)


@dataclass(frozen=True)
class BlockStats:
    """Each statistic per zone and block, and what the records need to name its window."""

    scores: dict[str, np.ndarray]  # name -> (Z, nB)
    usable: np.ndarray  # (nB,) block has enough known zone-days for the reference
    obs: np.ndarray  # (Z, T) observed, 0 where unknown
    exp: np.ndarray  # (Z, T) rolling expectation, 0 where unknown
    day_p: np.ndarray  # (Z, T) -log10 p of each day
    paths: dict[str, np.ndarray]  # cusum/ewma: (Z, nB, lead + 7) chart values
    scan_best: np.ndarray | None  # (Z, K, T) best LLR of each cylinder ending on each day
    scan_len: np.ndarray | None  # (Z, K, T) its window length
    level: np.ndarray  # (Z, nB) expected incidents of each zone-week
    p3: np.ndarray  # (Z, T) -log10 p of the 3 days ending on each day


def block_statistics(
    panel: Panel,
    neighbours: np.ndarray | None,
    blocks: Blocks,
    *,
    dispersion: float,
    cfg: CalibrationSettings,
) -> BlockStats:
    """The five statistics of every zone-week (see the module's docstring)."""
    exp_r = rolling_expected(panel, blocks, cfg)
    ok = np.isfinite(panel.observed) & np.isfinite(exp_r) & (exp_r > 0)
    o = np.where(ok, panel.observed, 0.0)
    e = np.where(ok, exp_r, 0.0)
    day_p = -np.log10(
        np.nan_to_num(count_upper_p(o, np.where(ok, e, np.nan), dispersion=dispersion), nan=1.0)
    )
    co, ce = _prefix(o), _prefix(e)
    ow = co[:, blocks.b] - co[:, blocks.a]
    ew = ce[:, blocks.b] - ce[:, blocks.a]
    pw = count_upper_p(ow, np.where(ew > 0, ew, np.nan), dispersion=dispersion)
    scores = {
        "excess_week": -np.log10(np.nan_to_num(pw, nan=1.0)),
        "excess_day": _block_max(day_p, blocks),
        "excess_sd": _own_sd_score(ow - ew, cfg.calibration_weeks),
    }
    p3 = _window_p(o, e, 3, dispersion)
    scores["excess_3d"] = _block_max(p3, blocks)
    z = standardised_residuals(panel.observed, exp_r, dispersion=dispersion)
    z = np.where(ok, z, 0.0)
    paths = _charts(z, blocks, cfg) if {"cusum", "ewma"} & set(cfg.components) else {}
    for name, path in paths.items():
        scores[name] = path[:, :, cfg.drift_lead :].max(axis=2)
    best = length = None
    if neighbours is not None and "scan" in cfg.components:
        best, length = _cylinders(o, e, np.asarray(neighbours, dtype=int), cfg.max_window)
        scores["scan"] = _block_max(_zone_day(best, np.asarray(neighbours, dtype=int)), blocks)
    known = np.array([ok[:, a:b].mean() for a, b in zip(blocks.a, blocks.b, strict=True)])
    usable = (known >= 0.5) & (blocks.a >= 7 * min(cfg.level_weeks, 4))
    return BlockStats(scores, usable, o, e, day_p, paths, best, length, ew, p3)


def _window_p(o: np.ndarray, e: np.ndarray, days: int, dispersion: float) -> np.ndarray:
    """-log10 upper-tail p of the count over the ``days`` days ending on each day."""
    co, ce = _prefix(o), _prefix(e)
    t = np.arange(1, o.shape[1] + 1)
    lo = np.maximum(t - days, 0)
    ow, ew = co[:, t] - co[:, lo], ce[:, t] - ce[:, lo]
    p = count_upper_p(ow, np.where(ew > 0, ew, np.nan), dispersion=dispersion)
    return -np.log10(np.nan_to_num(p, nan=1.0))


def _own_sd_score(resid: np.ndarray, weeks: int, *, floor: float = 0.5) -> np.ndarray:
    """Each zone-week's excess over expectation in SDs of the zone's own weekly residuals over
    the ``weeks`` weeks before it (past only; at least ``floor`` incidents)."""
    c1 = _prefix(resid)
    c2 = _prefix(resid**2)
    j = np.arange(resid.shape[1])
    lo = np.maximum(j - weeks, 0)
    n = np.maximum(j - lo, 1)
    mean = (c1[:, j] - c1[:, lo]) / n
    var = (c2[:, j] - c2[:, lo] - n * mean**2) / np.maximum(n - 1, 1)
    sd = np.maximum(np.sqrt(np.maximum(var, 0.0)), floor)
    return np.where(j >= 8, resid / sd, 0.0)


def _block_max(x: np.ndarray, blocks: Blocks) -> np.ndarray:
    return np.stack(
        [x[:, a:b].max(axis=1) for a, b in zip(blocks.a, blocks.b, strict=True)], axis=1
    )


def _charts(z: np.ndarray, blocks: Blocks, cfg: CalibrationSettings) -> dict[str, np.ndarray]:
    """CUSUM and EWMA paths over ``drift_lead`` days before each block and the block itself.

    Days past a short block's end repeat its last value, so they never raise the maximum.
    """
    width = cfg.drift_lead + 7
    idx = blocks.a[:, None] - cfg.drift_lead + np.arange(width)[None, :]  # (nB, width)
    inside = (idx >= 0) & (idx < blocks.b[:, None])
    zz = np.where(inside[None], z[:, np.clip(idx, 0, z.shape[1] - 1)], 0.0)  # (Z, nB, width)
    cus = np.empty_like(zz)
    ewm = np.empty_like(zz)
    s = np.zeros(zz.shape[:2])
    w = np.zeros(zz.shape[:2])
    for t in range(width):
        s = np.maximum(0.0, s + zz[..., t] - cfg.k)
        w = cfg.lam * zz[..., t] + (1.0 - cfg.lam) * w
        sd = math.sqrt(cfg.lam / (2.0 - cfg.lam) * (1.0 - (1.0 - cfg.lam) ** (2 * (t + 1))))
        past_end = ~inside[:, t][None, :] & (t > 0)
        cus[..., t] = np.where(past_end, cus[..., t - 1], s)
        ewm[..., t] = np.where(past_end, ewm[..., t - 1], w / sd)
    return {"cusum": cus, "ewma": ewm}


def _cylinders(
    o: np.ndarray, e: np.ndarray, nbr: np.ndarray, max_window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Best expectation-based Poisson LLR over windows 1..max_window of each cylinder (centre,
    size) ending on each day, and that window's length; shape (Z, K, T)."""
    go = _prefix3(np.cumsum(o[nbr], axis=1))
    ge = _prefix3(np.cumsum(e[nbr], axis=1))
    t_len = o.shape[1]
    best = np.zeros((*nbr.shape, t_len))
    length = np.ones(best.shape, dtype=np.int16)
    ends = np.arange(1, t_len + 1)
    for span in range(1, max_window + 1):
        starts = np.maximum(ends - span, 0)
        c = go[..., ends] - go[..., starts]
        b = ge[..., ends] - ge[..., starts]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where((c > b) & (b > 0), c * np.log(c / b) + b - c, 0.0)
        better = v > best
        best = np.where(better, v, best)
        length = np.where(better, span, length)
    return best, length


def _prefix3(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((*x.shape[:-1], 1)), np.cumsum(x, axis=-1)], axis=-1)


def _zone_day(best: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """Per zone and day, the best LLR of a cylinder holding the zone."""
    out = np.zeros((nbr.shape[0], best.shape[-1]))
    for kk in range(nbr.shape[1]):
        for j in range(kk + 1):
            np.maximum.at(out, nbr[:, j], best[:, kk, :])
    return out


def calibrated_pvalues(
    stats: BlockStats, blocks: Blocks, cfg: CalibrationSettings
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """p values of the period's zone-weeks against the zone-weeks of the weeks before each.

    Returns
    -------
    tuple
        ``(p, components, reference)``: the combined p value (Z, period blocks), each
        statistic's p value, and the number of reference zone-weeks per period block (0 when
        fewer than ``min_weeks`` usable weeks precede it: p is then NaN).
    """
    names = [n for n in cfg.components if n in stats.scores]
    n_z = stats.level.shape[0]
    n_p = len(blocks.a) - blocks.first_period
    p = np.full((n_z, n_p), np.nan)
    comp = {n: np.full((n_z, n_p), np.nan) for n in names}
    n_ref = np.zeros(n_p, dtype=int)
    for jj in range(n_p):
        j = blocks.first_period + jj
        ref = [i for i in range(max(0, j - cfg.calibration_weeks), j) if stats.usable[i]]
        if len(ref) < cfg.min_weeks:
            continue
        order = np.argsort(stats.level[:, ref].mean(axis=1), kind="stable")
        groups = np.array_split(order, max(1, min(cfg.strata, n_z // 10)))
        n_ref[jj] = len(ref) * min(len(g) for g in groups)
        for g in groups:
            ref_min = np.zeros(len(ref) * len(g))
            obs_min = np.zeros(len(g))
            for n in names:
                pool = stats.scores[n][np.ix_(g, np.asarray(ref, dtype=int))].ravel()
                comp[n][g, jj] = cfg.pvalue(stats.scores[n][g, j], pool)
                if cfg.combine == "max":  # one scale (-log10 p): the largest, calibrated once
                    obs_min = np.maximum(obs_min, stats.scores[n][g, j])
                    ref_min = np.maximum(ref_min, pool)
                    continue
                obs_min = np.maximum(obs_min, -np.log10(comp[n][g, jj]))
                ref_min = np.maximum(ref_min, -np.log10(cfg.pvalue(pool, pool, loo=True)))
            p[g, jj] = cfg.pvalue(obs_min, ref_min)
    return p, comp, n_ref


def calibrated_tests(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    dispersion: float,
    cfg: CalibrationSettings | None = None,
    stats: BlockStats | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One history-calibrated test per zone and week of the period (see the module); ``stats``:
    the panel's :func:`block_statistics` if computed already (per zone block on Dask).

    Returns
    -------
    tuple
        The tests (:data:`SIGNAL_COLUMNS`; ``type`` is that of the statistic that fired) and
        ``{"reference_zone_weeks": smallest reference, "weeks_without_reference": n,
        "weeks": period weeks}``.
    """
    cfg = cfg or CalibrationSettings()
    blocks = Blocks.of(panel)
    stats = stats or block_statistics(panel, neighbours, blocks, dispersion=dispersion, cfg=cfg)
    p, comp, n_ref = calibrated_pvalues(stats, blocks, cfg)
    records: list[dict] = []
    nbr = None if neighbours is None else np.asarray(neighbours, dtype=int)
    for jj in range(p.shape[1]):
        j = blocks.first_period + jj
        for i in range(len(panel.zones)):
            if not np.isfinite(p[i, jj]) or stats.exp[i, blocks.a[j] : blocks.b[j]].sum() <= 0:
                continue
            cp = {n: float(comp[n][i, jj]) for n in comp}
            records.append(
                _record(panel, stats, blocks, j, i, p[i, jj], cp, nbr, cfg, int(n_ref[jj]))
            )
    info = {
        "reference_zone_weeks": int(n_ref[n_ref > 0].min()) if (n_ref > 0).any() else 0,
        "weeks_without_reference": int((n_ref == 0).sum()),
        "weeks": int(len(n_ref)),
    }
    return records_frame(records), info


def _record(
    panel: Panel,
    stats: BlockStats,
    blocks: Blocks,
    j: int,
    i: int,
    p: float,
    comp: dict[str, float],
    nbr: np.ndarray | None,
    cfg: CalibrationSettings,
    n_ref: int,
) -> dict:
    """The test record of zone ``i`` in block ``j``: the window of the statistic that fired."""
    fired = min(comp, key=lambda n: comp[n])
    a, b = int(blocks.a[j]), int(blocks.b[j])
    zones = [str(panel.zones[i])]
    t0, t1 = a, b
    if fired in ("excess_day", "excess_3d"):
        daily = stats.day_p if fired == "excess_day" else stats.p3
        t1 = a + int(daily[i, a:b].argmax()) + 1
        t0 = max(0, t1 - (1 if fired == "excess_day" else 3))
    elif fired in ("cusum", "ewma"):
        path = stats.paths[fired][i, j]
        t_max = cfg.drift_lead + int(path[cfg.drift_lead :].argmax())
        run0 = t_max
        while run0 > 0 and path[run0 - 1] > 0:
            run0 -= 1
        t0, t1 = a - cfg.drift_lead + run0, a - cfg.drift_lead + t_max + 1
        t0 = max(t0, 0)
    elif fired == "scan" and nbr is not None and stats.scan_best is not None:
        members, t0, t1 = _best_cylinder(stats, nbr, i, a, b)
        zones = [str(panel.zones[m]) for m in members]
        idx = [int(m) for m in members]
        o = float(stats.obs[idx, t0:t1].sum())
        e = float(stats.exp[idx, t0:t1].sum())
    if fired != "scan" or nbr is None:
        o = float(stats.obs[i, t0:t1].sum())
        e = float(stats.exp[i, t0:t1].sum())
    start, end = panel.window(t0, t1)
    span = (
        day_label(start)
        if t1 - t0 == 1
        else f"{day_label(start)} to {day_label(end - pd.Timedelta(1))}"
    )
    what = {
        "excess_3d": "more incidents than expected over three days",
        "excess_sd": "more incidents than the zone's usual weekly swings allow",
        "excess_week": "more incidents than expected over the week",
        "excess_day": "more incidents than expected in a day",
        "cusum": "an upward drift (CUSUM)",
        "ewma": "an upward drift (EWMA)",
        "scan": "a space-time cluster with its neighbours",
    }[fired]
    shown = ", ".join(zones[:5]) + (f" and {len(zones) - 5} more" if len(zones) > 5 else "")
    return record(
        COMPONENTS[fired],
        detector=fired,
        zones=zones,
        start=start,
        end=end,
        observed=o,
        expected=e,
        p_value=p,
        explanation=f"Zone{'s' if len(zones) > 1 else ''} {shown}: {what}, {fmt_number(o)} "
        f"incidents against {fmt_number(e)} expected ({span}); rarer than "
        f"{100 * (1 - p):.1f} % of the {n_ref} past zone-weeks it is compared with.",
        statistic=float(stats.scores[fired][i, j]),
        components=comp,
        reference_zone_weeks=n_ref,
        days=int(t1 - t0),
        week=int(j - blocks.first_period),
    )


def _best_cylinder(
    stats: BlockStats, nbr: np.ndarray, i: int, a: int, b: int
) -> tuple[np.ndarray, int, int]:
    """Members and window of the best cylinder holding zone ``i`` that ends in ``[a, b)``."""
    assert stats.scan_best is not None and stats.scan_len is not None
    centres, sizes = np.nonzero(
        np.cumsum(nbr == i, axis=1) > 0
    )  # (c, k): zone i among the first k+1 neighbours of c
    vals = stats.scan_best[centres, sizes, a:b]
    flat = int(vals.argmax())
    c_i, t_i = divmod(flat, b - a)
    c, kk = int(centres[c_i]), int(sizes[c_i])
    t1 = a + t_i + 1
    t0 = max(0, t1 - int(stats.scan_len[c, kk, a + t_i]))
    return nbr[c, : kk + 1], t0, t1
