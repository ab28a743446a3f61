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
    valid = panel.valid
    records: list[dict] = []
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
    out = []
    for i in np.flatnonzero(test).tolist():  # Python ints, to index the zone sequences
        rr, lo, hi, p = rate_ratio(o_on[i], e_on[i], o_off[i], e_off[i])
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
            )
        )
    return out


def rate_ratio(
    o_on: float, e_on: float, o_off: float, e_off: float
) -> tuple[float, float, float, float]:
    """Rate ratio of exposed to unexposed days, its Wald 95 % interval and the exact p value.

    ``RR = ((O_on + 0.5) / E_on) / ((O_off + 0.5) / E_off)``; the interval is Wald's on log RR;
    p is the two-sided conditional binomial test ``O_on ~ Binomial(O_on + O_off, E_on /
    (E_on + E_off))`` (Przyborowski & Wilenski 1940).

    Returns
    -------
    tuple
        ``(rr, low, high, p)``.
    """
    pi = e_on / (e_on + e_off)
    nn = int(round(o_on + o_off))
    k = int(round(o_on))
    if nn == 0:
        p = 1.0
    else:
        p = min(1.0, 2.0 * min(stats.binom.sf(k - 1, nn, pi), stats.binom.cdf(k, nn, pi)))
    rr = ((o_on + 0.5) / e_on) / ((o_off + 0.5) / e_off)
    se = math.sqrt(1.0 / (o_on + 0.5) + 1.0 / (o_off + 0.5))
    return rr, rr * math.exp(-1.96 * se), rr * math.exp(1.96 * se), p
