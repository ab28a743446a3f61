"""Expected incidents per zone and slot: the fitted model's, or a per-capita fallback."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import InputError, StoreError
from features.store import Store
from pipelines.models.baselines import hour_of_week
from pipelines.models.predictor import load_predictor


def _exposure(frame: pd.DataFrame) -> np.ndarray:
    """Presence per row (present, else present_baseline; 1 without presence), NaN if not > 0."""
    n = len(frame)
    e = np.full(n, np.nan)
    if "present" in frame:
        e = pd.to_numeric(frame["present"], errors="coerce").to_numpy(float)
    if "present_baseline" in frame:
        b = pd.to_numeric(frame["present_baseline"], errors="coerce").to_numpy(float)
        e = np.where(np.isfinite(e), e, b)
    if "present" not in frame and "present_baseline" not in frame:
        e = np.ones(n)
    return np.where(e > 0, e, np.nan)


#: the cube columns the per-capita fallback reads (with the incidents it fits on).
FALLBACK_COLUMNS = ["dow", "local_hour", "incidents", "present", "present_baseline"]


@dataclass(frozen=True)
class FallbackFit:
    """The per-capita fallback's fitted factors (:func:`fallback_fit`).

    Attributes
    ----------
    zones
        The zone ids fitted, sorted.
    rate
        Each zone's rate per present person and slot (``r_zone``).
    profile
        The 168 hour-of-week factors (``f_how``).
    unseen
        The rate of a zone without rows in the fitting window (its shrunk rate: the city's).
    whole
        True when the window before ``fit_end`` had no incidents, so every row before it was
        used (the fit then depends on how far back the frame goes).
    """

    zones: np.ndarray
    rate: np.ndarray
    profile: np.ndarray
    unseen: float
    whole: bool

    def expected(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected incidents per row of ``frame``: present x zone rate x hour-of-week factor
        (the city rate for a zone not fitted; NaN where the exposure is unknown)."""
        ids = frame["zone_id"].astype(str).to_numpy()
        pos = np.searchsorted(self.zones, ids)
        pos = np.minimum(pos, max(len(self.zones) - 1, 0))
        hit = (self.zones[pos] == ids) if len(self.zones) else np.zeros(len(ids), dtype=bool)
        r = np.where(hit, self.rate[pos] if len(self.zones) else 0.0, self.unseen)
        return _exposure(frame) * r * self.profile[hour_of_week(frame)]


def fallback_expected(
    frame: pd.DataFrame,
    *,
    fit_end: pd.Timestamp,
    weeks: int = 8,
    prior_incidents: float = 1.0,
    iterations: int = 20,
) -> np.ndarray:
    """Expected incidents per row when no model is fitted: present x zone rate x hour-of-week.

    :func:`fallback_fit` on ``frame``, applied to its rows (:meth:`FallbackFit.expected`).

    Parameters
    ----------
    frame
        Cube rows: zone_id, hour, dow, local_hour, incidents, present and/or present_baseline.
    fit_end, weeks, prior_incidents, iterations
        As :func:`fallback_fit`.

    Returns
    -------
    numpy.ndarray
        Expected incidents per row (NaN where the exposure is unknown).
    """
    fit = fallback_fit(
        frame, fit_end=fit_end, weeks=weeks, prior_incidents=prior_incidents,
        iterations=iterations,
    )  # fmt: skip
    return fit.expected(frame)


def fallback_fit(
    frame: pd.DataFrame,
    *,
    fit_end: pd.Timestamp,
    weeks: int = 8,
    prior_incidents: float = 1.0,
    iterations: int = 20,
) -> FallbackFit:
    """The per-capita fallback ``E = present x r_zone x f_how`` fitted on ``frame``'s rows.

    A log-linear Poisson model ``E = present x r_zone x f_how`` (how = local day of week x local
    hour) is fitted on the ``weeks`` weeks before ``fit_end`` by iterative proportional fitting,
    which gives the maximum-likelihood fit of this main-effects model (Bishop, Fienberg &
    Holland 1975). Each zone rate is shrunk towards the city rate by ``prior_incidents``
    pseudo-incidents, and each hour-of-week factor towards 1 by half a pseudo-incident, so that
    a zone or an hour without incidents in the window does not get an expectation of zero (the
    fit is then penalised, not exact ML). Missing presence falls back on present_baseline; a
    study without presence uses exposure 1 (a per-slot rate). Only the rows of the window are
    read, so a frame of the window alone gives the same fit as the whole history (unless the
    window has no incidents: then every row before ``fit_end`` is used, ``whole``).

    Parameters
    ----------
    frame
        Cube rows: zone_id, hour, dow, local_hour, incidents, present and/or present_baseline.
    fit_end
        End (exclusive, UTC) of the fitting window: the period start, so the fit is past-only.

    Returns
    -------
    FallbackFit

    Raises
    ------
    InputError
        When no row before ``fit_end`` has both incidents and presence.

    References
    ----------
    Bishop, Y. M. M., Fienberg, S. E. & Holland, P. W. (1975). Discrete Multivariate Analysis,
    MIT Press, ch. 3 (iterative proportional fitting of log-linear models).
    """
    expo = _exposure(frame)
    how = hour_of_week(frame)
    zone_codes, zone_idx = np.unique(frame["zone_id"].astype(str).to_numpy(), return_inverse=True)
    y = pd.to_numeric(frame["incidents"], errors="coerce").to_numpy(float)
    t = frame["hour"]
    fit = (
        (t < fit_end).to_numpy()
        & (t >= fit_end - pd.Timedelta(weeks=weeks)).to_numpy()
        & np.isfinite(expo)
        & np.isfinite(y)
    )
    whole = bool(fit.sum() == 0 or np.nansum(y[fit]) == 0)
    if whole:
        fit = np.isfinite(expo) & np.isfinite(y) & (t < fit_end).to_numpy()
    if fit.sum() == 0:
        raise InputError(
            "cannot compute expected incidents: no slot with both incidents and presence before "
            "the period; fit a model with `vigie fit` or choose a later period."
        )
    nz = len(zone_codes)
    yz, ez, hz = y[fit], expo[fit], how[fit]
    iz = zone_idx[fit]
    city = max(yz.sum(), 0.5) / ez.sum()
    r = np.full(nz, city)
    f = np.ones(168)
    y_zone = np.bincount(iz, weights=yz, minlength=nz)
    y_how = np.bincount(hz, weights=yz, minlength=168)
    for _ in range(iterations):
        denom = np.bincount(iz, weights=ez * f[hz], minlength=nz)
        r = (y_zone + prior_incidents) / (denom + prior_incidents / city)
        d2 = np.bincount(hz, weights=ez * r[iz], minlength=168)
        f = (y_how + 0.5) / (d2 + 0.5)  # half a pseudo-incident at the average profile
    unseen = prior_incidents / (prior_incidents / city)  # (0 + prior) / (0 + prior / city)
    return FallbackFit(zones=zone_codes.astype(object), rate=r, profile=f, unseen=float(unseen),
                       whole=whole)  # fmt: skip


def estimate_dispersion(observed: np.ndarray, expected: np.ndarray) -> float:
    """Moment estimate of the NB2 dispersion of counts around their expectation.

    ``alpha = max(0, sum((O - E)^2 - O) / sum(E^2))`` (Cameron & Trivedi 1990, the auxiliary
    regression without intercept).

    References
    ----------
    Cameron, A. C. & Trivedi, P. K. (1990). Regression-based tests for overdispersion in the
    Poisson model. J. Econometrics 46(3), 347-364.
    """
    o = np.asarray(observed, float)
    e = np.asarray(expected, float)
    ok = np.isfinite(o) & np.isfinite(e) & (e > 0)
    if ok.sum() < 10:
        return 0.0
    num = ((o[ok] - e[ok]) ** 2 - o[ok]).sum()
    den = (e[ok] ** 2).sum()
    return float(max(0.0, num / den)) if den > 0 else 0.0


def model_unavailable(store: Store) -> str | None:
    """Why the store's fitted model cannot be used (the first line of the error), or None."""
    try:
        load_predictor(store)
    except (ImportError, StoreError, InputError, FileNotFoundError, KeyError) as exc:
        return str(exc).split("\n")[0]
    return None


def model_expected(store: Store, frame: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """Expected incidents per row from the store's fitted model (group ``all``).

    Returns
    -------
    tuple
        ``(expected, "model")``, or ``(None, why)`` when the store has no usable model.
    """
    try:
        pred = load_predictor(store)
        out = pred.predict(frame, groups=["all"])
    except (ImportError, StoreError, InputError, FileNotFoundError, KeyError) as exc:
        return None, str(exc).split("\n")[0]
    out = out[out["group"] == "all"]
    key = frame[["zone_id", "hour"]].copy()
    key["zone_id"] = key["zone_id"].astype(str)
    out = out.assign(zone_id=out["zone_id"].astype(str), hour=pd.to_datetime(out["hour"], utc=True))
    merged = key.merge(out[["zone_id", "hour", "mean"]], on=["zone_id", "hour"], how="left")
    return merged["mean"].to_numpy(float), "model"
