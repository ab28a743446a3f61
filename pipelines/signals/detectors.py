"""Weak-signal detectors: pure numpy/pandas functions on a daily zone panel or the hourly cube.

Every detector returns a DataFrame of *tests* with the columns of :data:`SIGNAL_COLUMNS`
(``q_value`` left empty: the runner adjusts all tests of a run together with
:func:`benjamini_hochberg`). A test becomes a *signal* when its q value is below the run's
FDR level.

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
from scipy import stats

from features.geo import haversine_m

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


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


def _day(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=SIGNAL_COLUMNS)
    for col in ("observed", "expected", "ratio", "statistic", "p_value", "q_value", "score"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["explained"] = df["explained"].astype(bool)
    return df


def _record(
    type_: str,
    detector: str,
    zones: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    observed: float,
    expected: float,
    p_value: float,
    explanation: str,
    *,
    statistic: float = np.nan,
    ratio: float | None = None,
    explained: bool = False,
    **details: Any,
) -> dict[str, Any]:
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


def count_upper_p(observed: Any, expected: Any, *, dispersion: float = 0.0) -> np.ndarray:
    """Upper-tail probability P(X >= observed) of a Poisson or negative-binomial count.

    Parameters
    ----------
    observed, expected
        Counts and their means (broadcastable arrays).
    dispersion
        NB2 dispersion alpha (Var = mu + alpha mu^2); 0 gives the Poisson.

    Returns
    -------
    numpy.ndarray
        p values in [0, 1]; NaN where the mean is not finite.

    References
    ----------
    Farrington, C. P. et al. (1996). A statistical algorithm for the early detection of outbreaks
    of infectious disease. JRSS A 159(3), 547-563 (tail probability of the current count).
    Hilbe, J. M. (2011). Negative Binomial Regression, 2nd ed., Cambridge (NB2 parametrisation).
    """
    obs = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    mu_safe = np.where(np.isfinite(mu), np.maximum(mu, 1e-12), 1.0)
    k = np.ceil(obs) - 1.0
    if dispersion and dispersion > 0:
        n = 1.0 / dispersion
        p = stats.nbinom.sf(k, n, n / (n + mu_safe))
    else:
        p = stats.poisson.sf(k, mu_safe)
    return np.where(np.isfinite(mu) & np.isfinite(obs), p, np.nan)


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (q values), NaN kept as NaN.

    References
    ----------
    Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate: a practical and
    powerful approach to multiple testing. JRSS B 57(1), 289-300.
    (computed with ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``)
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = multipletests(np.clip(p[ok], 0.0, 1.0), method="fdr_bh")[1]
    return q


def mc_pvalue(observed: Any, simulated: Any, *, min_exceed: int = 10) -> np.ndarray:
    """Monte Carlo p value of a maximum-type statistic, with a Gumbel tail approximation.

    ``p = (1 + #{sim >= obs}) / (R + 1)`` (Dwass 1957); when fewer than ``min_exceed`` replicates
    reach the observed value, the p value comes from a Gumbel distribution fitted by moments to
    the replicates, so that very strong signals get p values below 1/(R+1) (Abrams, Kleinman &
    Kulldorff 2010, as SaTScan does).

    Parameters
    ----------
    observed
        Statistic(s), shape S.
    simulated
        Replicates under the null, shape (R, *S).

    References
    ----------
    Dwass, M. (1957). Modified randomization tests for nonparametric hypotheses. Ann. Math.
    Stat. 28, 181-187.
    Abrams, A. M., Kleinman, K. & Kulldorff, M. (2010). Gumbel based p-value approximations for
    spatial scan statistics. Int. J. Health Geographics 9:61.
    """
    obs = np.asarray(observed, dtype=float)
    sims = np.asarray(simulated, dtype=float)
    r = sims.shape[0]
    n_exceed = (sims >= obs[None, ...] - 1e-9).sum(axis=0)
    p_emp = (1.0 + n_exceed) / (r + 1.0)
    mean = sims.mean(axis=0)
    sd = sims.std(axis=0, ddof=1) if r > 1 else np.zeros_like(mean)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        beta = sd * math.sqrt(6.0) / math.pi
        mu = mean - 0.5772156649 * beta
        p_gum = -np.expm1(-np.exp(-(obs - mu) / beta))
    use_gumbel = (n_exceed < min_exceed) & (sd > 0) & np.isfinite(p_gum)
    p = np.where(use_gumbel, np.minimum(p_gum, p_emp), p_emp)
    return np.clip(p, P_FLOOR, 1.0)


def _simulate_counts(
    expected: np.ndarray, n: int, rng: np.random.Generator, dispersion: float
) -> np.ndarray:
    mu = np.where(np.isfinite(expected), np.maximum(expected, 0.0), 0.0)
    if dispersion and dispersion > 0:
        shape = 1.0 / dispersion
        lam = rng.gamma(shape, mu[None, ...] / shape, size=(n, *mu.shape))
        return rng.poisson(lam).astype(float)
    return rng.poisson(mu[None, ...], size=(n, *mu.shape)).astype(float)


# ------------------------------------------------------------------------------------------------
# excess incidents
# ------------------------------------------------------------------------------------------------
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
    valid = panel.valid
    obs = np.where(valid, panel.observed, 0.0)
    exp = np.where(valid, panel.expected, 0.0)
    spans: list[tuple[str, int, int]] = []
    if "day" in windows:
        spans += [("day", t, t + 1) for t in range(p0, p1)]
    if "week" in windows:
        spans += [
            ("week", a, b) for a, b in week_blocks(p0, p1) if b - a > 1 or "day" not in windows
        ]
    records = []
    for kind, a, b in spans:
        o = obs[:, a:b].sum(axis=1)
        e = exp[:, a:b].sum(axis=1)
        has = valid[:, a:b].any(axis=1)
        p = count_upper_p(o, e, dispersion=dispersion)
        start, end = panel.window(a, b)
        for i in np.flatnonzero(has & (e > 0)):
            zone = panel.zones[i]
            when = (
                _day(start) if kind == "day" else f"{_day(start)} to {_day(end - pd.Timedelta(1))}"
            )
            records.append(
                _record(
                    "excess",
                    f"excess_{kind}",
                    [zone],
                    start,
                    end,
                    o[i],
                    e[i],
                    p[i],
                    f"Zone {zone} had {_fmt(o[i])} incidents against {_fmt(e[i])} expected "
                    f"{'on' if kind == 'day' else 'from'} {when} "
                    f"(x{o[i] / e[i]:.1f}).",
                    statistic=o[i] - e[i],
                    window=kind,
                )
            )
    return _records_frame(records)


# ------------------------------------------------------------------------------------------------
# drift: CUSUM and EWMA on standardised residuals
# ------------------------------------------------------------------------------------------------
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
    p0, p1 = panel.period
    obs = panel.observed[:, :p1]
    exp = panel.expected[:, :p1]
    z_obs = standardised_residuals(obs, exp, dispersion=dispersion)
    paths = {"cusum": cusum_path(z_obs, k=k), "ewma": ewma_path(z_obs, lam=lam)}
    stats_obs = {name: path[:, p0:p1].max(axis=1) for name, path in paths.items()}
    argmax = {name: p0 + path[:, p0:p1].argmax(axis=1) for name, path in paths.items()}
    if null is None:
        null = drift_null(panel, k=k, lam=lam, dispersion=dispersion, n_sim=n_sim, seed=seed)
    valid = panel.valid[:, :p1]
    exp0 = np.where(valid, exp, 0.0)
    records = []
    o_all = np.where(valid, obs, 0.0)
    for name in ("cusum", "ewma"):
        pv = mc_pvalue(stats_obs[name], null[name])
        for i, zone in enumerate(panel.zones):
            if not valid[i].any():
                continue
            t1 = int(argmax[name][i]) + 1
            t0 = min(_run_start(paths[name][i], t1 - 1), t1 - 1)
            o = o_all[i, t0:t1].sum()
            e = exp0[i, t0:t1].sum()
            start, end = panel.window(t0, t1)
            label = "CUSUM" if name == "cusum" else "EWMA"
            records.append(
                _record(
                    "drift",
                    name,
                    [zone],
                    start,
                    end,
                    o,
                    e,
                    pv[i],
                    f"Zone {zone} drifts upwards ({label} {stats_obs[name][i]:.1f}): "
                    f"{_fmt(o)} incidents against {_fmt(e)} expected from {_day(start)} to "
                    f"{_day(end - pd.Timedelta(1))}.",
                    statistic=stats_obs[name][i],
                    days=int(t1 - t0),
                )
            )
    return _records_frame(records)


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
        y = _simulate_counts(exp0, n, rng, dispersion)
        y = np.where(valid[None], y, np.nan)
        z = standardised_residuals(y, np.broadcast_to(exp, y.shape), dispersion=dispersion)
        sims["cusum"].append(cusum_path(z, k=k)[..., p0:p1].max(axis=-1))
        sims["ewma"].append(ewma_path(z, lam=lam)[..., p0:p1].max(axis=-1))
        done += n
    return {
        name: np.concatenate(v, axis=0) if v else np.zeros((0, len(panel.zones)))
        for name, v in sims.items()
    }


# ------------------------------------------------------------------------------------------------
# EARS C1, C2, C3
# ------------------------------------------------------------------------------------------------
EARS_THRESHOLDS = {"C1": 3.0, "C2": 3.0, "C3": 2.0}


def ears_statistic(counts: np.ndarray, *, method: str = "C2", sd_floor: float = 0.5) -> np.ndarray:
    """EARS C1, C2 or C3 statistic along the last axis of a daily count series.

    C1: ``(y_t - mean) / sd`` over days t-7..t-1; C2: the same over days t-9..t-3 (a two-day
    guard band); C3: ``sum_{i=0..2} max(0, C2_{t-i} - 1)``. Thresholds: C1, C2 > 3; C3 > 2
    (:data:`EARS_THRESHOLDS`). The baseline SD is floored at ``sd_floor`` counts so that a
    constant baseline (often all zeros in a small zone) does not give an infinite statistic.
    NaN where the baseline is incomplete.

    References
    ----------
    Hutwagner, L., Thompson, W., Seeman, G. M. & Treadwell, T. (2003). The bioterrorism
    preparedness and response Early Aberration Reporting System (EARS). J. Urban Health 80
    (suppl. 1), i89-i96.
    Fricker, R. D., Hegler, B. L. & Dunfee, D. A. (2008). Comparing syndromic surveillance
    detection methods: EARS' versus a CUSUM-based methodology. Stat. Med. 27, 3407-3429.
    """
    method = method.upper()
    if method not in EARS_THRESHOLDS:
        raise ValueError(f"method should be 'C1', 'C2' or 'C3', got {method!r}")
    y = np.asarray(counts, dtype=float)
    if method == "C3":
        c2 = ears_statistic(y, method="C2", sd_floor=sd_floor)
        part = np.maximum(0.0, c2 - 1.0)
        out = np.full(y.shape, np.nan)
        out[..., 2:] = part[..., 2:] + part[..., 1:-1] + part[..., :-2]
        return out
    lag = 1 if method == "C1" else 3
    out = np.full(y.shape, np.nan)
    t_len = y.shape[-1]
    if t_len < 7 + lag:
        return out
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(y, 7, axis=-1)  # win[..., j, :] = y[j:j+7]
    # baseline of day t is y[t-lag-6 : t-lag+1] = win[..., t-lag-6, :]
    base = win[..., : t_len - (6 + lag), :]
    mean = base.mean(axis=-1)
    sd = np.maximum(base.std(axis=-1, ddof=1), sd_floor)
    out[..., 6 + lag :] = (y[..., 6 + lag :] - mean) / sd
    return out


# ------------------------------------------------------------------------------------------------
# presence anomalies
# ------------------------------------------------------------------------------------------------
def presence_anomalies(
    frame: pd.DataFrame,
    *,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    reference_weeks: int = 8,
    z_threshold: float = 2.0,
    scale_floor: float = 0.05,
    events: pd.DataFrame | None = None,
    event_margin_hours: float = 6.0,
    holiday_factor: float = 2.5,
) -> pd.DataFrame:
    """Presence far above (gathering) or far below (emptied) its reference value.

    For each slot, ``r = log(present / present_baseline)``. Its centre and scale come from the
    same zone and local hour over the ``reference_weeks`` before the period, event slots left
    out: median and 1.4826 x MAD (floored at ``scale_floor``), giving a robust z score. Each
    zone and local day of the period is tested both ways with the extreme hour's z, Sidak-
    corrected for the number of slots that day: ``p = 1 - (1 - F(-|z|max))^n``, where F is a
    Student t with ``0.37 n_ref - 1`` degrees of freedom (the MAD's 37 % Gaussian efficiency
    makes n_ref reference values worth that many for the scale), not the normal, so that a
    scale underestimated from few weeks does not turn noise into signals. The reported
    window is the run of consecutive slots with z beyond ``z_threshold`` around that hour; the
    signal is *explained* when an event is active in the zone during the window or within
    ``event_margin_hours`` of it (crowds arrive before and leave after), when an emptied zone
    falls on a public or school holiday, when a gathering on a holiday stays within
    ``holiday_factor`` times the reference (a crowd beyond that is not the holiday), or when events took place in the zone at the same time of week in the reference
    weeks (the reference itself is then inflated: a stadium looks "emptied" on a match-free
    Saturday). Explained signals are kept but ranked after unexplained ones.

    Parameters
    ----------
    frame
        Cube rows with zone_id, hour (UTC), local_date, local_hour, present, present_baseline
        and, when events are known, events_active.
    period_start, period_end
        The period (UTC instants, end exclusive).
    reference_weeks
        Length of the reference window before the period.
    z_threshold
        |z| that delimits the reported window.
    scale_floor
        Minimum robust SD of the log ratio (0.05: a 5 % change is never more than 1 SD).
    events
        Optional validated events (event_id, name, zone_id, start, end) to name in explanations.
    event_margin_hours
        Hours before and after an event during which an anomaly counts as explained by it.
    holiday_factor
        Largest present / reference ratio of a gathering that a holiday explains.

    Returns
    -------
    pandas.DataFrame
        Tests with ``type`` ``"gathering"`` or ``"emptied"``.

    References
    ----------
    Rousseeuw, P. J. & Croux, C. (1993). Alternatives to the median absolute deviation. JASA 88,
    1273-1283 (MAD consistency factor 1.4826).
    Sidak, Z. (1967). Rectangular confidence regions for the means of multivariate normal
    distributions. JASA 62, 626-633.
    """
    need = {"zone_id", "hour", "local_date", "local_hour", "present", "present_baseline"}
    missing = need - set(frame.columns)
    if missing:
        raise ValueError(
            f"presence_anomalies needs columns {sorted(need)}, missing {sorted(missing)}"
        )
    extra = {"events_active", "holiday", "school_holiday"}
    df = frame[[c for c in frame.columns if c in need | extra]].copy()
    for col in extra:
        if col not in df:
            df[col] = 0
        df[col] = df[col].fillna(0).astype(float)
    ps, pe = pd.Timestamp(period_start), pd.Timestamp(period_end)
    ref_start = ps - pd.Timedelta(weeks=reference_weeks)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["r"] = np.log(df["present"].astype(float) / df["present_baseline"].astype(float))
    df.loc[~np.isfinite(df["r"]), "r"] = np.nan
    ref = df[(df["hour"] >= ref_start) & (df["hour"] < ps) & (df["events_active"] <= 0)]
    ref = ref.dropna(subset=["r"])
    cur = df[(df["hour"] >= ps) & (df["hour"] < pe)].sort_values(["zone_id", "hour"])
    if ref.empty or cur.empty:
        return _records_frame([])

    def _centre_scale(g: pd.core.groupby.DataFrameGroupBy) -> pd.DataFrame:
        med = g["r"].median()
        out = pd.DataFrame({"med": med})
        dev = ref.join(med.rename("m"), on=med.index.names)
        dev["ad"] = (dev["r"] - dev["m"]).abs()
        out["scale"] = dev.groupby(med.index.names)["ad"].median() * 1.4826
        out["n"] = g["r"].size()
        return out

    by_hour = _centre_scale(ref.groupby(["zone_id", "local_hour"]))
    by_zone = _centre_scale(ref.groupby(["zone_id"]))
    cur = cur.join(by_hour, on=["zone_id", "local_hour"])
    fill = cur[["zone_id"]].join(by_zone, on="zone_id")
    thin = cur["n"].fillna(0) < 5
    cur["n_ref"] = np.where(thin, fill["n"], cur["n"].fillna(0))
    for col in ("med", "scale"):
        cur[col] = np.where(thin, fill[col], cur[col])
    cur["z"] = (cur["r"] - cur["med"]) / np.maximum(cur["scale"].fillna(0), scale_floor)
    cur = cur.reset_index(drop=True)

    event_names: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]] = {}
    if events is not None and len(events):
        for ev in events.itertuples(index=False):
            event_names.setdefault(str(ev.zone_id), []).append(
                (
                    pd.Timestamp(ev.start),
                    pd.Timestamp(ev.end),
                    str(getattr(ev, "name", ev.event_id)),
                )
            )

    records = []
    for zone, g in cur.groupby("zone_id", sort=True):
        hours = g["hour"].to_numpy()
        z = g["z"].to_numpy(dtype=float)
        nref = g["n_ref"].to_numpy(dtype=float)
        ends = _slot_ends(g["hour"])
        for sign, type_ in ((1.0, "gathering"), (-1.0, "emptied")):
            zs = sign * z
            for _, d in g.groupby("local_date", sort=True):
                idx = d.index.to_numpy() - g.index[0]
                zd = zs[idx]
                ok = np.isfinite(zd)
                if not ok.any():
                    continue
                n = int(ok.sum())
                j = idx[np.nanargmax(np.where(ok, zd, -np.inf))]
                zmax = zs[j]
                p1 = stats.t.sf(zmax, df=max(3.0, 0.37 * float(nref[j]) - 1.0))
                p = -np.expm1(n * np.log1p(-min(p1, 1 - 1e-16)))
                a = b = j
                if zmax > z_threshold:
                    while a > 0 and zs[a - 1] > z_threshold and _consecutive(hours, a - 1):
                        a -= 1
                    while b + 1 < len(zs) and zs[b + 1] > z_threshold and _consecutive(hours, b):
                        b += 1
                w = g.iloc[a : b + 1]
                start, end = pd.Timestamp(hours[a]), pd.Timestamp(ends[b])
                obs = float(w["present"].mean())
                exp = float(w["present_baseline"].mean())
                active = bool((w["events_active"] > 0).any())
                zev = event_names.get(str(zone), [])
                near = pd.Timedelta(hours=event_margin_hours)
                names = [nm for s, e, nm in zev if s < end + near and e > start - near]
                past = [
                    nm
                    for s, e, nm in zev
                    for kk in range(1, reference_weeks + 1)
                    if s < end + near - pd.Timedelta(weeks=kk)
                    and e > start - near - pd.Timedelta(weeks=kk)
                ]
                why, explained = "with no event known in the zone", True
                holiday_ok = sign < 0 or (exp > 0 and obs / exp <= holiday_factor)
                if active or names:
                    why = "explained by " + (
                        f"the event {', '.join(dict.fromkeys(names[:2]))}"
                        if names
                        else "an event in the zone"
                    )
                elif holiday_ok and bool((w["holiday"] > 0).any()):
                    why = "on a public holiday"
                elif holiday_ok and bool((w["school_holiday"] > 0).any()):
                    why = "during school holidays"
                elif past:
                    why = (
                        "where the reference includes past events at this time of week "
                        f"({', '.join(dict.fromkeys(past[:2]))})"
                    )
                else:
                    explained = False
                word = "above" if sign > 0 else "below"
                records.append(
                    _record(
                        type_,
                        f"presence_{'high' if sign > 0 else 'low'}",
                        [zone],
                        start,
                        end,
                        obs,
                        exp,
                        p,
                        f"Zone {zone} held {_fmt(obs)} people against a reference of {_fmt(exp)} "
                        f"(x{obs / exp if exp else np.nan:.2f}, {word} normal by {abs(zmax):.1f} "
                        f"robust SD) {why}.",
                        statistic=zmax,
                        explained=explained,
                        events=names,
                        slots=int(b - a + 1),
                    )
                )
    return _records_frame(records)


def _slot_ends(hours: pd.Series) -> np.ndarray:
    h = pd.DatetimeIndex(hours)
    if len(h) > 1:
        step = pd.Series(h[1:] - h[:-1]).min()
    else:
        step = pd.Timedelta(hours=1)
    step = min(step, pd.Timedelta(days=1))
    return (h + step).to_numpy()


def _consecutive(hours: np.ndarray, i: int) -> bool:
    """Whether slot i+1 directly follows slot i (at most one day apart, no gap)."""
    gap = pd.Timestamp(hours[i + 1]) - pd.Timestamp(hours[i])
    return gap <= pd.Timedelta(days=1, hours=1)


# ------------------------------------------------------------------------------------------------
# lagged correlations
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Driver:
    """A candidate driver of incidents, as days when it was 'on' per zone.

    Parameters
    ----------
    name
        Short id (``lighting_outage``, ``outage_nearby``, ``transit_load``, ``presence_surge``).
    label
        Words for explanations, e.g. "lighting outages in the zone".
    on
        Boolean array (Z, T): the driver was on that day in that zone.
    related
        Optional zones to report with each zone's signal (e.g. the neighbours with outages).
    """

    name: str
    label: str
    on: np.ndarray
    related: Sequence[Sequence[str]] | None = None


def lagged_correlations(
    panel: Panel,
    drivers: Sequence[Driver],
    *,
    lags: Sequence[int] = (0, 1, 2, 3),
    min_days: int = 2,
) -> pd.DataFrame:
    """Lagged association between a driver and incidents per zone, as an incidence-rate ratio.

    For zone z, driver d and lag L, days t of the panel are split by whether d was on at
    t - L. The rate ratio ``RR = (O_on / E_on) / (O_off / E_off)`` is the effect size (with a
    0.5 continuity correction and a Wald 95 % interval on log RR); the test is the exact
    conditional test of two Poisson rates: given ``n = O_on + O_off``, ``O_on ~ Binomial(n,
    E_on / (E_on + E_off))`` under no association (two-sided). A zone-driver-lag is tested only
    when the driver was on (at lag L) on at least one day of the period and on ``min_days``
    days overall, so that each test speaks about the period.

    Parameters
    ----------
    panel
        Daily observed and expected counts; the whole panel (look-back + period) is used.
    drivers
        The candidate drivers.
    lags
        Lags in days.
    min_days
        Minimum number of exposed days.

    Returns
    -------
    pandas.DataFrame
        Tests with ``type="correlation"``, ``detector="corr_<driver>"``, ``ratio`` = RR and
        ``details`` holding the lag and the interval.

    References
    ----------
    Przyborowski, J. & Wilenski, H. (1940). Homogeneity of results in testing samples from
    Poisson series. Biometrika 31, 313-323 (conditional binomial test of two Poisson rates).
    Rothman, K. J., Greenland, S. & Lash, T. L. (2008). Modern Epidemiology, 3rd ed., ch. 14
    (rate ratio and its Wald interval).
    """
    p0, p1 = panel.period
    valid = panel.valid
    obs = np.where(valid, panel.observed, 0.0)
    exp = np.where(valid, panel.expected, 0.0)
    t_len = len(panel.days)
    records = []
    for drv in drivers:
        on_all = np.asarray(drv.on, dtype=bool)
        if on_all.shape != obs.shape:
            raise ValueError(
                f"driver {drv.name!r} should have shape {obs.shape}, got {on_all.shape}"
            )
        for lag in lags:
            if lag >= t_len:
                continue
            on = np.zeros_like(on_all)
            on[:, lag:] = on_all[:, : t_len - lag]
            on &= valid
            off = valid & ~on
            n_on = on.sum(axis=1)
            in_period = on[:, p0:p1].any(axis=1)
            o_on = (obs * on).sum(axis=1)
            e_on = (exp * on).sum(axis=1)
            o_off = (obs * off).sum(axis=1)
            e_off = (exp * off).sum(axis=1)
            n = o_on + o_off
            test = (
                in_period
                & (n_on >= min_days)
                & (e_on > 0)
                & (e_off > 0)
                & (off.sum(axis=1) >= min_days)
            )
            for i in np.flatnonzero(test):
                pi = e_on[i] / (e_on[i] + e_off[i])
                nn = int(round(n[i]))
                k = int(round(o_on[i]))
                if nn == 0:
                    p = 1.0
                else:
                    p = min(
                        1.0, 2.0 * min(stats.binom.sf(k - 1, nn, pi), stats.binom.cdf(k, nn, pi))
                    )
                rr = ((o_on[i] + 0.5) / e_on[i]) / ((o_off[i] + 0.5) / e_off[i])
                se = math.sqrt(1.0 / (o_on[i] + 0.5) + 1.0 / (o_off[i] + 0.5))
                lo, hi = rr * math.exp(-1.96 * se), rr * math.exp(1.96 * se)
                days_on = np.flatnonzero(on[i, p0:p1]) + p0
                start, end = panel.window(int(days_on.min()), int(days_on.max()) + 1)
                zones = [panel.zones[i]]
                if drv.related is not None:
                    zones += [z for z in drv.related[i] if z not in zones]
                zone = panel.zones[i]
                lag_txt = "the same day" if lag == 0 else f"{lag} day{'s' if lag > 1 else ''} later"
                records.append(
                    _record(
                        "correlation",
                        f"corr_{drv.name}",
                        zones,
                        start,
                        end,
                        o_on[i],
                        o_on[i] / rr,
                        p,
                        f"In zone {zone}, incidents run x{rr:.2f} (95% CI {lo:.2f}-{hi:.2f}) "
                        f"of expected {lag_txt} after {drv.label}, over {int(n_on[i])} such days.",
                        statistic=math.log(rr),
                        ratio=rr,
                        driver=drv.name,
                        lag=int(lag),
                        rr_low=lo,
                        rr_high=hi,
                        exposed_days=int(n_on[i]),
                    )
                )
    return _records_frame(records)


# ------------------------------------------------------------------------------------------------
# event conflicts
# ------------------------------------------------------------------------------------------------
def event_conflicts(
    events: pd.DataFrame,
    *,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    max_distance_m: float = 1000.0,
    stops: pd.DataFrame | None = None,
    stop_radius_m: float = 400.0,
) -> pd.DataFrame:
    """Events that overlap in time and are close to each other or share transit stops.

    Two events conflict when their ``[start, end)`` intervals overlap within the period and
    either their venues are at most ``max_distance_m`` apart or some transit stop lies within
    ``stop_radius_m`` of both (their crowds use the same stop). These are planning signals, not
    tests: p and q values are NaN and they rank after the statistical signals.

    Parameters
    ----------
    events
        event_id, name, start, end, zone_id, latitude, longitude, expected_attendance.
    period_start, period_end
        The period (UTC).
    max_distance_m, stop_radius_m
        Distance rules.
    stops
        Optional stops (stop_id, stop_name, stop_lat, stop_lon).

    Returns
    -------
    pandas.DataFrame
        Rows with ``type="event_conflict"``, ``observed`` = combined expected attendance.

    References
    ----------
    Observatory practice of "incompatible events" calendars; distances by the haversine formula
    (Sinnott, R. W. 1984, Virtues of the haversine, Sky & Telescope 68(2), 159).
    """
    if events is None or len(events) < 2:
        return _records_frame([])
    ev = events.copy()
    ev["start"] = pd.to_datetime(ev["start"], utc=True)
    ev["end"] = pd.to_datetime(ev["end"], utc=True)
    ps, pe = pd.Timestamp(period_start), pd.Timestamp(period_end)
    ev = ev[(ev["start"] < pe) & (ev["end"] > ps)].reset_index(drop=True)
    if len(ev) < 2:
        return _records_frame([])
    lat = ev["latitude"].to_numpy(float)
    lon = ev["longitude"].to_numpy(float)
    dist = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    near_stops: list[set[str]] = [set() for _ in range(len(ev))]
    stop_names: dict[str, str] = {}
    if stops is not None and len(stops):
        sd = haversine_m(
            lat[:, None],
            lon[:, None],
            stops["stop_lat"].to_numpy(float)[None, :],
            stops["stop_lon"].to_numpy(float)[None, :],
        )
        ids = stops["stop_id"].astype(str).to_numpy()
        names = stops.get("stop_name", stops["stop_id"]).astype(str).to_numpy()
        stop_names = dict(zip(ids, names, strict=True))
        for i in range(len(ev)):
            near_stops[i] = set(ids[sd[i] <= stop_radius_m])
    starts, ends = ev["start"].to_numpy(), ev["end"].to_numpy()
    att = pd.to_numeric(ev.get("expected_attendance"), errors="coerce").fillna(0).to_numpy(float)
    records = []
    for i in range(len(ev)):
        for j in range(i + 1, len(ev)):
            s, e = max(starts[i], starts[j]), min(ends[i], ends[j])
            if not s < e:
                continue
            shared = sorted(near_stops[i] & near_stops[j])
            close = dist[i, j] <= max_distance_m
            if not (close or shared):
                continue
            a, b = ev.iloc[i], ev.iloc[j]
            reasons = []
            if close:
                reasons.append(f"{dist[i, j]:.0f} m apart")
            if shared:
                reasons.append(
                    "sharing stop " + ", ".join(stop_names.get(x, x) for x in shared[:3])
                )
            zones = list(dict.fromkeys([str(a["zone_id"]), str(b["zone_id"])]))
            records.append(
                _record(
                    "event_conflict",
                    "event_conflict",
                    zones,
                    pd.Timestamp(s),
                    pd.Timestamp(e),
                    att[i] + att[j],
                    np.nan,
                    np.nan,
                    f"Events {a.get('name', a['event_id'])} and {b.get('name', b['event_id'])} "
                    f"overlap from {pd.Timestamp(s):%Y-%m-%d %H:%M} to "
                    f"{pd.Timestamp(e):%Y-%m-%d %H:%M} UTC, {' and '.join(reasons)}, "
                    f"{_fmt(att[i] + att[j])} expected in all.",
                    events=[str(a["event_id"]), str(b["event_id"])],
                    distance_m=float(dist[i, j]),
                    shared_stops=shared,
                )
            )
    return _records_frame(records)


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
