"""The detectors of pipelines.signals on simulated data with known truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.signals.conflicts import event_conflicts
from pipelines.signals.correlation import Driver, lagged_correlations
from pipelines.signals.drift import cusum_path, drift_tests, ewma_path
from pipelines.signals.ears import ears_statistic
from pipelines.signals.excess import excess_tests
from pipelines.signals.panel import Panel
from pipelines.signals.presence import presence_anomalies
from pipelines.signals.pvalues import benjamini_hochberg, count_upper_p, mc_pvalue


def _panel(o, e, period, start="2026-09-01"):
    days = pd.date_range(start, periods=o.shape[1], freq="D", tz="Europe/Paris")
    zones = np.array([f"z{i}" for i in range(o.shape[0])], dtype=object)
    return Panel(zones=zones, days=days, observed=o, expected=e, period=period)


@pytest.fixture
def null_panel():
    """40 zones x 63 days of Poisson counts around known expectations; last 7 days = period."""
    rng = np.random.default_rng(3)
    e = rng.uniform(1.5, 6.0, (40, 63))
    return _panel(rng.poisson(e).astype(float), e, (56, 63))


def test_count_upper_p_matches_hand_values():
    """P(X >= 3 | Poisson(1)) = 1 - e^-1 (1 + 1 + 1/2); P(X >= 0) = 1; NB tails are heavier."""
    p = count_upper_p([3, 0], [1.0, 1.0])
    assert p[0] == pytest.approx(1 - math.exp(-1) * 2.5, rel=1e-12)
    assert p[1] == pytest.approx(1.0)
    nb = count_upper_p(10, 4.0, dispersion=0.2)
    assert nb > count_upper_p(10, 4.0)
    assert count_upper_p(10, 4.0, dispersion=1e-9) == pytest.approx(
        count_upper_p(10, 4.0), rel=1e-5
    )
    assert np.isnan(count_upper_p(3, np.nan))


def test_benjamini_hochberg_by_hand():
    """q_(i) = min_{j>=i} p_(j) m / j, NaN left out of m and kept as NaN."""
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    q = benjamini_hochberg(p)
    # sorted finite p: 0.01, 0.03, 0.04, 0.5 with m = 4
    assert q[0] == pytest.approx(0.04)
    assert q[3] == pytest.approx(min(0.03 * 4 / 2, 0.04 * 4 / 3))
    assert q[1] == pytest.approx(0.04 * 4 / 3)
    assert q[4] == pytest.approx(0.5)
    assert np.isnan(q[2])


def test_mc_pvalue_empirical_and_pareto_tail():
    """(1 + #exceed)/(R + 1) inside the replicates; below 1/(R + 1) far beyond 999 of them (a
    generalised Pareto tail), but never below 1/(R + 1) from 99 (too few to fit a tail)."""
    sims = np.arange(99, dtype=float)[:, None]  # 0..98
    p_mid = mc_pvalue(np.array([49.5]), sims)[0]
    assert p_mid == pytest.approx((1 + 49) / 100)
    assert mc_pvalue(np.array([1000.0]), sims)[0] == pytest.approx(1 / 100)
    big = np.random.default_rng(0).exponential(size=(999, 1))
    p_far = mc_pvalue(np.array([12.0]), big)[0]
    assert p_far < 1 / 1000
    assert p_far == pytest.approx(np.exp(-12.0), rel=3.0)


def test_cusum_and_ewma_paths_by_hand():
    """CUSUM recursion on a short series; EWMA of a constant unit series tends to 1/sd_inf."""
    z = np.array([1.0, 2.0, -3.0, 0.6, 0.6])
    assert cusum_path(z, k=0.5).tolist() == pytest.approx([0.5, 2.0, 0.0, 0.1, 0.2])
    lam = 0.2
    w = ewma_path(np.ones(200), lam=lam)
    assert w[-1] == pytest.approx(1 / math.sqrt(lam / (2 - lam)), rel=1e-6)
    assert w[0] == pytest.approx(1.0)  # first step: lam * 1 / lam
    with pytest.raises(ValueError, match="lam should be in"):
        ewma_path(z, lam=1.5)


def test_ears_statistics_by_hand():
    """C1 uses days t-7..t-1, C2 days t-9..t-3, C3 sums max(0, C2 - 1) over 3 days."""
    y = np.array([2, 4, 3, 5, 2, 4, 3, 6, 1, 12, 9, 10], dtype=float)
    c1 = ears_statistic(y, method="C1")
    base = y[2:9]
    assert c1[9] == pytest.approx((12 - base.mean()) / base.std(ddof=1))
    assert np.isnan(c1[6])
    c2 = ears_statistic(y, method="C2")
    base2 = y[0:7]
    assert c2[9] == pytest.approx((12 - base2.mean()) / base2.std(ddof=1))
    c3 = ears_statistic(y, method="C3")
    parts = np.maximum(0, c2[9:12] - 1)
    assert c3[11] == pytest.approx(parts.sum())
    flat = ears_statistic(np.r_[np.zeros(9), 2.0], method="C2", sd_floor=0.5)
    assert flat[-1] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="'C1', 'C2' or 'C3'"):
        ears_statistic(y, method="C4")


def test_excess_finds_planted_and_is_calibrated_under_null(null_panel):
    """Null tests reject at about their level; a planted 3x day is the smallest p value."""
    tests = excess_tests(null_panel)
    assert set(tests["detector"]) == {"excess_day", "excess_week"}
    assert len(tests) == 40 * 8
    share = (tests["p_value"] < 0.05).mean()
    assert share <= 0.08  # discrete Poisson tails are conservative
    o = null_panel.observed.copy()
    o[7, 60] = 3 * null_panel.expected[7, 60] + 8
    planted = excess_tests(_panel(o, null_panel.expected, (56, 63)), windows=("day",))
    top = planted.sort_values("p_value").iloc[0]
    assert top["zones"] == ["z7"]
    assert top["start"] == null_panel.days[60]
    assert top["p_value"] < 1e-4
    assert "Zone z7 had" in top["explanation"]


def test_excess_rejects_unknown_window(null_panel):
    """A window other than day/week is refused with the list of allowed ones."""
    with pytest.raises(ValueError, match="'day', 'week'"):
        excess_tests(null_panel, windows=("month",))


def test_drift_detects_a_ramp_and_holds_its_level(null_panel):
    """A zone whose rate ramps 1 -> 2 over 3 weeks gets p < 1e-3 (999 replicates: the Pareto
    tail needs at least 300); null zones reject ~ alpha."""
    o = null_panel.observed.copy()
    rng = np.random.default_rng(5)
    ramp = np.linspace(0.0, 1.0, 21)
    o[3, -21:] = rng.poisson(null_panel.expected[3, -21:] * (1 + ramp))
    tests = drift_tests(_panel(o, null_panel.expected, (56, 63)), n_sim=999, seed=1)
    cus = tests[tests["detector"] == "cusum"].set_index(
        tests[tests["detector"] == "cusum"]["zones"].str[0]
    )
    assert cus.loc["z3", "p_value"] < 1e-3
    null = tests[~tests["zones"].str[0].eq("z3")]
    assert (null["p_value"] < 0.05).mean() <= 0.10
    assert (
        cus.loc["z3", "end"] == null_panel.day_ends[-1]
        or cus.loc["z3", "observed"] > cus.loc["z3", "expected"]
    )


def test_presence_anomalies_gathering_emptied_and_explained():
    """A 4x night crowd without event is an unexplained gathering; a 3x crowd during an event is
    explained; a zone at 30 % of its reference for a day is 'emptied'."""
    rng = np.random.default_rng(2)
    hours = pd.date_range("2026-09-01", periods=24 * 7 * 6, freq="h", tz="UTC")
    rows = []
    for z, pop in (("A", 1000.0), ("B", 2000.0), ("C", 1500.0)):
        pres = pop * np.exp(rng.normal(0, 0.05, len(hours)))
        base = pop * np.exp(rng.normal(0, 0.02, len(hours)))
        ev = np.zeros(len(hours), int)
        rows.append(
            pd.DataFrame(
                {
                    "zone_id": z,
                    "hour": hours,
                    "present": pres,
                    "present_baseline": base,
                    "events_active": ev,
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    df["local_date"] = df["hour"].dt.date
    df["local_hour"] = df["hour"].dt.hour
    ps = hours[24 * 7 * 5]
    night = (
        (df["zone_id"] == "A")
        & (df["hour"] >= ps + pd.Timedelta(hours=49))
        & (df["hour"] < ps + pd.Timedelta(hours=52))
    )
    df.loc[night, "present"] *= 4
    evening = (
        (df["zone_id"] == "B")
        & (df["hour"] >= ps + pd.Timedelta(hours=90))
        & (df["hour"] < ps + pd.Timedelta(hours=94))
    )
    df.loc[evening, "present"] *= 3
    df.loc[evening, "events_active"] = 1
    empty = (
        (df["zone_id"] == "C")
        & (df["hour"] >= ps + pd.Timedelta(days=5))
        & (df["hour"] < ps + pd.Timedelta(days=6))
    )
    df.loc[empty, "present"] *= 0.3
    out = presence_anomalies(df, period_start=ps, period_end=ps + pd.Timedelta(days=7))
    q = benjamini_hochberg(out["p_value"])
    sig = out[q < 0.05]
    a = sig[(sig["type"] == "gathering") & sig["zones"].str[0].eq("A")]
    assert len(a) == 1 and not a.iloc[0]["explained"]
    assert a.iloc[0]["start"] == ps + pd.Timedelta(hours=49)
    assert a.iloc[0]["end"] == ps + pd.Timedelta(hours=52)
    assert a.iloc[0]["ratio"] == pytest.approx(4.0, rel=0.1)
    b = sig[(sig["type"] == "gathering") & sig["zones"].str[0].eq("B")]
    assert len(b) == 1 and b.iloc[0]["explained"]
    c = sig[(sig["type"] == "emptied") & sig["zones"].str[0].eq("C")]
    assert len(c) >= 1 and c.iloc[0]["ratio"] == pytest.approx(0.3, rel=0.15)
    # nothing else is significant
    assert len(sig) == len(a) + len(b) + len(c)
    with pytest.raises(ValueError, match="missing \\['present_baseline'\\]"):
        presence_anomalies(df.drop(columns="present_baseline"), period_start=ps, period_end=ps)


def test_lagged_correlation_recovers_a_planted_rate_ratio():
    """Incidents doubled the day after a driver day: RR(lag 1) ~ 2 with small p; lag 3 ~ 1."""
    rng = np.random.default_rng(11)
    z, t = 6, 90
    e = np.full((z, t), 8.0)
    on = rng.random((z, t)) < 0.25
    mult = np.ones((z, t))
    mult[0, 1:] = np.where(on[0, :-1], 2.0, 1.0)
    o = rng.poisson(e * mult).astype(float)
    panel = _panel(o, e, (60, 90))
    out = lagged_correlations(panel, [Driver("x", "x days", on)], lags=(1, 3))
    z0 = out[out["zones"].str[0].eq("z0")].set_index(
        out[out["zones"].str[0].eq("z0")]["details"].map(lambda d: d["lag"])
    )
    assert z0.loc[1, "ratio"] == pytest.approx(2.0, rel=0.15)
    assert z0.loc[1, "p_value"] < 1e-6
    assert z0.loc[3, "ratio"] == pytest.approx(1.0, abs=0.25)
    others = out[~out["zones"].str[0].eq("z0")]
    assert (others["p_value"] < 0.01).mean() <= 0.1
    with pytest.raises(ValueError, match="should have shape"):
        lagged_correlations(panel, [Driver("bad", "bad", on[:, :5])])


def test_event_conflicts_by_distance_and_shared_stop():
    """Overlapping events 300 m apart conflict; 5 km apart only if they share a stop; disjoint
    times never conflict."""
    t0 = pd.Timestamp("2026-11-07 17:00", tz="UTC")
    ev = pd.DataFrame(
        {
            "event_id": ["a", "b", "c", "d"],
            "name": ["A", "B", "C", "D"],
            "start": [t0, t0 + pd.Timedelta(hours=1), t0, t0 + pd.Timedelta(days=2)],
            "end": [t0 + pd.Timedelta(hours=4)] * 3 + [t0 + pd.Timedelta(days=2, hours=3)],
            "zone_id": ["Z1", "Z2", "Z3", "Z1"],
            "latitude": [48.85, 48.8527, 48.895, 48.85],
            "longitude": [2.35, 2.35, 2.35, 2.35],
            "expected_attendance": [1000, 2000, 500, 800],
        }
    )
    ps, pe = t0 - pd.Timedelta(days=1), t0 + pd.Timedelta(days=6)
    out = event_conflicts(ev, period_start=ps, period_end=pe)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["zones"] == ["Z1", "Z2"] and row["observed"] == 3000
    assert row["start"] == t0 + pd.Timedelta(hours=1) and row["end"] == t0 + pd.Timedelta(hours=4)
    assert row["details"]["distance_m"] == pytest.approx(300, abs=5)
    stops = pd.DataFrame(
        {"stop_id": ["s"], "stop_name": ["Gare"], "stop_lat": [48.8725], "stop_lon": [2.35]}
    )
    out2 = event_conflicts(ev, period_start=ps, period_end=pe, stops=stops, stop_radius_m=2600)
    assert len(out2) == 3  # a-b (distance and stop), a-c and b-c (stop)
    assert np.isnan(out2["p_value"]).all()


def test_panel_checks_shapes():
    """A panel whose arrays do not match its axes is refused with the expected shape."""
    with pytest.raises(ValueError, match="should have shape \\(zones, days\\) = \\(2, 3\\)"):
        _panel(np.zeros((2, 3)), np.zeros((2, 4)), (0, 3))
