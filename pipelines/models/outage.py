"""Lighting outages as an event study (effects ``outage.<zone|ring>.<light>.<start|repair>``).

An outage episode is a run of slots with at least ``MIN_SHARE_OUT`` (10 %) of the zone's lamps
out. Observed incidents are compared with those *imputed without outage* (Borusyak, Jaravel &
Spiess 2024): a rate model of all incidents is fitted on the zone-slots untouched by any outage
(no lamp out in the zone nor in its ring, so that neither the outage nor its spill-over leaks
into the counterfactual), then **zone and local-day fixed effects** are estimated on the same
untouched slots (Poisson maximum likelihood given the model's covariates, by iterative
proportional fitting): a shock that hits the whole city on the days of an outage is in the
counterfactual, not credited to the outage, and a zone's own level is its own.

The comparison is made in three phases: the ``window_days`` before the outage starts, during
it, and the ``window_days`` after the repair; in the zone, and in its ring of neighbours (zones
touching it, themselves without outage at the time: spill-over, Chalfin, Kaplan & LaForest
2022), at night and in daylight (a placebo: lamps do not matter in daylight). ``start`` effects
are the rate ratio during / before, ``repair`` effects after / during: ratios of two
standardised incidence ratios. Their intervals are **cluster-robust by episode** (the zone: the
outage episode a slot belongs to; the ring: ring zone x week), with t quantiles on G - 1
degrees of freedom, so over-dispersion and the dependence of slots within an episode widen them
(:func:`pipelines.models.studies.cluster_rate_ratio`); with fewer than three clusters the exact
conditional (binomial) interval of Breslow & Day (1987, ch. 2) is given and ``details`` says
so. ``n`` is the number of zone-slots compared.

The truth such a ratio estimates, where a lamp multiplier is planted, is the *expected-weighted
mean* of the multiplier over the phase's slots, ``sum(mu0 * m) / sum(mu0)`` during, over the
same before (not the multiplier at the mean share out: Jensen's inequality);
:func:`planted_ratio` computes it.

References
----------
Borusyak, K., Jaravel, X. & Spiess, J. (2024). Revisiting event-study designs: robust and
efficient estimation. *Review of Economic Studies* 91(6), 3253-3285.
Breslow, N. E. & Day, N. E. (1987). *Statistical Methods in Cancer Research, vol. II*. IARC.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
Chalfin, A., Kaplan, J. & LaForest, M. (2022). Street light outages, public safety and crime
attraction. *Journal of Quantitative Criminology* 38, 891-919.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from pipelines.models.design import (
    design,
    design_features,
    exposure_mask,
    group_counts,
    lamps_out_share,
    numeric,
)
from pipelines.models.glm import SparseGroupError, fit_glm
from pipelines.models.results import Effect
from pipelines.models.robust import local_day
from pipelines.models.studies import (
    adjacency,
    cluster_rate_ratio,
    finite,
    fixed_effects,
    grid,
    not_estimable,
    rate_ratio,
)

KIND = "outage_event_study"
WINDOW_DAYS = 14
#: share of a zone's lamps out from which a run of slots counts as an outage episode
MIN_SHARE_OUT = 0.10
COMPARISONS = (("start", ("during", "before")), ("repair", ("after", "during")))


def phases(out: np.ndarray, slot_hours: np.ndarray, window: np.timedelta64):
    """Before / after masks (zone x slot) around runs of ``out`` in each zone (row)."""
    nz, nt = out.shape
    before = np.zeros_like(out)
    after = np.zeros_like(out)
    prev = np.zeros((nz, 1), bool)
    starts = out & ~np.concatenate([prev, out[:, :-1]], axis=1)
    ends = ~out & np.concatenate([prev, out[:, :-1]], axis=1)  # first slot after a run
    t = slot_hours
    for z in np.flatnonzero(starts.any(axis=1) | ends.any(axis=1)):
        st = t[starts[z]]
        en = t[ends[z]]
        if st.size:
            nxt = np.searchsorted(st, t, side="right")
            has = nxt < st.size
            dt = np.where(has, st[np.minimum(nxt, st.size - 1)] - t, np.timedelta64(10**6, "D"))
            before[z] = has & (dt <= window) & (dt > np.timedelta64(0, "ns")) & ~out[z]
        if en.size:
            last = np.searchsorted(en, t, side="right") - 1
            has = last >= 0
            dt = np.where(has, t - en[np.maximum(last, 0)], np.timedelta64(10**6, "D"))
            after[z] = has & (dt < window) & ~out[z]
    return before, after


def episode_labels(out: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Zone x slot episode number: the run of ``out`` a slot is in, follows (after) or precedes
    (before); -1 before a zone's first run outside its ``before`` window."""
    prev = np.concatenate([np.zeros((out.shape[0], 1), bool), out[:, :-1]], axis=1)
    starts = out & ~prev
    run = np.cumsum(starts, axis=1) - 1
    return run + before.astype(np.int64)


