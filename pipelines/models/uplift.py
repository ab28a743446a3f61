"""Event uplift (effects ``event.<category|all>.<venue|ring>.<presence|incidents>``).

Per event category, in the venue zone and in its ring (ring zones hosting an event of their own
at the time are left out): extra people present per 1 000 expected attendees (present minus
the reference presence ``present_baseline``, which excludes event slots) and extra incidents
per 1 000 attendees (observed minus the rate model's expectation with the reference presence
and no event). Ratio estimators over events with cluster (event) standard errors (Cochran
1977, section 6.3); incident p-values are exact Poisson tests of observed against expected.
``n`` is the number of events.

References
----------
Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed. Wiley.
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
from pipelines.models.studies import (
    adjacency,
    finite,
    grid,
    not_estimable,
    poisson_test,
    ratio_estimate,
)

KIND = "event_uplift"
NO_RING = "no zone neighbours (zones without geometry)"


def reference_presence(cube: pd.DataFrame) -> np.ndarray:
    """Presence without events: present_baseline, else the zone x hour-of-week median of
    slots without events."""
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
    exp0 = np.full(shape, np.nan)
    if glm is not None:
        d0 = dz.copy()
        if "event_k" in d0.columns:
            d0["event_k"] = np.float32(0.0)
        d0["exposure"] = ref_rows
        exp0[zi, ti] = glm.mean(d0)
    own_event = np.zeros(shape, bool)
    own_event[zi, ti] = np.nan_to_num(numeric(cube, "event_attendance")) > 0
    return _Grids(
        zones=zones,
        slots=slots,
        pres=laid_out(numeric(cube, "present", np.nan), np.nan),
        ref=laid_out(ref_rows, np.nan),
        y=laid_out(group_counts(cube, None), 0.0),
        exp0=exp0,
        own_event=own_event,
        A=adjacency(zones, neighbours),
    )


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
    oki = np.isfinite(ei) & (ok if role == "ring" else True)
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
    a = sub["att_k"].to_numpy()
    o_sum, e_sum = float(sub["observed"].sum()), float(sub["expected"].sum())
    est = float((sub["observed"] - sub["expected"]).to_numpy().sum() / a.sum())
    se = float(np.sqrt(max(o_sum, 1.0)) / a.sum())
    return Effect(
        name=f"{base}.incidents",
        kind=KIND,
        estimable=True,
        category=cat,
        role=role,
        estimate=finite(est),
        ci_low=finite(est - 1.96 * se),
        ci_high=finite(est + 1.96 * se),
        p_value=finite(poisson_test(o_sum, e_sum)),
        n=int(len(sub)),
        unit="extra incidents per 1 000 attendees over the event" + _ring_unit(role),
        details={"observed": o_sum, "expected_without_event": e_sum},
    )


def _category_effects(
    df: pd.DataFrame, cat: str, role: str, *, has_ring: bool, has_glm: bool, min_events: int
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
    if not has_glm:
        why = "no rate model for all incidents"
        return [
            _presence_effect(base, cat, role, sub),
            not_estimable(f"{base}.incidents", KIND, why),
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
        The ``all`` rate model, for expected incidents without the event.
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
                df, cat, role, has_ring=g.A.nnz > 0, has_glm=glm is not None,
                min_events=min_events,
            )  # fmt: skip
    return out
