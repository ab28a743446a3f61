"""Rolling-origin backtest of the incident models against naive baselines.

Origins are the local Mondays 00:00 of the last ``weeks`` complete weeks of the cube. At each
origin every model is fitted on the rows strictly before it and forecasts the week after it
(one row per zone and slot); nothing at or after the origin is ever read for fitting (Tashman
2000; Hyndman & Athanasopoulos 2021, section 5.10, "evaluation on a rolling forecasting origin").

Models and baselines (all incidents, the ``all`` group):

``glm``
    The rate GLM of :func:`pipelines.models.fit_glm` (family by the over-dispersion test).
``xgb``
    XGBoost ``count:poisson`` (:func:`pipelines.models.fit_xgb`).
``seasonal_naive_4w`` / ``seasonal_naive_8w``
    Mean count of the same zone and local hour of week over the last 4 / 8 weeks. A zero mean
    falls back on the zone's mean over all slots of the window, then on half an incident over
    the window (a forecast of exactly 0 has an infinite Poisson deviance when an incident
    happens).
``recent_hotspot``
    Prospective hotspot map in the manner of open_cp's ``ProspectiveHotSpot`` (Bowers, Johnson
    & Pease 2004): each incident of the last 4 weeks weighs ``exp(-age / 1 week)`` and spreads
    over zone centroids with a Gaussian kernel (bandwidth: median distance to the nearest
    centroid); the week's expected total (mean of the last 4 weeks) is split by this map and by
    the city-wide hour-of-week profile of the window.

Covariates of the forecast week (``covariates="forecast"``, the default) are what is known at
the origin: presence and transit entries are the mean of the same zone and hour of week over
the last 4 weeks, lamps out is the state at the origin (persistence), darkness, calendar,
planned event attendance and the weather are taken as given (the weather stands in for a
forecast). ``covariates="observed"`` uses the week's observed covariates (an upper bound).

Metrics (:func:`evaluate`): mean Poisson deviance, MAE, hit rate and PAI (Chainey, Tompson &
Uhlig 2008: share of incidents captured / share of area x time flagged) when the top 1, 5 and
10 % of zone-slots of each week are flagged, and the coverage of the 80 % and 95 % predictive
intervals (Poisson/NB2 quantiles).

References
----------
Tashman, L. J. (2000). Out-of-sample tests of forecasting accuracy: an analysis and review.
*International Journal of Forecasting* 16(4), 437-450.
Bowers, K. J., Johnson, S. D. & Pease, K. (2004). Prospective hot-spotting: the future of crime
mapping? *British Journal of Criminology* 44(5), 641-658.
Chainey, S., Tompson, L. & Uhlig, S. (2008). The utility of hotspot mapping for predicting
spatial patterns of crime. *Security Journal* 21, 4-28.
Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
estimation. *JASA* 102(477), 359-378.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError
from features.geo import local_xy_m
from features.timeutil import as_utc, utc_ns, utc_ns_scalar
from pipelines import models as M

log = logging.getLogger(__name__)

MODELS = ("glm", "xgb", "seasonal_naive_4w", "seasonal_naive_8w", "recent_hotspot")
FLAG_LEVELS = (0.01, 0.05, 0.10)
BACKTEST_COLUMNS = [
    "zone_id",
    "period_start",
    "model",
    "observed",
    "predicted",
    "lower",
    "upper",
    "lower80",
    "upper80",
    "origin",
]
HOTSPOT_WEEKS = 4
HOTSPOT_TAU_WEEKS = 1.0
WEEK = pd.Timedelta(days=7)


@dataclass(frozen=True)
class BacktestResult:
    """Backtest forecasts and their evaluation.

    Attributes
    ----------
    frame
        One row per zone, slot and model: zone_id, period_start, model, observed, predicted,
        lower, upper (95 % predictive interval), lower80, upper80, origin.
    evaluation
        The content of ``evaluation.json`` (see :func:`evaluate`).
    """

    frame: pd.DataFrame
    evaluation: dict[str, Any]


def backtest_schema():
    """The contract of ``backtest.parquet`` (pandera): one row per zone, slot and model."""
    import pandera.pandas as pa

    nonneg = pa.Check.ge(0)

    def num(nullable: bool = True) -> pa.Column:
        return pa.Column(float, nonneg, nullable=nullable, coerce=True)

    return pa.DataFrameSchema(
        {
            "zone_id": pa.Column(str),
            "period_start": pa.Column("datetime64[ns, UTC]", coerce=True),
            "model": pa.Column(str, pa.Check.isin(MODELS)),
            "observed": num(False),
            "predicted": num(),
            "lower": num(),
            "upper": num(),
            "lower80": num(),
            "upper80": num(),
            "origin": pa.Column("datetime64[ns, UTC]", coerce=True),
        },
        checks=[
            pa.Check(
                lambda d: (d["lower"] <= d["lower80"]) | d["lower"].isna(), name="lower95<=lower80"
            ),
            pa.Check(
                lambda d: (d["upper80"] <= d["upper"]) | d["upper"].isna(), name="upper80<=upper95"
            ),
            pa.Check(lambda d: d["period_start"] >= d["origin"], name="forecast after its origin"),
        ],
        strict=True,
        ordered=True,
    )


def weekly_origins(
    cube: pd.DataFrame, *, weeks: int, min_history_weeks: int = 4
) -> list[pd.Timestamp]:
    """Local Mondays 00:00 (as UTC timestamps) starting the last ``weeks`` complete weeks.

    An origin needs ``min_history_weeks`` weeks of data before it; fewer origins are returned
    when the cube is too short.
    """
    hours = pd.to_datetime(cube["hour"], utc=True)
    start, end = hours.min(), hours.max()
    mon = cube.loc[(cube["dow"] == 0) & (cube["local_hour"] == 0), "hour"]
    cands = sorted(pd.to_datetime(mon, utc=True).unique())
    cands = [pd.Timestamp(c) for c in cands]
    # a week is complete when the next Monday (or origin + 7 days) is not after the data's end
    slot = pd.Timedelta(hours=1) if (cube["local_hour"] != 0).any() else pd.Timedelta(days=1)
    complete = [c for c in cands if c + WEEK <= end + slot]
    ok = [c for c in complete if c - start >= min_history_weeks * WEEK - pd.Timedelta(hours=2)]
    return ok[-weeks:] if weeks > 0 else []


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------
def hour_of_week(frame: pd.DataFrame) -> np.ndarray:
    """Local hour of week per row, ``dow x 24 + local_hour`` (0 = Monday 00:00; int64)."""
    return frame["dow"].to_numpy(np.int64) * 24 + frame["local_hour"].to_numpy(np.int64)


def _window_means(
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
    pred, zm = _window_means(zone, how, y, w, test_zone, test_how)
    floor = 0.5 / (k_weeks * slots_per_week)
    pred = np.where(
        np.isfinite(pred) & (pred > 0), pred, np.where(np.isfinite(zm) & (zm > 0), zm, floor)
    )
    return pred


def _metric_xy(centroids: pd.DataFrame | None, zones: list[str]) -> np.ndarray | None:
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


# --------------------------------------------------------------------------------------------
# forecast covariates
# --------------------------------------------------------------------------------------------
def forecast_design(
    dz: pd.DataFrame,
    cube: pd.DataFrame,
    train: np.ndarray,
    test: np.ndarray,
    origin: pd.Timestamp,
    *,
    grain: str,
    arrays: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Design rows of the forecast week with covariates as known at ``origin``.

    Presence and transit: mean of the same zone and hour of week over the 4 weeks before the
    origin (then the zone's mean); lamps out: each zone's last value before the origin.
    ``arrays`` are the row arrays of :func:`row_arrays` (computed when ``None``).
    """
    arr = arrays or row_arrays(cube, dz)
    out = dz.loc[test].copy()
    hours = arr["hours"]
    hi = utc_ns_scalar(origin)
    lo = utc_ns_scalar(origin - 4 * WEEK)
    win = train & (hours >= lo) & (hours < hi)
    zone = arr["zone_idx"]
    how = arr["how"]

    def _same_how_mean(values: np.ndarray) -> np.ndarray:
        v, zm = _window_means(zone, how, values, win, zone[test], how[test])
        return np.where(np.isfinite(v), v, zm)

    e = dz["exposure"].to_numpy(dtype=np.float64)
    e = np.where(np.isfinite(e) & (e > 0), e, np.nan)
    out["exposure"] = _same_how_mean(e)
    if "transit_k" in out.columns:
        out["transit_k"] = _same_how_mean(dz["transit_k"].to_numpy(np.float64)).astype(np.float32)
    if "dark_lamps_out" in out.columns and "lamps" in cube.columns:
        share = M.lamps_out_share(cube)
        last = pd.Series(share[train]).groupby(zone[train], sort=False).last()
        s = last.reindex(zone[test]).fillna(0.0).to_numpy(np.float64)
        dark = 1.0
        if grain == "1h" and "dark" in cube.columns:
            dark = np.nan_to_num(
                pd.to_numeric(cube.loc[test, "dark"], errors="coerce").to_numpy(np.float64)
            )
        out["dark_lamps_out"] = (10.0 * s * dark).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# the backtest
