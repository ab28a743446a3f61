"""Incident rate models with the present population as exposure (``vigie fit``).

The subject in modules, in the order of the flow:

* :mod:`pipelines.models.design` -- category groups, the model features, cells of rows with
  identical covariates;
* :mod:`pipelines.models.glm` -- Poisson and negative-binomial rate GLMs (IRRs);
* :mod:`pipelines.models.xgb` -- XGBoost ``count:poisson`` with TreeSHAP contributions;
* :mod:`pipelines.models.predictor` -- predictive intervals, :class:`Predictor`, persistence;
* :mod:`pipelines.models.backtest` -- the rolling-origin backtest;
* :mod:`pipelines.models.effects` -- event-study and event-uplift effects;
* :mod:`pipelines.models.fit` -- :func:`fit_all`, what ``vigie fit`` runs.

This package only re-exports their public names; its modules import each other by their full
path, never from here.
"""

from pipelines.models.design import (
    CATEGORY_GROUPS,
    FEATURES,
    GRAINS,
    GROUP_KEYWORDS,
    MIN_INCIDENTS,
    REF_DOW,
    REF_HOUR,
    Cells,
    build_cells,
    category_group,
    cube_categories,
    design,
    design_features,
    exposure_mask,
    feature_status,
    group_categories,
    group_counts,
    lamps_out_share,
    numeric,
)
from pipelines.models.fit import MODELS_DIR, FitReport, cube_columns_needed, fit_all
from pipelines.models.glm import GLMFit, SparseGroupError, fit_glm
from pipelines.models.predictor import (
    PREDICT_COLUMNS,
    Predictor,
    load_predictor,
    predictive_cdf,
    predictive_quantiles,
    save_models,
)
from pipelines.models.xgb import XGB_ROUNDS, XGBFit, fit_xgb

__all__ = [
    "CATEGORY_GROUPS",
    "FEATURES",
    "GRAINS",
    "GROUP_KEYWORDS",
    "MIN_INCIDENTS",
    "MODELS_DIR",
    "PREDICT_COLUMNS",
    "REF_DOW",
    "REF_HOUR",
    "XGB_ROUNDS",
    "Cells",
    "FitReport",
    "GLMFit",
    "Predictor",
    "SparseGroupError",
    "XGBFit",
    "build_cells",
    "category_group",
    "cube_categories",
    "cube_columns_needed",
    "design",
    "design_features",
    "exposure_mask",
    "feature_status",
    "fit_all",
    "fit_glm",
    "fit_xgb",
    "group_categories",
    "group_counts",
    "lamps_out_share",
    "load_predictor",
    "numeric",
    "predictive_cdf",
    "predictive_quantiles",
    "save_models",
]
