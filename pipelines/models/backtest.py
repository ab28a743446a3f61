"""Rolling-origin backtest of the incident models against naive baselines.

Origins are the local Mondays 00:00 of the last ``weeks`` complete weeks of the cube. At each
origin every model is fitted on the rows strictly before it and forecasts the week after it
(one row per zone and slot); nothing at or after the origin is ever read for fitting (Tashman
2000; Hyndman & Athanasopoulos 2021, section 5.10, "evaluation on a rolling forecasting origin").

Models and baselines (all incidents, the ``all`` group): ``zone_glm``, the forecasting model of
:func:`pipelines.models.zone_glm.fit_zone_glm` (shrunken zone effects, presence elasticity,
recent rates, trend and seasonality, NB2); ``glm``, the rate GLM of
:func:`pipelines.models.glm.fit_glm` (family by the over-dispersion test); ``xgb``, XGBoost
``count:poisson`` (:func:`pipelines.models.xgb.fit_xgb`); ``seasonal_naive_4w`` /
``seasonal_naive_8w``, ``recent_rate_8w`` and ``recent_hotspot``
(:mod:`pipelines.models.baselines`). A fitted model that cannot forecast an origin (too few
incidents before it, no usable row) is left out of the scores and the evaluation says why
(``absent``); the others are scored on every origin.

Covariates of the forecast week (``covariates="forecast"``, the default) are what is known at
the origin: presence and transit entries are the mean of the same zone and hour of week over
the last 4 weeks, lamps out is the state at the origin (persistence), darkness, calendar,
planned event attendance and the weather are taken as given (the weather stands in for a
forecast). ``covariates="observed"`` uses the week's observed covariates (an upper bound).

Metrics (:func:`pipelines.models.scoring.evaluate`): mean Poisson deviance, MAE, hit rate and
PAI at 1, 5 and 10 % of zone-slots flagged, coverage of the 80 % and 95 % predictive intervals.

References
----------
Tashman, L. J. (2000). Out-of-sample tests of forecasting accuracy: an analysis and review.
*International Journal of Forecasting* 16(4), 437-450.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.errors import InputError
from features.timeutil import as_utc, utc_ns_scalar
from pipelines.models.baselines import (
    HOTSPOT_TAU_WEEKS,
    HOTSPOT_WEEKS,
    WEEK,
    baseline_forecasts,
    hotspot_weights,
    hour_of_week,
    metric_xy,
    recent_hotspot,
    row_arrays,
    seasonal_naive,
    zone_codes,
)
from pipelines.models.covariates import forecast_design
from pipelines.models.design import (
    MIN_INCIDENTS,
    Cells,
    build_cells,
    design,
    design_features,
    group_counts,
)
from pipelines.models.glm import _one_blas_thread, fit_glm
from pipelines.models.history import HistoryRows
from pipelines.models.origins import spread_origins, weekly_origins
from pipelines.models.predictor import predictive_quantiles
from pipelines.models.results import BacktestEvaluation, ModelScore
from pipelines.models.scoring import FLAG_LEVELS, evaluate, level_label
from pipelines.models.selection import choose_downstream, versus_baselines
from pipelines.models.xgb import XGB_ROUNDS, fit_xgb
from pipelines.models.zone_glm import fit_zone_glm

log = logging.getLogger(__name__)

FITTED = ("zone_glm", "glm", "xgb")
BASELINES = ("seasonal_naive_4w", "seasonal_naive_8w", "recent_rate_8w", "recent_hotspot")
MODELS = (*FITTED, *BASELINES)
#: baselines run only when asked for (members of :mod:`pipelines.models.blend`)
OPTIONAL = ("eb_rate_52w",)
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
    "alpha",
    "origin",
]


@dataclass(frozen=True)
class BacktestResult:
    """Backtest forecasts and their evaluation.

    Attributes
    ----------
    frame
        One row per zone, slot and model: zone_id, period_start, model, observed, predicted,
        lower, upper (95 % predictive interval), lower80, upper80, origin
        (``backtest.parquet``).
    evaluation
        The evaluation (``evaluation.json`` is ``evaluation.to_json()``).
    """

    frame: pd.DataFrame
    evaluation: BacktestEvaluation


def backtest_schema() -> pa.DataFrameSchema:
    """The contract of ``backtest.parquet`` (pandera): one row per zone, slot and model."""
    nonneg = pa.Check.ge(0)

    def num(nullable: bool = True) -> pa.Column:
        return pa.Column(float, nonneg, nullable=nullable, coerce=True)

    return pa.DataFrameSchema(
        {
            "zone_id": pa.Column(str),
            "period_start": pa.Column("datetime64[ns, UTC]", coerce=True),
            "model": pa.Column(str, pa.Check.isin((*MODELS, *OPTIONAL))),
            "observed": num(False),
            "predicted": num(),
            "lower": num(),
            "upper": num(),
            "lower80": num(),
            "upper80": num(),
            "alpha": num(),
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


# --------------------------------------------------------------------------------------------
# one origin
# --------------------------------------------------------------------------------------------
def _check_choices(models: Sequence[str], covariates: str) -> None:
    if covariates not in ("forecast", "observed"):
        raise InputError(f"covariates must be 'forecast' or 'observed', got {covariates!r}.")
    unknown = [m for m in models if m not in MODELS and m not in OPTIONAL]
    if unknown:
        raise InputError(
            f"unknown backtest model(s) {unknown}; expected some of {', '.join(MODELS)}."
        )


def _interval_rows(base: dict[str, Any], name: str, mean: np.ndarray, alpha: float) -> pd.DataFrame:
    """Backtest rows of one model: its mean and 95 % / 80 % predictive intervals."""
    q = predictive_quantiles(mean, alpha, (0.025, 0.975, 0.1, 0.9))
    return pd.DataFrame(
        {
            **base,
            "model": name,
            "predicted": mean,
            "lower": q[:, 0],
            "upper": q[:, 1],
            "lower80": q[:, 2],
            "upper80": q[:, 3],
            "alpha": alpha,
        }
    )


def _model_forecasts(
    dz: pd.DataFrame,
    y: np.ndarray,
    dtest: pd.DataFrame,
    *,
    models: Sequence[str],
    xgb_rounds: int,
    fit_kw: dict[str, Any],
    absent: dict[str, str],
    warm: dict[str, Any],
) -> dict[str, tuple[np.ndarray, float]]:
    """Forecasts (mean, NB2 alpha) of ``dtest`` by each fitted model, fitted on
    ``fit_kw["mask"]``; a model that cannot be fitted is named in ``absent`` with why.
    ``warm`` carries what origins share: the zone model's rows and its last fit (a warm
    start)."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    for name in (m for m in FITTED if m in models):
        try:
            if name == "zone_glm":
                kw = {k: fit_kw[k] for k in ("mask", "grain", "min_incidents")}
                m: Any = fit_zone_glm(
                    dz, y, rows=warm.get("rows"), start=warm.get("zone_glm"), **kw
                )
                warm["zone_glm"] = m
            elif name == "glm":
                m = fit_glm(dz, y, family="auto", **fit_kw)
            else:
                m = fit_xgb(dz, y, rounds=xgb_rounds, rows=warm.get("rows"), **fit_kw)
        except InputError as exc:  # SparseGroupError included
            absent[name] = str(exc)
            continue
        out[name] = (m.mean(dtest), m.alpha)
    return out