# --------------------------------------------------------------------------------------------
def forecast_at(
    cube: pd.DataFrame,
    origin: pd.Timestamp,
    *,
    grain: str = "1h",
    dz: pd.DataFrame | None = None,
    cells: M.Cells | None = None,
    y: np.ndarray | None = None,
    kernel: np.ndarray | None = None,
    models: Sequence[str] = MODELS,
    xgb_rounds: int = M.XGB_ROUNDS,
    resolution: float = 0.05,
    covariates: str = "forecast",
    min_incidents: int = M.MIN_INCIDENTS,
    end: pd.Timestamp | None = None,
    arrays: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Forecasts of every model for the week starting at ``origin``, fitted on data before it.

    Parameters
    ----------
    cube
        The cube (at least zone_id, hour, local_hour, dow, present, incidents and features).
    origin
        Start of the forecast week (UTC timestamp).
    grain, dz, cells, y
        Grain; precomputed design, cells and all-incident counts (computed when ``None``).
    kernel
        Spatial kernel between zones in sorted zone order (:func:`hotspot_weights`; identity
        when ``None``).
    models
        Subset of :data:`MODELS`.
    covariates
        ``"forecast"`` or ``"observed"`` (module docstring).
    end
        End of the forecast window (default origin + 7 days).
    arrays
        Row arrays of :func:`row_arrays`, shared across origins (computed when ``None``).

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`BACKTEST_COLUMNS`.
    """
    if covariates not in ("forecast", "observed"):
        raise InputError(f"covariates must be 'forecast' or 'observed', got {covariates!r}.")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise InputError(
            f"unknown backtest model(s) {unknown}; expected some of {', '.join(MODELS)}."
        )
    if dz is None:
        dz = M.design(cube, grain=grain)
    if cells is None:
        cells = M.build_cells(dz, features=M.design_features(dz), resolution=resolution)
    if y is None:
        y = M.group_counts(cube, None)
    origin = as_utc(origin)
    end = origin + WEEK if end is None else pd.Timestamp(end)
    arr = arrays or row_arrays(cube, dz)
    hours, zone_idx, how, zones_sorted = arr["hours"], arr["zone_idx"], arr["how"], arr["zones"]
    o64 = utc_ns_scalar(origin)
    e64 = utc_ns_scalar(end)
    train = hours < o64
    test = (hours >= o64) & (hours < e64)
    if not test.any():
        raise InputError(f"no cube rows in the forecast week starting {origin}.")
    slots_per_week = 168 if grain == "1h" else 7
    if covariates == "forecast":
        dtest = forecast_design(dz, cube, train, test, origin, grain=grain, arrays=arr)
    else:
        dtest = dz.loc[test]
    obs = y[test]
    base = {
        "zone_id": np.asarray(zones_sorted, dtype=object)[zone_idx[test]],
        "period_start": cube["hour"].array[test],
        "observed": obs,
        "origin": origin,
    }
    parts = []

    def _add(name: str, mean: np.ndarray, alpha: float) -> None:
        q = M.predictive_quantiles(mean, alpha, (0.025, 0.975, 0.1, 0.9))
        parts.append(
            pd.DataFrame(
                {
                    **base,
                    "model": name,
                    "predicted": mean,
                    "lower": q[:, 0],
                    "upper": q[:, 1],
                    "lower80": q[:, 2],
                    "upper80": q[:, 3],
                }
            )
        )

    fit_kw = {
        "mask": train,
        "cells": cells,
        "grain": grain,
        "resolution": resolution,
        "min_incidents": min_incidents,
    }
    if "glm" in models:
        g = M.fit_glm(dz, y, family="auto", **fit_kw)
        _add("glm", g.mean(dtest), g.alpha)
    if "xgb" in models:
        x = M.fit_xgb(dz, y, rounds=xgb_rounds, **fit_kw)
        _add("xgb", x.mean(dtest), x.alpha)
    for k in (4, 8):
        name = f"seasonal_naive_{k}w"
        if name in models:
            pred = seasonal_naive(
                zone_idx,
                how,
                y,
                hours,
                origin,
                zone_idx[test],
                how[test],
                k_weeks=k,
                slots_per_week=slots_per_week,
            )
            _add(name, pred, 0.0)
    if "recent_hotspot" in models:
        ker = np.eye(len(zones_sorted)) if kernel is None else kernel
        pred = recent_hotspot(
            zone_idx, how, y, hours, origin, zone_idx[test], how[test], kernel=ker
        )
        _add("recent_hotspot", pred, 0.0)
    out = pd.concat(parts, ignore_index=True)
    return out[BACKTEST_COLUMNS]


def _deviance(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    mu = np.clip(mu, 1e-9, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2.0 * (t - (y - mu))


def evaluate(
    frame: pd.DataFrame,
    *,
    levels: Sequence[float] = FLAG_LEVELS,
    area: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics per model over the rows every model could forecast.

    Parameters
    ----------
    frame
        Backtest rows (:data:`BACKTEST_COLUMNS`).
    levels
        Shares of area x time flagged for hit rate and PAI.
    area
        Zone area (any unit) for area-weighted flagging; equal areas when ``None``.
    seed
        Tie-breaking of equal forecasts when flagging.

    Returns
    -------
    dict
        ``{"n_rows", "n_incidents", "origins", "models": {model: {poisson_deviance, mae,
        hit_rate: {"1%": ...}, pai: {...}, coverage80, coverage95, n}}, "by_origin": [...]}``;
        deviance is the mean unit Poisson deviance per zone-slot.
    """
    f = frame[np.isfinite(frame["predicted"].to_numpy(np.float64))]
    # keep the zone-slots every model forecast
    nmod = f["model"].nunique()
    ts = utc_ns(f["period_start"]).astype(np.int64)
    counts = (
        pd.DataFrame({"z": f["zone_id"].astype(str).to_numpy(), "t": ts})
        .groupby(["z", "t"], sort=False)["t"]
        .transform("size")
        .to_numpy()
    )
    f = f[counts == nmod]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"models": {}, "by_origin": []}
    if f.empty:
        out.update({"n_rows": 0, "n_incidents": 0, "origins": []})
        return out
    first = f[f["model"] == f["model"].iloc[0]]
    out["n_rows"] = int(len(first))
    out["n_incidents"] = int(first["observed"].sum())
    out["origins"] = [str(pd.Timestamp(o)) for o in sorted(pd.unique(f["origin"]))]
    for name, g in f.groupby("model", sort=False):
        yv = g["observed"].to_numpy(np.float64)
        mu = g["predicted"].to_numpy(np.float64)
        res: dict[str, Any] = {
            "n": int(len(g)),
            "poisson_deviance": float(_deviance(yv, mu).mean()),
            "mae": float(np.abs(yv - mu).mean()),
            "coverage80": float(
                ((g["lower80"] <= g["observed"]) & (g["observed"] <= g["upper80"])).mean()
            ),
            "coverage95": float(
                ((g["lower"] <= g["observed"]) & (g["observed"] <= g["upper"])).mean()
            ),
        }
        hits = {lv: [0.0, 0.0, 0.0] for lv in levels}  # captured, total, flagged share sum
        n_orig = 0
        for origin, go in g.groupby("origin", sort=True):
            yo = go["observed"].to_numpy(np.float64)
            po = go["predicted"].to_numpy(np.float64)
            a = (
                np.ones(len(go))
                if area is None
                else go["zone_id"].astype(str).map(area).fillna(1.0).to_numpy(np.float64)
            )
            order = np.lexsort((rng.random(len(go)), -po / a))
            cum = np.cumsum(a[order]) / a.sum()
            n_orig += 1
            row = {
                "origin": str(origin),
                "model": name,
                "poisson_deviance": float(_deviance(yo, po).mean()),
                "mae": float(np.abs(yo - po).mean()),
            }
            for lv in levels:
                nflag = max(int(np.searchsorted(cum, lv, side="right")), 1)
                sel = order[:nflag]
                hits[lv][0] += yo[sel].sum()
                hits[lv][1] += yo.sum()
                hits[lv][2] += cum[nflag - 1]
                if lv == 0.05:
                    hr = yo[sel].sum() / yo.sum() if yo.sum() > 0 else float("nan")
                    row["pai_5%"] = float(hr / cum[nflag - 1]) if yo.sum() > 0 else None
            out["by_origin"].append(row)
        res["hit_rate"] = {}
        res["pai"] = {}
        for lv in levels:
            cap, tot, share = hits[lv]
            label = f"{lv * 100:g}%"
            hr = cap / tot if tot > 0 else float("nan")
            res["hit_rate"][label] = float(hr)
            res["pai"][label] = float(hr / (share / n_orig)) if tot > 0 else float("nan")
        out["models"][name] = res
    return out


