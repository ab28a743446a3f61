"""``vigie fit``: fit every model of a store, backtest them and estimate effects.

:func:`fit_all` is load -> design -> fit per group -> backtest -> effects -> save, each step a
short function: reading and writing happen in :func:`load_cube` and :func:`save_fit` only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from features.errors import InputError, StoreError
from features.jsonio import json_safe
from features.store import Store, staged_folder
from features.zones import centroids as zone_centroids
from pipelines.models.backtest import BacktestResult, run_backtest
from pipelines.models.cube_io import Stopwatch as _Stopwatch
from pipelines.models.cube_io import _compact, cube_columns_needed  # noqa: F401  (re-exported)
from pipelines.models.design import (
    MIN_INCIDENTS,
    Cells,
    build_cells,
    cube_categories,
    design,
    design_features,
    feature_status,
    group_categories,
    group_counts,
)
from pipelines.models.effects import estimate_effects
from pipelines.models.exposure import ExposurePlan
from pipelines.models.forecasts import (
    downstream,
    elasticity_report,
    exposure_lines,
    resolve_exposure,
    true_areas,
)
from pipelines.models.glm import GLMFit, SparseGroupError, _one_blas_thread, _overdispersed, fit_glm
from pipelines.models.history import HistoryRows
from pipelines.models.large import LARGE_ROWS, Large, ScaleRule, cell_glms, load
from pipelines.models.large import load_cube as load_cube  # re-exported
from pipelines.models.predictor import save_models
from pipelines.models.results import BacktestEvaluation, Effects
from pipelines.models.xgb import XGB_ROUNDS, XGBFit, fit_xgb
from pipelines.models.zone_glm import ZoneGLMFit, fit_zone_glm

log = logging.getLogger(__name__)

#: the folder of the fitted models in a store (``Store.models_dir``)
MODELS_DIR = "models"


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
        The content of evaluation.json (or ``{}`` when no backtest ran); typed as
        :attr:`backtest`.
    n_effects
        Effects estimated (estimable ones) in effects.json.
    seconds
        Wall time per step.
    exposure
        What stands in for presence: ``lines`` (the summary's) and ``counts`` (zones per
        source); the plan per zone is in models.json.
    downstream
        ``model`` (the Predictor's default) and ``why``.
    scale
        How the cube was read (:class:`pipelines.models.large.ScaleRule`) and its ``lines``.
    """

    models_dir: str
    groups: tuple[str, ...]
    skipped: dict[str, str]
    not_estimable: dict[str, str]
    evaluation: dict[str, Any]
    n_effects: int
    seconds: dict[str, float] = field(default_factory=dict)
    exposure: dict[str, Any] = field(default_factory=dict)
    downstream: dict[str, str] = field(default_factory=dict)
    scale: dict[str, Any] = field(default_factory=dict)

    @property
    def backtest(self) -> BacktestEvaluation | None:
        """The backtest's evaluation (None when no backtest ran)."""
        return BacktestEvaluation.from_json(self.evaluation) if self.evaluation else None

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return json_safe({**asdict(self), "groups": list(self.groups)})

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FitReport:
        """The inverse of :meth:`to_json`."""
        return cls(
            models_dir=str(d["models_dir"]),
            groups=tuple(d["groups"]),
            skipped=dict(d.get("skipped") or {}),
            not_estimable=dict(d.get("not_estimable") or {}),
            evaluation=dict(d.get("evaluation") or {}),
            n_effects=int(d.get("n_effects") or 0),
            seconds=dict(d.get("seconds") or {}),
            exposure=dict(d.get("exposure") or {}),
            downstream=dict(d.get("downstream") or {}),
            scale=dict(d.get("scale") or {}),
        )

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"models written to {self.models_dir}", f"groups: {', '.join(self.groups)}"]
        lines += [f"  skipped {g}: {why}" for g, why in self.skipped.items()]
        lines += [f"  {f}: not estimable ({why})" for f, why in self.not_estimable.items()]
        lines += list(self.exposure.get("lines", [])) + list(self.scale.get("lines", []))
        if self.backtest is not None:
            lines.append(self.backtest.summary())
        if self.downstream and (self.backtest is None or self.backtest.downstream is None):
            lines.append(
                f"forecast used downstream: {self.downstream['model']} ({self.downstream['why']})"
            )
        lines.append(f"effects estimated: {self.n_effects}")
        return "\n".join(lines)


