"""The weekly report's 'who is present' section (pipelines.reports.who) on the tiny city."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from features.cube.origins import OTHER
from features.store import Store
from pipelines.reports import weekly as wk
from pipelines.reports import who


def test_who_is_present_section(tiny_city, tiny_store):
    """Residents + visitors = present; the study's top origins are all >= k with 'other' last;
    the zone of the inflow planted in the last week shows the planted origin first, several
    times its reference."""
    st = Store(tiny_store)
    k = st.suppression_k
    truth = json.loads((tiny_city / "truth.json").read_text())
    week = truth["last_week"]
    planted = [t for t in truth["origin_inflows"] if t["week"] == week][0]
    start, end = wk.week_bounds(st, week)
    split = who.split_figures(st, start=start, end=end).set_index("figure")
    np.testing.assert_allclose(
        split.loc["residents", "this_week"] + split.loc["visitors", "this_week"],
        split.loc["present", "this_week"],
        rtol=1e-9,
    )
    share = who.visitor_share(split.reset_index(), k=k)
    assert 0 < share["share_this_week"] < 1
    mix = who.week_mix(st, week=week)
    top = who.top_origins(mix, week=week, k=k, top=10)
    assert len(top) == 11 and top["origin"].iloc[-1] == OTHER
    assert (top["this_week"] >= k).all()
    assert abs(top["share"].sum() - 100) < 1e-6
    zone = who.top_origins(mix, week=week, k=k, top=5, zone=planted["zone"])
    assert zone["origin"].iloc[0] == planted["origin"]
    assert zone["ratio"].iloc[0] > 3
    classes = who.origin_classes(mix, week=week, k=k)
    assert set(classes) == {"resident", "france", "abroad"}
    zs = who.zone_split(st, start=start, end=end, k=k, top=5)
    assert len(zs) == 5 and zs["peak_vs_population"].is_monotonic_decreasing
    assert isinstance(zs["peak_at"].iloc[0], str)


def test_zone_split_withholds_shares_beside_small_counts(tiny_store):
    st = Store(tiny_store)
    start, end = wk.week_bounds(st, "2026-W46")
    big_k = 10**9
    zs = who.zone_split(st, start=start, end=end, k=big_k, top=30)
    assert zs["visitor_share"].isna().all() and zs["peak_vs_population"].isna().all()
    assert isinstance(zs, pd.DataFrame)