@dataclass(frozen=True)
class _Phases:
    """Zone x slot masks of the study: the outage, the phases of the zone and its ring, and the
    cluster of each zone-slot (zone: its episode; ring: zone x week)."""

    out: np.ndarray
    ring_out: np.ndarray
    zone: dict[str, np.ndarray]
    ring: dict[str, np.ndarray]
    zone_cluster: np.ndarray
    ring_cluster: np.ndarray


def _outage_phases(out2: np.ndarray, slots: np.ndarray, A: sparse.csr_matrix, window_days: int):
    before, after = phases(out2, slots, np.timedelta64(int(window_days), "D"))
    ring_out = (A @ out2.astype(np.float64)) > 0
    nz, nt = out2.shape
    episode = episode_labels(out2, before & ~out2)
    zone_cluster = np.arange(nz)[:, None] * (nt + 1) + episode
    week = (slots.astype("datetime64[D]").astype(np.int64) + 3) // 7
    ring_cluster = np.arange(nz)[:, None] * (week.max() + 1) + week[None, :]
    return _Phases(
        out=out2,
        ring_out=ring_out,
        zone={"before": before & ~out2, "during": out2, "after": after & ~out2},
        ring={
            "before": ((A @ before.astype(np.float64)) > 0) & ~ring_out & ~out2,
            "during": ring_out & ~out2,
            "after": ((A @ after.astype(np.float64)) > 0) & ~ring_out & ~out2,
        },
        zone_cluster=zone_cluster,
        ring_cluster=ring_cluster,
    )


def _ratio(sums: dict[str, tuple[np.ndarray, np.ndarray]], a: str, b: str):
    """Cluster-robust ratio of phase ``a`` over ``b`` (the exact conditional one when there
    are fewer than three clusters): ``(est, low, high, p, interval)`` or None."""
    oa, ea = sums[a]
    ob, eb = sums[b]
    cr = cluster_rate_ratio(oa, ea, ob, eb)
    if cr is not None:
        est, lo, hi, p, G = cr
        return est, lo, hi, p, f"cluster-robust over {G} clusters (t, {G - 1} df)"
    rr = rate_ratio(float(oa.sum()), float(ea.sum()), float(ob.sum()), float(eb.sum()))
    if rr is None:
        return None
    return (*rr, "exact conditional (binomial): fewer than 3 clusters")


def _phase_effect(
    name: str,
    role: str,
    light: str,
    pair: tuple[str, str],
    sums: dict[str, tuple[np.ndarray, np.ndarray]],
    counts: dict[str, int],
    share_during: float | None,
    *,
    window_days: int,
    min_share: float,
) -> Effect:
    """The rate ratio of phase ``a`` against phase ``b`` (observed/expected per cluster)."""
    a, b = pair
    rr = _ratio(sums, a, b)
    na, nb = counts[a], counts[b]
    if rr is None:
        why = f"no incidents or no exposure in the {a}/{b} phases ({na} and {nb} zone-slots)"
        return not_estimable(name, KIND, why)
    est, lo, hi, p, interval = rr
    oa, ob = float(sums[a][0].sum()), float(sums[b][0].sum())
    return Effect(
        name=name,
        kind=KIND,
        estimable=True,
        role=role,
        light=light,
        comparison=f"{a} vs {b}",
        estimate=finite(est),
        ci_low=finite(lo),
        ci_high=finite(hi),
        p_value=finite(p),
        n=na + nb,
        incidents=int(round(oa + ob)),
        unit="rate ratio of observed/expected (zone and day fixed effects, without outages)",
        details={
            "observed": {a: oa, b: ob},
            "expected_without_outage": {a: float(sums[a][1].sum()), b: float(sums[b][1].sum())},
            "mean_share_out_during": share_during,
            "window_days": window_days,
            "min_share_out": min_share,
            "interval": interval,
        },
    )


