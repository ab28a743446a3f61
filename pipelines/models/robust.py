"""Incidence-rate ratios that the anomalies of the data do not fool (the ``irr`` effects).

The rate models of :mod:`pipelines.models.glm` are fitted over every zone-slot, weak signals
included: a cluster of thefts, an emerging rise or an outage spill-over in the last weeks of a
study then bias every IRR whose feature happens to differ in those weeks (school holidays,
public holidays, darkness). The effects are therefore fitted again, per group, by **leaving out
the windows an excess detector flags** (not by down-weighting: a flagged window is out whole):

1. the group ``all``'s model gives each zone x local day and zone x ISO week window an expected
   count; the window's two-sided negative-binomial tail probability (Poisson when the model is)
   of its observed count is computed, and windows are flagged at a false-discovery rate of 5 %
   (Benjamini & Hochberg 1995) over every window of both lengths;
2. the model is refitted without the flagged windows and the windows are tested again against
   the new expectation (at most :data:`ROUNDS` rounds; a window once flagged stays out);
3. each group's reported family is refitted without them, with the **cluster-robust covariance
   by local day** (Liang & Zeger 1986; Cameron & Miller 2015): city-wide daily covariates
   (rain, holidays, school holidays) vary by day, so zone-slots of one day are not independent
   draws; day-level shocks of the incidents are absorbed by the sandwich, not by the model.

Both tails are tested, so that a window emptied (an evacuated district, a gap in the logbook)
leaves too, and trimming is symmetric. The windows left out are listed in each effect's
``details`` (how many, and how many zone-slots).

**Events.** The event term is reported against a counterfactual that does not force incidents
to scale with the crowd: in the refit, a slot with an event takes as exposure the zone's
reference presence (``present_baseline``, the presence without events) instead of the people
present, and its transit entries the zone's usual entries at that hour of week (those the event
caused are part of its effect). ``event_k`` is then the IRR per 1 000 attendees of the whole
event (crowd included) against the same slot without it: 1 where crowds do not change the
incidents, whatever presence does.

References
----------
Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. *Journal of the Royal
Statistical Society B* 57(1), 289-300.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
Liang, K.-Y. & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika* 73(1), 13-22.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pipelines.models.baselines import hour_of_week
from pipelines.models.design import group_counts, numeric
from pipelines.models.glm import GLMFit, SparseGroupError, fit_glm

#: false-discovery rate at which anomalous windows are left out of the effect fits
FDR = 0.05
#: detection rounds (flag, refit, flag again)
ROUNDS = 2


@dataclass(frozen=True)
class Flagged:
    """The zone-slots left out of the effect fits, and why.

    Attributes
    ----------
    keep
        Row mask of the cube: True where the row is used.
    windows
        One row per flagged window: zone_id, window (``day`` or ``week``), label, observed,
        expected, p, q.
    rounds
        Detection rounds run.
    """

    keep: np.ndarray
    windows: pd.DataFrame
    rounds: int

    def details(self) -> dict[str, object]:
        """What an effect's ``details`` say about the windows left out."""
        w = self.windows
        return {
            "anomalous_windows_left_out": int(len(w)),
            "anomalous_zone_slots_left_out": int((~self.keep).sum()),
            "anomaly_rule": (
                f"zone x day and zone x week windows with two-sided NB tail q < {FDR:g} "
                "(Benjamini-Hochberg), left out"
            ),
        }


def local_day(cube: pd.DataFrame) -> np.ndarray:
    """The local date of each row (``local_date``, else the UTC date of ``hour``), as int codes."""
    if "local_date" in cube.columns:
        d = pd.to_datetime(cube["local_date"].astype(str), errors="coerce")
    else:
        d = pd.to_datetime(cube["hour"], utc=True).dt.tz_localize(None).dt.normalize()
    return d.to_numpy().astype("datetime64[D]").astype(np.int64)