def irr_schema() -> pa.DataFrameSchema:
    """The contract of ``irr.parquet`` (pandera): one row per group, family and term."""
    nonneg = pa.Check.ge(0)
    return pa.DataFrameSchema(
        {
            "group": pa.Column(str),
            "family": pa.Column(str, pa.Check.isin(["poisson", "negbin"])),
            "term": pa.Column(str),
            "irr": pa.Column(float, nonneg, nullable=True),
            "ci_low": pa.Column(float, nonneg, nullable=True),
            "ci_high": pa.Column(float, nonneg, nullable=True),
            "p_value": pa.Column(float, pa.Check.in_range(0, 1), nullable=True),
            "log_irr": pa.Column(float, nullable=True),
            "se": pa.Column(float, nonneg, nullable=True),
            "reported": pa.Column(bool),
            "n_rows": pa.Column(int, nonneg),
            "n_incidents": pa.Column(int, nonneg),
        },
        strict=True,
        ordered=True,
    )


# --------------------------------------------------------------------------------------------
# the steps of fit_all
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Design:
    """The design of the whole cube, shared by every fit."""

    grain: str
    dz: pd.DataFrame
    features: list[str]
    cells: Cells
    status: dict[str, str | None]
    resolution: float = 0.05


@dataclass(frozen=True)
class GroupFits:
    """The models of every category group.

    Attributes
    ----------
    glms
        Group -> the reported GLM (the family chosen by the over-dispersion test).
    both
        Group -> ``{"poisson": ..., "negbin": ...}``: both families, for the IRR table.
    xgbs
        Group -> the XGBoost model.
    zone_glms
        Group -> the forecasting model (:mod:`pipelines.models.zone_glm`).
    skipped
        Group -> why it was not modelled.
    groups
        Group -> its category slugs (every group of the cube).
    """

    glms: dict[str, GLMFit]
    both: dict[str, dict[str, GLMFit]]
    xgbs: dict[str, XGBFit]
    skipped: dict[str, str]
    groups: dict[str, list[str]]
    zone_glms: dict[str, ZoneGLMFit] = field(default_factory=dict)


def _design(cube: pd.DataFrame, *, grain: str, resolution: float) -> _Design:
    dz = design(cube, grain=grain)
    feats = design_features(dz)
    return _Design(
        grain=grain,
        dz=dz,
        features=feats,
        cells=build_cells(dz, features=feats, resolution=resolution),
        status=feature_status(cube.columns, grain=grain),
        resolution=resolution,
    )


def fit_groups(
    cube: pd.DataFrame,
    d: _Design,
    *,
    groups: Sequence[str] | None,
    min_incidents: int,
    xgb_rounds: int,
    large: Large = None,
) -> GroupFits:
    """Poisson and NB2 GLMs and XGBoost per category group (``all`` always first); the GLMs
    on the whole period's cells under the large-study rule (``large``)."""
    gmap = group_categories(cube_categories(cube.columns))
    # `all` is always fitted: the backtest, the effects and other modules' forecasts use it
    wanted = list(dict.fromkeys(["all", *groups])) if groups else list(gmap)
    fits = GroupFits(glms={}, both={}, xgbs={}, skipped={}, groups=gmap)
    for g in wanted:
        if g not in gmap:
            fits.skipped[g] = f"no category of the cube falls in group {g!r}"
            continue
        try:
            _fit_group(fits, cube, d, g, min_incidents=min_incidents, xgb_rounds=xgb_rounds,
                       large=large)  # fmt: skip
        except SparseGroupError as exc:
            fits.skipped[g] = str(exc)
            log.warning("%s", exc)
    return fits


def _fit_group(
    fits: GroupFits, cube: pd.DataFrame, d: _Design, g: str, *, min_incidents: int,
    xgb_rounds: int, large: Large = None,
) -> None:  # fmt: skip
    """Fit one group's models into ``fits`` (:class:`SparseGroupError` when too sparse)."""
    members = None if g == "all" else fits.groups[g]
    y = group_counts(cube, members)
    common = {
        "group": g,
        "cells": d.cells,
        "grain": d.grain,
        "categories": members,
        "min_incidents": min_incidents,
    }
    if large is None:
        pois = fit_glm(d.dz, y, family="poisson", **common)
        nb = fit_glm(d.dz, y, family="negbin", **common)
    else:
        pois, nb = cell_glms(
            large[0],
            g,
            dz=d.dz,
            y=y,
            dropped=large[1],
            min_incidents=min_incidents,
            resolution=d.resolution,
        )
    fits.both[g] = {"poisson": pois, "negbin": nb}
    chosen = nb if _overdispersed(nb.alpha, pois.overdispersion_t) else pois
    fits.glms[g] = chosen
    rows = HistoryRows.of(d.dz, y, slots_per_week=168 if d.grain == "1h" else 7)
    fits.xgbs[g] = fit_xgb(d.dz, y, rounds=xgb_rounds, rows=rows, **common)
    zkw = {k: common[k] for k in ("group", "grain", "categories", "min_incidents")}
    try:  # the other groups start from the `all` model (a warm start)
        fits.zone_glms[g] = fit_zone_glm(d.dz, y, rows=rows, start=fits.zone_glms.get("all"), **zkw)
    except SparseGroupError as exc:
        log.warning("no zone rate model for group %s: %s", g, exc)
    log.info("fitted group %s (%s, %d incidents)", g, chosen.family, chosen.n_incidents)


