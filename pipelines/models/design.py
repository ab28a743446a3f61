"""The model design: category groups, model features, and cells of identical covariates.

The named features of ``docs/architecture.md`` (dark, dark_lamps_out, event_k, rain, transit_k,
holiday, school_holiday, with hour of day and day of week on top) are built from cube columns by
:func:`design`.

A Poisson likelihood with covariates shared by many rows only depends on the per-cell sums of
counts and exposures: rows with identical covariates are aggregated into *cells*
(:func:`build_cells`: sum of incidents, sum of person-slots) before fitting, which is exact for the
Poisson GLM and for the Poisson objective of XGBoost. Continuous features (dark_lamps_out,
event_k, transit_k) are rounded to ``resolution`` (default 0.05 of their unit: 50 attendees, 50
entries, 0.5 % of lamps) in the cell key, a negligible approximation that keeps a metropolis
(17.5 M zone-hours) in a few hundred thousand cells.

Rows whose presence is missing or zero carry no exposure (:func:`exposure_mask`): they are left
out of fitting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError
from features.text import slug

#: Default grouping of incident category slugs (cube columns ``inc_<slug>``). A slug that is not
#: listed is matched by keyword (:data:`GROUP_KEYWORDS`), else it falls in ``other``; the group
#: ``all`` is the total of every category (the cube's ``incidents`` column).
# fmt: off
CATEGORY_GROUPS: dict[str, list[str]] = {
    "violence": [
        "assault", "battery", "homicide", "robbery", "sexual_assault",
        "criminal_sexual_assault", "kidnapping", "weapons_violation", "domestic_violence",
        "violence", "fight", "brawl", "agression", "atteinte_personne",
        "atteinte_aux_personnes", "coups_et_blessures", "rixe", "vol_avec_violence",
    ],
    "property": [
        "theft", "burglary", "motor_vehicle_theft", "vehicle_theft", "pickpocketing",
        "pickpocket", "shoplifting", "criminal_damage", "vandalism", "arson", "deception",
        "fraud", "vol", "cambriolage", "degradation",
    ],
    "disorder": [
        "disorder", "public_disorder", "public_peace_violation", "noise", "nuisance",
        "public_intoxication", "drunkenness", "intoxication", "narcotics", "drugs",
        "liquor_law_violation", "trespass", "criminal_trespass", "loitering", "harassment",
        "ivresse", "tapage", "trouble_ordre_public", "stupefiants",
    ],
    "fire_rescue_medical": [
        "fire", "rescue", "medical", "ems", "injury", "fall", "cardiac", "overdose", "malaise",
        "secours", "incendie", "secours_a_personne",
    ],
    "road": [
        "traffic", "traffic_accident", "road_accident", "road", "accident", "collision",
        "crash", "accident_de_la_route", "accident_circulation",
    ],
}
# fmt: on

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
#: XGBoost boosting rounds (``vigie fit --xgb-rounds``).
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
    features = _design_features_of(cube, grain=grain, features=features)
    n = len(cube)
    out: dict[str, Any] = {
        "zone_id": (
            cube["zone_id"].astype(str).to_numpy() if "zone_id" in cube else np.full(n, "", object)
        ),
        "hour": cube["hour"].array if "hour" in cube else np.full(n, np.datetime64("NaT")),
        "exposure": numeric(cube, "present", np.nan),
    }
    out["local_hour"], out["dow"] = _slot_codes(cube, grain=grain)
    dark = np.nan_to_num(numeric(cube, "dark")) > 0
    for f in features:
        out[f] = _feature_values(cube, f, dark=dark, grain=grain).astype(np.float32)
    return pd.DataFrame(out, index=cube.index)


def _design_features_of(
    cube: pd.DataFrame, *, grain: str, features: Sequence[str] | None
) -> Sequence[str]:
    """The features :func:`design` builds: those asked for (checked), else all available."""
    if features is None:
        return [f for f, why in feature_status(cube.columns, grain=grain).items() if why is None]
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise InputError(
            f"unknown model feature(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(FEATURES)}."
        )
    return features


def _slot_codes(cube: pd.DataFrame, *, grain: str) -> tuple[np.ndarray, np.ndarray]:
    """Local hour of day (0 at daily grain) and day of week per row, as int8."""
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
        lh = np.zeros(len(cube))
    return np.nan_to_num(lh).astype(np.int8), np.nan_to_num(dw).astype(np.int8)


def _feature_values(cube: pd.DataFrame, f: str, *, dark: np.ndarray, grain: str) -> np.ndarray:
    """One model feature per row (float64; missing values count as 0)."""
    if f == "dark":
        return dark.astype(np.float64)
    if f == "dark_lamps_out":
        return 10.0 * lamps_out_share(cube) * (dark if grain == "1h" else 1.0)
    if f == "event_k":
        return np.nan_to_num(numeric(cube, "event_attendance")) / 1000.0
    if f == "rain":
        return (np.nan_to_num(numeric(cube, "precipitation_mm")) >= 1.0).astype(np.float64)
    if f == "transit_k":
        return np.nan_to_num(numeric(cube, "ridership_entries")) / 1000.0
    # holiday, school_holiday
    return (np.nan_to_num(numeric(cube, f)) > 0).astype(np.float64)


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