@M._one_blas_thread
def run_backtest(
    cube: pd.DataFrame,
    *,
    weeks: int = 8,
    grain: str = "1h",
    dz: pd.DataFrame | None = None,
    cells: M.Cells | None = None,
    centroids: pd.DataFrame | None = None,
    area: dict[str, float] | None = None,
    models: Sequence[str] = MODELS,
    xgb_rounds: int = M.XGB_ROUNDS,
    resolution: float = 0.05,
    covariates: str = "forecast",
    min_incidents: int = M.MIN_INCIDENTS,
) -> BacktestResult:
    """Rolling-origin backtest over the last ``weeks`` weekly origins (all incidents).

    Parameters
    ----------
    cube
        The cube.
    weeks
        Number of weekly origins (fewer when the cube is short: 4 weeks of history are
        needed before the first one; the evaluation says how many ran).
    grain, dz, cells
        Grain; precomputed design and cells.
    centroids
        Zone centroids (zone_id, latitude, longitude) for the recent-hotspot kernel; without
        them the hotspot map is not smoothed across zones.
    area
        Zone areas for area-weighted PAI (equal areas when ``None``).
    models, xgb_rounds, resolution, covariates, min_incidents
        See :func:`forecast_at`.

    Returns
    -------
    BacktestResult

    References
    ----------
    Tashman (2000); Bowers, Johnson & Pease (2004); Chainey, Tompson & Uhlig (2008).
    """
    if dz is None:
        dz = M.design(cube, grain=grain)
    if cells is None:
        cells = M.build_cells(dz, features=M.design_features(dz), resolution=resolution)
    y = M.group_counts(cube, None)
    origins = weekly_origins(cube, weeks=weeks)
    arrays = row_arrays(cube, dz)
    zones_sorted = arrays["zones"]
    kernel = hotspot_weights(_metric_xy(centroids, zones_sorted), len(zones_sorted))
    parts = []
    notes: list[str] = []
    if len(origins) < weeks:
        notes.append(
            f"{len(origins)} weekly origin(s) instead of {weeks}: each origin needs 4 weeks of "
            "data before it and a complete week after it."
        )
    if centroids is None:
        notes.append("no zone geometry: the recent-hotspot map is not smoothed across zones.")
    for i, o in enumerate(origins):
        nxt = origins[i + 1] if i + 1 < len(origins) else o + WEEK
        try:
            parts.append(
                forecast_at(
                    cube,
                    o,
                    grain=grain,
                    dz=dz,
                    cells=cells,
                    y=y,
                    kernel=kernel,
                    models=models,
                    xgb_rounds=xgb_rounds,
                    resolution=resolution,
                    covariates=covariates,
                    min_incidents=min_incidents,
                    end=nxt,
                    arrays=arrays,
                )
            )
        except M.SparseGroupError as exc:
            notes.append(f"origin {o}: skipped, {exc}")
        log.info("backtest origin %s done", o)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BACKTEST_COLUMNS)
    if len(frame):
        frame["zone_id"] = frame["zone_id"].astype(str)
        frame = backtest_schema().validate(frame, lazy=True)
    ev = evaluate(frame, area=area) if len(frame) else {"models": {}, "n_rows": 0}
    ev.update(
        {
            "group": "all",
            "grain": grain,
            "weeks": len(origins),
            "covariates": covariates,
            "flag_levels": [f"{lv * 100:g}%" for lv in FLAG_LEVELS],
            "deviance": "mean unit Poisson deviance per zone-slot",
            "intervals": "lower/upper: 95 %; lower80/upper80: 80 % (Poisson/NB2 quantiles)",
            "notes": notes,
        }
    )
    if "seasonal_naive_4w" in ev.get("models", {}):
        ref = ev["models"]["seasonal_naive_4w"]["poisson_deviance"]
        ev["skill_vs_seasonal_naive_4w"] = {
            m: (1.0 - v["poisson_deviance"] / ref) if ref > 0 else None
            for m, v in ev["models"].items()
        }
    return BacktestResult(frame=frame, evaluation=ev)
