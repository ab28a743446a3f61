"""Origins of the people present: weekly mixes, suppression at origin level, origin anomalies.

The origin-shift test is checked on the path users run (the tiny synthetic city's planted
inflows, truth.json ``origin_inflows``) and, for its calibration, on over-dispersed null mixes
drawn here (Dirichlet-multinomial), where Pearson's chi-square alone fires far too often.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.cube.origins import OTHER, origin_class, publish_mix, study_mix, weekly_mix
from features.store import Store
from pipelines.signals.origins import origin_review, origin_shift_tests
from pipelines.signals.pvalues import benjamini_hochberg


# ------------------------------------------------------------------------------------------------
# classes and suppression
# ------------------------------------------------------------------------------------------------
def test_origin_class():
    assert origin_class("zone_etude") == "resident"
    assert [origin_class(o) for o in ("dep_92", "autres_departements", "petite_couronne")] == [
        "france"
    ] * 3
    assert [origin_class(o) for o in ("pays_GB", "etranger", "autres_pays")] == ["abroad"] * 3


def _mix(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"zone_id": "Z1", "week": "2026-W46", "origin": list(values), "mean": list(values.values())}
    )


def test_small_cells_merge_into_other():
    out = publish_mix(_mix({"a": 500, "b": 40, "c": 3, "d": 8}), k=10)
    got = dict(zip(out["origin"], out["mean"], strict=True))
    assert got == {"a": 500, "b": 40, OTHER: 11}
    assert out.loc[out["origin"] == OTHER, "merged"].item() == 2


def test_one_small_cell_takes_a_published_one_with_it():
    """A lone suppressed cell would be the total minus the published cells: the smallest
    published origin joins it in other (complementary suppression)."""
    out = publish_mix(_mix({"a": 500, "b": 40, "c": 12, "d": 3}), k=10)
    got = dict(zip(out["origin"], out["mean"], strict=True))
    assert got == {"a": 500, "b": 40, OTHER: 15}


def test_group_below_k_is_withheld():
    assert publish_mix(_mix({"a": 4, "b": 3}), k=10).empty


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=8),
    st.integers(2, 20),
)
def test_no_suppressed_cell_can_be_rebuilt(values, k):
    """Whatever the cells: every published figure is >= k, other holds 0 or >= 2 cells, and no
    published total minus any set of published cells equals a single suppressed cell."""
    cells = {f"o{i}": float(v) for i, v in enumerate(values)}
    out = publish_mix(_mix(cells), k=k)
    if out.empty:
        assert sum(values) < k
        return
    assert (out["mean"] >= k).all()
    other = out[out["origin"] == OTHER]
    assert other.empty or other["merged"].item() >= 2
    hidden = [v for o, v in cells.items() if o not in set(out["origin"])]
    # the total minus the published origins is other: the sum of >= 2 hidden cells, never one
    assert sum(values) - out.loc[out["origin"] != OTHER, "mean"].sum() == pytest.approx(sum(hidden))
    assert len(hidden) != 1


def test_study_mix_is_the_sum_of_published_cells():
    a = _mix({"a": 500, "b": 3, "c": 4, "d": 50})
    b = _mix({"a": 300, "b": 30, "c": 2, "d": 9}).assign(zone_id="Z2")
    pub = publish_mix(pd.concat([a, b]), k=10)
    study = study_mix(pub)
    got = dict(zip(study["origin"], study["mean"], strict=True))
    # zone 1: 3 + 4 < k takes d (50) with them; zone 2: 2 + 9
    assert got == {"a": 800, "b": 30, OTHER: 57 + 11}
    assert sum(got.values()) == pub["mean"].sum()


def test_weekly_mix_sums_days_in_local_weeks():
    starts = pd.date_range("2026-11-08 23:00", periods=8, freq="D", tz="UTC")  # local midnights
    df = pd.DataFrame(
        {"zone_id": "Z1", "start": np.repeat(starts, 2), "slot_minutes": 1440,
         "origin": ["zone_etude", "dep_92"] * 8, "count": [100.0, 10.0] * 8}
    )  # fmt: skip
    mix = weekly_mix(df, timezone="Europe/Paris")
    w46 = mix[mix["week"] == "2026-W46"].set_index("origin")
    assert w46.loc["dep_92", "person_days"] == 70 and w46.loc["dep_92", "days"] == 7
    assert w46.loc["dep_92", "mean"] == 10 and w46.loc["zone_etude", "class"] == "resident"
    assert mix[mix["week"] == "2026-W47"]["days"].iloc[0] == 1


# ------------------------------------------------------------------------------------------------
# the origin-shift test
# ------------------------------------------------------------------------------------------------
def _null_mix(rng: np.random.Generator, *, zones: int, weeks: int, conc: float) -> pd.DataFrame:
    """Over-dispersed daily origins (each zone's mix, each day a Dirichlet draw around it)."""
    base = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.04, 0.03])
    rows = []
    for z in range(zones):
        mean = rng.dirichlet(80 * base)
        size = rng.uniform(200, 3000)
        for w in range(weeks):
            day = rng.dirichlet(conc * mean, size=7) * size
            tot = day.sum(axis=0)
            for o, v in enumerate(tot):
                rows.append((f"Z{z}", f"2026-W{w + 10:02d}", f"dep_{o}", v))
    df = pd.DataFrame(rows, columns=["zone_id", "week", "origin", "person_days"])
    return df.assign(
        **{
            "class": "france",
            "days": 7,
            "mean": df["person_days"] / 7,
            "balanced": df["person_days"],
        }
    )


