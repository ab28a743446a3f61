"""Effect estimates: IRR entries, lighting-outage event study, event uplift, absent sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _sim_cube import simulate_city
from scipy import stats

from pipelines import models as M
from pipelines.models import effects as E
from pipelines.models import outage, studies
from pipelines.models.results import Effects


def _fit_all_group(city):
    dz = M.design(city.cube, grain=city.grain)
    return dz, M.fit_glm(dz, M.group_counts(city.cube, None), family="poisson", grain=city.grain)


@pytest.fixture(scope="module")
def spill_city():
    """Lamps-out IRR 1.25 per 10 % at night in the zone, and x1.5 at night in the ring of a zone
    with an outage (spill-over); 16 zones, 10 weeks."""
    c = simulate_city(zones=16, weeks=10, seed=31, base=1.5e-4, outage_spill=1.5)
    dz, glm = _fit_all_group(c)
    return c, dz, glm


def _by_name(effects):
    return {e.name: e for e in effects}


def test_rate_ratio_is_the_exact_conditional_test():
    """The ratio of SIRs has the binomial conditional p-value and Clopper-Pearson interval."""
    est, lo, hi, p = studies.rate_ratio(30, 20.0, 20, 20.0)
    assert est == pytest.approx(1.5)
    ref = stats.binomtest(30, 50, 0.5)
    ci = ref.proportion_ci(method="exact")
    assert p == pytest.approx(ref.pvalue)
    assert lo == pytest.approx(ci.low / (1 - ci.low))
    assert hi == pytest.approx(ci.high / (1 - ci.high))


def test_outage_event_study_recovers_planted_effects(spill_city):
    """In the zone at night, the during/before rate ratio covers the ratio the planted rates
    imply and is significant; in daylight (placebo) the interval covers 1; the ring at night
    shows the planted spill-over (> 1.2, p < 0.001) and covers the planted-rate ratio."""
    c, dz, glm = spill_city
    eff = _by_name(E.outage_event_study(c.cube, neighbours=c.neighbours, dz=dz))
    cube = c.cube
    zones, slots, zi, ti = studies.grid(cube)
    out2 = np.zeros((len(zones), len(slots)), bool)
    out2[zi, ti] = cube["lamps_out"].to_numpy() / cube["lamps"].to_numpy() >= E.MIN_SHARE_OUT
    before, _after = outage.phases(out2, slots, np.timedelta64(14, "D"))
    ok = M.exposure_mask(dz)
    dark = cube["dark"].to_numpy()
    mu, mu_on = c.extra["mu"], c.extra["mu_lamps_on"]

    def implied(during_rows, before_rows):
        d = during_rows & ok & dark
        b = before_rows & ok & dark
        return (mu[d].sum() / mu_on[d].sum()) / (mu[b].sum() / mu_on[b].sum())

    zone_truth = implied(out2[zi, ti], (before & ~out2)[zi, ti])
    z = eff["outage.zone.night.start"]
    assert z.ci_low <= zone_truth <= z.ci_high, (zone_truth, z)
    assert z.estimate > 1 and z.p_value < 1e-3
    # daylight placebo: near 1 (this small city leaves few untouched zone-slots to fit the
    # zone and day fixed effects on, so its interval is not asserted)
    assert abs(np.log(eff["outage.zone.day.start"].estimate)) < 0.25
    A = studies.adjacency(zones, c.neighbours)
    ring_out = ((A @ out2.astype(float)) > 0) & ~out2
    ring_before = ((A @ before.astype(float)) > 0) & ~((A @ out2.astype(float)) > 0) & ~out2
    ring_truth = implied(ring_out[zi, ti], ring_before[zi, ti])
    r = eff["outage.ring.night.start"]
    assert r.estimate > 1.2 and r.p_value < 1e-3
    assert r.ci_low <= ring_truth <= r.ci_high, (ring_truth, r)
    assert eff["outage.zone.night.repair"].estimate < 1  # back down after the repair


def test_no_spillover_planted_means_ring_near_one():
    """Without planted spill-over the ring's night ratio (and the daylight placebos) are near 1.

    The intervals are not asserted on one city: each is meant to hold its truth in 95 % of
    cities, so on one city it misses 1 time in 20 by design (seed 32's ring night interval,
    [0.836, 0.994], is such a miss); ``make evaluate`` reports the coverage over 20 cities."""
    c = simulate_city(zones=16, weeks=10, seed=32, base=1.5e-4, outage_spill=1.0)
    dz, glm = _fit_all_group(c)
    eff = _by_name(E.outage_event_study(c.cube, neighbours=c.neighbours, dz=dz))
    for name in ("outage.ring.night.start", "outage.ring.day.start", "outage.zone.day.start"):
        assert abs(np.log(eff[name].estimate)) < 0.15, eff[name]


def test_event_uplift_recovers_planted_presence_and_incidents(spill_city):
    """Venue presence rises by ~1 000 people per 1 000 attendees (planted), the ring by
    100 per neighbour per 1 000; the venue's extra incidents per 1 000 attendees cover the
    uplift the planted rates imply (observed-presence exposure and event IRR)."""
    c, dz, glm = spill_city
    eff = _by_name(E.event_uplift(c.cube, c.events, glm=glm, neighbours=c.neighbours, dz=dz))
    v = eff["event.all.venue.presence"]
    assert v.ci_low <= 1000.0 <= v.ci_high or abs(v.estimate / 1000 - 1) < 0.03, v
    att = c.events["expected_attendance"].to_numpy()
    # planted ring presence: mean over the event's slots of the planted extra people, summed
    # over ring zones without an event of their own at the time
    cube = c.cube
    h = pd.to_datetime(cube["hour"], utc=True)
    ring_extra = c.extra["ring_extra_present"]
    own = cube["event_attendance"].to_numpy() > 0
    n_zones = cube["zone_id"].nunique()
    planted = 0.0
    for _, e in c.events.iterrows():
        t = (h >= e["start"]).to_numpy() & (h < e["end"]).to_numpy()
        rows = cube["zone_id"].isin(c.neighbours[e["zone_id"]]).to_numpy() & t & ~own
        planted += ring_extra[rows].sum() / (t.sum() / n_zones)  # mean over the event's slots
    ring_truth = planted / (att.sum() / 1000)
    r = eff["event.all.ring.presence"]
    assert r.ci_low <= ring_truth <= r.ci_high, (r, ring_truth)
    # planted incident uplift at the venue: sum over event slots of mu - mu_no_event
    extra = c.extra["mu"] - c.extra["mu_no_event"]
    total = 0.0
    for _, e in c.events.iterrows():
        rows = (cube["zone_id"] == e["zone_id"]).to_numpy() & (h >= e["start"]).to_numpy()
        rows &= (h < e["end"]).to_numpy()
        total += extra[rows].sum()
    truth = total / (att.sum() / 1000)
    inc = eff["event.all.venue.incidents"]
    assert inc.ci_low <= truth <= inc.ci_high, (truth, inc)
    assert inc.p_value < 1e-3
    for cat in ("concert", "sport", "fair"):
        assert eff[f"event.{cat}.venue.presence"].n >= 2


def test_absent_sources_are_not_estimable_with_why():
    """Without lamps, events, weather, transit and calendar every effect that needs them is
    reported as not estimable, with the missing source named."""
    c = simulate_city(zones=9, weeks=6, seed=2, sources=())
    dz, glm = _fit_all_group(c)
    why = M.feature_status(c.cube.columns)
    eff = _by_name(
        E.estimate_effects(
            c.cube, glms={"all": glm}, dz=dz, not_estimable=why, neighbours=c.neighbours,
            events=None,
        )
    )  # fmt: skip
    assert eff["irr.all.dark"].estimable
    for f, source in (("dark_lamps_out", "lighting_faults"), ("event_k", "events"),
                      ("rain", "weather"), ("transit_k", "ridership")):  # fmt: skip
        e = eff[f"irr.all.{f}"]
        assert not e.estimable and source in e.why, e
    assert not eff["outage.zone.night.start"].estimable
    assert "lamps" in eff["outage.zone.night.start"].why
    assert not eff["event.all.venue.presence"].estimable
    assert "events" in eff["event.all.venue.presence"].why


def test_daily_grain_effects_have_no_night_split():
    """At daily grain the event study has one light level ('all') and still sees the outage
    effect in the zone."""
    c = simulate_city(zones=16, weeks=26, grain="1d", seed=6)
    dz, glm = _fit_all_group(c)
    eff = _by_name(
        E.estimate_effects(
            c.cube, glms={"all": glm}, grain="1d", dz=dz, neighbours=c.neighbours,
            events=c.events,
        )
    )  # fmt: skip
    assert "outage.zone.night.start" not in eff
    z = eff["outage.zone.all.start"]
    assert z.estimable and z.estimate > 1 and z.p_value < 0.01
    assert not eff["irr.all.dark"].estimable


def test_without_neighbours_ring_effects_say_why(spill_city):
    """Zones without geometry have no ring: ring effects are not estimable, with the reason."""
    c, dz, glm = spill_city
    eff = _by_name(E.outage_event_study(c.cube, neighbours=None, dz=dz))
    assert not eff["outage.ring.night.start"].estimable
    assert "neighbours" in eff["outage.ring.night.start"].why
    assert eff["outage.zone.night.start"].estimable


def test_fit_all_daily_grain_without_lighting(tmp_path):
    """`fit_all` on a daily-grain store without lamps, asked for one group: `all` and that
    group are fitted, backtest and effects written, and the lighting effects are reported as
    not estimable because the source is absent."""
    import json

    from _sim_cube import write_store

    from features.store import Store

    c = simulate_city(zones=16, weeks=14, grain="1d", seed=9, sources=("events", "weather"))
    root = write_store(tmp_path / "store", c)
    rep = M.fit_all(Store(root), backtest_weeks=2, xgb_rounds=30, groups=["property"])
    assert rep.groups == ("all", "property")  # `all` is always fitted
    assert rep.evaluation["weeks"] == 2 and rep.evaluation["grain"] == "1d"
    assert "lighting_faults" in rep.not_estimable["dark_lamps_out"]
    raw = json.loads((root / "models" / "effects.json").read_text())
    assert Effects.from_json(raw).to_json() == raw  # the typed result round-trips
    eff = _by_name(Effects.from_json(raw))
    assert not eff["irr.all.dark_lamps_out"].estimable
    assert "source absent" in eff["irr.all.dark_lamps_out"].why
    assert not eff["outage.zone.all.start"].estimable
    assert eff["irr.all.event_k"].estimable and eff["irr.all.rain"].estimable
    assert eff["event.all.venue.presence"].estimable
    pred = M.load_predictor(Store(root)).predict(c.cube.iloc[:5], groups=["all"])
    assert np.isfinite(pred["mean"]).sum() >= 4


def test_reference_presence_falls_back_on_quiet_same_hour_of_week_median():
    """Without a known present_baseline, the reference presence of a row is the median present
    of the same zone and local hour of week over the slots without an event (the event slot
    itself is left out); a known baseline is kept as given."""
    frame = pd.DataFrame(
        {
            "zone_id": ["a", "a", "a", "a", "b", "b"],
            "dow": [0, 0, 0, 1, 0, 0],
            "local_hour": [9, 9, 9, 9, 9, 9],
            "present": [100.0, 120.0, 900.0, 50.0, 10.0, 30.0],
            "present_baseline": [np.nan, np.nan, np.nan, np.nan, np.nan, 7.0],
            "event_attendance": [0, 0, 5000, 0, 0, 0],
        }
    )
    np.testing.assert_allclose(E.reference_presence(frame), [110.0, 110.0, 110.0, 50.0, 20.0, 7.0])


def test_effects_round_trip_and_read_in_words():
    """An Effects value writes effects.json's entries (not-estimable ones with their why and
    nothing else), reads them back unchanged, and names each effect in words."""
    raw = {
        "grain": "1h",
        "generated_at": "2026-11-16T00:00:00+00:00",
        "effects": [
            {"name": "irr.all.dark_lamps_out", "kind": "irr", "estimable": True, "group": "all",
             "feature": "dark_lamps_out", "family": "negbin", "estimate": 1.2, "ci_low": 1.1,
             "ci_high": 1.3, "p_value": 0.001, "n": 100, "incidents": 40, "unit": "IRR"},
            {"name": "outage.zone.night.start", "kind": "outage_event_study", "estimable": True,
             "role": "zone", "light": "night", "comparison": "during vs before",
             "estimate": 1.5, "ci_low": None, "ci_high": 2.0, "p_value": 0.01, "n": 9,
             "incidents": 7, "observed": {"during": 4.0, "before": 3.0},
             "mean_share_out_during": None, "window_days": 14, "unit": "rate ratio"},
            {"name": "event.concert.ring.incidents", "kind": "event_uplift", "estimable": False,
             "why": "1 event(s)", "category": "concert", "role": "ring"},
        ],
    }  # fmt: skip
    eff = Effects.from_json(raw)
    assert eff.to_json() == raw
    assert [list(e.to_json()) for e in eff] == [list(e) for e in raw["effects"]]  # key order
    assert eff.n_estimable == 2 and eff.get("outage.zone.night.start").details["window_days"] == 14
    assert [e.label for e in eff] == [
        "Lamps out at night (per 10 % of lamps), all incidents",
        "Lighting outage, zone, at night, episode start",
        "Extra incidents per 1 000 attendees, concert events, neighbouring zones",
    ]
    assert "Lighting outage, zone, at night, episode start: 1.500 [–, 2.000]" in eff.summary()
    assert list(eff.frame()["label"])[0].startswith("Lamps out at night")
