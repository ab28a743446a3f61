"""Drift: CUSUM and EWMA charts on standardised residuals, with Monte Carlo p values."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipelines.signals.panel import Panel, day_label, fmt_number, record, records_frame
from pipelines.signals.pvalues import mc_pvalue, simulate_counts


def standardised_residuals(
    observed: np.ndarray, expected: np.ndarray, *, dispersion: float = 0.0
) -> np.ndarray:
    """Pearson residuals ``(O - E) / sqrt(E + alpha E^2)``; 0 where a day is unknown."""
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    ok = np.isfinite(o) & np.isfinite(e) & (e > 0)
    e_safe = np.where(ok, e, 1.0)
    z = (np.where(ok, o, 0.0) - e_safe) / np.sqrt(e_safe + dispersion * e_safe**2)
    return np.where(ok, z, 0.0)


def cusum_path(z: np.ndarray, *, k: float = 0.5) -> np.ndarray:
    """Upper one-sided tabular CUSUM ``S_t = max(0, S_{t-1} + z_t - k)`` along the last axis.

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    Montgomery, D. C. (2009). Introduction to Statistical Quality Control, 6th ed., ch. 9.1.
    """
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    s = np.zeros(z.shape[:-1])
    for t in range(z.shape[-1]):
        s = np.maximum(0.0, s + z[..., t] - k)
        out[..., t] = s
    return out


def ewma_path(z: np.ndarray, *, lam: float = 0.2) -> np.ndarray:
    """EWMA of z along the last axis, divided by its exact standard deviation (unit-variance z).

    ``Z_t = lam z_t + (1 - lam) Z_{t-1}``, ``Z_0 = 0``,
    ``sd(Z_t) = sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2t)))``.

    References
    ----------
    Roberts, S. W. (1959). Control chart tests based on geometric moving averages.
    Technometrics 1(3), 239-250.
    Montgomery, D. C. (2009). Introduction to Statistical Quality Control, 6th ed., ch. 9.2.
    """
    if not 0 < lam <= 1:
        raise ValueError(f"lam should be in (0, 1], got {lam}")
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    e = np.zeros(z.shape[:-1])
    for t in range(z.shape[-1]):
        e = lam * z[..., t] + (1.0 - lam) * e
        sd = math.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * (t + 1))))
        out[..., t] = e / sd
    return out


def _run_start(path: np.ndarray, end: int) -> int:
    """First index of the run of positive values of ``path`` that ends at ``end``."""
    t = end
    while t > 0 and path[t - 1] > 0:
        t -= 1
    return t


def drift_tests(
    panel: Panel,
    *,
    k: float = 0.5,
    lam: float = 0.2,
    dispersion: float = 0.0,
    n_sim: int = 999,
    seed: int = 0,
    null: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """CUSUM and EWMA drift per zone on standardised residuals, with Monte Carlo p values.

    The charts run over the whole panel (history = look-back) and the statistic is their
    maximum over the period. Its null distribution comes from ``n_sim`` parametric replicates of
    the same days (counts drawn from Poisson(expected), or NB2 with ``dispersion``) run through
    the same charts, so the p value accounts for small counts, the look-back length and the
    maximum over days (:func:`mc_pvalue`).

    Parameters
    ----------
    panel
        Daily observed and expected counts (the history before the period is the look-back).
    k
        CUSUM reference value in residual SDs (0.5 targets a 1-SD shift).
    lam
        EWMA smoothing constant.
    dispersion
        NB2 dispersion of the null counts.
    n_sim, seed
        Monte Carlo replicates and seed.
    null
        Replicates from :func:`drift_null` for the same expectations (computed when None);
        pass them to test many count series against the same expectation.

    Returns
    -------
    pandas.DataFrame
        Two tests per zone (``detector`` ``cusum`` and ``ewma``), ``type="drift"``. The window is
        the run of positive chart values that ends at the day of the maximum.

    References
    ----------
    Page, E. S. (1954). Biometrika 41, 100-115. Roberts, S. W. (1959). Technometrics 1, 239-250.
    Montgomery, D. C. (2009). Introduction to Statistical Quality Control, 6th ed., ch. 9.
    Abrams, A. M. et al. (2010). Int. J. Health Geographics 9:61 (Gumbel tail).
    """
    p1 = panel.period[1]
    z_obs = standardised_residuals(
        panel.observed[:, :p1], panel.expected[:, :p1], dispersion=dispersion
    )
    paths = {"cusum": cusum_path(z_obs, k=k), "ewma": ewma_path(z_obs, lam=lam)}
    if null is None:
        null = drift_null(panel, k=k, lam=lam, dispersion=dispersion, n_sim=n_sim, seed=seed)
    records: list[dict] = []
    for name, path in paths.items():
        records += _chart_tests(panel, name, path, null[name])
    return records_frame(records)


def _chart_tests(panel: Panel, name: str, path: np.ndarray, null: np.ndarray) -> list[dict]:
    """One test per zone of a chart (``cusum`` or ``ewma``): its period maximum against the null.

    The window is the run of positive chart values that ends at the day of the maximum.
    """
    p0, p1 = panel.period
    stat = path[:, p0:p1].max(axis=1)
    argmax = p0 + path[:, p0:p1].argmax(axis=1)
    valid = panel.valid[:, :p1]
    o_all = np.where(valid, panel.observed[:, :p1], 0.0)
    e_all = np.where(valid, panel.expected[:, :p1], 0.0)
    pv = mc_pvalue(stat, null)
    label = "CUSUM" if name == "cusum" else "EWMA"
    out = []
    for i, zone in enumerate(panel.zones):
        if not valid[i].any():
            continue
        t1 = int(argmax[i]) + 1
        t0 = min(_run_start(path[i], t1 - 1), t1 - 1)
        o = o_all[i, t0:t1].sum()
        e = e_all[i, t0:t1].sum()
        start, end = panel.window(t0, t1)
        out.append(
            record(
                "drift",
                detector=name,
                zones=[zone],
                start=start,
                end=end,
                observed=o,
                expected=e,
                p_value=pv[i],
                explanation=f"Zone {zone} drifts upwards ({label} {stat[i]:.1f}): "
                f"{fmt_number(o)} incidents against {fmt_number(e)} expected from "
                f"{day_label(start)} to {day_label(end - pd.Timedelta(1))}.",
                statistic=stat[i],
                days=int(t1 - t0),
            )
        )
    return out


def drift_null(
    panel: Panel,
    *,
    k: float = 0.5,
    lam: float = 0.2,
    dispersion: float = 0.0,
    n_sim: int = 999,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Null replicates of the period maxima of the CUSUM and EWMA charts, shape (R, Z) each.

    Counts are drawn from Poisson(expected) (NB2 with ``dispersion``) on the days where the
    expectation is known and run through the same charts as :func:`drift_tests`.
    """
    p0, p1 = panel.period
    exp = panel.expected[:, :p1]
    valid = panel.valid[:, :p1]
    exp0 = np.where(valid, exp, 0.0)
    rng = np.random.default_rng(seed)
    sims: dict[str, list[np.ndarray]] = {"cusum": [], "ewma": []}
    chunk = max(1, int(4e6 // max(1, exp0.size)))
    done = 0
    while done < n_sim:
        n = min(chunk, n_sim - done)
        y = simulate_counts(exp0, n, rng, dispersion)
        y = np.where(valid[None], y, np.nan)
        z = standardised_residuals(y, np.broadcast_to(exp, y.shape), dispersion=dispersion)
        sims["cusum"].append(cusum_path(z, k=k)[..., p0:p1].max(axis=-1))
        sims["ewma"].append(ewma_path(z, lam=lam)[..., p0:p1].max(axis=-1))
        done += n
    return {
        name: np.concatenate(v, axis=0) if v else np.zeros((0, len(panel.zones)))
        for name, v in sims.items()
    }