def _window_p(o: np.ndarray, m: np.ndarray, m2: np.ndarray, alpha: float) -> np.ndarray:
    """Two-sided tail probability of window counts ``o`` with NB2 mean ``m`` and variance
    ``m + alpha * m2`` (Poisson when alpha is 0)."""
    lo = np.empty_like(m)
    hi = np.empty_like(m)
    if alpha > 0:
        n = m * m / np.maximum(alpha * m2, 1e-300)
        p = n / (n + m)
        lo = stats.nbinom.cdf(o, n, p)
        hi = stats.nbinom.sf(o - 1, n, p)
    else:
        lo = stats.poisson.cdf(o, m)
        hi = stats.poisson.sf(o - 1, m)
    return np.minimum(1.0, 2 * np.minimum(lo, hi))


def _flag_round(
    zone: np.ndarray, keys: Mapping[str, np.ndarray], y: np.ndarray, mu: np.ndarray, alpha: float
) -> pd.DataFrame:
    """Every zone x window of every length with its counts and two-sided p (one round)."""
    ok = np.isfinite(mu)
    frames = []
    for kind, key in keys.items():
        f = pd.DataFrame({"zone": zone[ok], "key": key[ok], "o": y[ok], "m": mu[ok]})
        f["m2"] = f["m"] ** 2
        g = f.groupby(["zone", "key"], sort=False).sum().reset_index()
        g = g[g["m"] > 0]
        g["window"] = kind
        frames.append(g)
    w = pd.concat(frames, ignore_index=True)
    w["p"] = _window_p(w["o"].to_numpy(), w["m"].to_numpy(), w["m2"].to_numpy(), alpha)
    w["q"] = multipletests(w["p"].to_numpy(), method="fdr_bh")[1] if len(w) else []
    return w


