"""Flux Vision indicators: the cube's visitor share and resident ratio, and their anomaly tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.cube import build_cube
from features.cube.indicators import indicator_columns, indicator_values
from features.store import Store
from pipelines.signals.mix import mix_tests
from tests._cube_fixtures import make_store


def test_indicator_values_by_hand():
    present = np.array([[100.0, 0.0, np.nan], [300.0, 50.0, 10.0]])
    vis = np.array([[25.0, 0.0, np.nan], [240.0, 5.0, 10.0]])
    out = indicator_values(present, {"visitors": vis}, population=np.array([50.0, 100.0]))
    np.testing.assert_allclose(out["visitor_share"], [0.25, np.nan, np.nan, 0.8, 0.1, 1.0])
    np.testing.assert_allclose(out["resident_ratio"], [2.0, 0.0, np.nan, 3.0, 0.5, 0.1])
    assert indicator_columns(("residents",), has_population=False) == []
    assert indicator_values(present, {}, population=None) == {}


def test_cube_columns_match_their_definition(tiny_store):
    """The tiny city's cube: visitor_share = visitors / present, resident_ratio = present /
    the zones file's population, row by row."""
    st = Store(tiny_store)
    assert {"visitor_share", "resident_ratio"} <= set(st.cube_meta()["columns"])
    cube = st.cube(columns=["zone_id", "present", "visitors", "visitor_share", "resident_ratio"])
    ok = cube["present"] > 0
    np.testing.assert_allclose(
        cube.loc[ok, "visitor_share"], (cube["visitors"] / cube["present"])[ok].clip(0, 1)
    )
    pop = st.validated("zones").set_index("zone_id")["population"]
    want = cube["present"] / cube["zone_id"].astype(str).map(pop).to_numpy(float)
    np.testing.assert_allclose(cube.loc[ok, "resident_ratio"], want[ok], rtol=1e-9)


def _frame(days: int, *, share: float, jump_day: int, jump: float) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    d0 = dt.date(2026, 9, 1)
    rows = []
    for z in ("Z1", "Z2", "Z3"):
        for t in range(days):
            s = share * rng.lognormal(0, 0.05)
            if z == "Z2" and t == jump_day:
                s = jump
            for _h in range(24):
                rows.append((z, d0 + dt.timedelta(days=t), 1000.0, 1000.0 * s, 2.0 + 0.1 * s))
    return pd.DataFrame(
        rows, columns=["zone_id", "local_date", "present", "visitors", "resident_ratio"]
    )


def test_visitor_share_jump_is_found_and_quiet_days_are_not():
    """A zone-day whose visitor share jumps from ~20 % to 60 % is the one small p value."""
    f = _frame(70, share=0.2, jump_day=65, jump=0.6)
    day = dt.date(2026, 9, 1) + dt.timedelta(days=65)
    tests = mix_tests(f, first=day - dt.timedelta(days=6), last=day, timezone="Europe/Paris")
    vs = tests[tests["type"] == "visitor_share"]
    assert len(vs) == 21
    top = vs.sort_values("p_value").iloc[0]
    assert top["zones"] == ["Z2"] and top["details"]["direction"] == "up"
    assert top["p_value"] < 1e-3
    assert (vs["p_value"].sort_values().iloc[1:] > 0.01).all()
    assert "visitor share 60%" in top["explanation"]


def test_visitor_kinds_are_carried_where_the_source_gives_them(tmp_path):
    """A presence source with tourists (and no excursionists): the cube gets ``tourists`` as a
    slot mean like ``visitors``, no ``excursionists`` column, and the indicators on every
    zone whatever its slots (hourly, 2-hour, 15-minute)."""
    root = make_store(tmp_path / "s", sources=("presence",), end="2026-03-15")
    path = root / "validated" / "presence.parquet"
    pres = pd.read_parquet(path)
    pres["tourists"] = np.round(pres["visitors"] * 0.5, 2)
    pres.to_parquet(path, index=False)
    st = Store(root)
    build_cube(st, engine="duckdb")
    cols = st.cube_meta()["columns"]
    assert {"tourists", "visitor_share", "resident_ratio"} <= set(cols)
    assert "excursionists" not in cols
    cube = st.cube()
    ok = cube["visitors"].notna()
    np.testing.assert_allclose(cube.loc[ok, "tourists"], 0.5 * cube.loc[ok, "visitors"], atol=0.01)
    np.testing.assert_allclose(cube.loc[ok, "visitor_share"], 0.4, atol=0.01)
    pop = st.validated("zones").set_index("zone_id")["population"]
    want = cube["present"] / cube["zone_id"].map(pop).to_numpy(float)
    np.testing.assert_allclose(cube.loc[ok, "resident_ratio"], want[ok])


def test_a_day_every_zone_shares_is_not_one_zone_anomaly_and_facts_explain():
    """With 10 zones or more, a day when every zone's visitor share drops (a holiday) is taken
    out as the study's shift; a zone's own jump on a holiday is flagged but explained."""
    from pipelines.signals.explain import DayFacts

    rng = np.random.default_rng(5)
    d0 = dt.date(2026, 9, 1)
    days = 70
    rows = []
    for z in range(12):
        for t in range(days):
            s = 0.2 * rng.lognormal(0, 0.05) * (0.3 if t == 65 else 1.0)
            if z == 3 and t == 64:
                s = 0.7
            rows += [(f"Z{z}", d0 + dt.timedelta(days=t), 1000.0, 1000.0 * s)] * 2
    f = pd.DataFrame(rows, columns=["zone_id", "local_date", "present", "visitors"])
    day64, day65 = d0 + dt.timedelta(days=64), d0 + dt.timedelta(days=65)
    facts = DayFacts(holidays={day64: "Armistice"})
    tests = mix_tests(f, first=day64, last=day65, timezone="Europe/Paris", facts=facts)
    sig = tests[tests["p_value"] < 1e-3]
    assert list(sig["zones"]) == [["Z3"]]
    assert bool(sig["explained"].iloc[0]) and "Armistice" in sig["explanation"].iloc[0]
