"""Predictions from the fitted models: expected counts, predictive intervals, persistence.

:class:`Predictor` gives expected incidents and Poisson/NB2 plug-in predictive intervals per row
and group; :func:`save_models` and :func:`load_predictor` write and read ``store/models/``.
Its default model is the one ``vigie fit`` chose by backtest (``downstream`` in models.json,
:mod:`pipelines.models.selection`); zones without presence get the exposure of the fit's plan
(:mod:`pipelines.models.exposure`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy import stats

from features.errors import InputError, StoreError
from features.store import Store
from features.text import slug
from pipelines.models.design import FEATURES, design
from pipelines.models.exposure import ExposurePlan
from pipelines.models.glm import GLMFit
from pipelines.models.history import WeeklyHistory
from pipelines.models.scoring import count_pmfs
from pipelines.models.xgb import XGBFit
from pipelines.models.zone_glm import ZoneGLMFit

MODEL_KINDS = ("zone_glm", "glm", "xgb")


# --------------------------------------------------------------------------------------------
# predictive intervals
# --------------------------------------------------------------------------------------------
#: the pmf recursion reads quantiles up to this count (beyond it: scipy's ppf)
_RECURSION_TOP = 60


def _recursion_quantiles(m: np.ndarray, alpha: float, qs: np.ndarray) -> np.ndarray:
    """The smallest ``k`` with ``F(k) >= q``, by accumulating the pmf from 0 (NaN when beyond
    :data:`_RECURSION_TOP`)."""
    out = np.full((len(m), len(qs)), np.nan)
    cdf = np.zeros(len(m))
    for k, p in count_pmfs(m, alpha, _RECURSION_TOP):
        cdf += p
        hit = np.isnan(out) & (cdf[:, None] >= qs[None, :])
        out[hit] = k
        if not np.isnan(out).any():
            break
    return out


def _exact(v: np.ndarray, m: np.ndarray, alpha: float, q: float) -> np.ndarray:
    """Move a candidate quantile to the smallest ``k`` with ``F(k) >= q`` by scipy's CDF (the
    accumulated pmf may differ from it in the last digits)."""

    def cdf(k: np.ndarray) -> np.ndarray:
        if alpha > 0:
            n = 1.0 / alpha
            return stats.nbinom.cdf(k, n, n / (n + m))
        return stats.poisson.cdf(k, m)

    v = np.where(cdf(v) < q, v + 1, v)
    return np.where((v > 0) & (cdf(v - 1) >= q), v - 1, v)


def predictive_quantiles(mean: np.ndarray, alpha: float, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of the Poisson (alpha = 0) or NB2 predictive distribution of counts.

    Returns an array of shape (len(mean), len(qs)); NaN where the mean is NaN. Parameter
    uncertainty is not propagated (plug-in predictive distribution). The quantiles of every
    level come from one pass over the pmf (:func:`pipelines.models.scoring.count_pmfs`),
    checked against scipy's CDF; the rare rows whose quantiles lie beyond
    :data:`_RECURSION_TOP` use scipy's ppf.
    """
    m = np.asarray(mean, dtype=np.float64)
    out = np.full((len(m), len(qs)), np.nan)
    ok = np.isfinite(m)
    mm = np.clip(m[ok], 0.0, None)
    qa = np.asarray(qs, dtype=np.float64)
    vals = np.full((len(mm), len(qa)), np.nan)
    small = mm + 6.0 * np.sqrt(mm * (1.0 + alpha * mm)) < _RECURSION_TOP  # most forecasts
    vals[small] = _recursion_quantiles(mm[small], alpha, qa)
    for j, q in enumerate(qa):
        far = np.isnan(vals[:, j])
        if far.any():
            if alpha > 0:
                n = 1.0 / alpha
                with np.errstate(divide="ignore", invalid="ignore"):
                    vals[far, j] = stats.nbinom.ppf(q, n, n / (n + mm[far]))
            else:
                vals[far, j] = stats.poisson.ppf(q, mm[far])
        near = ~far & (mm > 0)
        vals[near, j] = _exact(vals[near, j], mm[near], alpha, q)
        out[ok, j] = np.where(mm > 0, vals[:, j], 0.0)
    return out


def predictive_cdf(y: np.ndarray, mean: np.ndarray, alpha: float) -> np.ndarray:
    """CDF P(Y <= y) of the Poisson/NB2 predictive distribution (for coverage checks)."""
    m = np.clip(np.asarray(mean, dtype=np.float64), 1e-300, None)
    if alpha > 0:
        n = 1.0 / alpha
        return stats.nbinom.cdf(y, n, n / (n + m))
    return stats.poisson.cdf(y, m)