def _role_effects(
    role: str,
    row_phase: dict[str, np.ndarray],
    light_masks: dict[str, np.ndarray],
    y: np.ndarray,
    expected: np.ndarray,
    share: np.ndarray,
    cluster: np.ndarray,
    **kw,
) -> list[Effect]:
    """Start and repair effects of one role (zone or ring) at each light level."""
    out: list[Effect] = []
    codes = pd.factorize(cluster)[0]
    G = int(codes.max()) + 1 if len(codes) else 0
    for li, lmask in light_masks.items():
        sums, counts = {}, {}
        for k, m in row_phase.items():
            mm = m & lmask
            sums[k] = (
                np.bincount(codes[mm], weights=y[mm], minlength=G),
                np.bincount(codes[mm], weights=expected[mm], minlength=G),
            )
            counts[k] = int(mm.sum())
        dur = row_phase["during"] & lmask
        share_during = finite(share[dur].mean()) if role == "zone" and dur.any() else None
        for comp, pair in COMPARISONS:
            name = f"outage.{role}.{li}.{comp}"
            out.append(_phase_effect(name, role, li, pair, sums, counts, share_during, **kw))
    return out


def _light_masks(cube: pd.DataFrame, lights: tuple[str, ...]) -> dict[str, np.ndarray]:
    dark = np.nan_to_num(numeric(cube, "dark")) > 0
    every = np.ones(len(cube), bool)
    return {li: dark if li == "night" else (~dark if li == "day" else every) for li in lights}


def planted_ratio(
    mu0: np.ndarray, multiplier: np.ndarray, during: np.ndarray, before: np.ndarray
) -> float:
    """The truth an outage ratio estimates: the expected-weighted mean multiplier during over
    the same before, ``(sum mu0 m / sum mu0)[during] / (sum mu0 m / sum mu0)[before]``.

    ``mu0`` are the expected incidents without the lamp effect, ``multiplier`` the planted
    multiplier of each row (e.g. ``1.15 ** (10 x share out)`` at night, 1 by day).
    """

    def mean(rows: np.ndarray) -> float:
        return float((mu0[rows] * multiplier[rows]).sum() / mu0[rows].sum())

    return mean(during) / mean(before)


def _expected(cube, dz, y, *, ph: _Phases, zi, ti, grain, fixed: bool):
    """Expected incidents without outage (model on untouched slots, then zone and day fixed
    effects), or the reason it cannot be computed."""
    clean = ~(ph.out | ph.ring_out)[zi, ti]
    feats = [f for f in design_features(dz) if f != "dark_lamps_out"]
    try:
        base = fit_glm(dz, y, family="poisson", features=feats, mask=clean, grain=grain)
    except SparseGroupError as exc:
        return None, f"counterfactual model: {exc}"
    expected = base.mean(dz)
    if fixed:
        expected = fixed_effects(y, expected, clean, zi, local_day(cube))
    return expected, None


