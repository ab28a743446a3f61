"""Naive baselines of the backtest and the row arrays every origin reuses.

``seasonal_naive_4w`` / ``seasonal_naive_8w``
    Mean count of the same zone and local hour of week over the last 4 / 8 weeks. A zero mean
    falls back on the zone's mean over all slots of the window, then on half an incident over
    the window (a forecast of exactly 0 has an infinite Poisson deviance when an incident
    happens).
``recent_rate_8w``
    The zone's mean count per slot over the last 8 weeks, shaped by the city-wide hour-of-week
    profile of the window (at daily grain: day of week); a zone without incidents in the window
    gets half an incident over it.
``recent_hotspot``
    Prospective hotspot map in the manner of open_cp's ``ProspectiveHotSpot`` (Bowers, Johnson
    & Pease 2004): each incident of the last 4 weeks weighs ``exp(-age / 1 week)`` and spreads
    over zone centroids with a Gaussian kernel (bandwidth: median distance to the nearest
    centroid); the week's expected total (mean of the last 4 weeks) is split by this map and by
    the city-wide hour-of-week profile of the window.
``eb_rate_52w`` (not run by default; ask for it in ``models``)
    Each zone's rate by local hour of week over the last 52 weeks, shrunk towards the zone's
    rate x the city's hour-of-week profile (empirical Bayes, gamma-Poisson, the prior's
    variance by the method of moments; Clayton & Kaldor 1987): a long-memory member for
    :mod:`pipelines.models.blend`.

References
----------
Bowers, K. J., Johnson, S. D. & Pease, K. (2004). Prospective hot-spotting: the future of crime
mapping? *British Journal of Criminology* 44(5), 641-658.
Clayton, D. & Kaldor, J. (1987). Empirical Bayes estimates of age-standardized relative risks
for use in disease mapping. *Biometrics* 43(3), 671-681.
Hyndman, R. J. & Athanasopoulos, G. (2021). *Forecasting: Principles and Practice*, 3rd ed.,
section 5.2 (the seasonal naive method).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.geo import local_xy_m
from features.timeutil import utc_ns, utc_ns_scalar

HOTSPOT_WEEKS = 4
HOTSPOT_TAU_WEEKS = 1.0
WEEK = pd.Timedelta(days=7)


def hour_of_week(frame: pd.DataFrame) -> np.ndarray:
    """Local hour of week per row, ``dow x 24 + local_hour`` (0 = Monday 00:00; int64)."""
    return frame["dow"].to_numpy(np.int64) * 24 + frame["local_hour"].to_numpy(np.int64)


def zone_codes(zone_ids) -> tuple[list[str], np.ndarray]:
    """The distinct zone ids as text, sorted, and each row's index in them (int64)."""
    codes, zones = pd.factorize(pd.Series(zone_ids).astype(str), sort=True)
    return list(zones), codes.astype(np.int64)


def row_arrays(cube: pd.DataFrame, dz: pd.DataFrame) -> dict[str, Any]:
    """Arrays every origin reuses: UTC slot starts (ns), zone codes (sorted zone order), the
    sorted zones, and the local hour of week."""
    zones, codes = zone_codes(dz["zone_id"])
    return {
        "hours": utc_ns(cube["hour"]),
        "zone_idx": codes,
        "zones": zones,
        "how": hour_of_week(dz),
    }


