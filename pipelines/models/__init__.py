"""Incident rate models with the present population as exposure.

Two families of models are fitted on the zone x slot cube, per group of incident categories:

* **Rate models** (statsmodels GLMs, log link, ``exposure=`` the people present): Poisson, and
  negative binomial (NB2) when the counts are over-dispersed. Their coefficients are reported as
  incidence-rate ratios (IRR) with 95 % Wald intervals for the model features of
  ``docs/architecture.md`` (dark, dark_lamps_out, event_k, rain, transit_k, holiday,
  school_holiday, hour of day, day of week).
* **A predictive model**: gradient-boosted trees (XGBoost, objective ``count:poisson``) on the same
  features, with ``log(present)`` as base margin, explained by per-feature contributions
  (``pred_contribs=True``, Lundberg & Lee's TreeSHAP).

Scale
-----
A Poisson likelihood with covariates shared by many rows only depends on the per-cell sums of
counts and exposures: rows with identical covariates are aggregated into *cells* (sum of
incidents, sum of person-slots) before fitting, which is exact for the Poisson GLM and for the
Poisson objective of XGBoost. Continuous features (dark_lamps_out, event_k, transit_k) are
rounded to ``resolution`` (default 0.05 of their unit: 50 attendees, 50 entries, 0.5 % of lamps)
in the cell key, a negligible approximation that keeps a metropolis (17.5 M zone-hours) in a few
hundred thousand cells. The negative binomial is fitted on the same cells as a quasi-likelihood
with the exact variance of a sum of NB2 rows sharing a rate, ``M (1 + alpha s M)`` with
``s = sum(E_i^2) / (sum E_i)^2``, and ``alpha`` is the row-level dispersion, estimated by maximum
likelihood at the fitted means (Lawless 1987) and updated with them; the Cameron-Trivedi
auxiliary regression gives the over-dispersion test that chooses the reported family.

Rows whose presence is missing or zero carry no exposure: they are left out of fitting and
counted in the fit's ``dropped`` figures.

References
----------
McCullagh, P. & Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed. Chapman & Hall.
Liang, K.-Y. & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika* 73(1), 13-22.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
Cameron, A. C. & Trivedi, P. K. (1990). Regression-based tests for overdispersion in the Poisson
model. *Journal of Econometrics* 46(3), 347-364.
Hilbe, J. M. (2011). *Negative Binomial Regression*, 2nd ed. Cambridge University Press.
Lawless, J. F. (1987). Negative binomial and mixed Poisson regression. *Canadian Journal of
Statistics* 15(3), 209-225.
Chen, T. & Guestrin, C. (2016). XGBoost: a scalable tree boosting system. *KDD '16*, 785-794.
Lundberg, S. M. et al. (2020). From local explanations to global understanding with explainable
AI for trees. *Nature Machine Intelligence* 2, 56-67.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.errors import InputError, StoreError
from features.jsonio import json_safe
from features.text import slug

log = logging.getLogger(__name__)

#: Default grouping of incident category slugs (cube columns ``inc_<slug>``). A slug that is not
#: listed is matched by keyword (:data:`GROUP_KEYWORDS`), else it falls in ``other``; the group
#: ``all`` is the total of every category (the cube's ``incidents`` column).
CATEGORY_GROUPS: dict[str, list[str]] = {
    "violence": [
        "assault",
        "battery",
        "homicide",
        "robbery",
        "sexual_assault",
        "criminal_sexual_assault",
        "kidnapping",
        "weapons_violation",
        "domestic_violence",
        "violence",
        "fight",
        "brawl",
        "agression",
        "atteinte_personne",
        "atteinte_aux_personnes",
        "coups_et_blessures",
        "rixe",
        "vol_avec_violence",
    ],
    "property": [
        "theft",
        "burglary",
        "motor_vehicle_theft",
        "vehicle_theft",
        "pickpocketing",
        "pickpocket",
        "shoplifting",
        "criminal_damage",
        "vandalism",
        "arson",
        "deception",
        "fraud",
        "vol",
        "cambriolage",
        "degradation",
    ],
    "disorder": [
        "disorder",
        "public_disorder",
        "public_peace_violation",
        "noise",
        "nuisance",
        "public_intoxication",
        "drunkenness",
        "intoxication",
        "narcotics",
        "drugs",
        "liquor_law_violation",
        "trespass",
        "criminal_trespass",
        "loitering",
        "harassment",
        "ivresse",
        "tapage",
        "trouble_ordre_public",
        "stupefiants",
    ],
    "fire_rescue_medical": [
        "fire",
        "rescue",
        "medical",
        "ems",
        "injury",
        "fall",
        "cardiac",
        "overdose",
        "malaise",
        "secours",
        "incendie",
        "secours_a_personne",
    ],
    "road": [
        "traffic",
        "traffic_accident",
        "road_accident",
        "road",
        "accident",
        "collision",
        "crash",
        "accident_de_la_route",
        "accident_circulation",
    ],
}

#: Keywords matched inside unknown slugs, in this order.
GROUP_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("assault", "violence"),
    ("battery", "violence"),
    ("robbery", "violence"),
    ("homicide", "violence"),
    ("violen", "violence"),
    ("weapon", "violence"),
    ("theft", "property"),
    ("burglar", "property"),
    ("damage", "property"),
    ("vandal", "property"),
    ("pickpocket", "property"),
    ("narcotic", "disorder"),
    ("drug", "disorder"),
    ("drunk", "disorder"),
    ("intoxic", "disorder"),
    ("disorder", "disorder"),
    ("noise", "disorder"),
    ("fire", "fire_rescue_medical"),
    ("medical", "fire_rescue_medical"),
    ("rescue", "fire_rescue_medical"),
    ("injur", "fire_rescue_medical"),
    ("traffic", "road"),
    ("accident", "road"),
    ("collision", "road"),
    ("crash", "road"),
)

#: The named model features, in report order (hour of day and day of week come on top).
FEATURES: tuple[str, ...] = (
    "dark",
    "dark_lamps_out",
    "event_k",
    "rain",
    "transit_k",
    "holiday",
    "school_holiday",
)
#: Features with a continuous value (rounded to ``resolution`` in the cell key).
CONTINUOUS: frozenset[str] = frozenset({"dark_lamps_out", "event_k", "transit_k"})
#: Cube columns each feature needs, and the source they come from.
NEEDS: dict[str, tuple[str, ...]] = {
    "dark": ("dark",),
    "dark_lamps_out": ("lamps", "lamps_out"),
    "event_k": ("event_attendance",),
    "rain": ("precipitation_mm",),
    "transit_k": ("ridership_entries",),
    "holiday": ("holiday",),
    "school_holiday": ("school_holiday",),
}
SOURCE_OF: dict[str, str] = {
    "dark": "the calendar (zones and sunrise/sunset)",
    "dark_lamps_out": "lamps and lighting_faults",
    "event_k": "events",
    "rain": "weather",
    "transit_k": "ridership",
    "holiday": "the calendar (public holidays)",
    "school_holiday": "the calendar (school holidays)",
}
REF_HOUR = 12
REF_DOW = 0
GRAINS = ("1h", "1d")
#: A group with fewer incidents than this in its training rows is not modelled.
MIN_INCIDENTS = 30

MODELS_DIR = "models"
_XGB_PARAMS: dict[str, Any] = {
    "objective": "count:poisson",
    "eta": 0.1,
    "max_depth": 5,
    "min_child_weight": 5.0,
    "lambda": 1.0,
    "tree_method": "hist",
    "max_bin": 128,
    # one thread: OpenMP threads spin-wait on a shared, busy machine (16x slower measured)
    "nthread": 1,
    "verbosity": 0,
}
XGB_ROUNDS = 200


# --------------------------------------------------------------------------------------------
# categories and design
# --------------------------------------------------------------------------------------------
def category_group(category: str) -> str:
    """The group of one category slug: :data:`CATEGORY_GROUPS`, then keywords, else ``other``."""
    s = slug(category)
    for group, members in CATEGORY_GROUPS.items():
        if s in members:
            return group
    for key, group in GROUP_KEYWORDS:
        if key in s:
            return group
    return "other"


def cube_categories(columns: Iterable[str]) -> list[str]:
    """Category slugs of a cube, from its ``inc_<slug>`` columns."""
    return [c[4:] for c in columns if c.startswith("inc_")]


def group_categories(categories: Iterable[str]) -> dict[str, list[str]]:
    """Category slugs per group, for the categories present; ``all`` holds every category.

    Groups without any category are left out; the order follows :data:`CATEGORY_GROUPS`.
    """
    cats = list(categories)
    out: dict[str, list[str]] = {"all": cats}
    for group in [*CATEGORY_GROUPS, "other"]:
        members = [c for c in cats if category_group(c) == group]
        if members:
            out[group] = members
    return out


def group_counts(cube: pd.DataFrame, categories: Sequence[str] | None) -> np.ndarray:
    """Incident counts of a group of categories per cube row (``None``: all incidents)."""
    if categories is None:
        if "incidents" in cube.columns:
            return cube["incidents"].fillna(0).to_numpy(dtype=np.float64)
        categories = cube_categories(cube.columns)
    y = np.zeros(len(cube), dtype=np.float64)
    for c in categories:
        col = f"inc_{c}"
        if col not in cube.columns:
            raise InputError(
                f"the cube has no column {col!r} for incident category {c!r}; "
                f"known categories are {', '.join(cube_categories(cube.columns)) or 'none'}."
            )
        y += cube[col].fillna(0).to_numpy(dtype=np.float64)
    return y


def feature_status(columns: Iterable[str], *, grain: str = "1h") -> dict[str, str | None]:
    """Which model features a cube can give: ``None`` when available, else why not.

    Parameters
    ----------
    columns
        The cube's columns.
    grain
        ``"1h"`` or ``"1d"``. At daily grain ``dark`` is not a feature (a day is not dark).
    """
    cols = set(columns)
    out: dict[str, str | None] = {}
    for f in FEATURES:
        missing = [c for c in NEEDS[f] if c not in cols]
        if f == "dark" and grain == "1d":
            out[f] = "not a feature at daily grain (a day has both day and night)"
        elif missing:
            out[f] = f"source absent: needs {SOURCE_OF[f]} (cube column {', '.join(missing)})"
        elif f == "dark_lamps_out" and grain == "1h" and "dark" not in cols:
            out[f] = "needs the dark column of the cube"
        else:
            out[f] = None
    return out


def numeric(cube: pd.DataFrame, col: str, fill: float = 0.0) -> np.ndarray:
    """A cube column as float64 (unparseable values NaN); ``fill`` everywhere when absent."""
    if col not in cube.columns:
        return np.full(len(cube), fill, dtype=np.float64)
    return pd.to_numeric(cube[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def lamps_out_share(cube: pd.DataFrame) -> np.ndarray:
    """Share of the zone's lamps out per row: ``lamps_out / lamps``, at most 1, 0 without lamps
    (missing values count as 0)."""
    lamps = np.nan_to_num(numeric(cube, "lamps"))
    out = np.nan_to_num(numeric(cube, "lamps_out"))
    return np.divide(np.minimum(out, lamps), lamps, out=np.zeros(len(cube)), where=lamps > 0)


def design(
    cube: pd.DataFrame,
    *,
    grain: str = "1h",
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The model features of ``docs/architecture.md`` from a cube (or cube-like frame).

    Parameters
    ----------
    cube
        Rows of the cube: zone_id, hour, present, local_hour, dow and the feature columns
        (dark, lamps, lamps_out, event_attendance, precipitation_mm, ridership_entries, holiday,
        school_holiday). Columns of an absent source may be missing.
    grain
        ``"1h"`` or ``"1d"``. At daily grain hour of day is constant and ``dark`` is not a
        feature; ``dark_lamps_out`` is then ``10 x lamps_out / lamps`` (the day's nights).
    features
        Features to build. ``None``: every feature the columns allow (:func:`feature_status`).
        When given, a feature whose columns are missing is built as 0 (absent), which is what a
        prediction frame needs.

    Returns
    -------
    pandas.DataFrame
        Same row order as ``cube``: zone_id, hour, exposure (present; NaN when missing, never
        imputed), local_hour (int8, 0 at daily grain), dow (int8), then one float32 column per
        feature: dark (0/1), dark_lamps_out (dark x 10 x lamps_out / lamps, 0 without lamps),
        event_k (attendance / 1000), rain (precipitation_mm >= 1), transit_k (entries / 1000),
        holiday, school_holiday (0/1). Missing feature values count as 0.

    Raises
    ------
    InputError
        When ``grain`` is unknown or local_hour/dow and hour are all missing.
    """
    if grain not in GRAINS:
        raise InputError(f"grain must be one of {', '.join(GRAINS)}, got {grain!r}.")
    if features is None:
        features = [
            f for f, why in feature_status(cube.columns, grain=grain).items() if why is None
        ]
    else:
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise InputError(
                f"unknown model feature(s) {', '.join(map(repr, unknown))}; "
                f"expected some of {', '.join(FEATURES)}."
            )
    n = len(cube)
    out: dict[str, Any] = {}
    out["zone_id"] = (
        cube["zone_id"].astype(str).to_numpy() if "zone_id" in cube else np.full(n, "", object)
    )
    out["hour"] = cube["hour"].array if "hour" in cube else np.full(n, np.datetime64("NaT"))
    present = numeric(cube, "present", np.nan)
    out["exposure"] = present
    if "local_hour" in cube.columns and "dow" in cube.columns:
        lh = numeric(cube, "local_hour")
        dw = numeric(cube, "dow")
    elif "hour" in cube.columns:
        h = pd.DatetimeIndex(pd.to_datetime(cube["hour"], utc=True))
        lh = h.hour.to_numpy(dtype=np.float64)
        dw = h.dayofweek.to_numpy(dtype=np.float64)
    else:
        raise InputError("a model frame needs local_hour and dow (or hour) columns.")
    if grain == "1d":
        lh = np.zeros(n)
    out["local_hour"] = np.nan_to_num(lh).astype(np.int8)
    out["dow"] = np.nan_to_num(dw).astype(np.int8)
    dark = np.nan_to_num(numeric(cube, "dark")) > 0
    for f in features:
        if f == "dark":
            v = dark.astype(np.float64)
        elif f == "dark_lamps_out":
            v = 10.0 * lamps_out_share(cube) * (dark if grain == "1h" else 1.0)
        elif f == "event_k":
            v = np.nan_to_num(numeric(cube, "event_attendance")) / 1000.0
        elif f == "rain":
            v = (np.nan_to_num(numeric(cube, "precipitation_mm")) >= 1.0).astype(np.float64)
        elif f == "transit_k":
            v = np.nan_to_num(numeric(cube, "ridership_entries")) / 1000.0
        else:  # holiday, school_holiday
            v = (np.nan_to_num(numeric(cube, f)) > 0).astype(np.float64)
        out[f] = v.astype(np.float32)
    return pd.DataFrame(out, index=cube.index)