def test_quasi_f_keeps_its_level_under_overdispersion():
    """Null mixes far more variable than a multinomial: the test's false-positive rate at 5 %
    stays near 5 % (Pearson's chi-square alone rejects most of them)."""
    rng = np.random.default_rng(7)
    mix = _null_mix(rng, zones=150, weeks=10, conc=300.0)
    tests = origin_shift_tests(mix, weeks=["2026-W18", "2026-W19"])
    assert len(tests) == 300
    rate = (tests["p_value"] < 0.05).mean()
    assert rate < 0.09, rate
    naive = (
        pd.Series([d["chi2"] for d in tests["details"]])
        > pd.Series([d["df"] for d in tests["details"]]).map(lambda k: 2.0 * k + 10)
    ).mean()
    assert naive > 0.5  # the multinomial would flag most null zone-weeks


def test_planted_inflows_are_found_and_the_rest_is_quiet(tiny_city, tiny_store):
    """The tiny city's planted origin inflows (truth.json) are the only signals of all its
    testable zone-weeks at FDR 5 %, and each names its zone, week and origin."""
    truth = json.loads((tiny_city / "truth.json").read_text())["origin_inflows"]
    assert len(truth) >= 2
    st_ = Store(tiny_store)
    mix_src = st_.validated("presence_origin")
    weeks = sorted(weekly_mix(mix_src, timezone="Europe/Paris")["week"].unique())
    tests = origin_review(mix_src, weeks=weeks, timezone="Europe/Paris")
    tests["q"] = benjamini_hochberg(tests["p_value"].to_numpy())
    sig = tests[tests["q"] < 0.05]
    found = {
        (d["week"], z[0], d["origin"]) for z, d in zip(sig["zones"], sig["details"], strict=True)
    }
    planted = {(t["week"], t["zone"], t["origin"]) for t in truth}
    assert planted <= found
    assert len(found - planted) <= 1, found - planted
    assert len(tests) >= 100


def test_balanced_mix_weights_each_day_alike():
    """One day with ten times the visitors, all from one origin, counts as one day of seven in
    the mix the origin test compares (balanced), not as most of the week (person_days)."""
    starts = pd.date_range("2026-11-08 23:00", periods=7, freq="D", tz="UTC")
    a = [10.0] * 6 + [100.0]
    b = [10.0] * 6 + [0.0]
    df = pd.DataFrame(
        {"zone_id": "Z1", "start": np.tile(starts, 3), "slot_minutes": 1440,
         "origin": ["dep_92"] * 7 + ["dep_93"] * 7 + ["zone_etude"] * 7,
         "count": a + b + [500.0] * 7}
    )  # fmt: skip
    mix = weekly_mix(df, timezone="Europe/Paris").set_index("origin")
    assert mix.loc["dep_92", "person_days"] == 160 and mix.loc["dep_93", "person_days"] == 60
    # the week's mean day holds 160 / 7 + 60 / 7 = 31.4 visitors; each day's mix scaled to it
    day_mean = 220 / 7
    assert mix.loc["dep_92", "balanced"] == pytest.approx(day_mean * (6 * 0.5 + 1.0))
    assert mix.loc["dep_93", "balanced"] == pytest.approx(day_mean * 6 * 0.5)
    assert mix.loc["zone_etude", "balanced"] == 3500
