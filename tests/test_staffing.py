"""Staffing rules against hand-computed values: the DPS grid, agents, lanes, barrier and egress.

Expected values are worked out by hand from the published rules (arrêté du 7 novembre 2006 for
the DPS grid, HSG195 ratios, Fruin's queuing levels, the Green Guide's flow rates), not taken
from the code's output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pipelines.events.crowd import (
    agents,
    arrival_density,
    arrived_share,
    barrier,
    egress,
    entry_lanes,
    peak_arrivals_per_minute,
    remaining_share,
)
from pipelines.events.dps import TIERS, delay_coefficient, dps, dps_public, infer_dps_inputs
from pipelines.events.params import StaffingInputError, StaffingParams
from pipelines.events.plan import plan_event


def test_dps_worked_example():
    """10 000 standing at a fair, in the streets, help ≤ 10 min: i = 0.80, RIS = 8, DPS-PE of 8."""
    r = dps(10_000, activity=0.30, environment=0.25, delay=0.25)
    assert (r.i, r.ris, r.tier, r.rescuers, r.posts) == (0.80, 8.0, "DPS-PE", 8, 1)
    words = dps(10_000, activity="standing", environment="streets", delay=8)
    assert (words.i, words.ris, words.tier, words.rescuers) == (0.80, 8.0, "DPS-PE", 8)
    assert "i = P2 0.30 + E1 0.25 + E2 0.25 = 0.80" in r.arithmetic
    assert "RIS = 0.80 × 10 000 / 1000 = 8.000" in r.arithmetic


# i = 0.75 (0.25 + 0.25 + 0.25) or 1.00 (0.40 + 0.35 + 0.25); RIS = i × P / 1000
EDGES = [
    pytest.param(0.25, 0.25, 250, 0.1875, "none", 0, 0, id="below-0.25"),
    pytest.param(0.40, 0.35, 250, 0.25, "none", 0, 0, id="at-0.25"),
    pytest.param(0.40, 0.35, 251, 0.251, "PAPS", 2, 0, id="above-0.25"),
    pytest.param(0.25, 0.25, 1500, 1.125, "PAPS", 2, 0, id="at-1.125"),
    pytest.param(0.25, 0.25, 1501, 1.12575, "DPS-PE", 4, 1, id="above-1.125-min-4"),
    pytest.param(0.25, 0.25, 16_000, 12.0, "DPS-PE", 12, 1, id="at-12"),
    pytest.param(0.25, 0.25, 16_001, 12.00075, "DPS-ME", 14, 2, id="above-12"),
    pytest.param(0.25, 0.25, 48_000, 36.0, "DPS-ME", 36, 3, id="at-36"),
    pytest.param(0.25, 0.25, 48_001, 36.00075, "DPS-GE", 38, 4, id="above-36"),
]


@pytest.mark.parametrize(("p2", "e1", "public", "ris", "tier", "rescuers", "posts"), EDGES)
def test_dps_tier_edges(p2, e1, public, ris, tier, rescuers, posts):
    """The tier limits are inclusive upper bounds: 0.25, 1.125, 12 and 36."""
    r = dps(public, activity=p2, environment=e1, delay=0.25)
    assert r.ris == pytest.approx(ris, abs=1e-9)
    assert (r.tier, r.rescuers, r.posts) == (tier, rescuers, posts)


@pytest.mark.parametrize(
    ("ris_public", "rescuers"),
    [(2_500, 4), (6_250, 6), (7_500, 6), (7_501, 8), (11_250, 10)],
    ids=["RIS2->4", "RIS5->6", "RIS6->6", "RIS6.0008->8", "RIS9->10"],
)
def test_rescuers_even_rounding(ris_public, rescuers):
    """Rescuers are RIS rounded up to an even number, at least 4 (i = 0.80)."""
    assert dps(ris_public, activity=0.30, environment=0.25, delay=0.25).rescuers == rescuers


def test_hundred_thousand_rule():
    """Above 100 000 only half of the excess counts: P = 100 000 + (P1 − 100 000) / 2."""
    assert dps_public(100_000) == 100_000
    assert dps_public(150_000) == 125_000
    assert dps_public(300_000) == 200_000
    r = dps(150_000, activity=0.30, environment=0.25, delay=0.25)
    assert r.public == 125_000 and r.ris == pytest.approx(100.0)
    assert r.tier == "DPS-GE" and r.rescuers == 100 and r.posts == math.ceil(100 / 12)
    assert "100 000 + (150 000 − 100 000) / 2 = 125 000" in r.arithmetic


@pytest.mark.parametrize(
    ("minutes", "e2"), [(0, 0.25), (10, 0.25), (10.5, 0.30), (20, 0.30), (30, 0.35), (31, 0.40)]
)
def test_delay_minutes_to_e2(minutes, e2):
    """A delay in minutes maps to E2: ≤10 → 0.25, ≤20 → 0.30, ≤30 → 0.35, above → 0.40."""
    assert delay_coefficient(minutes) == e2


def test_dps_bad_inputs():
    """Coefficients off the grid and negative publics are refused with the expected values named."""
    with pytest.raises(StaffingInputError, match=r"one of 0\.25, 0\.30, 0\.35, 0\.40"):
        dps(1000, activity=0.33)
    with pytest.raises(StaffingInputError, match="dps_environment"):
        dps(1000, environment="swamp")
    with pytest.raises(StaffingInputError, match="non-negative"):
        dps(-5)


def test_infer_dps_inputs_says_what_it_assumed():
    """DPS inputs missing from the event are inferred from its category and setting, and said so."""
    p2, e1, e2, notes = infer_dps_inputs("Concert", indoor=True)
    assert (p2, e1, e2) == (0.35, 0.25, 0.25)
    assert any("P2 = 0.35 inferred" in n for n in notes) and any("indoors" in n for n in notes)
    p2, e1, e2, notes = infer_dps_inputs("carnival parade", indoor=False)
    assert (p2, e1) == (0.40, 0.25)
    p2, e1, e2, notes = infer_dps_inputs("knitting", indoor=False)
    assert (p2, e1) == (0.35, 0.30) and any("not recognised" in n for n in notes)
    p2, e1, e2, notes = infer_dps_inputs("x", dps_activity=0.25, dps_environment=0.4, dps_delay=25)
    assert (p2, e1, e2, notes) == (0.25, 0.40, 0.35, [])


def test_agents_visibility_and_workload():
    """Agents = max(⌈present / 250⌉ or /100 high risk, ⌈inc × 2 × 45/60 ÷ 0.6⌉)."""
    a = agents(10_000, incidents_per_hour=3.0)
    assert (a.visibility, a.workload, a.agents, a.binding) == (40, 8, 40, "visibility")  # 7.5 → 8
    assert agents(10_000, high_risk=True).agents == 100
    w = agents(1_000, incidents_per_hour=20.0)
    assert (w.visibility, w.workload, w.binding) == (4, 50, "workload")
    assert "⌈20.00 incidents/h × 2 agents × 45 min / 60 ÷ 0.6⌉ = 50" in w.arithmetic


def test_arrival_curve_and_lanes():
    """Triangular arrivals over 120 min peaking 30 min before: peak 2/120 per minute, CDF 0.75 at peak."""
    m = np.arange(0, 120, 0.01) + 0.005
    assert arrival_density(m).sum() * 0.01 == pytest.approx(1.0, abs=1e-6)
    assert arrival_density(np.array([30.0]))[0] == pytest.approx(2 / 120)
    assert arrived_share(np.array([120.0, 30.0, 0.0])).tolist() == pytest.approx([0.0, 0.75, 1.0])
    assert remaining_share(np.array([0.0, 30.0, 60.0, 90.0])).tolist() == pytest.approx(
        [1, 0.25, 0, 0]
    )
    peak = peak_arrivals_per_minute(10_000)
    assert peak == pytest.approx(10_000 / 60)
    assert entry_lanes(peak, params=StaffingParams(screening="none")).lanes == 17  # 166.7 / 10
    assert entry_lanes(peak).lanes == 24  # / 7
    assert entry_lanes(peak, params=StaffingParams(screening="bag_search")).lanes == 42  # / 4


def test_barrier_from_fruin_queue():
    """10 min of 166.7/min at 0.65 m² (Fruin C) in 2 m channels: 541.7 m of channel, 1 083 m of barrier."""
    b = barrier(17, 10_000 / 60)
    assert b.queue_people == pytest.approx(1666.67, abs=0.01)
    assert b.channel_length_m == pytest.approx(1666.667 * 0.65 / 2, rel=1e-4)
    assert b.barrier_m == pytest.approx(2 * 1666.667 * 0.65 / 2, rel=1e-4)
    d = barrier(17, 10_000 / 60, params=StaffingParams(queue_level="D"))
    assert d.barrier_m == pytest.approx(b.barrier_m * 0.28 / 0.65)


def test_egress_green_guide_rates():
    """8 200 people through 10 m at 82 /m/min: 10 min; stairs at 66: 12.4 min; 8 min needs 12.5 m."""
    e = egress(8_200, [4.0, 6.0])
    assert e.minutes == pytest.approx(10.0) and not e.within_target
    assert e.width_needed_m == pytest.approx(8_200 / (82 * 8))
    assert egress(8_200, [10.0], stairs=True).minutes == pytest.approx(8_200 / 660)
    assert egress(8_200, None) is None
    with pytest.raises(StaffingInputError, match="positive metres"):
        egress(100, [0.0])


def test_params_overridable_with_sources():
    """Every parameter has a source; unknown names and bad values are refused."""
    p = StaffingParams()
    desc = p.describe()
    assert set(desc) == {f.name for f in dataclasses.fields(p)}
    assert all(v["source"] and v["source"] != "vigie default" for v in desc.values())
    assert agents(10_000, params=p.with_overrides(visibility_ratio=200)).visibility == 50
    with pytest.raises(StaffingInputError, match="unknown staffing parameter"):
        StaffingParams.from_mapping({"visibilty_ratio": 3})
    with pytest.raises(StaffingInputError, match="target_utilisation"):
        StaffingParams(target_utilisation=1.5)
    with pytest.raises(StaffingInputError, match="queue_level"):
        StaffingParams(queue_level="Z")


def _sweep() -> np.ndarray:
    edges = [
        250,
        251,
        333,
        334,
        1125,
        1126,
        1500,
        1501,
        12_000,
        16_000,
        16_001,
        36_000,
        48_000,
        48_001,
    ]
    base = np.unique(np.round(np.geomspace(1, 400_000, 600)))
    return np.unique(np.concatenate([base, edges, [100_000, 100_001, 100_002]]))


@pytest.mark.parametrize("e1", [0.25, 0.40], ids=["E1=0.25", "E1=0.40"])
@pytest.mark.parametrize("p2", [0.25, 0.30, 0.35, 0.40], ids=lambda v: f"P2={v}")
def test_more_attendance_never_fewer_staff(p2, e1):
    """Over a sweep of 0–400 000 through every tier edge, no figure ever falls as attendance grows."""
    prev = None
    for n in _sweep():
        d = dps(n, activity=p2, environment=e1, delay=0.30)
        a = agents(n * 0.9, incidents_per_hour=n * 1e-4)
        ln = entry_lanes(peak_arrivals_per_minute(n))
        b = barrier(ln.lanes, ln.peak_arrivals_per_min)
        cur = (d.rescuers, d.posts, TIER_RANK[d.tier], a.agents, ln.lanes, b.barrier_m)
        if prev is not None:
            assert all(c >= q - 1e-9 for c, q in zip(cur, prev, strict=False)), (n, cur, prev)
        prev = cur


TIER_RANK = {t: i for i, t in enumerate(TIERS)}


def test_plan_event_monotone_random_pairs():
    """For random pairs of attendances a < b and random settings, plan_event(b) ≥ plan_event(a) hour by hour."""
    rng = np.random.default_rng(7)
    profile = np.array([0.05, 0.3, 0.8, 1.0, 1.0, 0.4, 0.0])
    arr = np.array([0.002, 0.01, 0.016, 0.0, 0.0, 0.0, 0.0])
    for _ in range(150):
        a, b = sorted(rng.uniform(0, 150_000, 2))
        kw = dict(
            hours=list(range(7)),
            category=str(rng.choice(["concert", "fair", "protest", "parade"])),
            indoor=bool(rng.integers(2)),
            params=StaffingParams(screening=str(rng.choice(["none", "mixed", "bag_search"]))),
        )
        inc = rng.uniform(0, 5, 7)
        pa = plan_event(
            a,
            crowd=a * profile,
            arrivals_peak_per_min=a * arr,
            incidents_per_hour=inc * a / 1e4,
            **kw,
        )
        pb = plan_event(
            b,
            crowd=b * profile,
            arrivals_peak_per_min=b * arr,
            incidents_per_hour=inc * b / 1e4,
            **kw,
        )
        for ha, hb in zip(pa.hours, pb.hours, strict=False):
            assert all(
                hb[k] >= ha[k] for k in ("rescuers", "first_aid_posts", "agents", "entry_lanes")
            ), (a, b)
        pk_a, pk_b = pa.peak.to_dict(), pb.peak.to_dict()
        assert all(pk_b[k] >= pk_a[k] for k in pk_a), (a, b)


def test_plan_event_shapes_and_errors():
    """plan_event gives one row per hour with its arithmetic, and refuses mismatched lengths."""
    plan = plan_event(
        10_000,
        hours=["a", "b"],
        crowd=[2_000, 10_000],
        arrivals_peak_per_min=[100, 0],
        category="fair",
        dps_activity=0.30,
        dps_environment=0.25,
        dps_delay=0.25,
    )
    assert plan.dps.rescuers == 8 and plan.peak.rescuers == 8
    assert [h["agents"] for h in plan.hours] == [8, 40]
    assert plan.hours[0]["arithmetic"]["rescuers"].startswith("P = 2 000")
    assert plan.peak.entry_lanes == 24  # the triangular peak 166.7/min at 7 per lane
    assert "egress time not computed" in " ".join(plan.notes)
    with pytest.raises(StaffingInputError, match="same length"):
        plan_event(100, hours=[1, 2], crowd=[1], arrivals_peak_per_min=[1, 2])
