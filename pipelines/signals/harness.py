"""The evaluation's machinery: prospective daily statistics, evaluation weeks, injected outbreaks,
thresholds at equal false-positive rate, and the weekly pipeline's flags.

See :mod:`pipelines.signals.evaluate` for the design (Noufaily et al. 2013).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipelines.signals.drift import cusum_path, drift_tests, ewma_path, standardised_residuals
from pipelines.signals.ears import ears_statistic
from pipelines.signals.excess import excess_tests
from pipelines.signals.panel import P_FLOOR, Panel
from pipelines.signals.period import Period
from pipelines.signals.pvalues import benjamini_hochberg, count_upper_p, simulate_counts
from pipelines.signals.scan import space_time_scan

log = logging.getLogger(__name__)

#: daily detectors compared at equal FPR.
DETECTORS = ("excess", "cusum", "ewma", "scan", "ears_c1", "ears_c2", "ears_c3")
#: the detectors combined into ``vigie``.
COMBINED = ("excess", "cusum", "ewma", "scan")


def daily_statistics(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    dispersion: float = 0.0,
    k: float = 0.5,
    lam: float = 0.2,
    max_window: int = 14,
) -> dict[str, np.ndarray]:
    """Each detector's statistic per zone and period day, using data up to that day only.

    Returns
    -------
    dict
        name -> array (Z, period days); larger is more alarming. ``excess`` is -log10 of the
        smaller of the day's and the trailing 7 days' Poisson/NB p values; ``cusum`` and
        ``ewma`` the chart values; ``scan`` the largest LLR of a cylinder containing the zone
        and ending that day; ``ears_c*`` the EARS statistics on the raw counts.
    """
    p0, p1 = panel.period
    valid = panel.valid
    o = np.where(valid, panel.observed, 0.0)
    e = np.where(valid, panel.expected, 0.0)
    p_day = count_upper_p(o, np.where(valid, e, np.nan), dispersion=dispersion)
    co = np.concatenate([np.zeros((o.shape[0], 1)), np.cumsum(o, axis=1)], axis=1)
    ce = np.concatenate([np.zeros((e.shape[0], 1)), np.cumsum(e, axis=1)], axis=1)
    t = np.arange(p0, p1)
    lo = np.maximum(t + 1 - 7, 0)
    o7 = co[:, t + 1] - co[:, lo]
    e7 = ce[:, t + 1] - ce[:, lo]
    p7 = count_upper_p(o7, np.where(e7 > 0, e7, np.nan), dispersion=dispersion)
    pmin = np.fmin(np.nan_to_num(p_day[:, p0:p1], nan=1.0), np.nan_to_num(p7, nan=1.0))
    out = {"excess": -np.log10(np.clip(pmin, P_FLOOR, 1.0))}
    z = standardised_residuals(
        panel.observed[:, :p1], panel.expected[:, :p1], dispersion=dispersion
    )
    out["cusum"] = cusum_path(z, k=k)[:, p0:p1]
    out["ewma"] = ewma_path(z, lam=lam)[:, p0:p1]
    if neighbours is not None:
        out["scan"] = space_time_scan(
            panel, neighbours, max_window=max_window, n_sim=0
        ).zone_day_llr
    raw = np.where(np.isfinite(panel.observed), panel.observed, 0.0)
    for m in ("C1", "C2", "C3"):
        out[f"ears_{m.lower()}"] = np.nan_to_num(
            ears_statistic(raw, method=m)[:, p0:p1], nan=-np.inf
        )
    return out


@dataclass(frozen=True)
class Week:
    """An evaluation week: its panel, dispersion, the SD of each zone's weekly count under the
    baseline model, the zones holding planted truth, and (for the pipeline's weeks) null
    replicates of the drift charts and the scan."""

    period: Period
    panel: Panel
    dispersion: float
    weekly_sd: np.ndarray
    excluded: np.ndarray  # (Z,) zone-week holds planted truth
    null_drift: dict[str, np.ndarray] | None = None
    null_scan: np.ndarray | None = None


def inject(
    rng: np.random.Generator, week: Week, zone: int, size_sd: float, duration: int, start_day: int
) -> tuple[np.ndarray, int]:
    """Outbreak cases added to the panel's observed counts (after Noufaily et al. 2013).

    The outbreak holds Poisson(size_sd x SD) cases, SD being the standard deviation of the
    zone's count over the week under the baseline model (NB2: ``sqrt(sum E + alpha sum E^2)``),
    spread over ``duration`` days from ``start_day`` (a period day index) with log-normal(0, 0.5)
    day weights.
    """
    n = int(rng.poisson(size_sd * week.weekly_sd[zone]))
    w = rng.lognormal(0.0, 0.5, duration)
    added = np.zeros_like(week.panel.observed)
    t0 = week.panel.period[0] + start_day
    added[zone, t0 : t0 + duration] = rng.multinomial(n, w / w.sum())
    return added, n


def pipeline_flags(
    week: Week,
    observed: np.ndarray,
    neighbours: np.ndarray | None,
    *,
    fdr: float,
    max_window: int,
) -> list[set[int]]:
    """Zones of each significant incident signal of the weekly pipeline (BH at ``fdr``)."""
    panel = replace(week.panel, observed=observed)
    parts = [
        excess_tests(panel, dispersion=week.dispersion),
        drift_tests(panel, dispersion=week.dispersion, null=week.null_drift),
    ]
    if neighbours is not None:
        parts.append(
            space_time_scan(
                panel,
                neighbours,
                max_window=max_window,
                null_max=week.null_scan,
                dispersion=week.dispersion,
            ).clusters
        )
    tests = pd.concat([p for p in parts if len(p)], ignore_index=True)
    q = benjamini_hochberg(tests["p_value"].to_numpy(float))
    index = {z: i for i, z in enumerate(panel.zones)}
    flags = [{index[z] for z in zs} for zs, qq in zip(tests["zones"], q, strict=True) if qq < fdr]
    truth = set(np.flatnonzero(week.excluded))
    return [
        f for f in flags if not f & truth
    ]  # signals on planted truth are neither true nor false


@dataclass(frozen=True)
class Calibration:
    """Thresholds at the target FPR, from null zone-weeks.

    Attributes
    ----------
    nulls
        Sorted null statistics per detector (a zone-week's maximum over its days).
    thresholds
        Per detector, ``vigie`` (the min-p combination) included.
    fpr_null, fpr_real
        FPR on the null zone-weeks and on the cube's own outbreak-free ones (None without).
    combined
        The detectors combined into ``vigie``.
    label, n_units, n_real
        Where the null zone-weeks came from, how many, and how many of the cube's own.
    """

    nulls: dict[str, np.ndarray]
    thresholds: dict[str, float]
    fpr_null: dict[str, float]
    fpr_real: dict[str, float | None]
    combined: tuple[str, ...]
    label: str
    n_units: int
    n_real: int

    @property
    def names(self) -> list[str]:
        """The daily detectors calibrated (``vigie`` left out)."""
        return [n for n in self.thresholds if n != "vigie"]

    def percentile(self, name: str, x: np.ndarray) -> np.ndarray:
        """Share of the null statistics of ``name`` at or below ``x``."""
        return np.searchsorted(self.nulls[name], x, side="right") / len(self.nulls[name])

    def combine(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """The ``vigie`` statistic: the largest null percentile across the combined detectors."""
        return np.max([self.percentile(n, stats[n]) for n in self.combined], axis=0)


def calibrate(
    weeks: list[Week],
    neighbours: np.ndarray | None,
    rng: np.random.Generator,
    *,
    target_fpr: float,
    calibration_units: int,
    max_window: int,
) -> Calibration:
    """Each detector's threshold flagging ``target_fpr`` of the null zone-weeks.

    The null zone-weeks are the cube's own outbreak-free ones when there are
    ``calibration_units`` of them, otherwise parametric ones (counts drawn from the
    expectation with its NB2 dispersion). The scan is left out without neighbours.
    """
    names = [d for d in DETECTORS if d != "scan" or neighbours is not None]
    comb = tuple(d for d in COMBINED if d in names)
    real = observed_maxima(weeks, neighbours, names=names, max_window=max_window)
    n_real = len(next(iter(real.values())))
    if n_real >= calibration_units:
        nulls, label = real, "observed outbreak-free zone-weeks"
    else:
        n_zones = len(weeks[0].panel.zones)
        per_week = int(np.ceil(calibration_units / max(1, n_zones * len(weeks))))
        nulls = simulated_maxima(
            weeks, neighbours, rng, names=names, per_week=per_week, max_window=max_window
        )
        label = "parametric null zone-weeks (counts drawn from the expectation)"
    nulls = {n: np.sort(v) for n, v in nulls.items()}
    cal = Calibration(nulls, {}, {}, {}, comb, label, len(next(iter(nulls.values()))), n_real)
    comb_null = np.sort(cal.combine(nulls))
    thresholds = {n: float(np.quantile(nulls[n], 1 - target_fpr, method="higher")) for n in names}
    thresholds["vigie"] = float(np.quantile(comb_null, 1 - target_fpr, method="higher"))
    fpr_null = {n: float(np.mean(nulls[n] > thresholds[n])) for n in names}
    fpr_null["vigie"] = float(np.mean(comb_null > thresholds["vigie"]))
    real["vigie"] = cal.combine(real) if n_real else np.zeros(0)
    fpr_real = {n: float(np.mean(real[n] > thresholds[n])) if n_real else None for n in thresholds}
    return replace(cal, thresholds=thresholds, fpr_null=fpr_null, fpr_real=fpr_real)


def observed_maxima(
    weeks: list[Week], neighbours: np.ndarray | None, *, names: Sequence[str], max_window: int
) -> dict[str, np.ndarray]:
    """Each detector's maximum over the days of the cube's outbreak-free zone-weeks."""
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for w in weeks:
        s = daily_statistics(w.panel, neighbours, dispersion=w.dispersion, max_window=max_window)
        for n in names:
            out[n].append(s[n].max(axis=1)[~w.excluded])
    return {n: np.concatenate(v) for n, v in out.items()}


def simulated_maxima(
    weeks: list[Week],
    neighbours: np.ndarray | None,
    rng: np.random.Generator,
    *,
    names: Sequence[str],
    per_week: int,
    max_window: int,
) -> dict[str, np.ndarray]:
    """Each detector's maximum over parametric null zone-weeks, ``per_week`` panels per week."""
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for w in weeks:
        exp = np.where(w.panel.valid, w.panel.expected, 0.0)
        for y in simulate_counts(exp, per_week, rng, w.dispersion):
            panel = replace(w.panel, observed=np.where(w.panel.valid, y, np.nan))
            s = daily_statistics(panel, neighbours, dispersion=w.dispersion, max_window=max_window)
            for n in names:
                out[n].append(s[n].max(axis=1))
    return {n: np.concatenate(v) for n, v in out.items()}


def outbreak_replicates(
    weeks: list[Week],
    neighbours: np.ndarray | None,
    rng: np.random.Generator,
    cal: Calibration,
    *,
    replicates: int,
    pipeline_replicates: int,
    sizes: Sequence[float],
    durations: Sequence[int],
    fdr: float,
    max_window: int,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Outbreaks injected at random (week, zone, size, duration, start), scored by each detector
    and, for the first ``pipeline_replicates`` in the pipeline's weeks, by the weekly pipeline.

    Returns
    -------
    tuple
        One row per replicate, and the pipeline's rows (size_sd, detected, signals,
        true_signals).
    """
    rows, pipe_rows = [], []
    zones = weeks[0].panel.zones
    cand = [(wi, z) for wi, w in enumerate(weeks) for z in range(len(zones)) if not w.excluded[z]]
    pipe_weeks = [i for i, w in enumerate(weeks) if w.null_drift is not None]
    for r in range(replicates):
        log.debug("outbreak replicate %d of %d", r + 1, replicates)  # the CLI's progress bar
        wi, z = cand[rng.integers(len(cand))]
        w = weeks[wi]
        size = float(rng.choice(sizes))
        dur = int(rng.choice(durations))
        start = int(rng.integers(0, 7 - dur + 1))
        added, cases = inject(rng, w, z, size, dur, start)
        obs = w.panel.observed + added
        s = daily_statistics(
            replace(w.panel, observed=obs), neighbours, dispersion=w.dispersion,
            max_window=max_window,
        )  # fmt: skip
        row: dict[str, Any] = {
            "week": w.period.label, "zone": zones[z], "size_sd": size, "duration": dur,
            "start_day": start, "cases": cases,
        }  # fmt: skip
        series = {n: s[n] for n in cal.names}
        series["vigie"] = cal.combine(s)
        for n, arr in series.items():
            row.update(_score(n, arr, w, z, start, cal.thresholds[n]))
        rows.append(row)
        if r < pipeline_replicates and wi in pipe_weeks:
            flags = pipeline_flags(w, obs, neighbours, fdr=fdr, max_window=max_window)
            pipe_rows.append(
                {
                    "size_sd": size,
                    "detected": any(z in f for f in flags),
                    "signals": len(flags),
                    "true_signals": sum(z in f for f in flags),
                }
            )
    return pd.DataFrame(rows), pipe_rows


def _score(
    name: str, arr: np.ndarray, w: Week, z: int, start: int, threshold: float
) -> dict[str, Any]:
    """Whether and when the outbreak's zone is flagged, and how many other zones are."""
    hit = np.flatnonzero(arr[z, start:] > threshold)
    others = np.delete(arr.max(axis=1) > threshold, z)
    others = others[~np.delete(w.excluded, z)]
    return {
        f"{name}_detected": bool(len(hit)),
        f"{name}_delay": float(hit[0]) if len(hit) else np.nan,
        f"{name}_false": int(others.sum()),
    }


def null_pipeline_runs(
    weeks: list[Week],
    neighbours: np.ndarray | None,
    rng: np.random.Generator,
    *,
    null_replicates: int,
    fdr: float,
    max_window: int,
) -> list[int]:
    """Signals of the weekly pipeline on parametric null replicates (all false), per run."""
    pipe_weeks = [i for i, w in enumerate(weeks) if w.null_drift is not None]
    out = []
    for r in range(null_replicates if pipe_weeks else 0):
        w = weeks[pipe_weeks[r % len(pipe_weeks)]]
        exp = np.where(w.panel.valid, w.panel.expected, 0.0)
        y = simulate_counts(exp, 1, rng, w.dispersion)[0]
        y = np.where(w.panel.valid, y, np.nan)
        out.append(len(pipeline_flags(w, y, neighbours, fdr=fdr, max_window=max_window)))
    return out