def window_means(
    zone: np.ndarray,
    how: np.ndarray,
    values: np.ndarray,
    window: np.ndarray,
    test_zone: np.ndarray,
    test_how: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``values`` over the rows in ``window``, for each test row: of the same zone and
    hour of week, and of the zone (NaN where the window has none)."""
    df = pd.DataFrame({"z": zone[window], "h": how[window], "v": values[window]})
    cell = df.groupby(["z", "h"], sort=False)["v"].mean()
    zmean = df.groupby("z", sort=False)["v"].mean()
    idx = pd.MultiIndex.from_arrays([test_zone, test_how])
    return (
        cell.reindex(idx).to_numpy(dtype=np.float64),
        zmean.reindex(test_zone).to_numpy(dtype=np.float64),
    )


def seasonal_naive(
    zone: np.ndarray,
    how: np.ndarray,
    y: np.ndarray,
    hours: np.ndarray,
    origin: pd.Timestamp,
    test_zone: np.ndarray,
    test_how: np.ndarray,
    *,
    k_weeks: int,
    slots_per_week: int,
) -> np.ndarray:
    """Mean count of the same zone and hour of week over the ``k_weeks`` before ``origin``.

    Zero means fall back on the zone's mean over the window, then on ``0.5 / (k_weeks x
    slots_per_week)`` (half an incident over the window).
    """
    lo, hi = utc_ns_scalar(origin - k_weeks * WEEK), utc_ns_scalar(origin)
    w = (hours >= lo) & (hours < hi)
    pred, zm = window_means(zone, how, y, w, test_zone, test_how)
    floor = 0.5 / (k_weeks * slots_per_week)
    pred = np.where(
        np.isfinite(pred) & (pred > 0), pred, np.where(np.isfinite(zm) & (zm > 0), zm, floor)
    )
    return pred


def metric_xy(centroids: pd.DataFrame | None, zones: list[str]) -> np.ndarray | None:
    """Zone centroids in local metres, in the order of ``zones`` (None when any is unknown)."""
    if centroids is None or len(centroids) == 0:
        return None
    c = centroids.assign(zone_id=centroids["zone_id"].astype(str)).set_index("zone_id")
    c = c.reindex(zones)
    if c[["latitude", "longitude"]].isna().any().any():
        return None
    x, yv = local_xy_m(c["latitude"].to_numpy(), c["longitude"].to_numpy())
    return np.column_stack([x, yv])


def hotspot_weights(xy: np.ndarray | None, n: int) -> np.ndarray:
    """Gaussian spatial kernel between zone centroids (identity without centroids)."""
    if xy is None or n < 2:
        return np.eye(n)
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    nn = np.where(np.eye(n, dtype=bool), np.inf, d).min(axis=1)
    h = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else 1.0
    return np.exp(-0.5 * (d / max(h, 1e-9)) ** 2)


def recent_hotspot(
    zone_idx: np.ndarray,
    how: np.ndarray,
    y: np.ndarray,
    hours: np.ndarray,
    origin: pd.Timestamp,
    test_zone_idx: np.ndarray,
    test_how: np.ndarray,
    *,
    kernel: np.ndarray,
    weeks: int = HOTSPOT_WEEKS,
    tau_weeks: float = HOTSPOT_TAU_WEEKS,
    n_hows: int = 168,
) -> np.ndarray:
    """Prospective-hotspot forecast of counts per zone-slot (see the module docstring)."""
    lo, hi = utc_ns_scalar(origin - weeks * WEEK), utc_ns_scalar(origin)
    w = (hours >= lo) & (hours < hi) & (y > 0)
    age_w = (hi - hours[w]).astype("timedelta64[s]").astype(np.float64) / (7 * 86400.0)
    n = kernel.shape[0]
    per_zone = np.bincount(zone_idx[w], weights=y[w] * np.exp(-age_w / tau_weeks), minlength=n)
    score = kernel @ per_zone
    score = score + 0.01 * max(score.mean(), 1e-12)
    share = score / score.sum()
    prof = np.bincount(how[w], weights=y[w], minlength=n_hows) + 0.5
    test_hows = np.unique(test_how)
    prof_share = prof / prof[test_hows].sum()
    total = max(float(y[w].sum()) / weeks, 0.5 / weeks)
    return total * share[test_zone_idx] * prof_share[test_how]


def recent_rate(
    zone_idx: np.ndarray,
    how: np.ndarray,
    y: np.ndarray,
    hours: np.ndarray,
    origin: pd.Timestamp,
    test_zone_idx: np.ndarray,
    test_how: np.ndarray,
    *,
    n_zones: int,
    k_weeks: int = 8,
    slots_per_week: int,
) -> np.ndarray:
    """The zone's recent rate x the city's hour-of-week profile (module docstring)."""
    lo, hi = utc_ns_scalar(origin - k_weeks * WEEK), utc_ns_scalar(origin)
    w = (hours >= lo) & (hours < hi)
    ys = np.bincount(zone_idx[w], weights=y[w], minlength=n_zones)
    ns = np.bincount(zone_idx[w], minlength=n_zones).astype(np.float64)
    floor = 0.5 / (k_weeks * slots_per_week)
    rate = np.where(ns > 0, np.maximum(ys, 0.5) / np.maximum(ns, 1.0), floor)
    n_how = int(max(how.max(), test_how.max())) + 1 if len(how) else 1
    py = np.bincount(how[w], weights=y[w], minlength=n_how) + 0.5
    pn = np.bincount(how[w], minlength=n_how).astype(np.float64)
    prof = np.divide(py, pn, out=np.ones(n_how), where=pn > 0)
    # normalised over the hours of week the window holds (7 of them at daily grain)
    prof = prof / (py[pn > 0].sum() / max(pn.sum(), 1.0)) if (pn > 0).any() else prof
    return rate[test_zone_idx] * prof[test_how]


def eb_rate(
    zone_idx: np.ndarray,
    how: np.ndarray,
    y: np.ndarray,
    hours: np.ndarray,
    origin: pd.Timestamp,
    test_zone_idx: np.ndarray,
    test_how: np.ndarray,
    *,
    n_zones: int,
    k_weeks: int = 52,
) -> np.ndarray:
    """Empirical-Bayes zone x hour-of-week rate over ``k_weeks`` (module docstring).

    The prior mean of cell (zone, hour of week) is ``E / n``, ``E = n x zone rate x profile``
    (``n`` slots, ``c`` incidents); its relative risk ``c / E`` has a gamma prior of mean 1 and
    variance ``v = max(0, (sum (c - E)^2 / E - N) / sum E)`` over the ``N`` cells with
    ``E > 0``; the forecast is ``(E / n) x (c + 1/v) / (E + 1/v)`` (``E / n`` when ``v = 0``).

    References
    ----------
    Clayton & Kaldor (1987).
    """
    lo, hi = utc_ns_scalar(origin - k_weeks * WEEK), utc_ns_scalar(origin)
    w = (hours >= lo) & (hours < hi)
    n_how = int(max(how.max(), test_how.max())) + 1 if len(how) else 1
    cell = zone_idx[w] * n_how + how[w]
    c = np.bincount(cell, weights=y[w], minlength=n_zones * n_how)
    n = np.bincount(cell, minlength=n_zones * n_how).astype(np.float64)
    zr = c.reshape(n_zones, n_how).sum(1) / np.maximum(n.reshape(n_zones, n_how).sum(1), 1.0)
    zr = np.maximum(zr, 0.5 / max(k_weeks * int((n.reshape(n_zones, n_how).sum(0) > 0).sum()), 1))
    py, pn = c.reshape(n_zones, n_how).sum(0), n.reshape(n_zones, n_how).sum(0)
    prof = np.divide(py + 0.5, pn, out=np.ones(n_how), where=pn > 0)
    prof = prof / ((py.sum() + 0.5 * (pn > 0).sum()) / max(pn.sum(), 1.0))
    m = (zr[:, None] * prof[None, :]).ravel()  # prior mean per slot
    e = n * m
    ok = e > 0
    v = ((c[ok] - e[ok]) ** 2 / e[ok]).sum() - ok.sum() if ok.any() else 0.0
    v = max(float(v) / float(e[ok].sum()), 0.0) if ok.any() else 0.0
    rr = np.ones_like(m) if v <= 0 else (c + 1.0 / v) / (e + 1.0 / v)
    return (m * rr)[test_zone_idx * n_how + test_how]


def baseline_forecasts(
    arrays: dict[str, Any],
    y: np.ndarray,
    test: np.ndarray,
    origin: pd.Timestamp,
    *,
    models: Sequence[str],
    slots_per_week: int,
    kernel: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The baselines among ``models`` forecast for the ``test`` rows, by model name."""
    hours, zone_idx, how = arrays["hours"], arrays["zone_idx"], arrays["how"]
    out: dict[str, np.ndarray] = {}
    for k in (4, 8):
        name = f"seasonal_naive_{k}w"
        if name in models:
            out[name] = seasonal_naive(
                zone_idx, how, y, hours, origin, zone_idx[test], how[test],
                k_weeks=k, slots_per_week=slots_per_week,
            )  # fmt: skip
    if "recent_rate_8w" in models:
        out["recent_rate_8w"] = recent_rate(
            zone_idx, how, y, hours, origin, zone_idx[test], how[test],
            n_zones=len(arrays["zones"]), slots_per_week=slots_per_week,
        )  # fmt: skip
    if "eb_rate_52w" in models:
        out["eb_rate_52w"] = eb_rate(
            zone_idx, how, y, hours, origin, zone_idx[test], how[test],
            n_zones=len(arrays["zones"]),
        )  # fmt: skip
    if "recent_hotspot" in models:
        ker = np.eye(len(arrays["zones"])) if kernel is None else kernel
        out["recent_hotspot"] = recent_hotspot(
            zone_idx, how, y, hours, origin, zone_idx[test], how[test], kernel=ker
        )
    return out
