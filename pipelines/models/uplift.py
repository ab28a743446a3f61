"""Event uplift (effects ``event.<category|all>.<venue|ring>.<presence|incidents>``).

Per event category, in the venue zone and in its ring (ring zones hosting an event of their own
at the time are left out): extra people present per 1 000 expected attendees (present minus
the reference presence ``present_baseline``, which excludes event slots) and extra incidents
per 1 000 attendees (observed minus the incidents expected without the event).

**The "no event" counterfactual does not scale with the crowd.** The expected incidents without
the event are the zone's own history, not a rate per person present: a multiplicative model
``zone x local hour of week`` times ``local day`` fitted (Poisson maximum likelihood, iterative
proportional fitting) on the zone-slots without any event in the zone or its ring. Neither the
crowd's presence nor the transit entries the event itself caused enter it, and a shock of the
whole city on the event's day is in it. Where crowds do not change the incidents, the uplift is
0 whatever the presence does.

**Intervals are clustered by event.** Both uplifts are ratio estimators over events (Cochran
1977, section 6.3) with the cluster-robust standard error of the events' residuals and t
quantiles on n - 1 degrees of freedom: over-dispersion, day shocks and the dependence of the
slots of one event widen them. ``n`` is the number of events.

References
----------
Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed. Wiley.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
*Journal of Human Resources* 50(2), 317-372.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from features.text import slug
from pipelines.models.baselines import hour_of_week
from pipelines.models.design import design, group_counts, numeric
from pipelines.models.glm import GLMFit
from pipelines.models.results import Effect
from pipelines.models.robust import local_day, reference_presence
from pipelines.models.studies import (
    adjacency,
    finite,
    fixed_effects,
    grid,
    not_estimable,
    ratio_estimate,
)

KIND = "event_uplift"
NO_RING = "no zone neighbours (zones without geometry)"


@dataclass(frozen=True)
class _Grids:
    """Zone x slot grids of the uplift: presence, reference, incidents, expectation without
    the event, own events, and the zones' adjacency."""

    zones: list[str]
    slots: np.ndarray
    pres: np.ndarray
    ref: np.ndarray
    y: np.ndarray
    exp0: np.ndarray
    own_event: np.ndarray
    A: sparse.csr_matrix


def _grids(
    cube: pd.DataFrame, dz: pd.DataFrame, glm: GLMFit | None, neighbours: dict | None
) -> _Grids:
    zones, slots, zi, ti = grid(cube)
    shape = (len(zones), len(slots))

    def laid_out(values: np.ndarray, fill: float) -> np.ndarray:
        a = np.full(shape, fill)
        a[zi, ti] = values
        return a

    ref_rows = reference_presence(cube)
    own_event = np.zeros(shape, bool)
    own_event[zi, ti] = np.nan_to_num(numeric(cube, "event_attendance")) > 0
    A = adjacency(zones, neighbours)
    near = own_event | ((A @ own_event.astype(np.float64)) > 0)
    exp0 = np.full(shape, np.nan)
    exp0[zi, ti] = no_event_expectation(cube, group_counts(cube, None), quiet=~near[zi, ti])
    return _Grids(
        zones=zones,
        slots=slots,
        pres=laid_out(numeric(cube, "present", np.nan), np.nan),
        ref=laid_out(ref_rows, np.nan),
        y=laid_out(group_counts(cube, None), 0.0),
        exp0=exp0,
        own_event=own_event,
        A=A,
    )


def no_event_expectation(cube: pd.DataFrame, y: np.ndarray, *, quiet: np.ndarray) -> np.ndarray:
    """Incidents expected without events: zone x local hour of week times local day factors
    fitted on the ``quiet`` rows (no event in the zone nor in its ring); presence plays no
    part. (A zone's week profile is its own: a market district's Sunday morning is not a
    business district's.)"""
    z = pd.factorize(cube["zone_id"])[0].astype(np.int64)
    zhow = z * 168 + hour_of_week(cube)
    y = np.nan_to_num(np.asarray(y, dtype=np.float64))
    return fixed_effects(y, np.ones(len(cube)), quiet, zhow, local_day(cube))


def _role_row(e: pd.Series, role: str, zs: np.ndarray, t: np.ndarray, g: _Grids, att: float):
    """One event's extra presence and observed / expected incidents over a role's zones."""
    p = g.pres[np.ix_(zs, t)]
    r_ = g.ref[np.ix_(zs, t)]
    ok = np.isfinite(p) & np.isfinite(r_)
    if role == "ring":  # a ring zone hosting its own event at the time is left out
        ok &= ~g.own_event[np.ix_(zs, t)]
    if not ok.any():
        return None
    # mean over the event's slots of the extra people summed over the role's zones
    extra = float(np.nansum(np.where(ok, p - r_, 0.0), axis=0).mean())
    oi = g.y[np.ix_(zs, t)]
    ei = g.exp0[np.ix_(zs, t)]
    oki = ok if role == "ring" else np.ones_like(ok)
    if not np.isfinite(ei[oki]).all():  # no own history to impute from (recurring events)
        oi, ei = np.full_like(ei, np.nan), np.full_like(ei, np.nan)
    return {
        "event_id": e.get("event_id"),
        "category": str(e.get("category") or "unknown"),
        "role": role,
        "att_k": att / 1000.0,
        "extra_present": extra,
        "observed": float(oi[oki].sum()),
        "expected": float(ei[oki].sum()),
        "slots": int(t.size),
    }