def design_features(dz: pd.DataFrame) -> list[str]:
    """The model features a design frame holds, in :data:`FEATURES` order."""
    return [f for f in FEATURES if f in dz.columns]


def exposure_mask(dz: pd.DataFrame) -> np.ndarray:
    """Rows usable for fitting: presence known and positive."""
    e = dz["exposure"].to_numpy(dtype=np.float64)
    return np.isfinite(e) & (e > 0)


# --------------------------------------------------------------------------------------------
# cells: rows with identical covariates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cells:
    """Rows grouped by identical (rounded) covariates.

    Attributes
    ----------
    keys
        One row per cell: local_hour, dow and the feature values (rounded).
    cell
        Cell index of every input row (int64).
    features
        The features in the key.
    """

    keys: pd.DataFrame
    cell: np.ndarray
    features: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.keys)

    def sums(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per-cell sums of a row array (rows outside ``mask`` ignored)."""
        w = values if mask is None else np.where(mask, values, 0.0)
        return np.bincount(self.cell, weights=w, minlength=self.n)


def build_cells(dz: pd.DataFrame, *, features: Sequence[str], resolution: float = 0.05) -> Cells:
    """Group design rows into cells of identical covariates (continuous ones rounded).

    Parameters
    ----------
    dz
        Output of :func:`design`.
    features
        Features in the key (hour of day and day of week always are).
    resolution
        Rounding step of the continuous features; 0 keeps them exact.
    """
    cols: dict[str, np.ndarray] = {
        "local_hour": dz["local_hour"].to_numpy(),
        "dow": dz["dow"].to_numpy(),
    }
    for f in features:
        v = dz[f].to_numpy(dtype=np.float64)
        if f in CONTINUOUS and resolution > 0:
            v = np.round(v / resolution) * resolution
        cols[f] = v
    code = np.zeros(len(dz), dtype=np.int64)
    for v in cols.values():
        c, uniq = pd.factorize(v, sort=False)
        code, _ = pd.factorize(code * np.int64(len(uniq)) + c, sort=False)
    cell = code.astype(np.int64)
    n = int(cell.max()) + 1 if len(cell) else 0
    first = np.full(n, -1, dtype=np.int64)
    # first row of each cell: scatter in reverse so the smallest index wins
    idx = np.arange(len(cell) - 1, -1, -1)
    first[cell[idx]] = idx
    keys = pd.DataFrame({k: v[first] for k, v in cols.items()})
    return Cells(keys=keys, cell=cell, features=tuple(features))


def _terms(features: Sequence[str], hours: Sequence[int], dows: Sequence[int]) -> list[str]:
    ref_h = REF_HOUR if REF_HOUR in hours else (min(hours) if hours else REF_HOUR)
    ref_d = REF_DOW if REF_DOW in dows else (min(dows) if dows else REF_DOW)
    return (
        ["Intercept", *features]
        + [f"hour_{h}" for h in hours if h != ref_h]
        + [f"dow_{d}" for d in dows if d != ref_d]
    )


def _matrix(frame: pd.DataFrame, terms: Sequence[str]) -> np.ndarray:
    """Dense design matrix (float64) of ``terms`` for rows of a design or cell-key frame."""
    n = len(frame)
    X = np.zeros((n, len(terms)), dtype=np.float64)
    lh = frame["local_hour"].to_numpy()
    dw = frame["dow"].to_numpy()
    for j, t in enumerate(terms):
        if t == "Intercept":
            X[:, j] = 1.0
        elif t.startswith("hour_"):
            X[:, j] = lh == int(t[5:])
        elif t.startswith("dow_"):
            X[:, j] = dw == int(t[4:])
        else:
            X[:, j] = frame[t].to_numpy(dtype=np.float64)
    return X


def _linear_predictor(frame: pd.DataFrame, terms: Sequence[str], params: np.ndarray) -> np.ndarray:
    """``_matrix(frame, terms) @ params`` without the dense matrix (one pass per feature).

    Hour-of-day and day-of-week terms are looked up by code; a code without a term (the
    reference level, or one not seen in fitting) contributes 0, as in :func:`_matrix`.
    """
    eta = np.zeros(len(frame), dtype=np.float64)
    levels: dict[str, dict[int, float]] = {"local_hour": {}, "dow": {}}
    for t, b in zip(terms, np.asarray(params, dtype=np.float64), strict=True):
        if t == "Intercept":
            eta += b
        elif t.startswith("hour_"):
            levels["local_hour"][int(t[5:])] = b
        elif t.startswith("dow_"):
            levels["dow"][int(t[4:])] = b
        else:
            eta += b * frame[t].to_numpy(dtype=np.float64)
    for col, coef in levels.items():
        if not coef:
            continue
        code = frame[col].to_numpy().astype(np.int64)
        table = np.zeros(max(coef) + 1)
        table[list(coef)] = list(coef.values())
        inside = (code >= 0) & (code < len(table))
        eta += np.where(inside, table[np.clip(code, 0, len(table) - 1)], 0.0)
    return eta


def _estimable(
    keys: pd.DataFrame,
    exposure: np.ndarray,
    features: Sequence[str],
    hours: list[int],
    dows: list[int],
) -> tuple[list[str], dict[str, str]]:
    """Features that can be estimated on these cells, and why the others cannot.

    A feature is dropped when it is constant over the cells with exposure, or when it does not
    raise the rank of the exposure-weighted Gram matrix of the design (collinear with hour of
    day, day of week or the features before it).
    """
    used = exposure > 0
    k = keys.loc[used]
    why: dict[str, str] = {}
    kept: list[str] = []
    for f in features:
        v = k[f].to_numpy(dtype=np.float64)
        if v.size == 0 or np.nanmax(v) == np.nanmin(v):
            why[f] = f"constant over the fitting rows (always {v[0] if v.size else 0:g})"
            continue
        kept.append(f)
    base = _terms([], hours, dows)
    X = _matrix(k, [*base, *kept])
    w = exposure[used] / exposure[used].mean()
    G = (X * w[:, None]).T @ X
    d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
    G = G / d[:, None] / d[None, :]
    nb = len(base)
    sel = list(range(nb))

    def _rank(idx: list[int]) -> int:
        ev = np.linalg.eigvalsh(G[np.ix_(idx, idx)])
        return int((ev > 1e-9 * max(ev.max(), 1e-300)).sum())

    rank = _rank(sel)
    final: list[str] = []
    for j, f in enumerate(kept):
        r = _rank([*sel, nb + j])
        if r > rank:
            sel.append(nb + j)
            rank = r
            final.append(f)
        else:
            what = "hour of day" if f == "dark" else "hour of day, day of week or another feature"
            why[f] = f"confounded with {what} over the fitting period"
    return final, why


# --------------------------------------------------------------------------------------------
# GLM
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GLMFit:
    """A fitted rate model for one group of categories.

    Attributes
    ----------
    group, family
        The category group and ``"poisson"`` or ``"negbin"``.
    terms, params, cov
        Coefficient names, estimates (log scale) and their covariance.
    alpha
        NB2 dispersion per row (0 for Poisson); used for predictive intervals.
    overdispersion_t
        Cameron-Trivedi t statistic of the over-dispersion test (H0: alpha = 0).
    n_rows, n_cells, n_incidents
        Rows used, cells fitted, incidents in them.
    dropped
        Rows left out: ``missing_presence``, ``zero_presence``.
    not_estimable
        Feature -> why it is not in the model.
    grain, categories
        Grain of the data, and the category slugs summed (``None``: all incidents).
    deviance, pearson_dispersion
        Cell-level deviance and Pearson dispersion of the fit.
    cov_type, n_clusters
        ``"model"`` (inverse Fisher information) or ``"cluster"`` (sandwich over
        ``n_clusters`` clusters, see :func:`fit_glm`).
    """

    group: str
    family: str
    terms: tuple[str, ...]
    params: np.ndarray
    cov: np.ndarray
    alpha: float
    overdispersion_t: float
    n_rows: int
    n_cells: int
    n_incidents: int
    dropped: dict[str, int]
    not_estimable: dict[str, str]
    grain: str = "1h"
    categories: tuple[str, ...] | None = None
    deviance: float = float("nan")
    pearson_dispersion: float = float("nan")
    cov_type: str = "model"
    n_clusters: int = 0

    @property
    def features(self) -> list[str]:
        return [t for t in self.terms if t in FEATURES]

    @property
    def bse(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def irr_table(self, *, level: float = 0.95) -> pd.DataFrame:
        """Incidence-rate ratios with Wald intervals and two-sided p-values.

        Returns
        -------
        pandas.DataFrame
            term, irr, ci_low, ci_high, p_value, log_irr, se (intercept: baseline rate per
            person-slot at the reference hour and day).
        """
        z = stats.norm.ppf(0.5 + level / 2)
        se = self.bse
        b = self.params
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            p = 2 * stats.norm.sf(np.abs(b / se))
            return pd.DataFrame(
                {
                    "term": list(self.terms),
                    "irr": np.exp(b),
                    "ci_low": np.exp(b - z * se),
                    "ci_high": np.exp(b + z * se),
                    "p_value": p,
                    "log_irr": b,
                    "se": se,
                }
            )

    def log_rate(self, dz: pd.DataFrame) -> np.ndarray:
        """Log incidents per person-slot for design rows (unknown hours/days: reference)."""
        return _linear_predictor(dz, self.terms, self.params)

    def mean(self, dz: pd.DataFrame) -> np.ndarray:
        """Expected incidents for design rows (exposure x rate; NaN when exposure is missing)."""
        return dz["exposure"].to_numpy(dtype=np.float64) * np.exp(self.log_rate(dz))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "glm",
            "group": self.group,
            "family": self.family,
            "terms": list(self.terms),
            "params": self.params.tolist(),
            "cov": self.cov.tolist(),
            "alpha": self.alpha,
            "overdispersion_t": self.overdispersion_t,
            "n_rows": self.n_rows,
            "n_cells": self.n_cells,
            "n_incidents": self.n_incidents,
            "dropped": self.dropped,
            "not_estimable": self.not_estimable,
            "grain": self.grain,
            "categories": None if self.categories is None else list(self.categories),
            "deviance": self.deviance,
            "pearson_dispersion": self.pearson_dispersion,
            "cov_type": self.cov_type,
            "n_clusters": self.n_clusters,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GLMFit:
        return cls(
            group=d["group"],
            family=d["family"],
            terms=tuple(d["terms"]),
            params=np.asarray(d["params"], dtype=np.float64),
            cov=np.asarray(d["cov"], dtype=np.float64),
            alpha=float(d["alpha"]),
            overdispersion_t=float(d["overdispersion_t"]),
            n_rows=int(d["n_rows"]),
            n_cells=int(d["n_cells"]),
            n_incidents=int(d["n_incidents"]),
            dropped=dict(d["dropped"]),
            not_estimable=dict(d["not_estimable"]),
            grain=d.get("grain", "1h"),
            categories=None if d.get("categories") is None else tuple(d["categories"]),
            deviance=float(d.get("deviance") or float("nan")),
            pearson_dispersion=float(d.get("pearson_dispersion") or float("nan")),
            cov_type=d.get("cov_type", "model"),
            n_clusters=int(d.get("n_clusters", 0)),
        )


class SparseGroupError(InputError):
    """A category group has too few incidents to be modelled."""


def _prepare(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    features: Sequence[str] | None,
    mask: np.ndarray | None,
    cells: Cells | None,
    resolution: float,
    group: str,
    min_incidents: int,
) -> dict[str, Any]:
    """Shared preparation of GLM and XGBoost fits: usable rows, cells, estimable features."""
    if len(dz) != len(y):
        raise InputError(f"design has {len(dz)} rows but the counts have {len(y)}.")
    ok = exposure_mask(dz)
    base = np.ones(len(dz), bool) if mask is None else np.asarray(mask, bool)
    e = dz["exposure"].to_numpy(dtype=np.float64)
    dropped = {
        "missing_presence": int((base & ~np.isfinite(e)).sum()),
        "zero_presence": int((base & np.isfinite(e) & (e <= 0)).sum()),
    }
    use = base & ok
    if features is None:
        features = design_features(dz)
    yv = np.nan_to_num(np.asarray(y, dtype=np.float64))
    n_inc = int(round(yv[use].sum()))
    if not use.any():
        raise InputError(
            f"group {group!r}: no row with known, positive presence to fit on "
            f"({dropped['missing_presence']} rows with presence missing, "
            f"{dropped['zero_presence']} with zero presence); presence is the exposure of the "
            "rate models."
        )
    if n_inc < min_incidents:
        raise SparseGroupError(
            f"group {group!r} has {n_inc} incidents over {int(use.sum())} rows with presence; at "
            f"least {min_incidents} are needed to fit a rate model: merge its categories into "
            "another group or use a longer period."
        )
    if cells is None:
        cells = build_cells(dz, features=features, resolution=resolution)
    Ec = cells.sums(e, use)
    Yc = cells.sums(yv, use)
    E2c = cells.sums(e * e, use)
    hours = sorted(int(h) for h in np.unique(cells.keys["local_hour"].to_numpy()[Ec > 0]))
    dows = sorted(int(d) for d in np.unique(cells.keys["dow"].to_numpy()[Ec > 0]))
    feats, why = _estimable(
        cells.keys, Ec, [f for f in features if f in cells.features], hours, dows
    )
    for f in features:
        if f not in cells.features:
            why[f] = "not in the design"
    return {
        "use": use,
        "cells": cells,
        "Ec": Ec,
        "Yc": Yc,
        "E2c": E2c,
        "hours": hours,
        "dows": dows,
        "features": feats,
        "why": why,
        "dropped": dropped,
        "n_inc": n_inc,
        "y": yv,
        "e": e,
    }


def _nb_alpha_mle(y: np.ndarray, mu: np.ndarray, *, max_rows: int = 500_000) -> float:
    """Maximum-likelihood NB2 dispersion for counts ``y`` with fixed means ``mu`` (Lawless
    1987), searched on log(alpha) in [1e-6, 20] (on ``max_rows`` random rows at most)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import gammaln

    ok = mu > 0
    y, mu = y[ok], mu[ok]
    if len(y) < 3:
        return 0.0
    if len(y) > max_rows:  # a fixed random subsample is plenty for one parameter
        pick = np.random.default_rng(0).choice(len(y), size=max_rows, replace=False)
        y, mu = y[pick], mu[pick]

    def nll(log_a: float) -> float:
        a = math.exp(log_a)
        r = 1.0 / a
        ll = (
            gammaln(y + r)
            - gammaln(r)
            - gammaln(y + 1)
            + r * np.log(r / (r + mu))
            + y * np.log(mu / (r + mu))
        )
        return -float(ll.sum())

    res = minimize_scalar(nll, bounds=(math.log(1e-6), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def _ct_alpha(y: np.ndarray, mu: np.ndarray) -> tuple[float, float]:
    """Cameron-Trivedi (1990) regression estimate of NB2 alpha and its t statistic."""
    ok = mu > 0
    y, mu = y[ok], mu[ok]
    z = ((y - mu) ** 2 - y) / mu
    smu2 = float((mu * mu).sum())
    if smu2 <= 0 or len(y) < 3:
        return 0.0, 0.0
    a = float((z * mu).sum() / smu2)
    resid = z - a * mu
    se = math.sqrt(float((resid * resid).sum()) / (len(y) - 1) / smu2)
    return a, (a / se if se > 0 else 0.0)


def _overdispersed(alpha: float, t: float) -> bool:
    """NB2 rather than Poisson: a positive alpha and the Cameron-Trivedi test rejecting
    equidispersion at the one-sided 5 % level."""
    return alpha > 0 and t > stats.norm.ppf(0.95)


def _one_blas_thread(fn):
    """Run with a single BLAS thread: the matrices are small and the machine is shared."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@_one_blas_thread
def fit_glm(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    family: str = "auto",
    group: str = "all",
    features: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    cells: Cells | None = None,
    resolution: float = 0.05,
    grain: str = "1h",
    categories: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    cluster: np.ndarray | None = None,
) -> GLMFit:
    """Fit a Poisson or negative-binomial rate GLM with presence as exposure.

    ``log E[y] = log(present) + b0 + sum_f b_f x_f + hour-of-day + day-of-week``, fitted with
    statsmodels on cells of identical covariates (exact for the Poisson likelihood; a
    quasi-likelihood with the exact cell variance for the NB2).

    Parameters
    ----------
    dz
        Output of :func:`design`.
    y
        Incident counts per row of ``dz``.
    family
        ``"poisson"``, ``"negbin"`` or ``"auto"`` (NB2 when the Cameron-Trivedi test rejects
        equidispersion at the one-sided 5 % level, else Poisson).
    group
        Name of the category group (for messages and the result).
    features
        Candidate features (default: every feature column of ``dz``). Constant or collinear ones
        are dropped and listed in ``not_estimable``.
    mask
        Rows allowed in the fit (e.g. before a backtest origin); rows without positive
        presence are always left out.
    cells
        Precomputed :func:`build_cells` of ``dz`` (reused across fits).
    resolution
        Rounding of continuous features in the cell key.
    grain, categories
        Recorded in the result.
    min_incidents
        Fewer incidents than this raise :class:`SparseGroupError`.
    cluster
        Cluster label per row (e.g. the local date). When given, the covariance is the
        cluster-robust sandwich (Liang & Zeger 1986; Cameron & Miller 2015) with the small-sample
        factor G / (G - 1): city-wide covariates such as rain or holidays vary by day, not by
        zone-slot, and the model-based intervals would be too narrow under day-level shocks.

    Returns
    -------
    GLMFit

    Raises
    ------
    SparseGroupError
        Too few incidents.
    InputError
        No usable row, or unknown family.

    References
    ----------
    McCullagh & Nelder (1989), ch. 6 (log-linear models, offsets); Cameron & Trivedi (1990)
    for the over-dispersion test and the moment estimator of alpha; Hilbe (2011) for NB2.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    if family not in ("auto", "poisson", "negbin"):
        raise InputError(f"family must be 'auto', 'poisson' or 'negbin', got {family!r}.")
    p = _prepare(
        dz,
        y,
        features=features,
        mask=mask,
        cells=cells,
        resolution=resolution,
        group=group,
        min_incidents=min_incidents,
    )
    Ec, Yc, E2c = p["Ec"], p["Yc"], p["E2c"]
    keep = Ec > 0
    terms = _terms(p["features"], p["hours"], p["dows"])
    keys = p["cells"].keys.loc[keep]
    X = _matrix(keys, terms)
    Ek, Yk = Ec[keep], Yc[keep]
    sk = E2c[keep] / (Ek * Ek)

    def _fit(var_weights: np.ndarray | None, start: np.ndarray):
        model = sm.GLM(Yk, X, family=sm.families.Poisson(), exposure=Ek, var_weights=var_weights)
        # Newton on the p x p Hessian: cheaper than IRLS's least squares on the n x p matrix.
        # A level without any incident (sparse groups) has no finite MLE: its IRR tends to 0
        # with a huge standard error, which is what the table then shows.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            return model.fit(method="newton", start_params=start, maxiter=100, disp=0)

    start = np.zeros(len(terms))
    start[0] = math.log(max(Yk.sum(), 0.5) / Ek.sum())
    res = _fit(None, start)
    rate_c = np.zeros(len(Ec))
    rate_c[keep] = np.exp(X @ res.params)
    use = p["use"]
    cell = p["cells"].cell
    mu_rows = p["e"][use] * rate_c[cell[use]]
    alpha, t = _ct_alpha(p["y"][use], mu_rows)
    fam = family
    if family == "auto":
        fam = "negbin" if _overdispersed(alpha, t) else "poisson"
    if fam == "negbin":
        alpha = _nb_alpha_mle(p["y"][use], mu_rows)
        for _ in range(3):
            M = Ek * np.exp(X @ res.params)
            res = _fit(1.0 / (1.0 + alpha * sk * M), res.params)
            rate_c[keep] = np.exp(X @ res.params)
            mu_rows = p["e"][use] * rate_c[cell[use]]
            alpha_new = _nb_alpha_mle(p["y"][use], mu_rows)
            if abs(alpha_new - alpha) <= 1e-3 * alpha:
                alpha = alpha_new
                break
            alpha = alpha_new
    else:
        alpha = 0.0
    cov = np.asarray(res.cov_params(), dtype=np.float64)
    M = Ek * np.exp(X @ res.params)
    cov_type = "model"
    n_clusters = 0
    if cluster is not None:
        wk = 1.0 / (1.0 + alpha * sk * M)  # NB2 quasi-likelihood weight (1 for Poisson)
        kept_idx = np.full(len(Ec), -1, dtype=np.int64)
        kept_idx[keep] = np.arange(int(keep.sum()))
        ci = kept_idx[cell[use]]
        resid = p["y"][use] - mu_rows
        codes, _ = pd.factorize(np.asarray(cluster)[use])
        G = int(codes.max()) + 1
        S = np.empty((G, len(terms)))
        for j in range(len(terms)):
            S[:, j] = np.bincount(codes, weights=X[ci, j] * wk[ci] * resid, minlength=G)
        if G > 1:
            B = S.T @ S * G / (G - 1)
            cov = cov @ B @ cov
            cov_type = "cluster"
            n_clusters = G
    v = M * (1 + alpha * sk * M)
    pearson = float(((Yk - M) ** 2 / v).sum() / max(len(Yk) - len(terms), 1))
    return GLMFit(
        group=group,
        family=fam,
        terms=tuple(terms),
        params=np.asarray(res.params, dtype=np.float64),
        cov=cov,
        alpha=float(alpha),
        overdispersion_t=float(t),
        n_rows=int(use.sum()),
        n_cells=int(keep.sum()),
        n_incidents=p["n_inc"],
        dropped=p["dropped"],
        not_estimable=p["why"],
        grain=grain,
        categories=None if categories is None else tuple(categories),
        deviance=float(res.deviance),
        pearson_dispersion=pearson,
        cov_type=cov_type,
        n_clusters=n_clusters,
    )


# --------------------------------------------------------------------------------------------
# XGBoost
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class XGBFit:
    """A fitted XGBoost ``count:poisson`` model with log(present) as base margin.

    Attributes
    ----------
    booster
        The ``xgboost.Booster``.
    columns
        Its input columns, in order (local_hour, dow, then features).
    alpha
        NB2 dispersion of the rows around its predictions (Cameron-Trivedi), for intervals.
    offset
        Log of the training rate (incidents per person-slot) added to the margin, so that the
        trees start from the mean rate instead of climbing to it under ``max_delta_step``.
    """

    group: str
    booster: Any
    columns: tuple[str, ...]
    alpha: float
    n_rows: int
    n_incidents: int
    grain: str = "1h"
    categories: tuple[str, ...] | None = None
    offset: float = 0.0

    def _dmatrix(self, dz: pd.DataFrame):
        """The model inputs of ``dz`` (absent columns as 0), the training offset as margin: the
        trees then give the log rate per person-slot, exposure is applied by the caller."""
        import xgboost as xgb

        X = (
            np.column_stack(
                [
                    dz[c].to_numpy(dtype=np.float32)
                    if c in dz.columns
                    else np.zeros(len(dz), np.float32)
                    for c in self.columns
                ]
            )
            if len(self.columns)
            else np.zeros((len(dz), 0), np.float32)
        )
        dm = xgb.DMatrix(X, feature_names=list(self.columns))
        # always give a margin: without one XGBoost adds its base_score to the trees
        dm.set_base_margin(np.full(len(dz), self.offset))
        return dm

    def mean(self, dz: pd.DataFrame) -> np.ndarray:
        """Expected incidents for design rows (0 for zero presence, NaN for missing)."""
        e = dz["exposure"].to_numpy(dtype=np.float64)
        rate = self.booster.predict(self._dmatrix(dz), output_margin=True)
        return e * np.exp(rate.astype(np.float64))

    def contributions(self, dz: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the log expected count (TreeSHAP, ``pred_contribs``).

        Columns: one per input column, ``bias`` (the mean log rate) and ``log_exposure``; their
        row sum is the log of the expected count.
        """
        c = self.booster.predict(self._dmatrix(dz), pred_contribs=True)
        out = pd.DataFrame(c[:, :-1], columns=list(self.columns), index=dz.index)
        out["bias"] = c[:, -1]
        e = dz["exposure"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["log_exposure"] = np.log(e)
        return out


@_one_blas_thread
def fit_xgb(
    dz: pd.DataFrame,
    y: np.ndarray,
    *,
    group: str = "all",
    features: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    cells: Cells | None = None,
    resolution: float = 0.05,
    rounds: int = XGB_ROUNDS,
    params: dict[str, Any] | None = None,
    grain: str = "1h",
    categories: Sequence[str] | None = None,
    min_incidents: int = MIN_INCIDENTS,
    seed: int = 0,
) -> XGBFit:
    """Fit XGBoost ``count:poisson`` on the model features, log(present) as base margin.

    Trained on the same covariate cells as :func:`fit_glm` (sum of counts as label, log of
    summed exposure as margin): the Poisson objective's gradient and hessian of a cell are the
    sums over its rows, so this is the row-level fit (Chen & Guestrin 2016).

    Parameters
    ----------
    dz, y, group, features, mask, cells, resolution, grain, categories, min_incidents
        As :func:`fit_glm`.
    rounds
        Boosting rounds.
    params
        Overrides of the booster parameters (default: eta 0.1, depth 5, hist, 1 thread).
    seed
        Booster seed.

    Returns
    -------
    XGBFit
    """
    import xgboost as xgb

    p = _prepare(
        dz,
        y,
        features=features,
        mask=mask,
        cells=cells,
        resolution=resolution,
        group=group,
        min_incidents=min_incidents,
    )
    Ec, Yc = p["Ec"], p["Yc"]
    keep = Ec > 0
    columns = (["local_hour"] if p["hours"] and len(p["hours"]) > 1 else []) + ["dow"]
    # trees need no full rank: keep every non-constant feature
    columns += [f for f in p["cells"].features if not p["why"].get(f, "").startswith("constant")]
    keys = p["cells"].keys.loc[keep]
    X = np.column_stack([keys[c].to_numpy(dtype=np.float32) for c in columns])
    offset = float(np.log(max(Yc[keep].sum(), 0.5) / Ec[keep].sum()))
    dm = xgb.DMatrix(X, label=Yc[keep], feature_names=columns)
    dm.set_base_margin(np.log(Ec[keep]) + offset)
    prm = {**_XGB_PARAMS, "seed": seed, **(params or {})}
    booster = xgb.train(prm, dm, num_boost_round=rounds)
    rate_c = np.zeros(len(Ec))
    dk = xgb.DMatrix(X, feature_names=columns)
    dk.set_base_margin(np.full(len(X), offset))
    rate_c[keep] = np.exp(booster.predict(dk, output_margin=True).astype(np.float64))
    use = p["use"]
    mu_rows = p["e"][use] * rate_c[p["cells"].cell[use]]
    alpha, t = _ct_alpha(p["y"][use], mu_rows)
    alpha = alpha if _overdispersed(alpha, t) else 0.0
    return XGBFit(
        group=group,
        booster=booster,
        columns=tuple(columns),
        alpha=float(alpha),
        n_rows=int(use.sum()),
        n_incidents=p["n_inc"],
        grain=grain,
        categories=None if categories is None else tuple(categories),
        offset=offset,
    )


# --------------------------------------------------------------------------------------------
# predictive intervals
# --------------------------------------------------------------------------------------------
def predictive_quantiles(mean: np.ndarray, alpha: float, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of the Poisson (alpha = 0) or NB2 predictive distribution of counts.

    Returns an array of shape (len(mean), len(qs)); NaN where the mean is NaN. Parameter
    uncertainty is not propagated (plug-in predictive distribution).
    """
    m = np.asarray(mean, dtype=np.float64)
    out = np.full((len(m), len(qs)), np.nan)
    ok = np.isfinite(m)
    mm = np.clip(m[ok], 0.0, None)
    for j, q in enumerate(qs):
        if alpha > 0:
            n = 1.0 / alpha
            with np.errstate(divide="ignore", invalid="ignore"):
                v = stats.nbinom.ppf(q, n, n / (n + mm))
        else:
            v = stats.poisson.ppf(q, mm)
        v = np.where(mm > 0, v, 0.0)
        out[ok, j] = v
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
    """

    def __init__(
        self,
        glms: dict[str, GLMFit],
        xgbs: dict[str, XGBFit] | None = None,
        *,
        grain: str = "1h",
        features: Sequence[str] = FEATURES,
    ) -> None:
        self.glms = dict(glms)
        self.xgbs = dict(xgbs or {})
        self.grain = grain
        self.features = tuple(features)

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
        return dz

    def _model(self, group: str, model: str):
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
        raise InputError(f"model must be 'glm' or 'xgb', got {model!r}.")

    def predict(
        self,
        frame: pd.DataFrame,
        *,
        groups: list[str] | None = None,
        model: str = "glm",
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
            ``"glm"`` (rate model) or ``"xgb"`` (XGBoost).

        Returns
        -------
        pandas.DataFrame
            One row per input row and group: zone_id, hour, group, mean, lower80, upper80,
            lower95, upper95 (plug-in Poisson/NB2 predictive quantiles 10/90 % and 2.5/97.5 %).
        """
        dz = self.design(frame)
        parts = []
        for g in groups or self.groups:
            m = self._model(g, model)
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
) -> dict[str, Any]:
    """Write GLMs (JSON: terms, params, covariance) and boosters (XGBoost JSON) + a manifest."""
    from pathlib import Path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "grain": grain,
        "features": list(features),
        "glm": {},
        "xgb": {},
        **(extra or {}),
    }
    for g, m in glms.items():
        name = f"glm_{slug(g)}.json"
        (root / name).write_text(json.dumps(m.to_dict(), indent=1))
        manifest["glm"][g] = name
    for g, m in xgbs.items():
        name = f"xgb_{slug(g)}.json"
        m.booster.save_model(str(root / name))
        manifest["xgb"][g] = {
            "file": name,
            "columns": list(m.columns),
            "alpha": m.alpha,
            "offset": m.offset,
            "n_rows": m.n_rows,
            "n_incidents": m.n_incidents,
            "categories": None if m.categories is None else list(m.categories),
        }
    (root / "models.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def load_predictor(store) -> Predictor:
    """The :class:`Predictor` saved by ``vigie fit`` in ``store/models/``.

    Raises
    ------
    StoreError
        When the store has no fitted models.
    """
    import xgboost as xgb

    root = store.models_dir
    man_path = root / "models.json"
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
        )
    return Predictor(glms, xgbs, grain=man["grain"], features=man["features"])


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
    from pipelines.models import backtest as bt
    from pipelines.models import effects as eff

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
            from features.zones import centroids as _centroids

            centroids = _centroids(store.zones())
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
