"""The brief's forecasts: presence at the venue and in its ring, and incidents per hour.

Presence = the reference (:func:`pipelines.events.history.reference`) + the event's crowd
(:func:`pipelines.events.comparables.learn_crowd`) + the crowds of other events around the
venue. Incidents come from the fitted models on the model frame
(:func:`pipelines.events.frame.model_frame`), summed over the venue and ring at the planning
quantile for the agents' workload (:func:`forecast_incidents`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.events.comparables import LearntCrowd, learn_crowd
from pipelines.events.history import reference
from pipelines.events.spec import BriefParams, EventSpec, num_or_none
from pipelines.events.surroundings import Surroundings

#: z of the planning quantile of incidents per hour
Z_QUANTILE = {"upper80": 1.2815515655446004, "upper95": 1.959963984540054, "mean": 0.0}


@dataclass(frozen=True)
class PresenceForecast:
    """Presence per zone and hour around an event.

    Attributes
    ----------
    learnt
        The event's own crowd and how it was obtained.
    zone_forecasts
        Forecast presence per zone (venue and ring) and hour.
    venue_reference
        The venue zone's reference presence per hour (NaN where unknown).
    rows
        One row per hour and zone (the brief's ``presence``).
    """

    learnt: LearntCrowd
    zone_forecasts: dict[str, np.ndarray]
    venue_reference: np.ndarray
    rows: list[dict[str, Any]]


def _other_crowds(
    ev: EventSpec, hours: pd.DatetimeIndex, sur: Surroundings, tz: str, bp: BriefParams,
    notes: list[str],
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per zone of the venue and ring, the crowd of the other events around it."""
    spill = {z: np.zeros(len(hours)) for z in {ev.zone_id, *sur.ring}}
    used = []
    for spec, ccomps in sur.others:
        o = learn_crowd(spec, hours, ccomps, sur.comp_zones, sur.history, tz, bp, summarise=False)
        if spec.zone_id in spill:
            spill[spec.zone_id] += o.crowd
        for z in sur.zones.ring(spec.zone_id):
            if z in spill:
                spill[z] += o.ring_crowd
        used.append(f"{spec.event_id} ({o.method})")
    if used:
        notes.append(
            "the crowds of other events around the venue are added to the forecast: "
            + ", ".join(used)
        )
    return spill


def _zone_rows(
    zone_id: str, role: str, hours: pd.DatetimeIndex, local: pd.DatetimeIndex,
    ref: np.ndarray, how: list[str], up: np.ndarray, fc: np.ndarray, obs: np.ndarray | None,
) -> list[dict[str, Any]]:  # fmt: skip
    return [
        {
            "hour": h,
            "local": local[i].isoformat(),
            "zone_id": zone_id,
            "role": role,
            "reference": num_or_none(ref[i]),
            "reference_method": how[i],
            "uplift": float(up[i]),
            "forecast": float(fc[i]),
            "observed": None if obs is None else num_or_none(obs[i]),
        }
        for i, h in enumerate(hours)
    ]


def _learn_own_crowd(
    ev: EventSpec, hours: pd.DatetimeIndex, sur: Surroundings, tz: str, bp: BriefParams,
    notes: list[str], limitations: list[str],
) -> LearntCrowd:  # fmt: skip
    sp = bp.staffing
    learnt = learn_crowd(ev, hours, sur.comparables, sur.comp_zones, sur.history, tz, bp)
    if learnt.gaps:
        notes.append(
            f"{learnt.gaps} hour(s) not covered by the comparables used the attendance curve"
        )
    if learnt.method == "attendance curve":
        limitations.append(
            f"no comparable past event with observed presence (category {ev.category!r}, attendance "
            f"within ×{bp.comparable_size_ratio:g}, start within {bp.comparable_hour_window:g} h): "
            "the uplift is the expected attendance with a "
            f"triangular arrival curve over {sp.entry_window_minutes:g} min before the start and departures "
            f"within {sp.departure_window_minutes:g} min after the end; no uplift forecast in the ring"
        )
    return learnt


def forecast_presence(
    ev: EventSpec,
    *,
    hours: pd.DatetimeIndex,
    sur: Surroundings,
    tz: str,
    bp: BriefParams,
    notes: list[str],
    limitations: list[str],
) -> PresenceForecast:
    """Presence per hour in the venue zone and each ring zone: reference + crowds, floored at 0."""
    learnt = _learn_own_crowd(ev, hours, sur, tz, bp, notes, limitations)
    spill = _other_crowds(ev, hours, sur, tz, bp, notes)
    hist = sur.history
    venue_ref, venue_how = reference(hist, ev.zone_id, hours, tz, weeks=bp.baseline_weeks)
    if not np.isfinite(venue_ref).any():
        limitations.append(
            f"no presence reference for venue zone {ev.zone_id}: forecast presence is the event crowd alone"
        )
    local = hours.tz_convert(tz)
    have_obs = sur.cube is not None and "present" in sur.cube.columns
    rows: list[dict[str, Any]] = []
    forecasts: dict[str, np.ndarray] = {}
    for role, zlist in (("venue", [ev.zone_id]), ("ring", sur.ring)):
        for z in zlist:
            ref, how = (
                (venue_ref, venue_how)
                if z == ev.zone_id
                else reference(hist, z, hours, tz, weeks=bp.baseline_weeks)
            )
            up = (learnt.crowd if role == "venue" else learnt.ring_crowd) + spill[z]
            fc = np.maximum(0.0, np.nan_to_num(ref, nan=0.0) + up)
            forecasts[z] = fc
            obs = hist.observed(z, hours) if have_obs else None
            rows += _zone_rows(z, role, hours, local, ref, how, up, fc, obs)
    return PresenceForecast(learnt, forecasts, venue_ref, rows)


# -- incidents ------------------------------------------------------------------------------------

_NEED = {"zone_id", "hour", "group", "mean", "lower80", "upper80", "lower95", "upper95"}
_NONE_AGENTS = "agents from the visibility ratio only"


def _predict(predictor: Any, frame: pd.DataFrame, limitations: list[str]) -> pd.DataFrame | None:
    """The predictor's rows for the frame, or None (and a limitation) when it gives none."""
    try:
        pred = predictor.predict(frame, groups=None)
    except Exception as exc:  # noqa: BLE001
        limitations.append(
            f"no incident forecast: the model could not predict ({exc.__class__.__name__}: {exc}); {_NONE_AGENTS}"
        )
        return None
    if pred is None or not _NEED <= set(pred.columns):
        limitations.append(
            f"no incident forecast: the model's predictions lack {sorted(_NEED - set(getattr(pred, 'columns', [])))}"
        )
        return None
    pred = pred.copy()
    pred["hour"] = pd.to_datetime(pred["hour"], utc=True)
    if pred.empty:
        limitations.append(
            "no incident forecast: the model returned no rows (no incidents source in the study?)"
        )
        return None
    return pred


def forecast_incidents(
    predictor: Any,
    frame: pd.DataFrame,
    *,
    hours: pd.DatetimeIndex,
    quantile: str,
    limitations: list[str],
    load_error: str | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Per hour, zone and group forecasts, and the planning incidents per hour for the workload.

    The area's incidents per hour at the planning quantile: the sum over the venue and ring
    zones (of the ``all`` group when the model has one, else of every group) of the means, plus
    z times the square root of the summed variances, each variance read from the 95 % interval
    (sd ≈ (upper95 − lower95) / 3.92, a normal approximation, and at least the Poisson
    √mean, a lower bound for Poisson and negative-binomial counts); z = 1.2816 for ``upper80`` (the
    90th percentile), 1.96 for ``upper95``, 0 for ``mean``. Without a predictor (``load_error``
    says why) or predictions, no rows and zeros, with a limitation.
    """
    none = np.zeros(len(hours))
    if predictor is None:
        limitations.append(
            f"no incident forecast: no fitted model could be loaded ({load_error}); {_NONE_AGENTS}"
        )
        return [], none
    pred = _predict(predictor, frame, limitations)
    if pred is None:
        return [], none
    # sd from the 95 % interval, at least the Poisson sd √mean (the interval of a small count
    # is degenerate: Poisson(0.02) has lower95 = upper95 = 0)
    pred["sd"] = np.maximum(
        ((pred["upper95"] - pred["lower95"]) / 3.92).clip(lower=0),
        np.sqrt(pred["mean"].clip(lower=0)),
    )
    if pred["mean"].isna().any():
        limitations.append(
            f"{int(pred['mean'].isna().sum())} incident forecast(s) could not be computed (missing model inputs)"
        )
    # the 'all' group is the total of the others: the workload uses it alone when present
    total = pred[pred["group"] == "all"] if (pred["group"] == "all").any() else pred
    agg = total.groupby("hour").agg(mean=("mean", "sum"), var=("sd", lambda s: float((s**2).sum())))
    z = Z_QUANTILE[quantile]
    planned = (agg["mean"] + z * np.sqrt(agg["var"])).reindex(hours).fillna(0.0).to_numpy()
    cols = ["hour", "zone_id", "group", "mean", "lower80", "upper80", "lower95", "upper95"]
    rows = pred[cols].sort_values(["hour", "zone_id", "group"]).to_dict(orient="records")
    return rows, planned
