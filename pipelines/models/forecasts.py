"""The forecasting steps of ``vigie fit``: exposure per zone, true areas, the downstream model.

* :func:`resolve_exposure` chooses each zone's exposure (:mod:`pipelines.models.exposure`) and
  writes it into the design, so every model forecasts every zone-slot that has incidents;
* :func:`true_areas` gives the zones' areas for PAI (km², equal-area projection);
* :func:`downstream` records which model the Predictor uses (:mod:`pipelines.models.selection`)
  and the presence elasticity of each group's forecasting model, for models.json.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.errors import StoreError
from features.store import Store
from pipelines.models.exposure import ExposurePlan, exposure_plan, zone_areas, zone_population
from pipelines.models.results import BacktestEvaluation
from pipelines.models.selection import DEFAULT, choose_downstream
from pipelines.models.zone_glm import ZoneGLMFit

log = logging.getLogger(__name__)


def _zones(store: Store) -> Any:
    """The store's zones (None when it has none or geopandas is missing)."""
    try:
        return store.zones()
    except (StoreError, ImportError, OSError) as exc:
        log.warning("no zones: %s", exc)
        return None


def resolve_exposure(store: Store, dz: pd.DataFrame) -> ExposurePlan:
    """Choose each zone's exposure and write it into ``dz`` (``exposure`` and
    ``presence_imputed``, in place); return the plan."""
    zones = _zones(store)
    zid = dz["zone_id"].to_numpy()
    present = dz["exposure"].to_numpy(np.float64)
    plan = exposure_plan(zid, present, population=zone_population(zones))
    dz["exposure"], dz["presence_imputed"] = plan.apply(zid, present)
    return plan


def true_areas(store: Store) -> dict[str, float] | None:
    """Zone -> area in km² (None without zone polygons: PAI then weighs zones equally)."""
    zones = _zones(store)
    if zones is None:
        return None
    try:
        areas = zone_areas(zones)
    except (ValueError, ImportError) as exc:  # no CRS, pyproj missing
        log.warning("zone areas not computed: %s", exc)
        return None
    return areas or None


def elasticity_report(zone_glms: Mapping[str, ZoneGLMFit]) -> dict[str, dict[str, Any]]:
    """Group -> the presence elasticity of its forecasting model (or why it has none)."""
    return {g: dict(m.elasticity) for g, m in zone_glms.items()}


def downstream(ev: BacktestEvaluation | None, available: Mapping[str, Any]) -> dict[str, str]:
    """The Predictor's default model: the backtest's choice when it ran and that model is
    fitted, else :data:`pipelines.models.selection.DEFAULT` (else the GLM)."""
    if ev is not None and ev.models:
        model, why = choose_downstream(ev.models)
    else:
        model, why = DEFAULT, "no backtest ran: the default forecasting model"
    if not available.get(model):
        why = f"{model} was chosen but is not fitted for all incidents; the GLM is used"
        model = "glm"
    return {"model": model, "why": why}


def exposure_lines(plan: ExposurePlan, elasticity: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The fit summary's lines about exposure and the presence elasticity."""
    lines = [plan.summary()]
    none = sorted(z for z, s in plan.source.items() if s != "presence")
    if none and plan.has_presence:
        shown = ", ".join(none[:12]) + (" ..." if len(none) > 12 else "")
        lines.append(f"  zones without presence: {shown}")
    e = elasticity.get("all") or {}
    if "estimate" in e:
        lines.append(
            f"presence elasticity (all): {e['estimate']:.3f} [{e['ci_low']:.3f}, "
            f"{e['ci_high']:.3f}]; offset (elasticity 1) test p = {e['p_offset']:.3g}"
        )
    elif e:
        lines.append(f"presence elasticity (all): not estimated ({e.get('why')})")
    return lines