def _require_all(fits: GroupFits, store: Store) -> GroupFits:
    """``fits``, checked to hold the ``all`` model (:class:`InputError` otherwise)."""
    if "all" not in fits.glms:
        why = fits.skipped.get("all", "not requested")
        raise InputError(f"{store.root}: no model for all incidents: {why}")
    return fits


def _fitted(fits: GroupFits) -> dict[str, Any]:
    """Which models of the ``all`` group exist (for the downstream choice)."""
    return {"zone_glm": "all" in fits.zone_glms, "glm": 1, "xgb": "all" in fits.xgbs}


def not_estimable(glm_all: GLMFit, status: Mapping[str, str | None]) -> dict[str, str]:
    """Feature -> why it is not in the ``all`` model: its fit's reasons, then absent sources."""
    out = dict(glm_all.not_estimable)
    out.update({f: why for f, why in status.items() if why is not None})
    return out


def irr_frame(fits: GroupFits) -> pd.DataFrame:
    """Every IRR of every group and family (``irr.parquet``), validated by :func:`irr_schema`."""
    rows = []
    for g, fams in fits.both.items():
        for fam, m in fams.items():
            tab = m.irr_table()
            tab.insert(0, "family", fam)
            tab.insert(0, "group", g)
            tab["reported"] = fits.glms[g] is m
            tab["n_rows"] = m.n_rows
            tab["n_incidents"] = m.n_incidents
            rows.append(tab)
    return irr_schema().validate(pd.concat(rows, ignore_index=True))


def _centroids(store: Store):
    """Zone centroids for the recent-hotspot baseline (None without zones)."""
    try:
        return zone_centroids(store.zones())
    except (StoreError, ImportError, OSError) as exc:  # no zones: hotspot not computed
        log.warning("no zone centroids for the recent-hotspot baseline: %s", exc)
        return None


def _backtest(cube: pd.DataFrame, d: _Design, *, store: Store, weeks: int, **options: Any):
    """The rolling-origin backtest of the ``all`` models, PAI on the zones' true areas."""
    return run_backtest(
        cube, weeks=weeks, grain=d.grain, dz=d.dz, cells=d.cells, centroids=_centroids(store),
        area=true_areas(store), **options,
    )  # fmt: skip


def _effects(
    cube: pd.DataFrame, fits: GroupFits, d: _Design, *, store: Store, not_est, studies: bool
) -> Effects:
    """Every effect of effects.json (IRRs, outage event study, event uplift), stamped now."""
    found = estimate_effects(
        cube, glms=fits.glms, grain=d.grain, store=store, dz=d.dz, not_estimable=not_est,
        studies=studies,
    )  # fmt: skip
    return replace(found, generated_at=pd.Timestamp.now(tz="UTC").isoformat())


def save_fit(
    store: Store,
    fits: GroupFits,
    d: _Design,
    *,
    extra: dict[str, Any],
    irr: pd.DataFrame,
    backtest: BacktestResult | None = None,
    effects: Effects,
) -> None:
    """Write ``store/models/``: the models and their manifest, irr.parquet, the backtest
    (backtest.parquet, evaluation.json) when it ran, and effects.json. The folder is staged
    beside ``models/`` and swapped in whole: a run killed while saving leaves the old one."""
    with staged_folder(store.models_dir, copy_existing=True) as models:
        save_models(models, fits.glms, fits.xgbs, grain=d.grain, features=d.features, extra=extra,
                    zone_glms=fits.zone_glms)  # fmt: skip
        irr.to_parquet(models / Path(Store.IRR_PARQUET).name, index=False)
        if backtest is not None:
            backtest.frame.to_parquet(models / Path(Store.BACKTEST_PARQUET).name, index=False)
            eva = Store.json_text(backtest.evaluation.to_json())
            (models / Path(Store.EVALUATION_JSON).name).write_text(eva, encoding="utf-8")
        text = Store.json_text(effects.to_json())
        (models / Path(Store.EFFECTS_JSON).name).write_text(text, encoding="utf-8")


