"""Effect estimates: incidence-rate ratios, lighting-outage event study, event uplift.

Every effect is a dict (one entry of ``store/models/effects.json``)::

    {"name", "kind", "estimable": True, "estimate", "ci_low", "ci_high", "p_value", "n",
     "unit", ...details}
    {"name", "kind", "estimable": False, "why"}

Kinds
-----
``irr``
    Incidence-rate ratio of a model feature in a category group's rate model (see
    :mod:`pipelines.models`); ``n`` is the number of zone-slots fitted.
``outage_event_study``
    Lighting outages as an event study. An outage episode is a run of slots with at least
    ``MIN_SHARE_OUT`` (10 %) of the zone's lamps out. Observed incidents are compared with those expected by a
    rate model of all incidents fitted on the zone-slots *untouched by any outage* (no lamp out
    in the zone nor in its ring: the imputation approach of Borusyak, Jaravel & Spiess 2024,
    so that neither the outage nor its spill-over leaks into the counterfactual), in three
    phases: the
    ``window_days`` before the outage starts, during it, and the ``window_days`` after the
    repair; in the zone, and in its ring of neighbours (zones touching it, themselves without
    outage at the time: spill-over, Chalfin, Kaplan & LaForest 2022), at night and in daylight
    (a placebo: lamps do not matter in daylight). ``start`` effects are the rate ratio during /
    before, ``repair`` effects after / during. Ratios of two standardised incidence ratios,
    with exact conditional (binomial) intervals and p-values (Breslow & Day 1987, ch. 2);
    ``n`` is the number of zone-slots compared.
``event_uplift``
    Per event category, in the venue zone and in its ring (ring zones hosting an event of their
    own at the time are left out): extra people present per 1 000 expected attendees (present minus the reference presence ``present_baseline``, which
    excludes event slots) and extra incidents per 1 000 attendees (observed minus the rate
    model's expectation with the reference presence and no event). Ratio estimators over
    events with cluster (event) standard errors (Cochran 1977, section 6.3); incident p-values
    are exact Poisson tests of observed against expected. ``n`` is the number of events.

References
----------
Borusyak, K., Jaravel, X. & Spiess, J. (2024). Revisiting event-study designs: robust and
efficient estimation. *Review of Economic Studies* 91(6), 3253-3285.
Breslow, N. E. & Day, N. E. (1987). *Statistical Methods in Cancer Research, vol. II: The
Design and Analysis of Cohort Studies*. IARC.
Chalfin, A., Kaplan, J. & LaForest, M. (2022). Street light outages, public safety and crime
attraction. *Journal of Quantitative Criminology* 38, 891-919.
Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed. Wiley.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from features.text import slug
from features.timeutil import utc_ns
from pipelines import models as M
from pipelines.models import backtest as B

log = logging.getLogger(__name__)

UNITS = {
    "dark": "IRR, night vs day",
    "dark_lamps_out": "IRR per 10 % of the zone's lamps out, at night",
    "event_k": "IRR per 1 000 attendees (beyond their presence)",
    "rain": "IRR, precipitation >= 1 mm vs less",
    "transit_k": "IRR per 1 000 transit entries in the zone",
    "holiday": "IRR, public holiday vs not",
    "school_holiday": "IRR, school holiday vs not",
}
WINDOW_DAYS = 14
#: share of a zone's lamps out from which a run of slots counts as an outage episode
MIN_SHARE_OUT = 0.10


def not_estimable(name: str, kind: str, why: str, **extra: Any) -> dict[str, Any]:
    """An effect that cannot be estimated, and why."""
    return {"name": name, "kind": kind, "estimable": False, "why": why, **extra}


def _f(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# IRRs
# --------------------------------------------------------------------------------------------
def irr_effects(
    glms: dict[str, M.GLMFit], *, feature_why: dict[str, str | None] | None = None
) -> list[dict[str, Any]]:
    """One ``irr`` effect per named feature and group (not-estimable ones with their reason)."""
    out: list[dict[str, Any]] = []
    for g, m in glms.items():
        tab = m.irr_table().set_index("term")
        for f in M.FEATURES:
            name = f"irr.{g}.{f}"
            if f in tab.index:
                r = tab.loc[f]
                out.append(
                    {
                        "name": name,
                        "kind": "irr",
                        "estimable": True,
                        "group": g,
                        "feature": f,
                        "family": m.family,
                        "estimate": _f(r["irr"]),
                        "ci_low": _f(r["ci_low"]),
                        "ci_high": _f(r["ci_high"]),
                        "p_value": _f(r["p_value"]),
                        "n": m.n_rows,
                        "incidents": m.n_incidents,
                        "unit": UNITS[f],
                    }
                )
            else:
                why = (feature_why or {}).get(f) or m.not_estimable.get(f) or "not in the model"
                out.append(not_estimable(name, "irr", why, group=g, feature=f))
    return out


# --------------------------------------------------------------------------------------------
# helpers on the zone x slot grid
# --------------------------------------------------------------------------------------------
def _grid(cube: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Zones, slots, and row -> (zone index, slot index) of a cube."""
    zones, zi = B.zone_codes(cube["zone_id"])
    t = utc_ns(cube["hour"])
    slots = np.unique(t)
    return zones, slots, zi, np.searchsorted(slots, t)


