"""Expectation-based Poisson space-time scan (pipelines.signals.scan) on simulated grids."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.signals.panel import Panel
from pipelines.signals.scan import knn_neighbours, scan_null, space_time_scan


def _grid(n=5):
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    return xs.ravel(), ys.ravel()


def _panel(o, e, period):
    days = pd.date_range("2026-10-01", periods=o.shape[1], freq="D", tz="UTC")
    zones = np.array([f"z{i:02d}" for i in range(o.shape[0])], dtype=object)
    return Panel(zones=zones, days=days, observed=o, expected=e, period=period)


def test_knn_neighbours_itself_first_then_nearest():
    """On a unit grid the 5 nearest of an interior cell are itself and its 4 rook neighbours."""
    x, y = _grid(5)
    nbr = knn_neighbours(x, y, k=5)
    assert nbr.shape == (25, 5)
    assert nbr[12, 0] == 12
    assert set(nbr[12, 1:]) == {7, 11, 13, 17}
    with pytest.raises(ValueError, match="same length"):
        knn_neighbours(x, y[:-1])


def test_scan_finds_planted_cluster_zones_and_window():
    """A cross of five zones (a centre and its rook neighbours) at 3x expectation over the last 4
    days is the most likely cluster (exactly those zones and days), with the LLR of the
    expectation-based formula and p < 0.01."""
    rng = np.random.default_rng(1)
    x, y = _grid(5)
    e = rng.uniform(2, 4, (25, 30))
    o = rng.poisson(e).astype(float)
    nbr = knn_neighbours(x, y, k=6)
    members = [int(m) for m in nbr[12, :5]]
    for m in members:
        o[m, -4:] = rng.poisson(3 * e[m, -4:])
    res = space_time_scan(_panel(o, e, (23, 30)), nbr, max_window=10, n_sim=199, seed=2)
    top = res.clusters.iloc[0]
    assert set(top["zones"]) == {f"z{m:02d}" for m in members}
    days = pd.date_range("2026-10-01", periods=30, freq="D", tz="UTC")
    assert top["start"] == days[26] and top["end"] == days[29] + pd.Timedelta(days=1)
    c = o[members, 26:].sum()
    b = e[members, 26:].sum()
    assert top["observed"] == pytest.approx(c)
    assert top["statistic"] == pytest.approx(c * math.log(c / b) + b - c, rel=1e-9)
    assert top["p_value"] < 0.01
    # secondary clusters never share a zone with a better one
    seen: set[str] = set()
    for zs in res.clusters["zones"]:
        assert not seen & set(zs)
        seen |= set(zs)
    # the per-zone prospective statistic lights the members on the last day, not far zones
    assert res.zone_day_llr[members, -1] == pytest.approx(top["statistic"])
    assert res.zone_day_llr[0, -1] < top["statistic"]


def test_scan_p_values_are_calibrated_under_the_null():
    """Most likely clusters of null panels reject at about the nominal 10 % level (30 panels)."""
    rng = np.random.default_rng(4)
    x, y = _grid(4)
    nbr = knn_neighbours(x, y, k=4)
    e = rng.uniform(1, 3, (16, 20))
    base = _panel(np.zeros_like(e), e, (14, 20))
    null = scan_null(base, nbr, max_window=7, n_sim=199, seed=9)
    ps = []
    for _ in range(30):
        o = rng.poisson(e).astype(float)
        res = space_time_scan(_panel(o, e, (14, 20)), nbr, max_window=7, null_max=null)
        ps.append(res.clusters.iloc[0]["p_value"] if len(res.clusters) else 1.0)
    ps = np.array(ps)
    assert (ps < 0.1).mean() <= 0.25  # binomial(30, 0.1): P(>= 8) < 0.01
    assert (ps > 0.3).mean() >= 0.4


def test_scan_rejects_bad_neighbours():
    """A neighbour table with the wrong number of rows is refused with its expected shape."""
    e = np.ones((4, 10))
    with pytest.raises(ValueError, match="neighbours should have shape \\(zones=4, K\\)"):
        space_time_scan(_panel(e, e, (5, 10)), np.zeros((3, 2), int))
