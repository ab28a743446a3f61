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

This package re-exports their public names lazily (PEP 562: a name's module is imported when the
name is first used), so importing one submodule does not load them all; the modules import each
other by their full path, never from here.
"""

from __future__ import annotations

import importlib
from typing import Any

# design.py is light (numpy, pandas) and holds a function named like its module: importing it
# here binds the package's ``design`` to the function, as users of ``M.design(...)`` expect (a
# submodule imported later would otherwise shadow the lazy name).
from pipelines.models.design import design

#: public name -> the submodule that defines it
_HOME = {
    "CATEGORY_GROUPS": "design",
    "FEATURES": "design",
    "GRAINS": "design",
    "GROUP_KEYWORDS": "design",
    "MIN_INCIDENTS": "design",
    "REF_DOW": "design",
    "REF_HOUR": "design",
    "Cells": "design",
    "build_cells": "design",
    "category_group": "design",
    "cube_categories": "design",
    "design": "design",
    "design_features": "design",
    "exposure_mask": "design",
    "feature_status": "design",
    "group_categories": "design",
    "group_counts": "design",
    "lamps_out_share": "design",
    "numeric": "design",
    "MODELS_DIR": "fit",
    "FitReport": "fit",
    "cube_columns_needed": "fit",
    "fit_all": "fit",
    "GLMFit": "glm",
    "SparseGroupError": "glm",
    "fit_glm": "glm",
    "PREDICT_COLUMNS": "predictor",
    "Predictor": "predictor",
    "load_predictor": "predictor",
    "predictive_cdf": "predictor",
    "predictive_quantiles": "predictor",
    "save_models": "predictor",
    "XGB_ROUNDS": "design",
    "XGBFit": "xgb",
    "fit_xgb": "xgb",
}


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its submodule on first use."""
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


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
