"""Effect estimates: incidence-rate ratios, lighting-outage event study, event uplift.

Every effect is an :class:`~pipelines.models.results.Effect` (one entry of
``store/models/effects.json``, with ``name``, ``kind``, ``estimable`` and either the estimate,
its 95 % interval, p value, ``n`` and ``unit``, or ``why`` it could not be estimated);
:func:`estimate_effects` gathers them in :class:`~pipelines.models.results.Effects`.

Kinds
-----
``irr``
    Incidence-rate ratio of a model feature in a category group's rate model, refitted for
    effects by :mod:`pipelines.models.robust` (by the Poisson estimating equations, whose
    target is the expected-weighted mean multiplier): the zone x day and zone x week windows an excess
    detector flags are left out, event slots are compared with the zone's presence without the
    event, and the covariance is clustered two ways, by zone and by local day (Cameron, Gelbach
    & Miller 2011); ``n`` is the number of zone-slots
    fitted. Each carries its Benjamini-Hochberg q value over all the IRRs reported
    (:func:`with_family_q`): with seven features in up to six groups, a p value under 5 % is
    expected for about one effect in twenty that is truly absent.
``outage_event_study``
    Lighting outages as an event study (:mod:`pipelines.models.outage`): observed against
    expected incidents before, during and after outages, in the zone and its ring, at night and
    in daylight; ``n`` is the number of zone-slots compared.
``event_uplift``
    Extra people present and extra incidents per 1 000 attendees, per event category, at the
    venue and in its ring (:mod:`pipelines.models.uplift`); ``n`` is the number of events.

References
----------
Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. *Journal of the Royal
Statistical Society B* 57(1), 289-300.
Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2011). Robust inference with multiway
clustering. *Journal of Business & Economic Statistics* 29(2), 238-249.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from features.zones import neighbours as zone_neighbours
from pipelines.models.design import FEATURES, design
from pipelines.models.effects_fe import TWO_WAY
from pipelines.models.glm import GLMFit
from pipelines.models.outage import MIN_SHARE_OUT, WINDOW_DAYS, outage_event_study
from pipelines.models.results import Effect, Effects
from pipelines.models.robust import local_day, robust_fits, treated_days, treated_zones
from pipelines.models.studies import finite, not_estimable
from pipelines.models.uplift import event_uplift, reference_presence

log = logging.getLogger(__name__)

UNITS = {
    "dark": "IRR, night vs day",
    "dark_lamps_out": "IRR per 10 % of the zone's lamps out, at night",
    "event_k": "IRR per 1 000 attendees, against the zone's presence without the event",
    "rain": "IRR, precipitation >= 1 mm vs less",
    "transit_k": "IRR per 1 000 transit entries in the zone",
    "holiday": "IRR, public holiday vs not",
    "school_holiday": "IRR, school holiday vs not",
}


def irr_effects(
    glms: dict[str, GLMFit],
    *,
    feature_why: Mapping[str, str | None] | None = None,
    failed: Mapping[str, str] | None = None,
    details: Mapping[str, object] | None = None,
    days: Mapping[str, tuple[int, int, int, int]] | None = None,
    zones: Mapping[str, tuple[int, int, int]] | None = None,
) -> list[Effect]:
    """One ``irr`` effect per named feature and group (not-estimable ones with their reason).

    ``failed``: group -> why its model could not be fitted (every feature of it is then not
    estimable); ``details``: what every entry records besides (the anomalous windows left out,
    the covariance used); ``days``: feature -> (days it is non-zero, days, those of them in
    weeks it does not fill, t degrees of freedom) of
    :func:`pipelines.models.robust.treated_days`, whose t quantile then gives the interval and
    p value; ``zones``: feature -> (zones it is non-zero in, zones, t degrees of freedom) of
    :func:`pipelines.models.robust.treated_zones`, for the fits clustered by zone and day (the
    smaller degrees of freedom of the two is used).
    """
    out: list[Effect] = []
    dof = dict(days or {})
    zdof = dict(zones or {})
    for g, why in (failed or {}).items():
        out += [not_estimable(f"irr.{g}.{f}", "irr", why, group=g, feature=f) for f in FEATURES]
    for g, m in glms.items():
        tab = m.irr_table().set_index("term")
        about = {
            **(details or {}),
            "covariance": _covariance(m),
        }
        for f in FEATURES:
            name = f"irr.{g}.{f}"
            if f not in tab.index:
                why = (feature_why or {}).get(f) or m.not_estimable.get(f) or "not in the model"
                out.append(not_estimable(name, "irr", why, group=g, feature=f))
                continue
            r = tab.loc[f]
            if f in dof and m.cov_type in ("cluster", TWO_WAY):
                zf = zdof.get(f) if m.cov_type == TWO_WAY else None
                r, interval = _t_interval(r, *dof[f], zones=zf)
                about_f = {**about, "interval": interval}
            else:
                about_f = about
            out.append(
                Effect(
                    name=name,
                    kind="irr",
                    estimable=True,
                    group=g,
                    feature=f,
                    family=m.family,
                    estimate=finite(r["irr"]),
                    ci_low=finite(r["ci_low"]),
                    ci_high=finite(r["ci_high"]),
                    p_value=finite(r["p_value"]),
                    n=m.n_rows,
                    incidents=m.n_incidents,
                    unit=UNITS[f],
                    details=about_f,
                )
            )
    return with_family_q(out)


def _covariance(m: GLMFit) -> str:
    """The covariance of a fit's IRRs, in words."""
    if m.cov_type == TWO_WAY:
        return (
            f"two-way cluster-robust by zone and by local day ({m.n_clusters} days; Cameron, "
            "Gelbach & Miller 2011)"
        )
    if m.cov_type == "cluster":
        return f"cluster-robust by local day ({m.n_clusters} days)"
    return "model-based"


