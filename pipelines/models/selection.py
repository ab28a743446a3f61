"""Which forecast downstream code uses, and how each model compares with the baselines.

The rule: the Predictor's default model (:func:`pipelines.models.predictor.load_predictor`,
used by the signals and the event brief) is the fitted model with the lowest mean Poisson
deviance in the rolling-origin backtest (a strictly proper score for counts, Gneiting & Raftery
2007), among the models the Predictor can serve (:data:`SERVABLE`). Without a backtest it is
:data:`DEFAULT`. Each fitted model is compared with the simple forecasts: its deviance against
the better of ``seasonal_naive_8w`` and ``recent_rate_8w``, its PAI at 5 % against the
``recent_hotspot`` map's; a model that does not beat a baseline is said to, not hidden.

References
----------
Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
estimation. *JASA* 102(477), 359-378.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.models.results import ModelScore

#: models the Predictor can serve, in order of preference on ties
SERVABLE = ("zone_glm", "glm", "xgb")
#: the downstream model when no backtest ran
DEFAULT = "zone_glm"
#: baselines whose better deviance is the yardstick
DEVIANCE_YARDSTICK = ("seasonal_naive_8w", "recent_rate_8w")
HOTSPOT = "recent_hotspot"


def _dev(s: ModelScore | None) -> float | None:
    v = None if s is None else s.poisson_deviance
    return None if v is None or v != v else float(v)


def _pai5(s: ModelScore | None) -> float | None:
    v = None if s is None else s.pai.get("5%")
    return None if v is None or v != v else float(v)


def versus_baselines(models: Mapping[str, ModelScore]) -> dict[str, dict[str, Any]]:
    """Each fitted model against the baselines (see the module docstring).

    Returns
    -------
    dict
        Model -> ``deviance_ratio`` (None without a yardstick), ``yardstick`` (the baseline it
        is), ``pai5_ratio`` (None without the hotspot map) and ``beats`` (baseline -> lower
        deviance).
    """
    base = {b: _dev(models.get(b)) for b in models if b not in SERVABLE}
    yard = {b: base[b] for b in DEVIANCE_YARDSTICK if base.get(b) is not None}
    best = min(yard, key=lambda b: yard[b]) if yard else None  # type: ignore[arg-type,return-value]
    hot = _pai5(models.get(HOTSPOT))
    out: dict[str, dict[str, Any]] = {}
    for m in (m for m in SERVABLE if m in models):
        d = _dev(models[m])
        p = _pai5(models[m])
        out[m] = {
            "deviance_ratio": None if d is None or best is None else d / yard[best],  # type: ignore[operator]
            "yardstick": best,
            "pai5_ratio": None if p is None or not hot else p / hot,
            "beats": {b: (d is not None and v is not None and d < v) for b, v in base.items()},
        }
    return out


def choose_downstream(models: Mapping[str, ModelScore]) -> tuple[str, str]:
    """The downstream model and why (module docstring)."""
    scored = {m: _dev(models.get(m)) for m in SERVABLE}
    ok = {m: d for m, d in scored.items() if d is not None}
    if not ok:
        return DEFAULT, "no backtest score: the default forecasting model"
    best = min(ok, key=lambda m: (ok[m], SERVABLE.index(m)))
    why = f"lowest backtest deviance of the fitted models ({ok[best]:.4f}"
    others = [f"{m} {d:.4f}" for m, d in ok.items() if m != best]
    why += (" against " + ", ".join(others) if others else "") + ")"
    beaten_by = [
        b for b, s in models.items() if b not in SERVABLE and (_dev(s) or float("inf")) < ok[best]
    ]
    if beaten_by:
        why += f"; it does not beat {', '.join(beaten_by)}"
    return best, why
