"""Lagged correlations: incidents after a candidate driver (outages, transit load, crowds)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.signals.panel import Panel, record, records_frame


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
    E_on / (E_on + E_off))`` under no association (two-sided), on counts divided by the zone's
    dispersion (below). A zone-driver-lag is tested only
    when the driver was on (at lag L) on at least one day of the period and on ``min_days``
    days overall, so that each test speaks about the period.

    Real counts are not the expectation's Poisson draws: a whole city has good and bad days
    (weather, events), and a zone's days vary more than Poisson. Both made every driver that
    falls on particular days look significant (a synthetic city with day shocks and
    over-dispersion gave correlations at q ~ 1e-21 in zones where none was planted). So:

    - the expectation of each zone-day is multiplied by that day's observed/expected ratio
      over the *other* zones (a shared day effect is not the driver's);
    - the test and the interval are those of a quasi-Poisson model: the counts are divided by
      the zone's Pearson dispersion ``phi = max(1, X^2 / (n - 2))`` around the fitted rates
      (on and off days), taken on days and on weeks (the larger, so that runs of correlated
      days count too) (Wedderburn 1974; McCullagh & Nelder 1989, section 4.5).

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
    Wedderburn, R. W. M. (1974). Quasi-likelihood functions, generalized linear models, and
    the Gauss-Newton method. Biometrika 61(3), 439-447.
    McCullagh, P. & Nelder, J. A. (1989). Generalized Linear Models, 2nd ed. Chapman & Hall.
    """
    valid = panel.valid
    records: list[dict] = []
    panel = day_adjusted(panel)
    for drv in drivers:
        on_all = np.asarray(drv.on, dtype=bool)
        if on_all.shape != valid.shape:
            raise ValueError(
                f"driver {drv.name!r} should have shape {valid.shape}, got {on_all.shape}"
            )
        for lag in lags:
            if lag < len(panel.days):
                records += _lag_tests(panel, drv, on_all, int(lag), min_days=min_days)
    return records_frame(records)


def _lag_tests(
    panel: Panel, drv: Driver, on_all: np.ndarray, lag: int, *, min_days: int
) -> list[dict]:
    """The tests of one driver at one lag, one per zone exposed in the period."""
    p0, p1 = panel.period
    valid = panel.valid
    obs = np.where(valid, panel.observed, 0.0)
    exp = np.where(valid, panel.expected, 0.0)
    on = np.zeros_like(on_all)
    on[:, lag:] = on_all[:, : len(panel.days) - lag]
    on &= valid
    off = valid & ~on
    n_on = on.sum(axis=1)
    o_on, e_on = (obs * on).sum(axis=1), (exp * on).sum(axis=1)
    o_off, e_off = (obs * off).sum(axis=1), (exp * off).sum(axis=1)
    test = (
        on[:, p0:p1].any(axis=1)
        & (n_on >= min_days)
        & (e_on > 0)
        & (e_off > 0)
        & (off.sum(axis=1) >= min_days)
    )
    phi = dispersion(
        obs, exp, on, off, o_on / np.maximum(e_on, 1e-12), o_off / np.maximum(e_off, 1e-12)
    )
    out = []
    for i in np.flatnonzero(test).tolist():  # Python ints, to index the zone sequences
        rr, lo, hi, p = rate_ratio(o_on[i], e_on[i], o_off[i], e_off[i], phi=float(phi[i]))
        days_on = np.flatnonzero(on[i, p0:p1]) + p0
        start, end = panel.window(int(days_on.min()), int(days_on.max()) + 1)
        zone = panel.zones[i]
        zones = [zone]
        if drv.related is not None:
            zones += [z for z in drv.related[i] if z not in zones]
        lag_txt = "the same day" if lag == 0 else f"{lag} day{'s' if lag > 1 else ''} later"
        out.append(
            record(
                "correlation",
                detector=f"corr_{drv.name}",
                zones=zones,
                start=start,
                end=end,
                observed=o_on[i],
                expected=o_on[i] / rr,
                p_value=p,
                explanation=f"In zone {zone}, incidents run x{rr:.2f} (95% CI {lo:.2f}-{hi:.2f}) "
                f"of expected {lag_txt} after {drv.label}, over {int(n_on[i])} such days.",
                statistic=math.log(rr),
                ratio=rr,
                driver=drv.name,
                lag=lag,
                rr_low=lo,
                rr_high=hi,
                exposed_days=int(n_on[i]),
                dispersion=float(phi[i]),
            )
        )
    return out