def _event_rows(events: pd.DataFrame, g: _Grids, slot_len: np.timedelta64) -> list[dict[str, Any]]:
    """Per event and role (venue, ring) with a known presence: the figures of :func:`_role_row`."""
    pos = {z: i for i, z in enumerate(g.zones)}
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
        t = np.flatnonzero((g.slots + slot_len > s) & (g.slots < en))
        if t.size == 0:
            continue
        for role, zs in (("venue", np.array([z])), ("ring", g.A[z].indices)):
            row = _role_row(e, role, zs, t, g, att) if zs.size else None
            if row is not None:
                rows.append(row)
    return rows


def _ring_unit(role: str) -> str:
    return " (sum over the ring's zones)" if role == "ring" else ""


def _presence_effect(base: str, cat: str, role: str, sub: pd.DataFrame) -> Effect:
    r, lo, hi, p = ratio_estimate(sub["extra_present"].to_numpy(), sub["att_k"].to_numpy())
    return Effect(
        name=f"{base}.presence",
        kind=KIND,
        estimable=True,
        category=cat,
        role=role,
        estimate=finite(r),
        ci_low=finite(lo),
        ci_high=finite(hi),
        p_value=finite(p),
        n=int(len(sub)),
        unit="extra people present per 1 000 expected attendees" + _ring_unit(role),
    )


def _incident_effect(base: str, cat: str, role: str, sub: pd.DataFrame) -> Effect:
    n_all = len(sub)
    sub = sub[np.isfinite(sub["expected"].to_numpy(np.float64))]
    if len(sub) < 2:
        why = (
            f"{len(sub)} of {n_all} event(s) with incidents expected without them (the zone "
            "never went without such an event at those hours of week)"
        )
        return not_estimable(f"{base}.incidents", KIND, why, category=cat, role=role)
    a = sub["att_k"].to_numpy()
    o_sum, e_sum = float(sub["observed"].sum()), float(sub["expected"].sum())
    est, lo, hi, p = ratio_estimate((sub["observed"] - sub["expected"]).to_numpy(), a)
    return Effect(
        name=f"{base}.incidents",
        kind=KIND,
        estimable=True,
        category=cat,
        role=role,
        estimate=finite(est),
        ci_low=finite(lo),
        ci_high=finite(hi),
        p_value=finite(p),
        n=int(len(sub)),
        unit="extra incidents per 1 000 attendees over the event" + _ring_unit(role),
        details={
            "observed": o_sum,
            "expected_without_event": e_sum,
            "counterfactual": "zone x hour of week and local day, fitted without events",
            "interval": f"clustered by event (t, {len(sub) - 1} df)",
            "events_without_counterfactual": n_all - len(sub),
        },
    )


def _category_effects(
    df: pd.DataFrame, cat: str, role: str, *, has_ring: bool, min_events: int
) -> list[Effect]:
    """Presence and incident uplift of one category (or ``all``) and role."""
    sub = df[(df["role"] == role) & ((df["category"] == cat) | (cat == "all"))]
    base = f"event.{slug(cat)}.{role}"
    if role == "ring" and not has_ring:
        return [
            not_estimable(f"{base}.presence", KIND, NO_RING),
            not_estimable(f"{base}.incidents", KIND, NO_RING),
        ]
    if len(sub) < min_events:
        why = (
            f"{len(sub)} event(s) of category {cat!r} with presence known; "
            f"at least {min_events} needed"
        )
        return [
            not_estimable(f"{base}.presence", KIND, why, category=cat, role=role),
            not_estimable(f"{base}.incidents", KIND, why, category=cat, role=role),
        ]
    return [_presence_effect(base, cat, role, sub), _incident_effect(base, cat, role, sub)]


def event_uplift(
    cube: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    glm: GLMFit | None,
    grain: str = "1h",
    neighbours: dict[str, list[str]] | None = None,
    dz: pd.DataFrame | None = None,
    min_events: int = 2,
) -> list[Effect]:
    """Presence and incident uplift per 1 000 attendees, by event category, venue and ring.

    Parameters
    ----------
    cube
        The cube (present, present_baseline, event_attendance, incidents...).
    events
        Validated events (event_id, start, end, zone_id, expected_attendance, category).
    glm
        The ``all`` rate model; unused since issue 12 (the counterfactual is the zone's own
        history, :func:`no_event_expectation`), kept for callers.
    neighbours
        Zone -> neighbours (ring); without it ring effects are not estimable.
    min_events
        Categories with fewer events (with presence known) are not estimable.

    Returns
    -------
    list of Effect
        Effects ``event.<category|all>.<venue|ring>.<presence|incidents>``.
    """
    if events is None or len(events) == 0 or "event_attendance" not in cube.columns:
        why = "source absent: needs events (cube column event_attendance)"
        return [
            not_estimable(f"event.all.{r}.{w}", KIND, why)
            for r in ("venue", "ring")
            for w in ("presence", "incidents")
        ]
    dz = design(cube, grain=grain) if dz is None else dz
    g = _grids(cube, dz, glm, neighbours)
    slot_len = np.timedelta64(1, "h") if grain == "1h" else np.timedelta64(1, "D")
    rows = _event_rows(events, g, slot_len)
    if not rows:
        why = "no event overlaps the cube's period with known presence"
        return [not_estimable("event.all.venue.presence", KIND, why)]
    df = pd.DataFrame(rows)
    out: list[Effect] = []
    for cat in ["all", *sorted(df["category"].unique())]:
        for role in ("venue", "ring"):
            out += _category_effects(
                df, cat, role, has_ring=g.A.nnz > 0, min_events=min_events,
            )  # fmt: skip
    return out