def _t_interval(
    r: pd.Series, g1: int, g: int, g1w: int, dof: int, *, zones: tuple[int, int, int] | None = None
) -> tuple[pd.Series, str]:
    """An IRR row with its 95 % interval and p value on t(``dof``) instead of the normal
    (``zones``: the zone dimension's ``(Z1, Z, dof)``, the smaller dof used)."""
    where = ""
    if zones is not None:
        dof = min(dof, zones[2])
        where = f", in {zones[0]} of {zones[1]} zones"
    b, se = float(r["log_irr"]), float(r["se"])
    tq = float(stats.t.ppf(0.975, dof))
    r = r.copy()
    r["ci_low"], r["ci_high"] = np.exp(b - tq * se), np.exp(b + tq * se)
    r["p_value"] = float(2 * stats.t.sf(abs(b / se), dof)) if se > 0 else float("nan")
    weeks = f", {g1w} of them in weeks it does not fill" if g1 < g else ""
    return r, f"t on {dof} df (non-zero on {g1} of {g} local days{weeks}{where})"


def with_family_q(effects: list[Effect]) -> list[Effect]:
    """``effects`` with each estimable IRR's Benjamini-Hochberg q value over every estimable
    IRR of the list (``details["q_value_bh"]``, ``details["family_size"]``).

    effects.json reports one p value per feature and group (7 features x up to 6 groups): at
    5 % per test about one in twenty effects truly absent reads as significant. The q value
    says which effects survive a 5 % false-discovery rate over the whole family (Benjamini &
    Hochberg 1995); summaries and the evaluation flag an effect by its q value.
    """
    idx = [i for i, e in enumerate(effects) if e.estimable and e.p_value is not None]
    if not idx:
        return effects
    q = multipletests([float(effects[i].p_value or 0.0) for i in idx], method="fdr_bh")[1]
    out = list(effects)
    for i, qi in zip(idx, q, strict=True):
        d = {**(out[i].details or {}), "q_value_bh": float(qi), "family_size": len(idx)}
        out[i] = dataclasses.replace(out[i], details=d)
    return out


def store_neighbours(store) -> dict[str, list[str]] | None:
    """The zones' neighbours of a store (None, with a warning, when it has no usable zones)."""
    try:
        return zone_neighbours(store.zones())
    except Exception as exc:  # noqa: BLE001 - zones optional; the effects say why
        log.warning("no zone neighbours: %s", exc)
        return None


def effect_inputs(store) -> tuple[dict[str, list[str]] | None, pd.DataFrame | None]:
    """What the studies read from a store: the zones' neighbours and the validated events."""
    return store_neighbours(store), store.validated("events")


def estimate_effects(
    cube: pd.DataFrame,
    *,
    glms: dict[str, GLMFit],
    grain: str = "1h",
    store=None,
    dz: pd.DataFrame | None = None,
    not_estimable: dict[str, str] | None = None,
    studies: bool = True,
    neighbours: dict[str, list[str]] | None = None,
    events: pd.DataFrame | None = None,
    window_days: int = WINDOW_DAYS,
    robust: bool = True,
) -> Effects:
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
        When given, what :func:`effect_inputs` reads from it (zones' neighbours, validated
        events) fills ``neighbours`` and ``events`` left as None. Callers that keep reading at
        the edges call :func:`effect_inputs` themselves and pass both.
    dz
        Precomputed design.
    not_estimable
        Feature -> why, for features the cube lacks.
    studies
        Whether to run the event study and the event uplift (IRRs are always reported).
    neighbours, events
        Zone -> neighbouring zones, and the validated events.
    window_days
        Before/after windows of the outage event study.
    robust
        Refit the IRRs for effects (:func:`pipelines.models.robust.robust_fits`: anomalous
        windows left out, events against their absence, covariance clustered by zone and by
        local day); False
        reports the given models' IRRs as they are.

    Returns
    -------
    Effects
        ``Effects.to_json()`` is ``effects.json`` (its ``generated_at`` set by the writer).
    """
    dz = design(cube, grain=grain) if dz is None else dz
    if robust:
        fits, failed, flagged = robust_fits(cube, dz, glms)
        details = {} if flagged is None else flagged.details()
        details["fixed_effects"] = (
            "a factor per zone and per ISO week, fitted to convergence; the covariance of the "
            "features, clustered by zone and by local day, with them partialled out"
        )
        days = zones = None
        if flagged is not None:
            days = treated_days(dz, list(FEATURES), local_day(cube), flagged.keep)
            zones = treated_zones(dz, list(FEATURES), cube["zone_id"].to_numpy(), flagged.keep)
        out = irr_effects(
            fits, feature_why=not_estimable, failed=failed, details=details, days=days,
            zones=zones,
        )  # fmt: skip
    else:
        out = irr_effects(glms, feature_why=not_estimable)
    if not studies:
        return Effects(grain=grain, effects=tuple(out))
    if neighbours is None and store is not None:
        neighbours = store_neighbours(store)
    if events is None and store is not None:
        events = store.validated("events")
    out += outage_event_study(
        cube, grain=grain, neighbours=neighbours, window_days=window_days, dz=dz
    )
    out += event_uplift(
        cube, events, glm=glms.get("all"), grain=grain, neighbours=neighbours, dz=dz
    )
    return Effects(grain=grain, effects=tuple(out))


__all__: Sequence[str] = (
    "MIN_SHARE_OUT",
    "UNITS",
    "WINDOW_DAYS",
    "Effect",
    "Effects",
    "effect_inputs",
    "store_neighbours",
    "estimate_effects",
    "event_uplift",
    "irr_effects",
    "outage_event_study",
    "with_family_q",
    "reference_presence",
)