def rate_ratio(
    o_on: float, e_on: float, o_off: float, e_off: float, *, phi: float = 1.0
) -> tuple[float, float, float, float]:
    """Rate ratio of exposed to unexposed days, its Wald 95 % interval and the exact p value.

    ``RR = ((O_on + 0.5) / E_on) / ((O_off + 0.5) / E_off)``; the interval is Wald's on log RR
    (its variance times ``phi``); p is the two-sided conditional binomial test ``O_on ~
    Binomial(O_on + O_off, E_on / (E_on + E_off))`` (Przyborowski & Wilenski 1940) on the
    counts divided by the dispersion ``phi`` (1: the Poisson test).

    Returns
    -------
    tuple
        ``(rr, low, high, p)``.
    """
    pi = e_on / (e_on + e_off)
    phi = max(float(phi), 1.0)
    nn = int(round((o_on + o_off) / phi))
    k = int(round(o_on / phi))
    if nn == 0:
        p = 1.0
    else:
        p = min(1.0, 2.0 * min(stats.binom.sf(k - 1, nn, pi), stats.binom.cdf(k, nn, pi)))
    rr = ((o_on + 0.5) / e_on) / ((o_off + 0.5) / e_off)
    se = math.sqrt(phi * (1.0 / (o_on + 0.5) + 1.0 / (o_off + 0.5)))
    return rr, rr * math.exp(-1.96 * se), rr * math.exp(1.96 * se), p


def day_adjusted(panel: Panel) -> Panel:
    """The panel with each zone-day's expectation times that day's observed/expected ratio
    over the other zones (shrunk by one pseudo-incident; unchanged with a single zone)."""
    valid = panel.valid
    if len(panel.zones) < 2:
        return panel
    obs = np.where(valid, panel.observed, 0.0)
    exp = np.where(valid, panel.expected, 0.0)
    o_rest = obs.sum(axis=0, keepdims=True) - obs
    e_rest = exp.sum(axis=0, keepdims=True) - exp
    ratio = (o_rest + 1.0) / (e_rest + 1.0)
    expected = np.where(valid, panel.expected * ratio, panel.expected)
    return Panel(
        zones=panel.zones, days=panel.days, observed=panel.observed, expected=expected,
        period=panel.period, day_ends=panel.day_ends,
    )  # fmt: skip


def dispersion(
    obs: np.ndarray,
    exp: np.ndarray,
    on: np.ndarray,
    off: np.ndarray,
    rate_on: np.ndarray,
    rate_off: np.ndarray,
) -> np.ndarray:
    """Each zone's quasi-Poisson dispersion around its fitted rates on and off the driver's
    days: the larger of the Pearson ``X^2 / (n - 2)`` of its days and of its 7-day sums,
    at least 1."""
    fit = exp * np.where(on, rate_on[:, None], np.where(off, rate_off[:, None], 0.0))
    used = on | off
    out = np.ones(obs.shape[0])
    for width in (1, 7):
        t = (obs.shape[1] // width) * width
        if t < 3 * width:
            continue
        o = np.where(used, obs, 0.0)[:, -t:].reshape(obs.shape[0], -1, width).sum(axis=2)
        f = np.where(used, fit, 0.0)[:, -t:].reshape(obs.shape[0], -1, width).sum(axis=2)
        n = (f > 0).sum(axis=1)
        x2 = np.where(f > 0, (o - f) ** 2 / np.where(f > 0, f, 1.0), 0.0).sum(axis=1)
        out = np.maximum(out, np.where(n > 2, x2 / np.maximum(n - 2, 1), 1.0))
    return out