def outage_event_study(
    cube: pd.DataFrame,
    *,
    grain: str = "1h",
    neighbours: dict[str, list[str]] | None = None,
    window_days: int = WINDOW_DAYS,
    dz: pd.DataFrame | None = None,
    min_share: float = MIN_SHARE_OUT,
    fixed: bool = True,
) -> list[Effect]:
    """Event study of lighting outages (see the module docstring).

    Parameters
    ----------
    cube
        The cube with lamps, lamps_out, dark, present, incidents.
    grain
        At daily grain there is no night/day split.
    neighbours
        Zone -> neighbouring zones; without it the ring effects are not estimable.
    window_days
        Length of the before and after windows.
    dz
        Precomputed design of ``cube``.
    min_share
        An outage is a run of slots with at least this share of the zone's lamps out (a city
        always has a few lamps out: single-lamp faults are background, not events).
    fixed
        Zone and local-day fixed effects in the counterfactual (False: the pooled model alone,
        as before issue 12; kept for comparison).

    Returns
    -------
    list of Effect
        Effects ``outage.<zone|ring>.<night|day|all>.<start|repair>``.
    """
    lights = ("night", "day") if grain == "1h" else ("all",)
    names = [
        f"outage.{r}.{li}.{c}" for r in ("zone", "ring") for li in lights for c, _ in COMPARISONS
    ]
    if "lamps" not in cube.columns or "lamps_out" not in cube.columns:
        why = "source absent: needs lamps and lighting_faults (cube columns lamps, lamps_out)"
        return [not_estimable(n, KIND, why) for n in names]
    dz = design(cube, grain=grain) if dz is None else dz
    y = group_counts(cube, None)
    zones, slots, zi, ti = grid(cube)
    share = lamps_out_share(cube)
    out2 = np.zeros((len(zones), len(slots)), bool)
    out2[zi, ti] = share >= min_share
    if not out2.any():
        why = f"no outage of at least {min_share:.0%} of a zone's lamps in the cube's period"
        return [not_estimable(n, KIND, why) for n in names]
    A = adjacency(zones, neighbours)
    ph = _outage_phases(out2, slots, A, window_days)
    expected, why = _expected(cube, dz, y, ph=ph, zi=zi, ti=ti, grain=grain, fixed=fixed)
    if expected is None:
        return [not_estimable(n, KIND, str(why)) for n in names]
    ok = np.isfinite(expected) & exposure_mask(dz)
    lmasks = _light_masks(cube, lights)
    results: list[Effect] = []
    for role, phase in (("zone", ph.zone), ("ring", ph.ring)):
        if role == "ring" and A.nnz == 0:
            why = "no zone neighbours (zones without geometry)"
            results += [not_estimable(n, KIND, why) for n in names if n.startswith("outage.ring.")]
            continue
        row_phase = {k: v[zi, ti] & ok for k, v in phase.items()}
        clusters = (ph.zone_cluster if role == "zone" else ph.ring_cluster)[zi, ti]
        results += _role_effects(
            role, row_phase, lmasks, y, expected, share, clusters,
            window_days=window_days, min_share=min_share,
        )  # fmt: skip
    return results


def implied_lamp_ratio(
    cube: pd.DataFrame,
    *,
    irr_per_10pct: float,
    grain: str = "1h",
    neighbours: dict[str, list[str]] | None = None,
    window_days: int = WINDOW_DAYS,
    dz: pd.DataFrame | None = None,
    min_share: float = MIN_SHARE_OUT,
) -> float | None:
    """The truth the zone's ``start`` effect (at night; ``all`` at daily grain) estimates when
    lamps out multiply incidents by ``irr_per_10pct`` per 10 % of a zone's lamps out in the dark
    (the model's ``dark_lamps_out``): :func:`planted_ratio` over the study's own phases,
    weighted by its counterfactual (the expected incidents without outage), so that outages
    of every share are pooled as the study pools them. None without an outage."""
    if "lamps" not in cube.columns or "lamps_out" not in cube.columns:
        return None
    dz = design(cube, grain=grain) if dz is None else dz
    y = group_counts(cube, None)
    zones, slots, zi, ti = grid(cube)
    out2 = np.zeros((len(zones), len(slots)), bool)
    out2[zi, ti] = lamps_out_share(cube) >= min_share
    if not out2.any():
        return None
    ph = _outage_phases(out2, slots, adjacency(zones, neighbours), window_days)
    expected, _ = _expected(cube, dz, y, ph=ph, zi=zi, ti=ti, grain=grain, fixed=True)
    if expected is None:
        return None
    light = _light_masks(cube, ("night",) if grain == "1h" else ("all",))
    rows = np.isfinite(expected) & exposure_mask(dz) & next(iter(light.values()))
    x = np.nan_to_num(dz["dark_lamps_out"].to_numpy(np.float64))
    mult = float(irr_per_10pct) ** x
    during, before = ph.zone["during"][zi, ti] & rows, ph.zone["before"][zi, ti] & rows
    if not during.any() or not before.any():
        return None
    return planted_ratio(expected, mult, during, before)