def _manifest_extra(
    cube: pd.DataFrame, fits: GroupFits, not_est: dict[str, str], resolution, plan: ExposurePlan,
    rule: ScaleRule,
):  # fmt: skip
    """What models.json says besides the models: period (the whole cube's), groups, skipped,
    not estimable, the exposure of each zone, the presence elasticity and the scale rule."""
    # under the large-study rule, the GLMs' whole period (the window's is in `scale`)
    first = rule.period_start if rule.large else str(cube["hour"].min())
    return {
        "fitted_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "period": {"start": first, "end": str(cube["hour"].max())},
        "scale": rule.to_json(),
        "groups": {g: (None if g == "all" else fits.groups[g]) for g in fits.glms},
        "skipped": fits.skipped,
        "not_estimable": not_est,
        "exposure": plan.to_json(),
        "elasticity": elasticity_report(fits.zone_glms),
        "resolution": resolution,
    }


@_one_blas_thread
def fit_all(
    store: Store,
    *,
    backtest_weeks: int = 8,
    groups: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    xgb_rounds: int = XGB_ROUNDS,
    resolution: float = 0.05,
    covariates: str = "forecast",
    effects: bool = True,
    large_rows: int = LARGE_ROWS,
) -> FitReport:
    """Fit every model of a store, backtest them and estimate effects (``vigie fit``).

    Reads the cube, chooses each zone's exposure (:mod:`pipelines.models.forecasts`), fits per
    category group a Poisson and an NB2 GLM (the family chosen by the over-dispersion test is
    reported), XGBoost and the zone rate model (:mod:`pipelines.models.zone_glm`), runs the
    rolling-origin backtest (:func:`pipelines.models.backtest.run_backtest`, PAI on true
    areas), records the downstream model, estimates the effects, then writes
    ``store/models/`` (:func:`save_fit`).

    Parameters
    ----------
    store, backtest_weeks
        A store with a cube; weekly origins of the backtest (0: no backtest).
    groups
        Groups to model besides ``all`` (default: every group with categories in the cube).
    min_incidents
        Groups with fewer incidents are skipped, with the reason in the report.
    xgb_rounds, resolution
        XGBoost rounds; rounding of continuous features in the cell key.
    covariates
        Backtest covariates after the origin: ``"forecast"`` (known at the origin) or
        ``"observed"``; see :func:`pipelines.models.backtest.run_backtest`.
    effects
        Whether to estimate the event-study and event-uplift effects.
    large_rows
        Above this many zone-slots, the large-study rule (:mod:`pipelines.models.large`).

    Raises
    ------
    StoreError, InputError
        No cube; no incidents column or no model for all incidents.
    """
    clock = _Stopwatch()
    cube, grain, large, rule = load(store, large_rows=large_rows, weeks=backtest_weeks,
                                     groups=groups, resolution=resolution)  # fmt: skip
    clock.lap("read")
    d = _design(cube, grain=grain, resolution=resolution)
    plan = resolve_exposure(store, d.dz)
    clock.lap("design")
    fits = _require_all(fit_groups(cube, d, groups=groups, min_incidents=min_incidents,
                                   xgb_rounds=xgb_rounds, large=large), store)  # fmt: skip
    clock.lap("fit")
    not_est = not_estimable(fits.glms["all"], d.status)
    extra = _manifest_extra(cube, fits, not_est, resolution, plan, rule)
    irr = irr_frame(fits)
    res = None
    if backtest_weeks > 0:
        options = {"xgb_rounds": xgb_rounds, "resolution": resolution, "covariates": covariates}
        res = _backtest(cube, d, store=store, weeks=backtest_weeks, min_incidents=min_incidents,
                        **options)  # fmt: skip
        clock.lap("backtest")
    extra["downstream"] = downstream(None if res is None else res.evaluation, _fitted(fits))
    found = _effects(cube, fits, d, store=store, not_est=not_est, studies=effects)
    clock.lap("effects")
    save_fit(store, fits, d, extra=extra, irr=irr, backtest=res, effects=found)
    clock.lap("save")
    return FitReport(
        models_dir=str(store.models_dir),
        groups=tuple(fits.glms),
        skipped=fits.skipped,
        not_estimable=not_est,
        evaluation={} if res is None else res.evaluation.to_json(),
        n_effects=found.n_estimable,
        seconds=clock.rounded(),
        exposure={"lines": exposure_lines(plan, extra["elasticity"]), "counts": plan.counts()},
        downstream=extra["downstream"],
        scale={**rule.to_json(), "lines": rule.lines()},
    )