def _train_test(
    hours: np.ndarray, origin: pd.Timestamp, end: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """Rows before ``origin`` (fitting) and rows of [origin, end) (forecast)."""
    train = hours < utc_ns_scalar(origin)
    test = (hours >= utc_ns_scalar(origin)) & (hours < utc_ns_scalar(end))
    if not test.any():
        raise InputError(f"no cube rows in the forecast week starting {origin}.")
    return train, test


def forecast_at(
    cube: pd.DataFrame,
    origin: pd.Timestamp,
    *,
    grain: str = "1h",
    dz: pd.DataFrame | None = None,
    cells: Cells | None = None,
    y: np.ndarray | None = None,
    kernel: np.ndarray | None = None,
    models: Sequence[str] = MODELS,
    xgb_rounds: int = XGB_ROUNDS,
    resolution: float = 0.05,
    covariates: str = "forecast",
    min_incidents: int = MIN_INCIDENTS,
    end: pd.Timestamp | None = None,
    arrays: dict[str, Any] | None = None,
    absent: dict[str, str] | None = None,
    warm: dict[str, Any] | None = None,
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
    absent, warm
        Filled with model -> why for the fitted models that could not forecast; what the
        origins share (``rows``: ``HistoryRows`` of ``dz`` and ``y``; the last zone fit).

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`BACKTEST_COLUMNS`.
    """
    _check_choices(models, covariates)
    dz = design(cube, grain=grain) if dz is None else dz
    if cells is None:
        cells = build_cells(dz, features=design_features(dz), resolution=resolution)
    y = group_counts(cube, None) if y is None else y
    origin = as_utc(origin)
    end = origin + WEEK if end is None else pd.Timestamp(end)
    arr = arrays or row_arrays(cube, dz)
    train, test = _train_test(arr["hours"], origin, end)
    if covariates == "forecast":
        dtest = forecast_design(dz, cube, train, test, origin, grain=grain, arrays=arr)
    else:
        dtest = dz.loc[test]
    base = {
        "zone_id": np.asarray(arr["zones"], dtype=object)[arr["zone_idx"][test]],
        "period_start": cube["hour"].array[test],
        "observed": y[test],
        "origin": origin,
    }
    fit_kw = {"mask": train, "cells": cells, "grain": grain, "resolution": resolution,
              "min_incidents": min_incidents}  # fmt: skip
    fitted = _model_forecasts(dz, y, dtest, models=models, xgb_rounds=xgb_rounds, fit_kw=fit_kw,
                              absent={} if absent is None else absent,
                              warm={} if warm is None else warm)  # fmt: skip
    naive = baseline_forecasts(
        arr, y, test, origin, models=models, slots_per_week=168 if grain == "1h" else 7,
        kernel=kernel,
    )  # fmt: skip
    parts = [_interval_rows(base, name, mean, alpha) for name, (mean, alpha) in fitted.items()]
    parts += [_interval_rows(base, name, mean, 0.0) for name, mean in naive.items()]
    return pd.concat(parts, ignore_index=True)[BACKTEST_COLUMNS]


# --------------------------------------------------------------------------------------------
# every origin
# --------------------------------------------------------------------------------------------
def _setup_notes(origins: list[pd.Timestamp], weeks: int, centroids) -> list[str]:
    notes: list[str] = []
    if len(origins) < weeks:
        notes.append(
            f"{len(origins)} weekly origin(s) instead of {weeks}: each origin needs 4 weeks of "
            "data before it and a complete week after it."
        )
    if centroids is None:
        notes.append("no zone geometry: the recent-hotspot map is not smoothed across zones.")
    return notes


def _forecast_origins(
    cube: pd.DataFrame,
    origins: list[pd.Timestamp],
    notes: list[str],
    absent: dict[str, str],
    **kw: Any,
) -> pd.DataFrame:
    """Forecasts of every origin (each for a week, or up to the next origin); a model that
    cannot forecast an origin is noted and named in ``absent``."""
    parts = []
    warm = {
        "rows": HistoryRows.of(kw["dz"], kw["y"], slots_per_week=168 if kw["grain"] == "1h" else 7)
    }
    for i, o in enumerate(origins):
        nxt = min(origins[i + 1], o + WEEK) if i + 1 < len(origins) else o + WEEK
        missing: dict[str, str] = {}
        parts.append(forecast_at(cube, o, end=nxt, absent=missing, warm=warm, **kw))
        for name, why in missing.items():
            notes.append(f"origin {o}: {name} could not forecast: {why}")
            absent.setdefault(name, f"could not forecast {o} (and maybe others): {why}")
        log.info("backtest origin %s done", o)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BACKTEST_COLUMNS)
    parts.clear()  # the origins' frames are in `frame` now
    if len(frame):
        frame["zone_id"] = frame["zone_id"].astype(str)
        frame = backtest_schema().validate(frame, lazy=True)
    return frame


def _deviance(score: ModelScore) -> float:
    """The mean deviance of a score made by :func:`evaluate` (always set there; None only
    comes from a JSON read back)."""
    assert score.poisson_deviance is not None
    return score.poisson_deviance


def _drop_absent(frame: pd.DataFrame, absent: dict[str, str]) -> pd.DataFrame:
    """The rows of the models that forecast every origin (the others are named in ``absent``)."""
    n_orig = frame.groupby("model")["origin"].nunique()
    full = int(n_orig.max()) if len(n_orig) else 0
    for m, k in n_orig.items():
        if k < full:
            absent.setdefault(str(m), f"forecast {k} of {full} origins")
    bad = ~np.isfinite(frame["predicted"].to_numpy(np.float64))
    for m, k in frame.loc[bad, "model"].value_counts().items():
        absent.setdefault(str(m), f"no finite forecast for {k} of its zone-slots")
    if not absent:
        return frame
    return frame[~frame["model"].isin(list(absent))]


def _evaluation(
    frame: pd.DataFrame,
    *,
    area: dict[str, float] | None,
    grain: str,
    weeks: int,
    covariates: str,
    notes: list[str],
    absent: dict[str, str],
) -> BacktestEvaluation:
    """:func:`evaluate` with what the backtest was, the skill against the 4-week naive, the
    models left out and why, the comparison with the baselines and the downstream choice."""
    frame = _drop_absent(frame, absent) if len(frame) else frame
    ev = evaluate(frame, area=area) if len(frame) else BacktestEvaluation()
    ref = ev.models.get("seasonal_naive_4w")
    skill = None
    if ref is not None:
        r = _deviance(ref)
        skill = {m: (1.0 - _deviance(v) / r) if r > 0 else None for m, v in ev.models.items()}
    return replace(
        ev,
        group="all",
        grain=grain,
        weeks=weeks,
        covariates=covariates,
        flag_levels=tuple(level_label(lv) for lv in FLAG_LEVELS),
        deviance="mean unit Poisson deviance per zone-slot",
        intervals="lower/upper: 95 %; lower80/upper80: 80 % (Poisson/NB2 quantiles)",
        notes=tuple(notes),
        skill_vs_seasonal_naive_4w=skill,
        **(_choice(ev, absent, area) if ev.models or absent else {}),
    )


def _choice(ev: BacktestEvaluation, absent: dict[str, str], area) -> dict[str, Any]:
    """The models left out, the comparison with the baselines and the downstream choice."""
    downstream, why = choose_downstream(ev.models)
    return {
        "absent": dict(absent),
        "versus_baselines": versus_baselines(ev.models),
        "downstream": downstream,
        "downstream_why": why,
        "area": "equal areas" if not area else "true areas (km2, equal-area projection EPSG:6933)",
    }


@_one_blas_thread
def run_backtest(
    cube: pd.DataFrame,
    *,
    weeks: int = 8,
    grain: str = "1h",
    dz: pd.DataFrame | None = None,
    cells: Cells | None = None,
    centroids: pd.DataFrame | None = None,
    area: dict[str, float] | None = None,
    models: Sequence[str] = MODELS,
    xgb_rounds: int = XGB_ROUNDS,
    resolution: float = 0.05,
    covariates: str = "forecast",
    min_incidents: int = MIN_INCIDENTS,
    origins: Sequence[pd.Timestamp] | None = None,
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
    origins
        The origins to use instead of the last ``weeks`` (e.g. :func:`spread_origins`).

    Returns
    -------
    BacktestResult

    References
    ----------
    Tashman (2000); Bowers, Johnson & Pease (2004); Chainey, Tompson & Uhlig (2008).
    """
    dz = design(cube, grain=grain) if dz is None else dz
    if cells is None:
        cells = build_cells(dz, features=design_features(dz), resolution=resolution)
    origins = weekly_origins(cube, weeks=weeks) if origins is None else list(origins)
    arrays = row_arrays(cube, dz)
    zones_sorted = arrays["zones"]
    notes = _setup_notes(origins, weeks, centroids)
    absent: dict[str, str] = {}
    frame = _forecast_origins(
        cube, origins, notes, absent,
        grain=grain, dz=dz, cells=cells, y=group_counts(cube, None),
        kernel=hotspot_weights(metric_xy(centroids, zones_sorted), len(zones_sorted)),
        models=models, xgb_rounds=xgb_rounds, resolution=resolution, covariates=covariates,
        min_incidents=min_incidents, arrays=arrays,
    )  # fmt: skip
    ev = _evaluation(
        frame, area=area, grain=grain, weeks=len(origins), covariates=covariates, notes=notes,
        absent=absent,
    )  # fmt: skip
    return BacktestResult(frame=frame, evaluation=ev)


__all__: Sequence[str] = (
    "BACKTEST_COLUMNS", "FLAG_LEVELS", "HOTSPOT_TAU_WEEKS", "HOTSPOT_WEEKS", "MODELS", "WEEK",
    "BacktestEvaluation", "BacktestResult", "backtest_schema", "evaluate", "forecast_at",
    "forecast_design", "hotspot_weights", "hour_of_week", "recent_hotspot", "row_arrays",
    "run_backtest", "seasonal_naive", "spread_origins", "weekly_origins", "zone_codes",
)  # fmt: skip
