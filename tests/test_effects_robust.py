"""Effects that are not fooled (issue 12): the shipped path with planted signals left in,
crowds that do not raise incidents, cluster-robust ratios and fixed effects."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from _sim_cube import simulate_city
from scipy import stats

from bench.eval_effects import estimand
from features.store import Store
from pipelines import models as M
from pipelines.models import effects as E
from pipelines.models import robust, studies
from pipelines.models.design import group_categories
from pipelines.models.results import Effects


def _groups_for(categories: list[str], groups: dict[str, list[str]]) -> list[str]:
    """The fitted groups whose categories all carry a planted effect (``all`` when it covers
    every category)."""
    cats = set(categories)
    out = [g for g, members in groups.items() if g != "all" and set(members) <= cats]
    return ["all"] if cats >= set(groups["all"]) else out


def _simultaneous_miss(e, truth: float, k: int) -> bool:
    """Whether ``truth`` lies outside the effect's interval at the simultaneous level of
    ``k`` effects (Bonferroni: 1 - 0.05 / k each), from its estimate, 95 % interval and the
    t degrees of freedom it names."""
    dof = int(re.search(r"t on (\d+) df", e.details["interval"]).group(1))
    se = (np.log(e.ci_high) - np.log(e.ci_low)) / (2 * stats.t.ppf(0.975, dof))
    return abs(np.log(e.estimate / truth)) / se > stats.t.ppf(1 - 0.025 / k, dof)


def test_shipped_fit_recovers_planted_irrs_with_signals_left_in(fitted_store, tiny_city):
    """`vigie fit` on the tiny city, planted weak signals LEFT IN: each planted IRR (the
    event's against its whole effect, crowd included, ``whole_event`` of truth.json, which the
    effect fits' Poisson equations estimate) lies, in every group it applies to, inside its
    interval at the simultaneous 95 % level of the effects checked,
    and at most two of them outside their own 95 % interval (one interval in twenty misses by
    design: with about ten checked, P(more than two) ~ 2 %); effects planted absent are not
    significant at 5 % (their p value, and their q value over the IRRs reported); the
    anomalous windows left out and the fixed effects are recorded.

    Within 10 % of the truth is not asserted here: eight weeks hold a few rain days and public
    holidays, and intervals as wide as 10 % would make it a test of the draw. It is scored on
    the two-year city by `python -m bench.evaluate effects` (docs/evaluation.md)."""
    truth = json.loads((tiny_city / "truth.json").read_text())
    eff = Effects.from_json(json.loads((fitted_store / Store.EFFECTS_JSON).read_text()))
    groups = group_categories(
        [c[4:] for c in Store(fitted_store).cube_meta()["columns"] if c.startswith("inc_")]
    )
    checked = []
    for t in truth["effects"]:
        for g in _groups_for(t["categories"], groups):
            e = eff.get(f"irr.{g}.{t['feature']}")
            if e is not None and e.estimable:
                checked.append((t, g, e))
    assert len(checked) >= 9 and "event_k" in {t["feature"] for t, _, _ in checked}
    outside = 0
    for t, g, e in checked:
        planted = estimand(t)[0]  # the event's: its whole effect (truth.json whole_event)
        about = (t["name"], g, planted, e.estimate, e.ci_low, e.ci_high)
        assert not _simultaneous_miss(e, planted, len(checked)), about
        outside += not (e.ci_low <= planted <= e.ci_high)
        if t["irr"] == 1.0:
            assert e.p_value > 0.05 and e.details["q_value_bh"] > 0.05, (*about, e.p_value)
        assert "two-way cluster-robust by zone and by local day" in e.details["covariance"]
        assert " zones)" in e.details["interval"]  # its t dof counts the zones too
        assert "per zone and per ISO week" in e.details["fixed_effects"]
        assert e.details["anomalous_windows_left_out"] > 0
    assert outside <= 2


def _flat_crowd_city(seed: int):
    """A city whose crowds do not raise incidents: wherever a crowd is present (the venue and
    the ring zones it spills into) incidents are drawn from the rate at the reference presence
    without the event, while the presence files show the crowd (elasticity 0)."""
    c = simulate_city(zones=16, weeks=10, seed=seed, base=1.5e-4, irr={"event_k": 1.0})
    cube = c.cube
    on = (cube["event_attendance"].to_numpy() > 0) | (c.extra["ring_extra_present"] > 0)
    rng = np.random.default_rng(seed)
    y = cube["incidents"].to_numpy().copy()
    y[on] = rng.poisson(c.extra["mu_no_event"][on])
    cube["incidents"] = y.astype(np.int32)
    for col in [k for k in cube.columns if k.startswith("inc_")]:
        cube[col] = 0
    cube["inc_theft"] = cube["incidents"]
    return c


@pytest.mark.parametrize("seed", [41, 42])
def test_crowds_that_do_not_raise_incidents_give_no_significant_event_effect(seed):
    """Presence rises with the crowd but incidents do not: neither the event IRR nor the
    venue or ring uplift is significant, in either direction, while the offset model alone
    (presence forced at elasticity 1) reports a significant reduction. (Each of the three is a
    5 % test: on some other seed one of them will reject by chance.)"""
    c = _flat_crowd_city(seed)
    dz = M.design(c.cube)
    y = M.group_counts(c.cube, None)
    glm = M.fit_glm(dz, y, family="poisson")
    raw = glm.irr_table().set_index("term").loc["event_k"]
    assert raw["irr"] < 1 and raw["p_value"] < 0.05  # the artefact of the offset
    eff = E.estimate_effects(
        c.cube, glms={"all": glm}, dz=dz, neighbours=c.neighbours, events=c.events
    )
    for name in ("irr.all.event_k", "event.all.venue.incidents", "event.all.ring.incidents"):
        e = eff.get(name)
        assert e is not None and e.estimable, name
        assert e.p_value > 0.05, (name, e.estimate, e.p_value)


def test_flagging_does_not_select_events_on_their_counts():
    """Anomalous windows are flagged against the event design (the zone without its crowd):
    on a city whose huge crowds leave incidents unchanged, no venue day is left out as
    'emptied', so the events kept are not chosen by their counts."""
    c = _flat_crowd_city(43)
    cube = c.cube
    on = cube["event_attendance"].to_numpy() > 0
    cube.loc[on, "present"] = (
        cube.loc[on, "present"] * 30
    )  # a stadium: crowds 30 times the residents
    dz = M.design(cube)
    glm = M.fit_glm(dz, M.group_counts(cube, None), family="poisson")
    fits, failed, flagged = robust.robust_fits(cube, dz, {"all": glm})
    assert not failed and flagged is not None
    assert flagged.keep[on].all()
    assert fits["all"].irr_table().set_index("term").loc["event_k", "p_value"] > 0.05


def test_cluster_rate_ratio_widens_with_overdispersed_clusters():
    """Episodes with a shared random level: the cluster-robust interval of the ratio of SIRs
    covers the truth (1.5) in about 95 % of replicates, ."""
    rng = np.random.default_rng(3)
    cover_cluster = 0
    reps = 200
    for _ in range(reps):
        G = 30
        level = rng.gamma(2.0, 0.5, G)  # episode-level heterogeneity, mean 1
        e_b = np.full(G, 20.0)
        e_a = np.full(G, 10.0)
        o_b = rng.poisson(e_b * level)
        o_a = rng.poisson(e_a * level * 1.5)
        _, lo, hi, _, _ = studies.cluster_rate_ratio(o_a, e_a, o_b, e_b)
        cover_cluster += lo <= 1.5 <= hi
    assert cover_cluster / reps >= 0.88


def test_fixed_effects_are_the_poisson_mle_of_zone_and_day_totals():
    """On a two-way table the iterative proportional fit reproduces each zone's and each
    day's total (the Poisson likelihood equations), and a level without fitting rows is NaN."""
    rng = np.random.default_rng(0)
    zone = np.repeat(np.arange(5), 20)
    day = np.tile(np.arange(20), 5)
    y = rng.poisson(3.0 * (1 + zone) * (1 + 0.1 * day)).astype(float)
    fit = np.ones(100, bool)
    fit[(zone == 4)] = False
    ex = studies.fixed_effects(y, np.ones(100), fit, zone, day)
    for z in range(4):
        assert ex[zone == z].sum() == pytest.approx(y[zone == z].sum(), rel=1e-4)
    for d in range(20):
        rows = (day == d) & fit
        assert ex[rows].sum() == pytest.approx(y[rows].sum(), rel=1e-4)
    assert np.isnan(ex[zone == 4]).all()


def test_effect_fits_on_the_true_intensities_recover_the_planted_truth(tmp_path, monkeypatch):
    """The effect fits' pseudo-true values are the planted truth: on a tiny city (seed 3,
    not one the fits were developed on) whose incident counts are replaced by the synthetic
    city's own expected counts (its intensity before the Poisson draw, planted signals in),
    every planted IRR of the ``all`` group, the event's whole effect included, is recovered
    within 2 % (the signals, planted in 3 of its 8 weeks and only partly left out, move the
    tiny city's IRRs by about 1 %). A specification error (an effect term measuring another
    quantity than the truth, an event fit falling back to the presence its crowd raised)
    shows here without the noise of the draws."""
    import features.synth.chunks as chunks
    from features.cube import build_cube
    from features.ingest import ingest
    from features.synth import generate
    from pipelines.models.design import design as make_design

    captured = []
    draw = chunks.draw_incidents

    def keep_means(model, *, cal, zones, mu, first_id, rng):
        captured.append((cal.hours, np.asarray(zones.ids).astype(str), mu.sum(axis=-1)))
        return draw(model, cal=cal, zones=zones, mu=mu, first_id=first_id, rng=rng)

    monkeypatch.setattr(chunks, "draw_incidents", keep_means)
    generate("tiny", tmp_path / "raw", seed=3)
    ingest(tmp_path / "raw" / "sources.yaml", tmp_path / "store")
    store = Store(tmp_path / "store")
    build_cube(store)
    truth = json.loads((tmp_path / "raw" / "truth.json").read_text())
    lam = pd.concat(
        pd.DataFrame(
            {
                "zone_id": np.tile(ids, len(hours)),
                "hour": np.repeat(hours, len(ids)),
                "lam": mu.ravel(),
            }
        )  # fmt: skip
        for hours, ids, mu in captured
    )
    cube = store.cube()
    cube["incidents"] = (
        cube[["zone_id", "hour"]].astype({"zone_id": str}).merge(lam, how="left")["lam"].to_numpy()
    )
    assert np.isfinite(cube["incidents"]).all()
    cube = cube.drop(columns=[c for c in cube.columns if c.startswith("inc_")])
    dz = make_design(cube)
    glm = M.fit_glm(dz, cube["incidents"].to_numpy(), family="negbin")
    fits, failed, flagged = robust.robust_fits(cube, dz, {"all": glm})
    assert not failed and flagged is not None
    assert flagged.event_exposure == "reference presence"
    irr = fits["all"].irr_table().set_index("term")["irr"]
    checked = 0
    for t in truth["effects"]:
        if set(t["categories"]) >= set(truth["incidents"]["by_category"]):
            planted = estimand(t)[0]
            assert irr[t["feature"]] == pytest.approx(planted, rel=0.02), (t["name"], planted)
            checked += 1
    assert checked == 6