def _to2d(values: np.ndarray, zi: np.ndarray, ti: np.ndarray, shape: tuple[int, int], fill=0.0):
    a = np.full(shape, fill, dtype=np.asarray(values).dtype if fill is None else np.float64)
    a[zi, ti] = values
    return a


def _adjacency(zones: list[str], neighbours: dict[str, list[str]] | None) -> sparse.csr_matrix:
    pos = {z: i for i, z in enumerate(zones)}
    rows, cols = [], []
    for z, nbs in (neighbours or {}).items():
        if z not in pos:
            continue
        for n in nbs:
            if n in pos and n != z:
                rows.append(pos[z])
                cols.append(pos[n])
    data = np.ones(len(rows))
    a = sparse.csr_matrix((data, (rows, cols)), shape=(len(zones), len(zones)))
    return ((a + a.T) > 0).astype(np.float64).tocsr()


def _rate_ratio(o_a: float, e_a: float, o_b: float, e_b: float, *, level: float = 0.95):
    """Ratio of SIRs (O_a/E_a) / (O_b/E_b) with exact conditional CI and p-value."""
    n = int(round(o_a + o_b))
    if e_a <= 0 or e_b <= 0 or n == 0:
        return None
    p0 = e_a / (e_a + e_b)
    k = int(round(o_a))
    est = (o_a / e_a) / (o_b / e_b) if o_b > 0 else float("inf")
    test = stats.binomtest(k, n, p0)
    ci = test.proportion_ci(confidence_level=level, method="exact")
    odds = lambda p: p / (1 - p) if p < 1 else float("inf")  # noqa: E731
    return est, odds(ci.low) * e_b / e_a, odds(ci.high) * e_b / e_a, test.pvalue


# --------------------------------------------------------------------------------------------
# lighting outages
# --------------------------------------------------------------------------------------------
def _phases(out: np.ndarray, slot_hours: np.ndarray, window: np.timedelta64):
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