def flag_anomalies(
    cube: pd.DataFrame,
    dz: pd.DataFrame,
    glm: GLMFit,
    *,
    fdr: float = FDR,
    rounds: int = ROUNDS,
    cluster: np.ndarray | None = None,
) -> Flagged:
    """Zone x day and zone x week windows whose incidents the model does not explain.

    Parameters
    ----------
    cube, dz
        The cube and its design.
    glm
        The rate model of all incidents (its family and dispersion give the tail
        probabilities; it is refitted between rounds without the windows flagged).
    fdr
        Benjamini-Hochberg level over all windows of a round.
    rounds
        Detection rounds.
    cluster
        Local day code per row (:func:`local_day`), computed when None.

    Returns
    -------
    Flagged
    """
    y = group_counts(cube, None if glm.categories is None else list(glm.categories))
    y = np.nan_to_num(np.asarray(y, dtype=np.float64))
    zone = pd.factorize(cube["zone_id"])[0].astype(np.int64)
    day = local_day(cube) if cluster is None else cluster
    keys = {"day": day, "week": (day + 3) // 7}  # day 0 (1970-01-01) is a Thursday
    keep = np.ones(len(cube), bool)
    flagged: list[pd.DataFrame] = []
    model = glm
    done = 0
    for done in range(1, rounds + 1):
        w = _flag_round(zone, keys, y, model.mean(dz), model.alpha)
        hit = w[w["q"] < fdr]
        new = np.zeros(len(cube), bool)
        for kind, sub in hit.groupby("window"):
            pairs = pd.MultiIndex.from_arrays([sub["zone"], sub["key"]])
            new |= pd.MultiIndex.from_arrays([zone, keys[str(kind)]]).isin(pairs)
        flagged.append(hit)
        if not (new & keep).any():
            break
        keep &= ~new
        if done < rounds:
            model = _refit(dz, y, glm, mask=keep)
    windows = _window_table(pd.concat(flagged, ignore_index=True), cube)
    return Flagged(keep=keep, windows=windows, rounds=done)


def _window_table(hit: pd.DataFrame, cube: pd.DataFrame) -> pd.DataFrame:
    """The flagged windows in words (zone id, window length and first local day)."""
    zones = np.asarray(pd.factorize(cube["zone_id"])[1], dtype=object)
    hit = hit.drop_duplicates(["zone", "key", "window"])
    first = np.where(hit["window"] == "week", hit["key"] * 7 - 3, hit["key"])
    return pd.DataFrame(
        {
            "zone_id": zones[hit["zone"].to_numpy()] if len(hit) else [],
            "window": hit["window"].to_numpy(),
            "first_day": first.astype("datetime64[D]") if len(hit) else [],
            "observed": hit["o"].to_numpy(),
            "expected": hit["m"].to_numpy(),
            "p": hit["p"].to_numpy(),
            "q": hit["q"].to_numpy(),
        }
    )


def _refit(
    dz: pd.DataFrame, y: np.ndarray, glm: GLMFit, *, mask: np.ndarray, cluster=None
) -> GLMFit:
    """``glm`` fitted again on the rows of ``mask`` (same family, features and categories)."""
    return fit_glm(
        dz, y, family=glm.family, group=glm.group, features=glm.features or None, mask=mask,
        grain=glm.grain, categories=glm.categories, min_incidents=1, cluster=cluster,
    )  # fmt: skip


def event_design(cube: pd.DataFrame, dz: pd.DataFrame) -> pd.DataFrame:
    """``dz`` where event slots carry the zone's presence and transit entries without the event.

    Exposure: ``present_baseline`` (the reference presence, which leaves event slots out) where
    an event is on and the reference is known; transit: the zone's median entries at that local
    hour of week over the slots without an event (unchanged where none is known).
    """
    att = np.nan_to_num(numeric(cube, "event_attendance"))
    on = att > 0
    if not on.any():
        return dz
    out = dz.copy()
    ref = numeric(cube, "present_baseline", np.nan)
    e = out["exposure"].to_numpy(dtype=np.float64).copy()
    use_ref = on & np.isfinite(ref) & (ref > 0)
    e[use_ref] = ref[use_ref]
    out["exposure"] = e
    if "transit_k" in out.columns:
        out["transit_k"] = quiet_reference(cube, out["transit_k"].to_numpy(np.float64), on)
    return out


def quiet_reference(cube: pd.DataFrame, values: np.ndarray, on: np.ndarray) -> np.ndarray:
    """``values`` where ``on`` is False; elsewhere the zone x hour-of-week median of the rows
    where it is (unchanged where the zone has none)."""
    z = pd.factorize(cube["zone_id"])[0].astype(np.int64)
    key = z * 168 + hour_of_week(cube)
    med = pd.Series(values[~on]).groupby(key[~on]).median()
    fill = med.reindex(key[on]).to_numpy(np.float64)
    out = values.copy()
    out[on] = np.where(np.isfinite(fill), fill, values[on])
    return out.astype(np.float32)


def robust_fits(
    cube: pd.DataFrame, dz: pd.DataFrame, glms: Mapping[str, GLMFit], *, fdr: float = FDR
) -> tuple[dict[str, GLMFit], dict[str, str], Flagged | None]:
    """Each group's model fitted for effects: anomalies out, events against their absence,
    covariance clustered by local day.

    Returns
    -------
    fits, failed, flagged
        Group -> refitted model; group -> why its refit failed (the group's IRRs are then not
        estimable); the windows left out (None without an ``all`` model).
    """
    if "all" not in glms:
        return {}, {g: "no model for all incidents to flag anomalies" for g in glms}, None
    day = local_day(cube)
    dze = event_design(cube, dz)
    a = glms["all"]
    y_all = np.asarray(group_counts(cube, None if a.categories is None else list(a.categories)))
    try:
        # flagged against the event design too: with the crowd as exposure, a venue's day would
        # look emptied whenever crowds do not raise incidents in proportion, and leaving such
        # days out would keep only the events whose counts happened to be high
        base = _refit(dze, y_all.astype(np.float64), a, mask=np.ones(len(cube), bool))
        flagged = flag_anomalies(cube, dze, base, fdr=fdr, cluster=day)
    except (SparseGroupError, np.linalg.LinAlgError) as exc:
        return {}, {g: f"anomalous windows could not be flagged: {exc}" for g in glms}, None
    fits: dict[str, GLMFit] = {}
    failed: dict[str, str] = {}
    for g, m in glms.items():
        y = group_counts(cube, None if m.categories is None else list(m.categories))
        try:
            fits[g] = _refit(dze, np.asarray(y, np.float64), m, mask=flagged.keep, cluster=day)
        except (SparseGroupError, np.linalg.LinAlgError) as exc:
            failed[g] = f"refit without anomalous windows: {exc}"
    return fits, failed, flagged
