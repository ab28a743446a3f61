"""Covariates of a backtest's forecast week, as known at its origin.

Presence and transit entries (and the share of the zone's slots whose presence was imputed,
:mod:`pipelines.models.exposure`) are the mean of the same zone and hour of week over the 4 weeks
before the origin (then the zone's mean); lamps out is each zone's state at the origin
(persistence); darkness, calendar, planned event attendance and the weather are taken as given
(the weather stands in for a forecast).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.timeutil import utc_ns_scalar
from pipelines.models.baselines import WEEK, row_arrays, window_means
from pipelines.models.design import lamps_out_share


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
        v, zm = window_means(zone, how, values, win, zone[test], how[test])
        return np.where(np.isfinite(v), v, zm)

    e = dz["exposure"].to_numpy(dtype=np.float64)
    e = np.where(np.isfinite(e) & (e > 0), e, np.nan)
    out["exposure"] = _same_how_mean(e)
    if "presence_imputed" in out.columns:
        out["presence_imputed"] = _same_how_mean(dz["presence_imputed"].to_numpy(np.float64))
    if "transit_k" in out.columns:
        out["transit_k"] = _same_how_mean(dz["transit_k"].to_numpy(np.float64)).astype(np.float32)
    if "dark_lamps_out" in out.columns and "lamps" in cube.columns:
        out["dark_lamps_out"] = _lamps_out_at_origin(cube, zone, train, test, grain=grain)
    return out


def _lamps_out_at_origin(
    cube: pd.DataFrame, zone: np.ndarray, train: np.ndarray, test: np.ndarray, *, grain: str
) -> np.ndarray:
    """``dark_lamps_out`` of the test rows with each zone's last share out before the origin."""
    share = lamps_out_share(cube)
    last = pd.Series(share[train]).groupby(zone[train], sort=False).last()
    s = last.reindex(zone[test]).fillna(0.0).to_numpy(np.float64)
    dark = 1.0
    if grain == "1h" and "dark" in cube.columns:
        dark = np.nan_to_num(
            pd.to_numeric(cube.loc[test, "dark"], errors="coerce").to_numpy(np.float64)
        )
    return (10.0 * s * dark).astype(np.float32)