def outage_event_study(
    cube: pd.DataFrame,
    *,
    grain: str = "1h",
    neighbours: dict[str, list[str]] | None = None,
    window_days: int = WINDOW_DAYS,
    dz: pd.DataFrame | None = None,
    min_share: float = MIN_SHARE_OUT,
) -> list[dict[str, Any]]:
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

    Returns
    -------
    list of dict
        Effects ``outage.<zone|ring>.<night|day|all>.<start|repair>``.
    """
    kind = "outage_event_study"
    roles = ("zone", "ring")
    lights = ("night", "day") if grain == "1h" else ("all",)
    names = [f"outage.{r}.{li}.{c}" for r in roles for li in lights for c in ("start", "repair")]
    if "lamps" not in cube.columns or "lamps_out" not in cube.columns:
        why = "source absent: needs lamps and lighting_faults (cube columns lamps, lamps_out)"
        return [not_estimable(n, kind, why) for n in names]
    if dz is None:
        dz = M.design(cube, grain=grain)
    y = M.group_counts(cube, None)
    zones, slots, zi, ti = _grid(cube)
    shape = (len(zones), len(slots))
    share = M.lamps_out_share(cube)
    out2 = np.zeros(shape, bool)
    out2[zi, ti] = share >= min_share
    if not out2.any():
        why = f"no outage of at least {min_share:.0%} of a zone's lamps in the cube's period"
        return [not_estimable(n, kind, why) for n in names]
    window = np.timedelta64(int(window_days), "D")
    before, after = _phases(out2, slots, window)
    A = _adjacency(zones, neighbours)
    ring_out = (A @ out2.astype(np.float64)) > 0
    ring_before = ((A @ before.astype(np.float64)) > 0) & ~ring_out & ~out2
    ring_after = ((A @ after.astype(np.float64)) > 0) & ~ring_out & ~out2
    ring_during = ring_out & ~out2
    # counterfactual model: fitted where no lamp is out in the zone nor in its ring
    clean = ~(out2 | ring_out)[zi, ti]
    feats = [f for f in M.design_features(dz) if f != "dark_lamps_out"]
    try:
        base = M.fit_glm(dz, y, family="poisson", features=feats, mask=clean, grain=grain)
    except M.SparseGroupError as exc:
        return [not_estimable(n, kind, f"counterfactual model: {exc}") for n in names]
    expected = base.mean(dz)
    ok = np.isfinite(expected) & M.exposure_mask(dz)
    zone_phase = {"before": before & ~out2, "during": out2, "after": after & ~out2}
    ring_phase = {"before": ring_before, "during": ring_during, "after": ring_after}
    dark = np.nan_to_num(M.numeric(cube, "dark")) > 0
    results: list[dict[str, Any]] = []
    for role, phase in (("zone", zone_phase), ("ring", ring_phase)):
        if role == "ring" and A.nnz == 0:
            why = "no zone neighbours (zones without geometry)"
            results += [not_estimable(n, kind, why) for n in names if n.startswith("outage.ring.")]
            continue
        row_phase = {k: v[zi, ti] & ok for k, v in phase.items()}
        for li in lights:
            lmask = dark if li == "night" else (~dark if li == "day" else np.ones(len(cube), bool))
            sums = {
                k: (
                    float(y[m & lmask].sum()),
                    float(expected[m & lmask].sum()),
                    int((m & lmask).sum()),
                )
                for k, m in row_phase.items()
            }
            for comp, (a, b) in (("start", ("during", "before")), ("repair", ("after", "during"))):
                name = f"outage.{role}.{li}.{comp}"
                oa, ea, na = sums[a]
                ob, eb, nb = sums[b]
                rr = _rate_ratio(oa, ea, ob, eb)
                if rr is None:
                    results.append(
                        not_estimable(
                            name,
                            kind,
                            f"no incidents or no exposure in the {a}/{b} phases "
                            f"({na} and {nb} zone-slots)",
                        )
                    )
                    continue
                est, lo, hi, p = rr
                dur = row_phase["during"] & lmask
                results.append(
                    {
                        "name": name,
                        "kind": kind,
                        "estimable": True,
                        "role": role,
                        "light": li,
                        "comparison": f"{a} vs {b}",
                        "estimate": _f(est),
                        "ci_low": _f(lo),
                        "ci_high": _f(hi),
                        "p_value": _f(p),
                        "n": na + nb,
                        "incidents": int(round(oa + ob)),
                        "observed": {a: oa, b: ob},
                        "expected_without_outage": {a: ea, b: eb},
                        "mean_share_out_during": _f(share[dur].mean())
                        if role == "zone" and dur.any()
                        else None,
                        "window_days": window_days,
                        "min_share_out": min_share,
                        "unit": "rate ratio of observed/expected (model without outages)",
                    }
                )
    return results


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------
def reference_presence(cube: pd.DataFrame) -> np.ndarray:
    """Presence without events: present_baseline, else the zone x hour-of-week median of
    slots without events."""
    ref = M.numeric(cube, "present_baseline", np.nan)
    if np.isfinite(ref).all():
        return ref
    pres = M.numeric(cube, "present", np.nan)
    att = np.nan_to_num(M.numeric(cube, "event_attendance"))
    z = pd.factorize(cube["zone_id"])[0].astype(np.int64)
    key = z * 168 + B.hour_of_week(cube)
    quiet = (att == 0) & np.isfinite(pres)
    med = pd.Series(pres[quiet]).groupby(key[quiet]).median()
    fill = med.reindex(key).to_numpy(np.float64)
    return np.where(np.isfinite(ref), ref, fill)


def _ratio_estimate(x: np.ndarray, a: np.ndarray) -> tuple[float, float, float, float]:
    """Ratio estimator sum(x)/sum(a) with its cluster standard error, CI and t-test p."""
    n = len(x)
    r = float(x.sum() / a.sum())
    if n < 2:
        return r, float("nan"), float("nan"), float("nan")
    resid = x - r * a
    se = float(np.sqrt(n / (n - 1) * (resid**2).sum()) / a.sum())
    tq = stats.t.ppf(0.975, n - 1)
    p = float(2 * stats.t.sf(abs(r / se), n - 1)) if se > 0 else float("nan")
    return r, r - tq * se, r + tq * se, p


def event_uplift(
    cube: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    glm: M.GLMFit | None,
    grain: str = "1h",
    neighbours: dict[str, list[str]] | None = None,
    dz: pd.DataFrame | None = None,
    min_events: int = 2,
) -> list[dict[str, Any]]:
    """Presence and incident uplift per 1 000 attendees, by event category, venue and ring.

    Parameters
    ----------
    cube
        The cube (present, present_baseline, event_attendance, incidents...).
    events
        Validated events (event_id, start, end, zone_id, expected_attendance, category).
    glm
        The ``all`` rate model, for expected incidents without the event.
    neighbours
        Zone -> neighbours (ring); without it ring effects are not estimable.
    min_events
        Categories with fewer events (with presence known) are not estimable.

    Returns
    -------
    list of dict
        Effects ``event.<category|all>.<venue|ring>.<presence|incidents>``.
    """
    kind = "event_uplift"
    if events is None or len(events) == 0 or "event_attendance" not in cube.columns:
        why = "source absent: needs events (cube column event_attendance)"
        return [
            not_estimable(f"event.all.{r}.{w}", kind, why)
            for r in ("venue", "ring")
            for w in ("presence", "incidents")
        ]
    if dz is None:
        dz = M.design(cube, grain=grain)
    zones, slots, zi, ti = _grid(cube)
    pos = {z: i for i, z in enumerate(zones)}
    shape = (len(zones), len(slots))
    pres = np.full(shape, np.nan)
    pres[zi, ti] = M.numeric(cube, "present", np.nan)
    ref_rows = reference_presence(cube)
    ref = np.full(shape, np.nan)
    ref[zi, ti] = ref_rows
    y = np.zeros(shape)
    y[zi, ti] = M.group_counts(cube, None)
    exp0 = np.full(shape, np.nan)
    if glm is not None:
        d0 = dz.copy()
        if "event_k" in d0.columns:
            d0["event_k"] = np.float32(0.0)
        d0["exposure"] = ref_rows
        exp0[zi, ti] = glm.mean(d0)
    own_event = np.zeros(shape, bool)
    own_event[zi, ti] = np.nan_to_num(M.numeric(cube, "event_attendance")) > 0
    A = _adjacency(zones, neighbours)
    slot_len = np.timedelta64(1, "h") if grain == "1h" else np.timedelta64(1, "D")
    rows: list[dict[str, Any]] = []
    ev = events.copy()
    ev["zone_id"] = ev["zone_id"].astype(str)
    for _, e in ev.iterrows():
        z = pos.get(e["zone_id"])
        att = float(e.get("expected_attendance") or 0)
        if z is None or not att > 0:
            continue
        s = pd.Timestamp(e["start"]).tz_convert("UTC").tz_localize(None).to_datetime64()
        en = pd.Timestamp(e["end"]).tz_convert("UTC").tz_localize(None).to_datetime64()
        t = np.flatnonzero((slots + slot_len > s) & (slots < en))
        if t.size == 0:
            continue
        ring = A[z].indices
        for role, zs in (("venue", np.array([z])), ("ring", ring)):
            if zs.size == 0:
                continue
            p = pres[np.ix_(zs, t)]
            r_ = ref[np.ix_(zs, t)]
            ok = np.isfinite(p) & np.isfinite(r_)
            if role == "ring":  # a ring zone hosting its own event at the time is left out
                ok &= ~own_event[np.ix_(zs, t)]
            if not ok.any():
                continue
            # mean over the event's slots of the extra people summed over the role's zones
            extra = float(np.nansum(np.where(ok, p - r_, 0.0), axis=0).mean())
            oi = y[np.ix_(zs, t)]
            ei = exp0[np.ix_(zs, t)]
            oki = np.isfinite(ei) & (ok if role == "ring" else True)
            rows.append(
                {
                    "event_id": e.get("event_id"),
                    "category": str(e.get("category") or "unknown"),
                    "role": role,
                    "att_k": att / 1000.0,
                    "extra_present": extra,
                    "observed": float(oi[oki].sum()),
                    "expected": float(ei[oki].sum()),
                    "slots": int(t.size),
                }
            )
    if not rows:
        return [
            not_estimable(
                "event.all.venue.presence",
                kind,
                "no event overlaps the cube's period with known presence",
            )
        ]
    df = pd.DataFrame(rows)
    out: list[dict[str, Any]] = []
    cats = ["all", *sorted(df["category"].unique())]
    for cat in cats:
        for role in ("venue", "ring"):
            sub = df[(df["role"] == role) & ((df["category"] == cat) | (cat == "all"))]
            base = f"event.{slug(cat)}.{role}"
            if role == "ring" and A.nnz == 0:
                why = "no zone neighbours (zones without geometry)"
                out += [
                    not_estimable(f"{base}.presence", kind, why),
                    not_estimable(f"{base}.incidents", kind, why),
                ]
                continue
            if len(sub) < min_events:
                why = f"{len(sub)} event(s) of category {cat!r} with presence known; at least {min_events} needed"
                out += [
                    not_estimable(f"{base}.presence", kind, why, category=cat, role=role),
                    not_estimable(f"{base}.incidents", kind, why, category=cat, role=role),
                ]
                continue
            a = sub["att_k"].to_numpy()
            r, lo, hi, p = _ratio_estimate(sub["extra_present"].to_numpy(), a)
            out.append(
                {
                    "name": f"{base}.presence",
                    "kind": kind,
                    "estimable": True,
                    "category": cat,
                    "role": role,
                    "estimate": _f(r),
                    "ci_low": _f(lo),
                    "ci_high": _f(hi),
                    "p_value": _f(p),
                    "n": int(len(sub)),
                    "unit": "extra people present per 1 000 expected attendees"
                    + (" (sum over the ring's zones)" if role == "ring" else ""),
                }
            )
            if glm is None:
                out.append(
                    not_estimable(f"{base}.incidents", kind, "no rate model for all incidents")
                )
                continue
            o_sum, e_sum = float(sub["observed"].sum()), float(sub["expected"].sum())
            x = (sub["observed"] - sub["expected"]).to_numpy()
            est = float(x.sum() / a.sum())
            se = float(np.sqrt(max(o_sum, 1.0)) / a.sum())
            # exact two-sided Poisson test of O against E
            if e_sum > 0:
                lo_tail = stats.poisson.cdf(o_sum, e_sum)
                hi_tail = stats.poisson.sf(o_sum - 1, e_sum)
                pv = float(min(1.0, 2 * min(lo_tail, hi_tail)))
            else:
                pv = float("nan")
            out.append(
                {
                    "name": f"{base}.incidents",
                    "kind": kind,
                    "estimable": True,
                    "category": cat,
                    "role": role,
                    "estimate": _f(est),
                    "ci_low": _f(est - 1.96 * se),
                    "ci_high": _f(est + 1.96 * se),
                    "p_value": _f(pv),
                    "n": int(len(sub)),
                    "observed": o_sum,
                    "expected_without_event": e_sum,
                    "unit": "extra incidents per 1 000 attendees over the event"
                    + (" (sum over the ring's zones)" if role == "ring" else ""),
                }
            )
    return out


# --------------------------------------------------------------------------------------------
# all of it
# --------------------------------------------------------------------------------------------
def estimate_effects(
    cube: pd.DataFrame,
    *,
    glms: dict[str, M.GLMFit],
    grain: str = "1h",
    store=None,
    dz: pd.DataFrame | None = None,
    not_estimable: dict[str, str] | None = None,
    studies: bool = True,
    neighbours: dict[str, list[str]] | None = None,
    events: pd.DataFrame | None = None,
    window_days: int = WINDOW_DAYS,
) -> list[dict[str, Any]]:
    """Every effect of ``effects.json``: IRRs per group, outage event study, event uplift.

    Parameters
    ----------
    cube
        The cube.
    glms
        Reported rate model per group (``all`` is used for expectations).
    grain
        Grain of the cube.
    store
        When given, zones (for neighbours) and validated events are read from it.
    dz
        Precomputed design.
    not_estimable
        Feature -> why, for features the cube lacks.
    studies
        Whether to run the event study and the event uplift (IRRs are always reported).
    neighbours, events
        Override what is read from the store.
    window_days
        Before/after windows of the outage event study.

    Returns
    -------
    list of dict
        See the module docstring.
    """
    out = irr_effects(glms, feature_why=not_estimable)
    if not studies:
        return out
    glm = glms.get("all")
    if dz is None:
        dz = M.design(cube, grain=grain)
    if neighbours is None and store is not None:
        try:
            from features.zones import neighbours as _nbrs

            neighbours = _nbrs(store.zones())
        except Exception as exc:  # noqa: BLE001 - zones optional; say why in the effects
            log.warning("no zone neighbours: %s", exc)
            neighbours = None
    if events is None and store is not None:
        events = store.validated("events")
    out += outage_event_study(
        cube, grain=grain, neighbours=neighbours, window_days=window_days, dz=dz
    )
    out += event_uplift(cube, events, glm=glm, grain=grain, neighbours=neighbours, dz=dz)
    return out


__all__: Sequence[str] = (
    "estimate_effects",
    "irr_effects",
    "outage_event_study",
    "event_uplift",
    "reference_presence",
)