# --------------------------------------------------------------------------------------------
# predictor
# --------------------------------------------------------------------------------------------
#: the manifest of the fitted models, in their folder
MANIFEST = Path(Store.MODELS_JSON).name
PREDICT_COLUMNS = ["zone_id", "hour", "group", "mean", "lower80", "upper80", "lower95", "upper95"]


class Predictor:
    """Expected incident counts and predictive intervals from fitted models.

    Parameters
    ----------
    glms
        Group -> :class:`GLMFit` (the reported family of each group).
    xgbs
        Group -> :class:`XGBFit`.
    grain
        Grain of the training data.
    features
        Features of the training design (absent ones are built as 0).
    zone_glms
        Group -> :class:`ZoneGLMFit` (the forecasting model).
    plan
        The fit's exposure plan (None: presence, then present_baseline, only).
    default_model
        The model :meth:`predict` uses unless told (``downstream`` of models.json).
    """

    def __init__(
        self,
        glms: dict[str, GLMFit],
        xgbs: dict[str, XGBFit] | None = None,
        *,
        grain: str = "1h",
        features: Sequence[str] = FEATURES,
        zone_glms: dict[str, ZoneGLMFit] | None = None,
        plan: ExposurePlan | None = None,
        default_model: str = "glm",
    ) -> None:
        self.glms = dict(glms)
        self.xgbs = dict(xgbs or {})
        self.zone_glms = dict(zone_glms or {})
        self.grain = grain
        self.features = tuple(features)
        self.plan = plan
        self.default_model = default_model

    @property
    def groups(self) -> list[str]:
        return list(self.glms)

    def design(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The design of a cube-like frame; missing presence falls back on present_baseline."""
        dz = design(frame, grain=self.grain, features=self.features)
        if "present_baseline" in frame.columns:
            e = dz["exposure"].to_numpy(dtype=np.float64)
            b = pd.to_numeric(frame["present_baseline"], errors="coerce").to_numpy(np.float64)
            dz["exposure"] = np.where(np.isfinite(e), e, b)
        if self.plan is not None:
            dz["exposure"], dz["presence_imputed"] = self.plan.apply(
                dz["zone_id"].to_numpy(), dz["exposure"].to_numpy(np.float64)
            )
        return dz

    def _model(self, group: str, model: str):
        if model == "zone_glm":
            if group not in self.zone_glms:
                raise InputError(
                    f"no zone rate model for group {group!r}; fitted groups are "
                    f"{', '.join(self.zone_glms) or 'none'}."
                )
            return self.zone_glms[group]
        if model == "glm":
            if group not in self.glms:
                raise InputError(
                    f"no rate model for group {group!r}; fitted groups are "
                    f"{', '.join(self.glms) or 'none'}."
                )
            return self.glms[group]
        if model == "xgb":
            if group not in self.xgbs:
                raise InputError(
                    f"no XGBoost model for group {group!r}; fitted groups are "
                    f"{', '.join(self.xgbs) or 'none'}."
                )
            return self.xgbs[group]
        raise InputError(f"model must be one of {', '.join(MODEL_KINDS)}, got {model!r}.")

    def _default(self, group: str) -> str:
        """The default model of a group: ``default_model`` where fitted, else the GLM."""
        fitted: dict[str, dict[str, Any]] = {
            "zone_glm": self.zone_glms, "glm": self.glms, "xgb": self.xgbs,
        }  # fmt: skip
        return self.default_model if group in fitted.get(self.default_model, {}) else "glm"

    def predict(
        self,
        frame: pd.DataFrame,
        *,
        groups: list[str] | None = None,
        model: str | None = None,
    ) -> pd.DataFrame:
        """Expected incidents and 80 %/95 % predictive intervals per row and group.

        Parameters
        ----------
        frame
            Cube-like rows: zone_id, hour, present, local_hour, dow, dark, lamps, lamps_out,
            event_attendance, precipitation_mm, ridership_entries, holiday, school_holiday;
            missing optional columns count as absent (0). A missing ``present`` falls back on
            ``present_baseline`` when given; otherwise the row's figures are NaN.
        groups
            Category groups (default: every fitted group; ``all`` is the total).
        model
            ``"zone_glm"`` (forecasting model), ``"glm"`` (rate model) or ``"xgb"``
            (XGBoost); default: the model chosen by backtest (``default_model``).

        Returns
        -------
        pandas.DataFrame
            One row per input row and group: zone_id, hour, group, mean, lower80, upper80,
            lower95, upper95 (plug-in Poisson/NB2 predictive quantiles 10/90 % and 2.5/97.5 %).
        """
        dz = self.design(frame)
        parts = []
        for g in groups or self.groups:
            m = self._model(g, model or self._default(g))
            mean = m.mean(dz)
            q = predictive_quantiles(mean, m.alpha, (0.1, 0.9, 0.025, 0.975))
            parts.append(
                pd.DataFrame(
                    {
                        "zone_id": dz["zone_id"].to_numpy(),
                        "hour": dz["hour"].array,
                        "group": g,
                        "mean": mean,
                        "lower80": q[:, 0],
                        "upper80": q[:, 1],
                        "lower95": q[:, 2],
                        "upper95": q[:, 3],
                    }
                )
            )
        if not parts:
            return pd.DataFrame(columns=PREDICT_COLUMNS)
        return pd.concat(parts, ignore_index=True)

    def explain(self, frame: pd.DataFrame, *, group: str = "all") -> pd.DataFrame:
        """XGBoost per-feature contributions (log scale) for each row of ``frame``.

        Returns zone_id, hour and one column per model input, plus ``bias`` and
        ``log_exposure``; exp of the row sum is the XGBoost expected count.
        """
        m = self._model(group, "xgb")
        dz = self.design(frame)
        c = m.contributions(dz)
        c.insert(0, "hour", dz["hour"].array)
        c.insert(0, "zone_id", dz["zone_id"].to_numpy())
        return c.reset_index(drop=True)

    def irr(self, group: str = "all") -> pd.DataFrame:
        """IRR table of a group's rate model (see :meth:`GLMFit.irr_table`)."""
        return self._model(group, "glm").irr_table()


def save_models(
    root,
    glms: dict[str, GLMFit],
    xgbs: dict[str, XGBFit],
    *,
    extra: dict[str, Any] | None = None,
    grain: str = "1h",
    features: Sequence[str] = FEATURES,
    zone_glms: dict[str, ZoneGLMFit] | None = None,
) -> dict[str, Any]:
    """Write GLMs and zone rate models (JSON: terms, params, covariance), boosters (XGBoost
    JSON) and a manifest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "grain": grain,
        "features": list(features),
        "glm": {},
        "xgb": {},
        "zone_glm": {},
        **(extra or {}),
    }
    for g, zm in (zone_glms or {}).items():
        name = f"zone_glm_{slug(g)}.json"
        (root / name).write_text(json.dumps(zm.to_dict()))
        manifest["zone_glm"][g] = name
    for g, m in glms.items():
        name = f"glm_{slug(g)}.json"
        (root / name).write_text(json.dumps(m.to_dict(), indent=1))
        manifest["glm"][g] = name
    for g, xm in xgbs.items():
        name = f"xgb_{slug(g)}.json"
        xm.booster.save_model(str(root / name))
        manifest["xgb"][g] = {
            "file": name,
            "columns": list(xm.columns),
            "alpha": xm.alpha,
            "offset": xm.offset,
            "n_rows": xm.n_rows,
            "n_incidents": xm.n_incidents,
            "categories": None if xm.categories is None else list(xm.categories),
            "history": None,
        }
        if xm.history is not None:  # the zone features' weekly counts
            hist = f"xgb_{slug(g)}_history.json"
            (root / hist).write_text(json.dumps(xm.history.to_json()))
            manifest["xgb"][g]["history"] = hist
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def load_predictor(store) -> Predictor:
    """The :class:`Predictor` saved by ``vigie fit`` in ``store/models/``.

    Raises
    ------
    StoreError
        When the store has no fitted models.
    """
    root = store.models_dir
    man_path = store.root / Store.MODELS_JSON
    if not man_path.exists():
        raise StoreError(
            f"{store.root}: no fitted models (no models/models.json); run "
            f"`vigie fit --store {store.root}` first."
        )
    man = json.loads(man_path.read_text())
    glms = {g: GLMFit.from_dict(json.loads((root / f).read_text())) for g, f in man["glm"].items()}
    xgbs = {}
    for g, spec in man.get("xgb", {}).items():
        b = xgb.Booster()
        b.load_model(str(root / spec["file"]))
        xgbs[g] = XGBFit(
            group=g,
            booster=b,
            columns=tuple(spec["columns"]),
            alpha=float(spec["alpha"]),
            n_rows=int(spec["n_rows"]),
            n_incidents=int(spec["n_incidents"]),
            grain=man["grain"],
            categories=None if spec.get("categories") is None else tuple(spec["categories"]),
            offset=float(spec.get("offset", 0.0)),
            history=None
            if not spec.get("history")
            else WeeklyHistory.from_json(json.loads((root / spec["history"]).read_text())),
        )
    zone_glms = {
        g: ZoneGLMFit.from_dict(json.loads((root / f).read_text()))
        for g, f in (man.get("zone_glm") or {}).items()
    }
    return Predictor(
        glms, xgbs, grain=man["grain"], features=man["features"], zone_glms=zone_glms,
        plan=ExposurePlan.from_json(man.get("exposure")),
        default_model=(man.get("downstream") or {}).get("model", "glm"),
    )  # fmt: skip
