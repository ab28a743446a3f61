"""``vigie fit``: fit every model of a store, backtest them and estimate effects.

:func:`fit_all` reads the cube, fits per category group a Poisson and a negative-binomial GLM
and an XGBoost model, runs the rolling-origin backtest and the effect estimates, and writes
``store/models/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import pipelines.models.backtest as bt
import pipelines.models.effects as eff
from features.errors import InputError, StoreError
from features.jsonio import json_safe
from features.zones import centroids as zone_centroids
from pipelines.models.design import (
    MIN_INCIDENTS,
    build_cells,
    cube_categories,
    design,
    design_features,
    feature_status,
    group_categories,
    group_counts,
)
from pipelines.models.glm import GLMFit, SparseGroupError, _one_blas_thread, _overdispersed, fit_glm
from pipelines.models.predictor import save_models
from pipelines.models.xgb import XGB_ROUNDS, XGBFit, fit_xgb

log = logging.getLogger(__name__)

MODELS_DIR = "models"


# --------------------------------------------------------------------------------------------
# fit_all: what `vigie fit` runs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitReport:
    """What :func:`fit_all` did.

    Attributes
    ----------
    models_dir
        Where the outputs are.
    groups
        Groups modelled (``all`` first).
    skipped
        Group -> why it was not modelled.
    not_estimable
        Feature -> why (for the ``all`` model).
    evaluation
        The content of evaluation.json (or ``{}`` when no backtest ran).
    n_effects
        Effects estimated (estimable ones) in effects.json.
    seconds
        Wall time per step.
    """

    models_dir: str
    groups: tuple[str, ...]
    skipped: dict[str, str]
    not_estimable: dict[str, str]
    evaluation: dict[str, Any]
    n_effects: int
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"models written to {self.models_dir}", f"groups: {', '.join(self.groups)}"]
        for g, why in self.skipped.items():
            lines.append(f"  skipped {g}: {why}")
        for f, why in self.not_estimable.items():
            lines.append(f"  {f}: not estimable ({why})")
        ev = self.evaluation.get("models", {})
        if ev:
            lines.append("backtest (group all): model  deviance  MAE  PAI@5%  cov80  cov95")
            for name, m in ev.items():
                lines.append(
                    f"  {name:<20} {m['poisson_deviance']:.4f}  {m['mae']:.4f}  "
                    f"{m['pai']['5%']:.2f}  {m['coverage80']:.3f}  {m['coverage95']:.3f}"
                )
        lines.append(f"effects estimated: {self.n_effects}")
        return "\n".join(lines)


def cube_columns_needed(meta_columns: Iterable[str]) -> list[str]:
    """The cube columns the models, backtest and effects read."""
    wanted = {
        "local_hour",
        "dow",
        "present",
        "present_baseline",
        "dark",
        "lamps",
        "lamps_out",
        "event_attendance",
        "precipitation_mm",
        "ridership_entries",
        "holiday",
        "school_holiday",
        "incidents",
    }
    return [c for c in meta_columns if c in wanted or c.startswith("inc_")]


def _compact(cube: pd.DataFrame) -> pd.DataFrame:
    """Downcast a cube to compact dtypes (float32 numbers, int32 counts)."""
    for c in cube.columns:
        s = cube[c]
        if c in ("zone_id", "hour", "local_date"):
            continue
        if pd.api.types.is_bool_dtype(s):
            cube[c] = s.astype(np.int8)
        elif c == "incidents" or c.startswith("inc_"):
            cube[c] = pd.to_numeric(s, errors="coerce").fillna(0).astype(np.int32)
        elif pd.api.types.is_float_dtype(s) and c not in ("present",):
            cube[c] = s.astype(np.float32)
    return cube


@_one_blas_thread
def fit_all(
    store,
    *,
    backtest_weeks: int = 8,
    groups: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    xgb_rounds: int = XGB_ROUNDS,
    resolution: float = 0.05,
    covariates: str = "forecast",
    effects: bool = True,
) -> FitReport:
    """Fit every model of a store, backtest them and estimate effects (``vigie fit``).

    Reads the cube, fits per category group a Poisson and a negative-binomial GLM (the family
    chosen by the over-dispersion test is the one reported and used for prediction) and an
    XGBoost model, runs the rolling-origin backtest on all incidents
    (:func:`pipelines.models.backtest.run_backtest`) and the effect estimates
    (:func:`pipelines.models.effects.estimate_effects`), and writes ``store/models/``: ``models.json``
    (manifest), ``glm_<group>.json``, ``xgb_<group>.json``, ``irr.parquet`` (every IRR of every
    group and family), ``backtest.parquet``, ``evaluation.json`` and ``effects.json``.

    Parameters
    ----------
    store
        A :class:`features.store.Store` with a cube.
    backtest_weeks
        Weekly origins of the backtest (0: no backtest).
    groups
        Groups to model besides ``all`` (default: every group with categories in the cube).
    min_incidents
        Groups with fewer incidents are skipped, with the reason in the report.
    xgb_rounds, resolution
        XGBoost rounds; rounding of continuous features in the cell key.
    covariates
        Backtest covariates after the origin: ``"forecast"`` (presence, ridership and lamp
        state as known at the origin) or ``"observed"``; see :func:`pipelines.models.backtest.run_backtest`.
    effects
        Whether to estimate the event-study and event-uplift effects.

    Returns
    -------
    FitReport

    Raises
    ------
    StoreError
        No cube in the store.
    InputError
        No incidents column, or no usable presence at all.
    """
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    meta = store.cube_meta()
    grain = meta.get("grain") or store.grain
    cols = cube_columns_needed(meta.get("columns", []))
    cube = store.cube(columns=cols or None)
    cube = _compact(cube)
    if "incidents" not in cube.columns and not cube_categories(cube.columns):
        raise InputError(
            f"{store.root}: the cube has no incidents column; `vigie fit` models incidents, so "
            "the study needs an incidents source."
        )
    if "present" not in cube.columns:
        raise InputError(
            f"{store.root}: the cube has no presence column; the rate models use the people "
            "present as exposure, so the study needs a presence source."
        )
    seconds["read"] = time.perf_counter() - t0
    t = time.perf_counter()
    dz = design(cube, grain=grain)
    feats = design_features(dz)
    status = feature_status(cube.columns, grain=grain)
    cells = build_cells(dz, features=feats, resolution=resolution)
    seconds["design"] = time.perf_counter() - t
    cats = cube_categories(cube.columns)
    gmap = group_categories(cats)
    # `all` is always fitted: the backtest, the effects and other modules' forecasts use it
    wanted = list(dict.fromkeys(["all", *groups])) if groups else list(gmap)
    glms: dict[str, GLMFit] = {}
    both: dict[str, dict[str, GLMFit]] = {}
    xgbs: dict[str, XGBFit] = {}
    skipped: dict[str, str] = {}
    t = time.perf_counter()
    for g in wanted:
        if g not in gmap:
            skipped[g] = f"no category of the cube falls in group {g!r}"
            continue
        members = None if g == "all" else gmap[g]
        y = group_counts(cube, members)
        common = {
            "group": g,
            "cells": cells,
            "grain": grain,
            "categories": members,
            "min_incidents": min_incidents,
        }
        try:
            pois = fit_glm(dz, y, family="poisson", **common)
        except SparseGroupError as exc:
            skipped[g] = str(exc)
            log.warning("%s", exc)
            continue
        nb = fit_glm(dz, y, family="negbin", **common)
        both[g] = {"poisson": pois, "negbin": nb}
        chosen = nb if _overdispersed(nb.alpha, pois.overdispersion_t) else pois
        glms[g] = chosen
        xgbs[g] = fit_xgb(dz, y, rounds=xgb_rounds, **common)
        log.info("fitted group %s (%s, %d incidents)", g, chosen.family, chosen.n_incidents)
    if "all" not in glms:
        why = skipped.get("all", "not requested")
        raise InputError(f"{store.root}: no model for all incidents: {why}")
    seconds["fit"] = time.perf_counter() - t
    out_dir = store.models_dir
    not_est = dict(glms["all"].not_estimable)
    for f, why in status.items():
        if why is not None:
            not_est[f] = why
    irr_rows = []
    for g, fams in both.items():
        for fam, m in fams.items():
            tab = m.irr_table()
            tab.insert(0, "family", fam)
            tab.insert(0, "group", g)
            tab["reported"] = glms[g] is m
            tab["n_rows"] = m.n_rows
            tab["n_incidents"] = m.n_incidents
            irr_rows.append(tab)
    save_models(
        out_dir,
        glms,
        xgbs,
        grain=grain,
        features=feats,
        extra={
            "fitted_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "period": {"start": str(cube["hour"].min()), "end": str(cube["hour"].max())},
            "groups": {g: (None if g == "all" else gmap[g]) for g in glms},
            "skipped": skipped,
            "not_estimable": not_est,
            "exposure": "present (people present per slot)",
            "resolution": resolution,
        },
    )
    pd.concat(irr_rows, ignore_index=True).to_parquet(out_dir / "irr.parquet", index=False)
    evaluation: dict[str, Any] = {}
    if backtest_weeks > 0:
        t = time.perf_counter()
        centroids = None
        try:
            centroids = zone_centroids(store.zones())
        except (StoreError, ImportError, OSError) as exc:  # no zones: hotspot not computed
            log.warning("no zone centroids for the recent-hotspot baseline: %s", exc)
        res = bt.run_backtest(
            cube,
            weeks=backtest_weeks,
            grain=grain,
            dz=dz,
            cells=cells,
            centroids=centroids,
            xgb_rounds=xgb_rounds,
            resolution=resolution,
            covariates=covariates,
            min_incidents=min_incidents,
        )
        res.frame.to_parquet(out_dir / "backtest.parquet", index=False)
        evaluation = res.evaluation
        store.write_json(f"{MODELS_DIR}/evaluation.json", json_safe(evaluation))
        seconds["backtest"] = time.perf_counter() - t
    t = time.perf_counter()
    eff_list = eff.estimate_effects(
        cube,
        glms=glms,
        grain=grain,
        store=store,
        dz=dz,
        not_estimable=not_est,
        studies=effects,
    )
    store.write_json(
        f"{MODELS_DIR}/effects.json",
        json_safe(
            {
                "grain": grain,
                "generated_at": pd.Timestamp.now(tz="UTC").isoformat(),
                "effects": eff_list,
            }
        ),
    )
    seconds["effects"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return FitReport(
        models_dir=str(out_dir),
        groups=tuple(glms),
        skipped=skipped,
        not_estimable=not_est,
        evaluation=evaluation,
        n_effects=sum(1 for e in eff_list if e.get("estimable")),
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )
