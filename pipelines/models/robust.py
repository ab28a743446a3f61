"""Incidence-rate ratios that the anomalies of the data do not fool (the ``irr`` effects).

The rate models of :mod:`pipelines.models.glm` are fitted over every zone-slot, weak signals
included: a cluster of thefts, an emerging rise or an outage spill-over in the last weeks of a
study then bias every IRR whose feature happens to differ in those weeks (school holidays,
public holidays, darkness). The effects are therefore fitted again, per group, by **leaving out
the windows an excess detector flags** (not by down-weighting: a flagged window is out whole):

1. the group ``all``'s model (refitted with events against their absence, below) gives each
   zone x local day and zone x ISO week window an expected count; the window's two-sided
   negative-binomial tail probability of its observed count is computed, its variance the
   larger of the model's and the windows' own over-dispersion (:func:`window_excess`), and
   windows are flagged at a false-discovery rate of 5 % (Benjamini & Hochberg 1995) over every
   window of both lengths;
2. the model is refitted without the flagged windows and the windows are tested again against
   the new expectation (at most :data:`ROUNDS` rounds; a window once flagged stays out);
3. each group's model is refitted without them by the **Poisson estimating equations**
   (:func:`quasi_poisson`: whatever family the forecast chose, the over-dispersion is left to
   the covariance), so that an effect that is not one multiplier everywhere is estimated as
   its expected-weighted mean ``sum(mu) / sum(mu / m)``, the planted truth; with the
   **two-way cluster-robust covariance by zone and by local day** (Cameron, Gelbach & Miller
   2011: ``V = V_zone + V_day - V_zone∩day``, negative eigenvalues set to 0 where it is not
   positive semi-definite; :func:`~pipelines.models.effects_fe.twoway_cluster_cov`).
   City-wide daily covariates (rain, holidays, school holidays) vary by day, so zone-slots of
   one day are not independent draws (day-level shocks of the incidents are absorbed by the
   sandwich, not by the model: Liang & Zeger 1986; Cameron & Miller 2015); covariates that
   vary by zone and persist within it (transit entries, lamps out, events at a venue) meet a
   zone's own misfit on every day, so a zone's days are not independent either. By day alone,
   the transit IRR of the synthetic city missed its planted value (docs/evaluation.md). Every
   feature is clustered both ways, the city-wide daily ones too: where a zone's days are
   uncorrelated the zone terms cancel in expectation, and a run of school-holiday weeks meets
   a zone's slow drift as transit entries do.
   The sandwich is only as good as the clusters that identify a coefficient: a feature that is
   not zero on ``G1`` of ``G`` days (two public holidays in eight weeks) has its interval and
   p value from a t distribution on ``min(G1, G - G1) - 1`` degrees of freedom (``G - 1`` when
   it is non-zero every day), as the cluster-robust variance with few treated clusters is
   estimated from about that many independent residuals (MacKinnon & Webb 2017): a city-wide
   shock on a holiday cannot then pass for a holiday effect with a narrow interval
   (:func:`treated_days`); the same rule over the zones (:func:`treated_zones`: transit
   entries at a few hubs), and the interval takes the smaller of the two.

Both tails are tested, so that a window emptied (an evacuated district, a gap in the logbook)
leaves too, and trimming is symmetric. The windows left out are listed in each effect's
``details`` (how many, and how many zone-slots).

**Zone and week fixed effects.** Every effect fit carries one factor per zone and one per ISO
week (:mod:`pipelines.models.effects_fe`): presence as exposure does not carry all that
distinguishes zones (a station, a nightlife street, a presence product biased by zone type), nor
a trend or a season, and a pooled model credits those to whatever feature is zone-level or
seasonal too (transit entries, the lamps, darkness); with the factors, each IRR compares a zone
with itself within a week. The factors are fitted to convergence, and the features' clustered
covariance is computed with them partialled out (:func:`~pipelines.models.effects_fe.fe_cluster_cov`).

**Events.** The event term is reported against a counterfactual that does not force incidents
to scale with the crowd: in the refit, a slot with an event takes as exposure the zone's
reference presence (``present_baseline``, the presence without events) instead of the people
present, and its transit entries the zone's usual entries at that hour of week (those the event
caused are part of its effect). ``event_k`` is then the IRR per 1 000 attendees of the whole
event (crowd included) against the same slot without it: 1 where crowds do not change the
incidents, whatever presence does. Where ``present_baseline`` is not known (the cube's first
two weeks), the reference is the zone's median presence at that hour of week over the slots
without events (:func:`reference_presence`), never the presence the crowd raised.

References
----------
Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. *Journal of the Royal
Statistical Society B* 57(1), 289-300.
Gourieroux, C., Monfort, A. & Trognon, A. (1984). Pseudo maximum likelihood methods:
applications to Poisson models. *Econometrica* 52(3), 701-720 (the Poisson equations).
White, H. (1982). Maximum likelihood estimation of misspecified models. *Econometrica* 50(1),
1-25 (the pseudo-true value).
Cameron, A. C. & Trivedi, P. K. (2013). *Regression Analysis of Count Data*, 2nd ed. Cambridge
University Press.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2011). Robust inference with multiway
clustering. *Journal of Business & Economic Statistics* 29(2), 238-249.
MacKinnon, J. G. & Webb, M. D. (2017). Wild bootstrap inference for wildly different cluster
sizes. *Journal of Applied Econometrics* 32(2), 233-254 (few treated clusters).
Liang, K.-Y. & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika* 73(1), 13-22.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pipelines.models.baselines import hour_of_week
from pipelines.models.design import (
    Cells,
    exposure_mask,
    group_counts,
    numeric,
)
from pipelines.models.effects_fe import cells_of, fe_cluster_cov, fixed_keys, refit, refit_fixed
from pipelines.models.glm import GLMFit, SparseGroupError

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
    event_exposure
        The exposure of event slots in the effect fits: the zone's reference presence, or the
        observed presence (and why) when the fit against it did not converge.
    """

    keep: np.ndarray
    windows: pd.DataFrame
    rounds: int
    event_exposure: str = "reference presence"

    def details(self) -> dict[str, object]:
        """What an effect's ``details`` say about the windows left out."""
        w = self.windows
        return {
            "anomalous_windows_left_out": int(len(w)),
            "anomalous_zone_slots_left_out": int((~self.keep).sum()),
            "event_slots_exposure": self.event_exposure,
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


#: median of the chi-square distribution with one degree of freedom
CHI2_1_MEDIAN = float(stats.chi2.median(1))
#: smallest expected count of a window that enters the robust dispersion estimate
MIN_WINDOW_MEAN = 5.0


def window_excess(o: np.ndarray, m: np.ndarray, m2: np.ndarray, alpha: float) -> np.ndarray:
    """Variance of window counts beyond Poisson: the larger of what the model's row-level
    dispersion implies (``alpha * sum(mu_i^2)``) and ``a * m^2``, ``a`` the windows' own
    dispersion. Shocks shared by a zone's slots of a day (a market, a match, a logbook caught
    up) make window counts far more dispersed than independent rows would be, and a test blind
    to them flags ordinary days by the hundred, so that the rows kept are chosen by their
    counts.

    ``a`` is estimated robustly, so that the anomalies to be found do not hide themselves: the
    smallest ``a >= 0`` at which the median squared Pearson residual of the windows is the
    median of a chi-square with 1 degree of freedom (a median-unbiased version of the moment
    estimator of Cameron & Trivedi 2013, ch. 3, that up to half the windows cannot move),
    over the windows expecting at least :data:`MIN_WINDOW_MEAN` incidents (below, counts are
    too discrete for it: the moment estimator over all windows is used when fewer than 30 do).
    """
    base = alpha * m2
    big = m >= MIN_WINDOW_MEAN  # where the chi-square median holds for counts
    if big.sum() < 30:
        a = max(0.0, float(((o - m) ** 2 - o).sum() / max(float((m * m).sum()), 1e-300)))
        return np.maximum(base, a * m * m)
    ob, mb, bb = o[big], m[big], base[big]

    def med(a: float) -> float:
        return float(np.median((ob - mb) ** 2 / (mb + np.maximum(bb, a * mb * mb))))

    if med(0.0) <= CHI2_1_MEDIAN:
        return base
    lo, hi = 0.0, 1.0
    while med(hi) > CHI2_1_MEDIAN and hi < 1e6:
        hi *= 4
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if med(mid) > CHI2_1_MEDIAN else (lo, mid)
    return np.maximum(base, hi * m * m)


def _window_p(o: np.ndarray, m: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """Two-sided tail probability of window counts ``o`` with mean ``m`` and variance
    ``m + excess`` (negative binomial; Poisson where the excess is negligible)."""
    nb = excess > 1e-9 * m
    n = m * m / np.where(nb, excess, 1.0)
    p = n / (n + m)
    lo = np.where(nb, stats.nbinom.cdf(o, n, p), stats.poisson.cdf(o, m))
    hi = np.where(nb, stats.nbinom.sf(o - 1, n, p), stats.poisson.sf(o - 1, m))
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
        g = g[g["m"] > 0].copy()
        g["window"] = kind
        o, m = g["o"].to_numpy(), g["m"].to_numpy()
        g["p"] = _window_p(o, m, window_excess(o, m, g["m2"].to_numpy(), alpha))
        frames.append(g)
    w = pd.concat(frames, ignore_index=True)
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
    cells: Cells | None = None,
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
    cells
        The covariate cells of ``dz`` for ``glm``'s features (built when None).

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
            model = refit(dz, y, glm, mask=keep, cells=cells)
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


def event_design(cube: pd.DataFrame, dz: pd.DataFrame) -> pd.DataFrame:
    """``dz`` where event slots carry the zone's presence and transit entries without the event.

    Exposure: the zone's reference presence where an event is on (:func:`reference_presence`:
    ``present_baseline``, else the zone's median presence at that local hour of week over the
    slots without an event; the observed presence, crowd included, only where neither is
    known); transit: the zone's median entries at that local hour of week over the slots
    without an event (unchanged where none is known).
    """
    att = np.nan_to_num(numeric(cube, "event_attendance"))
    on = att > 0
    if not on.any():
        return dz
    out = dz.copy()
    ref = reference_presence(cube)
    e = out["exposure"].to_numpy(dtype=np.float64).copy()
    use_ref = on & np.isfinite(ref) & (ref > 0)
    e[use_ref] = ref[use_ref]
    out["exposure"] = e
    if "transit_k" in out.columns:
        out["transit_k"] = quiet_reference(cube, out["transit_k"].to_numpy(np.float64), on)
    return out


def reference_presence(cube: pd.DataFrame) -> np.ndarray:
    """Presence without events: ``present_baseline`` (the cube's median of the same zone and
    hour of week over the 8 weeks before, event hours left out), else (its first two weeks, or
    a slot that has had an event every week) the zone x hour-of-week median of the slots
    without events. Without it an event slot would be compared at the presence its own crowd
    raised: at a stadium whose crowd is 90 times its residents, a day of expected incidents
    where none happen."""
    ref = numeric(cube, "present_baseline", np.nan)
    if np.isfinite(ref).all():
        return ref
    pres = numeric(cube, "present", np.nan)
    att = np.nan_to_num(numeric(cube, "event_attendance"))
    z = pd.factorize(cube["zone_id"])[0].astype(np.int64)
    key = z * 168 + hour_of_week(cube)
    quiet = (att == 0) & np.isfinite(pres)
    med = pd.Series(pres[quiet]).groupby(key[quiet]).median()
    fill = med.reindex(key).to_numpy(np.float64)
    return np.where(np.isfinite(ref), ref, fill)


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


def quasi_poisson(glm: GLMFit) -> GLMFit:
    """``glm`` as the template of a Poisson refit (same features, group and categories).

    The effect fits estimate every IRR by the Poisson estimating equations whatever family
    the forecast chose, the over-dispersion being left to the covariance clustered by zone and day
    (a quasi-Poisson fit): where an effect is not one multiplier (an event's whole effect per
    1 000 attendees, which depends on the venue's presence; rain over a mix of categories),
    the Poisson equations estimate its expected-weighted mean, ``sum(mu) / sum(mu / m)``, the
    planted truth of ``truth.json``, while the NB2 weights ``1 / (1 + alpha mu)`` tilt it
    towards the slots expecting few incidents (on the synthetic city the NB2 event IRR was
    about 3 % above that truth, far outside its interval; docs/evaluation.md)."""
    return dataclasses.replace(glm, family="poisson", alpha=0.0)


def robust_fits(
    cube: pd.DataFrame, dz: pd.DataFrame, glms: Mapping[str, GLMFit], *, fdr: float = FDR
) -> tuple[dict[str, GLMFit], dict[str, str], Flagged | None]:
    """Each group's model fitted for effects: zone fixed effects, anomalies out, events against
    their absence, Poisson estimating equations (:func:`quasi_poisson`), covariance clustered
    by zone and by local day (two-way).

    Returns
    -------
    fits, failed, flagged
        Group -> refitted model; group -> why its refit failed (the group's IRRs are then not
        estimable); the windows left out (None without an ``all`` model).
    """
    if "all" not in glms:
        return {}, {g: "no model for all incidents to flag anomalies" for g in glms}, None
    day = local_day(cube)
    keys = fixed_keys(cube, day)
    dze = event_design(cube, dz)
    a = glms["all"]
    y_all = np.asarray(group_counts(cube, None if a.categories is None else list(a.categories)))
    cache: dict = {}  # the cells of a design and features, shared by every refit
    try:
        # flagged against the event design too: with the crowd as exposure, a venue's day would
        # look emptied whenever crowds do not raise incidents in proportion, and leaving such
        # days out would keep only the events whose counts happened to be high
        every = np.ones(len(cube), bool)
        try:
            base, dzf = refit_fixed(dze, y_all.astype(np.float64), a, keys=keys, mask=every,
                                     cells=cells_of(dze, a, cache))  # fmt: skip
            events = "reference presence"
        except np.linalg.LinAlgError as exc:  # event slots at their observed presence
            dze = dz
            base, dzf = refit_fixed(dz, y_all.astype(np.float64), a, keys=keys, mask=every,
                                     cells=cells_of(dz, a, cache))  # fmt: skip
            events = f"observed presence (against the reference presence: {exc})"
        cells = cells_of(dze, base, cache)  # dzf: dze with the zones' factors in its exposure
        flagged = flag_anomalies(cube, dzf, base, fdr=fdr, cluster=day, cells=cells)
        flagged = dataclasses.replace(flagged, event_exposure=events)
    except (SparseGroupError, np.linalg.LinAlgError) as exc:
        return {}, {g: f"anomalous windows could not be flagged: {exc}" for g in glms}, None
    fits: dict[str, GLMFit] = {}
    failed: dict[str, str] = {}
    for g, reported in glms.items():
        m = quasi_poisson(reported)
        y = group_counts(cube, None if m.categories is None else list(m.categories))
        try:
            yg = np.asarray(y, np.float64)
            cells_g = cells_of(dze, m, cache)
            fit, frame = refit_fixed(dze, yg, m, keys=keys, mask=flagged.keep, cluster=day,
                                      cells=cells_g)  # fmt: skip
            fits[g] = fe_cluster_cov(frame, yg, fit, keys=keys, mask=flagged.keep, cluster=day,
                                     cells=cells_g)  # fmt: skip
        except (SparseGroupError, np.linalg.LinAlgError) as exc:
            failed[g] = f"refit without anomalous windows: {exc}"
    return fits, failed, flagged


def treated_days(
    dz: pd.DataFrame, features: list[str], day: np.ndarray, keep: np.ndarray
) -> dict[str, tuple[int, int, int, int]]:
    """Feature -> ``(G1, G, G1w, dof)``: the local days (of the rows fitted) on which the
    feature is not zero somewhere, all the days, those of them in ISO weeks it does not fill,
    and the t degrees of freedom of its interval.

    The effect fits carry a factor per ISO week (:mod:`pipelines.models.effects_fe`), so a
    feature non-zero on whole weeks (school holidays) is identified only by the weeks it starts
    or ends in: ``dof = min(G1w, G0w) - 1`` with ``G0w`` the days without it in those weeks
    (``G - 1`` when it is non-zero every day), at least 1."""
    rows = keep & exposure_mask(dz)
    codes, uniq = pd.factorize(day[rows])
    G = len(uniq)
    week = pd.factorize((np.asarray(uniq, dtype=np.int64) + 3) // 7)[0]
    out: dict[str, tuple[int, int, int, int]] = {}
    for f in features:
        if f not in dz.columns or G == 0:
            continue
        x = np.nan_to_num(dz[f].to_numpy(np.float64)[rows])
        on = np.zeros(G, bool)
        on[np.unique(codes[x != 0])] = True
        g1 = int(on.sum())
        n_on = np.bincount(week, weights=on.astype(float))
        n_all = np.bincount(week)
        mixed = ((n_on > 0) & (n_on < n_all))[week]
        g1w, g0w = int((on & mixed).sum()), int((~on & mixed).sum())
        dof = G - 1 if g1 in (0, G) else min(g1w, g0w) - 1
        out[f] = (g1, G, g1w, max(dof, 1))
    return out


def treated_zones(
    dz: pd.DataFrame, features: list[str], zone: np.ndarray, keep: np.ndarray
) -> dict[str, tuple[int, int, int]]:
    """Feature -> ``(Z1, Z, dof)``: the zones (of the rows fitted) in which the feature is not
    zero somewhere, all the zones, and the t degrees of freedom the zone dimension of the
    two-way covariance allows, ``min(Z1, Z - Z1) - 1`` (``Z - 1`` when it is non-zero in every
    zone, or in none), at least 1: the variance by zone is estimated from about that many
    independent zone sums (MacKinnon & Webb 2017), as the one by day from the days
    (:func:`treated_days`); the interval takes the smaller of the two (Cameron, Gelbach &
    Miller 2011, section 2.3: ``min(G_1, G_2) - 1``)."""
    rows = keep & exposure_mask(dz)
    codes, uniq = pd.factorize(np.asarray(zone)[rows])
    Z = len(uniq)
    out: dict[str, tuple[int, int, int]] = {}
    for f in features:
        if f not in dz.columns or Z == 0:
            continue
        x = np.nan_to_num(dz[f].to_numpy(np.float64)[rows])
        z1 = int(len(np.unique(codes[x != 0])))
        dof = Z - 1 if z1 in (0, Z) else min(z1, Z - z1) - 1
        out[f] = (z1, Z, max(dof, 1))
    return out
