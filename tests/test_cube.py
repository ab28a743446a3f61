"""The zone x hour cube (issue 3): invariants pinned against independently computed values.

Stores are written directly in the validated layout (tests/_cube_fixtures.py), so these tests do
not depend on synth or ingest; the last test runs the whole chain on the tiny synthetic city.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors
import pytest

from features.baseline import EVENT_MARGIN_HOURS

sys.path.insert(0, str(Path(__file__).parent))

from _cube_fixtures import ALL_SOURCES, make_store  # noqa: E402

from features.baseline import same_slot_median  # noqa: E402
from features.cube import CUBE_SOURCES, build_cube, cube_schema  # noqa: E402
from features.cube.duck import DuckStage  # noqa: E402
from features.cube.pandas_engine import pandas_inputs  # noqa: E402
from features.cube.period import month_specs  # noqa: E402
from features.cube.plan import make_plan  # noqa: E402
from features.errors import ConfigError, StoreError  # noqa: E402
from features.store import Store  # noqa: E402
from features.text import slug  # noqa: E402

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Store:
    """Every source, 4 zones, 2026-03-01 .. 2026-04-12 (spring-forward on 29 March)."""
    root = make_store(tmp_path_factory.mktemp("full"))
    build_cube(Store(root), engine="duckdb")
    return Store(root)


@pytest.fixture(scope="module")
def cube(full: Store) -> pd.DataFrame:
    """The full store's cube, as read back by Store.cube."""
    return full.cube()


def _local(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_convert(TZ)


# -- grid ------------------------------------------------------------------------------------
def test_grid_is_complete_and_unique(full: Store, cube: pd.DataFrame) -> None:
    """One row per zone and UTC hour over whole local days; no hour doubled or dropped."""
    n_zones = len(full.zones())
    hours = pd.date_range(
        pd.Timestamp("2026-03-01", tz=TZ),
        pd.Timestamp("2026-04-12", tz=TZ),
        freq="h",
        inclusive="left",
    ).tz_convert("UTC")
    assert len(cube) == n_zones * len(hours)
    assert not cube.duplicated(["zone_id", "hour"]).any()
    for _, g in cube.groupby("zone_id"):
        assert (g["hour"].reset_index(drop=True) == pd.Series(hours).astype(g["hour"].dtype)).all()
    local = _local(cube["hour"])
    assert (cube["local_hour"] == local.dt.hour).all()
    assert (cube["dow"] == local.dt.dayofweek).all()
    assert (pd.to_datetime(cube["local_date"]) == local.dt.tz_localize(None).dt.normalize()).all()
    meta = full.cube_meta()
    assert meta["rows"] == len(cube) and meta["zones"] == n_zones
    assert set(meta["columns"]) == set(cube.columns)


def test_cube_matches_its_pandera_contract(full: Store, cube: pd.DataFrame) -> None:
    """The cube satisfies cube_schema (types, ranges, cross-column rules); a broken copy fails."""
    schema = cube_schema(full.cube_meta()["columns"])
    schema.validate(cube, lazy=True)
    broken = cube.copy()
    broken.loc[0, "lamps_out"] = broken.loc[0, "lamps"] + 1
    broken.loc[1, "present_missing"] = not broken.loc[1, "present_missing"]
    with pytest.raises(pandera.errors.SchemaErrors, match="lamps_out <= lamps"):
        schema.validate(broken, lazy=True)


@pytest.mark.parametrize(
    ("start", "end", "day", "expected"),
    [
        ("2026-03-22", "2026-04-05", "2026-03-29", 23),
        ("2026-10-18", "2026-11-01", "2026-10-25", 25),
    ],
    ids=["spring-forward-23h", "fall-back-25h"],
)
def test_dst_days_have_23_and_25_hours(tmp_path, start, end, day, expected) -> None:
    """DST days have 23 / 25 hourly rows per zone; every other local date has 24."""
    root = make_store(tmp_path, start=start, end=end, sources=("presence", "incidents"))
    build_cube(Store(root), engine="duckdb")
    cube = Store(root).cube(["local_date", "local_hour"])
    per_day = cube.groupby(["zone_id", "local_date"]).size()
    days = per_day.xs("Z00", level="zone_id")
    assert days[pd.Timestamp(day).date()] == expected
    assert (days.drop(pd.Timestamp(day).date()) == 24).all()
    assert not cube.duplicated(["zone_id", "hour"]).any()
    # every hourly value of the source appears once: presence of Z00 (hourly) matches 1:1
    pres = Store(root).validated("presence")
    z0 = pres[pres["zone_id"] == "Z00"].set_index("start")["present"]
    got = Store(root).cube(["present"], zones=["Z00"]).set_index("hour")["present"].dropna()
    assert len(got) == len(z0)
    np.testing.assert_allclose(got.to_numpy(), z0.loc[got.index].to_numpy())


# -- presence slot rules ---------------------------------------------------------------------
def test_presence_slot_rules_and_missing(full: Store, cube: pd.DataFrame) -> None:
    """2 h slots give their value to both hours, 15-min slots are averaged, gaps stay NaN."""
    pres = full.validated("presence")
    c = cube.set_index(["zone_id", "hour"])["present"]
    two = pres[pres["zone_id"] == "Z01"]
    for _, row in two.iloc[:50].iterrows():
        for k in (0, 1):
            assert c[("Z01", row["start"] + pd.Timedelta(hours=k))] == pytest.approx(row["present"])
    q = pres[pres["zone_id"] == "Z02"].assign(hour=lambda d: d["start"].dt.floor("h"))
    expected = q.groupby("hour")["present"].mean()
    got = c.xs("Z02", level="zone_id").loc[expected.index]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12)
    z0 = cube[cube["zone_id"] == "Z00"]
    assert z0["present_missing"].sum() == 6
    assert z0.loc[z0["present_missing"], "present"].isna().all()
    assert not (cube["present"] == 0).any()
    assert (cube["present_missing"] == cube["present"].isna()).all()
    np.testing.assert_allclose(
        cube["residents"].dropna().to_numpy(),
        (cube["present"] * 0.6).dropna().to_numpy(),
        atol=0.06,  # residents were rounded to 0.1 at the source
    )


# -- reference value -------------------------------------------------------------------------
def _independent_baseline(pres: pd.DataFrame, events: pd.DataFrame, zone: str) -> pd.Series:
    """Median of the same local weekday and clock hour over the 8 previous weeks, by lookups."""
    p = pres[pres["zone_id"] == zone].copy()
    p["hour"] = p["start"].dt.floor("h")
    hourly = p.groupby("hour")["present"].mean()
    ev = events[events["zone_id"] == zone]
    busy = set()
    margin = pd.Timedelta(hours=EVENT_MARGIN_HOURS)  # arrivals before, departures after
    for _, e in ev.iterrows():
        h = e["start"].floor("h") - margin
        last = e["end"].ceil("h") - pd.Timedelta(hours=1) + margin
        while h <= last:
            busy.add(h)
            h += pd.Timedelta(hours=1)
    usable = hourly[[h not in busy for h in hourly.index]]
    local = usable.index.tz_convert(TZ).tz_localize(None)
    by_wall = pd.Series(usable.to_numpy(), index=local).groupby(level=0).mean()
    out = {}
    for h in hourly.index:
        wall = h.tz_convert(TZ).tz_localize(None)
        vals = [by_wall.get(wall - pd.Timedelta(days=7 * k)) for k in range(1, 9)]
        vals = [v for v in vals if v is not None and not np.isnan(v)]
        out[h] = np.median(vals) if len(vals) >= 2 else np.nan
    return pd.Series(out)


def test_baseline_matches_independent_median(full: Store, cube: pd.DataFrame) -> None:
    """present_baseline equals a lookup-based median (same weekday/hour, 8 weeks, no events)."""
    pres, events = full.validated("presence"), full.validated("events")
    expected = _independent_baseline(pres, events, "Z00")
    got = cube[cube["zone_id"] == "Z00"].set_index("hour")["present_baseline"]
    got.index = got.index.astype(expected.index.dtype)
    pd.testing.assert_series_equal(
        got.loc[expected.index], expected, check_names=False, check_index_type=False, rtol=1e-12
    )
    # NaN for the first two weeks (fewer than 2 past values), defined afterwards
    first = cube["hour"].min()
    assert cube.loc[cube["hour"] < first + pd.Timedelta(days=14), "present_baseline"].isna().all()
    late = cube[(cube["hour"] >= first + pd.Timedelta(days=15)) & (cube["zone_id"] != "Z00")]
    assert late["present_baseline"].notna().all()
    ratio = cube["present"] / cube["present_baseline"]
    np.testing.assert_allclose(cube["present_ratio"].to_numpy(), ratio.to_numpy(), rtol=1e-12)


def test_baseline_excludes_event_hours(full: Store, cube: pd.DataFrame) -> None:
    """The hour of a 12 000-people match one week earlier (and the hours around it) does not
    enter the reference."""
    ev = full.validated("events").set_index("event_id")
    match_hour = ev.loc["E3", "start"].floor("h")  # 28 March, 09:00 local (before DST)
    wall_match = match_hour.tz_convert(TZ).tz_localize(None)
    target = (wall_match + pd.Timedelta(days=7)).tz_localize(TZ).tz_convert("UTC")  # after DST
    assert target - match_hour == pd.Timedelta(hours=7 * 24 - 1)
    row = cube[(cube["zone_id"] == "Z00") & (cube["hour"] == target)].iloc[0]
    assert row["events_active"] == 0
    pres = full.validated("presence")
    z0 = pres[pres["zone_id"] == "Z00"].set_index("start")["present"]
    wall = target.tz_convert(TZ).tz_localize(None)
    past = [wall - pd.Timedelta(days=7 * k) for k in range(1, 9)]
    past_utc = [pd.Timestamp(w).tz_localize(TZ).tz_convert("UTC") for w in past]
    margin = pd.Timedelta(hours=EVENT_MARGIN_HOURS)
    kept = [z0[h] for h in past_utc if h in z0.index and abs(h - match_hour) > margin]
    assert row["present_baseline"] == pytest.approx(np.median(kept), rel=1e-12)


def test_baseline_never_uses_the_future(tmp_path) -> None:
    """Multiplying presence after a cut-off by 10 (and adding an event) leaves the reference of
    every earlier slot unchanged, in every engine."""
    root = make_store(tmp_path / "a")
    build_cube(Store(root), engine="duckdb")
    before = Store(root).cube(["present_baseline", "present"])
    cut = pd.Timestamp("2026-03-25 11:00", tz="UTC")  # a 2-hour slot boundary
    pres = pd.read_parquet(root / "validated" / "presence.parquet")
    pres.loc[pres["start"] >= cut, "present"] *= 10
    pres.to_parquet(root / "validated" / "presence.parquet", index=False)
    ev = pd.read_parquet(root / "validated" / "events.parquet")
    extra = ev.iloc[[0]].assign(
        event_id="E_future", start=cut + pd.Timedelta(days=3), end=cut + pd.Timedelta(days=4)
    )
    pd.concat([ev, extra]).to_parquet(root / "validated" / "events.parquet", index=False)
    for engine in ("duckdb", "pandas"):
        build_cube(Store(root), engine=engine)
        after = Store(root).cube(["present_baseline", "present"])
        early = before["hour"] < cut
        pd.testing.assert_series_equal(
            after.loc[early, "present_baseline"], before.loc[early, "present_baseline"]
        )
        late = (before["hour"] >= cut) & before["present"].notna()
        assert (after.loc[late, "present"] > 9 * before.loc[late, "present"]).all()


def test_same_slot_median_small_cases() -> None:
    """The median helper: past days only, at least 2 values, NaNs skipped."""
    pool = np.full((1, 30, 2), np.nan)
    pool[0, [1, 8, 15], 0] = [1.0, 5.0, 100.0]
    pool[0, 22, 0] = 1e9  # day 22 is the target day itself: never used
    got = same_slot_median(
        pool, target_days=np.array([22, 15, 8, 22]), target_slots=np.array([0, 0, 0, 1])
    )
    np.testing.assert_array_equal(got, [[5.0, 3.0, np.nan, np.nan]])
    with pytest.raises(ValueError, match="pool must be"):
        same_slot_median(np.zeros((2, 3)), target_days=np.array([0]), target_slots=np.array([0]))


# -- incidents, lighting, transport, events, calendar ---------------------------------------
def test_incidents_add_up_to_ingested_incidents_inside_zones(
    full: Store, cube: pd.DataFrame
) -> None:
    """Cube incidents = validated incidents with a zone of the study, per zone-hour and category."""
    inc = full.validated("incidents")
    inside = inc[inc["zone_id"].isin(full.zones()["zone_id"])]
    assert len(inside) < len(inc)  # the fixture has incidents outside every zone
    assert cube["incidents"].sum() == len(inside)
    assert full.cube_meta()["incidents_in_cube"] == len(inside)
    expected = (
        inside.assign(hour=inside["occurred_at"].dt.floor("h")).groupby(["zone_id", "hour"]).size()
    )
    got = cube.set_index(["zone_id", "hour"])["incidents"]
    got = got[got > 0]
    got.index = got.index.set_levels(
        got.index.levels[1].astype(expected.index.levels[1].dtype), level=1
    )
    pd.testing.assert_series_equal(
        got.sort_index(), expected.sort_index(), check_names=False, check_dtype=False
    )
    for cat, n in inside["category"].value_counts().items():
        assert cube[f"inc_{slug(cat)}"].sum() == n
    cats = [c for c in cube.columns if c.startswith("inc_")]
    assert (cube[cats].sum(axis=1) == cube["incidents"]).all()
    assert full.cube_meta()["categories"]["vol_a_l_etalage"] == "Vol à l'étalage"


def test_lamps_out_midpoint_rule_and_bound(full: Store, cube: pd.DataFrame) -> None:
    """lamps_out counts distinct known lamps with a fault open at the slot midpoint; <= lamps."""
    assert (cube["lamps_out"] <= cube["lamps"]).all()
    lamps = full.validated("lamps")
    assert (cube.groupby("zone_id")["lamps"].first() == lamps.groupby("zone_id").size()).all()
    faults = full.validated("lighting_faults")
    faults = faults[faults["lamp_id"].isin(lamps["lamp_id"])].merge(
        lamps[["lamp_id", "zone_id"]], on="lamp_id", suffixes=("_f", "")
    )
    mids = cube["hour"] + pd.Timedelta(minutes=30)
    expected = np.zeros(len(cube), dtype=int)
    for zone, g in faults.groupby("zone_id"):
        rows = (cube["zone_id"] == zone).to_numpy()
        m = mids[rows].to_numpy()[:, None]
        rep = g["reported_at"].to_numpy()[None, :]
        fix = g["repaired_at"].to_numpy()[None, :]
        open_ = (rep <= m) & ((m < fix) | pd.isna(fix))
        lamp_codes = pd.factorize(g["lamp_id"])[0]
        distinct = np.zeros(rows.sum(), dtype=int)
        for code in np.unique(lamp_codes):
            distinct += open_[:, lamp_codes == code].any(axis=1)
        expected[rows] = distinct
    np.testing.assert_array_equal(cube["lamps_out"].to_numpy(), expected)
    assert full.cube_meta()["faults_unmatched"] == 1
    # the never-repaired fault keeps its lamp out until the end
    assert cube[cube["zone_id"] == "Z00"]["lamps_out"].iloc[-1] >= 1


def test_ridership_events_weather(full: Store, cube: pd.DataFrame) -> None:
    """Flows summed into the hour (two stops, 30-min slots), events by overlap, weather broadcast."""
    rid = full.validated("ridership")
    expected = (
        rid.assign(hour=rid["start"].dt.floor("h")).groupby(["zone_id", "hour"])["entries"].sum()
    )
    got = cube.set_index(["zone_id", "hour"])["ridership_entries"]
    got.index = got.index.set_levels(
        got.index.levels[1].astype(expected.index.levels[1].dtype), level=1
    )
    np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy())
    assert cube["ridership_entries"].sum() == pytest.approx(rid["entries"].sum())
    ev = full.validated("events").set_index("event_id")
    z0 = cube[cube["zone_id"] == "Z00"].set_index("hour")
    h = ev.loc["E2", "start"].floor("h")  # market 07:30-12:00, match 09:00-11:00
    assert z0.loc[h, "events_active"] == 1
    assert z0.loc[h + pd.Timedelta(hours=2), "events_active"] == 2
    assert z0.loc[h + pd.Timedelta(hours=2), "event_attendance"] == 12800.0
    assert z0.loc[ev.loc["E1", "end"], "events_active"] == 0  # end is exclusive
    assert cube["events_active"].sum() == 4 + 5 + 2
    wx = full.validated("weather").set_index("start")
    for zone in ("Z00", "Z03"):
        zz = cube[cube["zone_id"] == zone].set_index("hour")
        zz.index = zz.index.astype(wx.index.dtype)
        np.testing.assert_allclose(zz["temperature_c"], wx.loc[zz.index, "temperature_c"])


def test_dark_agrees_with_solar_elevation(full: Store, cube: pd.DataFrame) -> None:
    """dark (sunrise/sunset per local date) agrees with astral's elevation at each midpoint."""
    from features.calendar import dark_mask
    from features.zones import centroids

    cent = centroids(full.zones()).set_index("zone_id")
    lat = cent.loc[cube["zone_id"], "latitude"].to_numpy()
    lon = cent.loc[cube["zone_id"], "longitude"].to_numpy()
    sample = np.arange(0, len(cube), 7)
    expected = dark_mask(pd.DatetimeIndex(cube["hour"].iloc[sample]), lat[sample], lon[sample])
    differ = sample[cube["dark"].to_numpy()[sample] != expected]
    assert len(differ) <= 0.01 * len(sample)
    # dark_mask takes astral's elevation at each midpoint, the cube astral's sunrise and sunset
    # times: two computations of the same -0.833 degree rule, so they may disagree only near
    # sunrise or sunset (within 10 min).
    import datetime as dt
    from zoneinfo import ZoneInfo

    from astral import Observer
    from astral.sun import sunrise, sunset

    for i in differ:
        mid = cube["hour"].iloc[i] + pd.Timedelta(minutes=30)
        obs = Observer(latitude=lat[i], longitude=lon[i])
        day = mid.tz_convert(TZ).date()
        events = [f(obs, day, tzinfo=ZoneInfo(TZ)) for f in (sunrise, sunset)]
        assert min(abs(mid.to_pydatetime() - e) for e in events) < dt.timedelta(minutes=10)
    noon = cube[cube["local_hour"] == 12]
    midnight = cube[cube["local_hour"] == 0]
    assert not noon["dark"].any() and midnight["dark"].all()


def test_holidays_by_local_date(cube: pd.DataFrame) -> None:
    """Easter Monday 2026 is a public holiday; zone C winter school holidays end on 8 March 2026."""
    by_day = cube.groupby("local_date")[["holiday", "school_holiday"]].first()
    assert by_day.loc[pd.Timestamp("2026-04-06").date(), "holiday"]
    assert by_day["holiday"].sum() == 1
    assert by_day.loc[pd.Timestamp("2026-03-08").date(), "school_holiday"]
    assert not by_day.loc[pd.Timestamp("2026-03-09").date(), "school_holiday"]
    assert by_day["school_holiday"].sum() == 8


def test_school_holidays_false_outside_france(tmp_path) -> None:
    """A study in Chicago has US public holidays and no school holidays."""
    root = make_store(
        tmp_path,
        start="2026-05-20",
        end="2026-06-03",
        tz="America/Chicago",
        lat0=41.88,
        lon0=-87.63,
        country="US",
        school_zone=None,
        sources=("presence",),
    )
    result = build_cube(Store(root), engine="pandas")
    cube = Store(root).cube(["local_date", "holiday", "school_holiday"])
    assert not cube["school_holiday"].any()
    memorial = cube[cube["local_date"] == pd.Timestamp("2026-05-25").date()]
    assert memorial["holiday"].all() and len(memorial) == 4 * 24
    assert result.meta["timezone"] == "America/Chicago"


# -- absent sources, daily grain, engines ----------------------------------------------------
@pytest.mark.parametrize(
    ("dropped", "absent"),
    [
        (("lamps", "lighting_faults"), {"lamps", "lamps_out"}),
        (("events",), {"events_active", "event_attendance"}),
        (
            ("presence",),
            {"present", "present_baseline", "present_ratio", "present_missing", "residents"},
        ),
        (
            ("weather", "ridership", "stops"),
            {"temperature_c", "precipitation_mm", "ridership_entries"},
        ),
    ],
    ids=["no-lighting", "no-events", "no-presence", "no-weather-transit"],
)
def test_absent_sources_leave_their_columns_out(tmp_path, dropped, absent) -> None:
    """A study without a source builds; that source's columns are absent, the others are there."""
    sources = tuple(s for s in ALL_SOURCES if s not in dropped)
    root = make_store(tmp_path, start="2026-03-01", end="2026-03-20", sources=sources)
    result = build_cube(Store(root), engine="duckdb")
    cube = Store(root).cube()
    assert not absent & set(cube.columns)
    assert {"zone_id", "hour", "incidents", "dark", "holiday"} <= set(cube.columns)
    assert len(cube) == 4 * 19 * 24
    inc = Store(root).validated("incidents")
    assert cube["incidents"].sum() == inc["zone_id"].isin(["Z00", "Z01", "Z02", "Z03"]).sum()
    assert result.columns == tuple(cube.columns)
    assert result.meta["sources"] == [s for s in CUBE_SOURCES if s in sources]


def test_faults_without_lamps_give_no_lighting_columns(tmp_path) -> None:
    """Faults alone cannot give lamps_out (no denominator): no lighting columns at all."""
    root = make_store(
        tmp_path,
        start="2026-03-01",
        end="2026-03-10",
        sources=("incidents", "lamps", "lighting_faults"),
    )
    (root / "validated" / "lamps.parquet").unlink()
    result = build_cube(Store(root))
    assert not {"lamps", "lamps_out"} & set(Store(root).cube().columns)
    assert result.meta["sources"] == ["incidents"]


def test_daily_grain(tmp_path, full: Store, cube: pd.DataFrame) -> None:
    """Daily grain: one row per zone and local day; presence = mean of the day's hours, counts
    summed, the most lamps out at once, distinct events; no dark column."""
    root = tmp_path / "daily"
    shutil.copytree(full.root, root, ignore=shutil.ignore_patterns("cube", "cube_meta.json"))
    study = Store(root).study()
    study["area"]["grain"] = "1d"
    Store(root).write_json("study.json", study)
    result = build_cube(Store(root), engine="duckdb")
    daily = Store(root).cube()
    assert "dark" not in daily.columns and result.meta["grain"] == "1d"
    assert len(daily) == 4 * 42
    assert (daily["local_hour"] == 0).all()
    assert (daily["hour"].dt.tz_convert(TZ).dt.hour == 0).all()
    hourly = cube.groupby(["zone_id", "local_date"])
    d = daily.set_index(["zone_id", "local_date"])
    np.testing.assert_allclose(d["present"], hourly["present"].mean().loc[d.index], rtol=1e-12)
    np.testing.assert_array_equal(d["incidents"], hourly["incidents"].sum().loc[d.index])
    np.testing.assert_allclose(
        d["ridership_entries"], hourly["ridership_entries"].sum().loc[d.index]
    )
    np.testing.assert_array_equal(d["lamps_out"], hourly["lamps_out"].max().loc[d.index])
    np.testing.assert_allclose(d["precipitation_mm"], hourly["precipitation_mm"].sum().loc[d.index])
    assert d.loc[("Z00", pd.Timestamp("2026-03-28").date()), "events_active"] == 2  # market + match
    assert d.loc[("Z00", pd.Timestamp("2026-03-28").date()), "event_attendance"] == 12800.0
    assert daily["incidents"].sum() == cube["incidents"].sum()
    # DST day is one row; partitions are UTC months of `hour` (1 April local = 31 March UTC)
    assert (daily.groupby("local_date").size() == 4).all()
    assert result.months == ("2026-02", "2026-03", "2026-04")
    # daily reference: median of the same weekday over past weeks
    z1 = d.xs("Z01", level="zone_id")["present"]
    day = pd.Timestamp("2026-04-11").date()
    past = [z1[pd.Timestamp(day).date() - pd.Timedelta(days=7 * k)] for k in range(1, 6)]
    assert d.loc[("Z01", day), "present_baseline"] == pytest.approx(np.median(past), rel=1e-12)


@pytest.mark.parametrize("engine", ["pandas", "dask"])
def test_engines_agree(tmp_path, full: Store, cube: pd.DataFrame, engine: str) -> None:
    """pandas and dask build the same table as DuckDB (floats to 1e-9 relative)."""
    root = tmp_path / engine
    shutil.copytree(full.root, root, ignore=shutil.ignore_patterns("cube", "cube_meta.json"))
    result = build_cube(Store(root), engine=engine)
    other = Store(root).cube()
    pd.testing.assert_frame_equal(other, cube, check_exact=False, rtol=1e-9)
    assert result.engine == engine and result.rows == len(cube)


def test_engines_stage_the_same_sparse_aggregates(tmp_path, full: Store) -> None:
    """The engines' contract, source by source: DuckDB's staged aggregates of a month are the
    pandas engine's (same rows, floats to 1e-9 relative; lamp intervals within the month)."""
    plan = make_plan(full)
    specs = plan.months()
    stage = DuckStage(plan, specs, tmp_path)
    try:
        for spec in specs:
            duck, pand = stage.inputs(spec), pandas_inputs(plan, spec)
            assert (
                set(duck)
                == set(pand)
                == {"presence", "incidents", "ridership", "events", "lamps_out", "weather"}
            )
            for name in duck:
                a, b = pd.DataFrame(duck[name]), pd.DataFrame(pand[name])
                if name == "lamps_out":  # DuckDB stages whole intervals: compare the month's part
                    a[["k0", "k1"]] = a[["k0", "k1"]].clip(spec.a0, spec.a1)
                    b[["k0", "k1"]] = b[["k0", "k1"]].clip(spec.a0, spec.a1)
                keys = [c for c in ("zi", "eh", "ci", "ev", "k0", "k1") if c in a.columns]
                a = a.sort_values(keys, ignore_index=True)
                b = b[list(a.columns)].sort_values(keys, ignore_index=True)
                pd.testing.assert_frame_equal(
                    a, b, check_dtype=False, check_exact=False, rtol=1e-9, obj=name
                )
    finally:
        stage.close()


def test_month_specs_cut_on_utc_months() -> None:
    """Hourly months end at UTC month boundaries and read 8 weeks + a day of past; at daily
    grain a local midnight belongs to the UTC month it falls in (Paris: the 1st of April starts
    on 31 March, 22:00 UTC)."""
    start = pd.Timestamp("2026-03-30", tz=TZ).tz_convert("UTC").value // 10**9
    end = pd.Timestamp("2026-04-03", tz=TZ).tz_convert("UTC").value // 10**9
    hourly = month_specs(start, end, grain="1h", tz=TZ)
    april = pd.Timestamp("2026-04-01", tz="UTC").value // 10**9 // 3600
    assert [s.label for s in hourly] == ["2026-03", "2026-04"]
    assert hourly[0].a1 == hourly[1].a0 == april
    assert all(s.a0 - s.w0 == (8 * 7 + 1) * 24 for s in hourly)
    daily = month_specs(start, end, grain="1d", tz=TZ)
    assert [len(s.day_index) for s in daily] == [3, 1]  # 30 and 31 March, 1 April; 2 April
    assert daily[1].day_starts[0] == end - 86400 and daily[0].a1 == daily[1].a0


def test_dask_on_a_distributed_cluster(tmp_path, full: Store, cube: pd.DataFrame) -> None:
    """engine='dask' with a distributed scheduler address gives the same table."""
    from distributed import LocalCluster

    root = tmp_path / "dist"
    shutil.copytree(full.root, root, ignore=shutil.ignore_patterns("cube", "cube_meta.json"))
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        build_cube(Store(root), engine="dask", dask_address=cluster.scheduler_address)
    pd.testing.assert_frame_equal(Store(root).cube(), cube, check_exact=False, rtol=1e-9)


def test_rebuild_replaces_the_cube(tmp_path, full: Store) -> None:
    """A second build replaces the partitions (no stale month left, no temp folder left)."""
    store = Store(tmp_path / "again")
    shutil.copytree(full.root, store.root)
    result = build_cube(store, engine="pandas", start="2026-03-05", end="2026-03-12")
    assert result.months == ("2026-03",)
    assert sorted(p.name for p in store.cube_dir.iterdir()) == ["_meta.json", "month=2026-03"]
    assert not list(store.root.glob(".cube*"))
    assert len(store.cube()) == 4 * 7 * 24


# -- errors ----------------------------------------------------------------------------------
def test_errors_name_what_was_expected(tmp_path, full: Store) -> None:
    """Bad engine, misplaced scheduler address, no store, bad period: one-paragraph messages."""
    with pytest.raises(ConfigError, match="unknown cube engine 'spark': expected one of duckdb"):
        build_cube(full, engine="spark")
    with pytest.raises(ConfigError, match="use engine 'dask'"):
        build_cube(full, engine="duckdb", dask_address="tcp://127.0.0.1:1")
    with pytest.raises(StoreError, match="not a vigie store"):
        build_cube(Store(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="must be after start"):
        build_cube(full, start="2026-03-10", end="2026-03-01")
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        build_cube(full, engine="dask", dask_address="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="expected tcp://host:port"):
        build_cube(full, engine="dask", dask_address="http://nowhere")
    assert not list(full.root.glob(".cube-*"))


def test_unknown_holiday_calendar_is_a_config_error(tmp_path) -> None:
    """A country python-holidays does not know (or a bad school zone) in study.json: ConfigError."""
    root = make_store(tmp_path, start="2026-03-01", end="2026-03-05", sources=("incidents",))
    study = json.loads((root / "study.json").read_text())
    study["area"]["country"] = "XX"
    (root / "study.json").write_text(json.dumps(study))
    with pytest.raises(ConfigError, match="holidays does not know country 'XX'"):
        build_cube(Store(root))


# -- end to end --------------------------------------------------------------------------------
@pytest.mark.slow
def test_end_to_end_on_the_tiny_synthetic_city(tmp_path) -> None:
    """synth tiny -> ingest -> cube: incidents reconcile with ingest, lamps_out <= lamps, the
    fall-back day has 25 hours, the CLI builds the same table as the pandas engine."""
    from typer.testing import CliRunner

    from features.ingest import ingest
    from features.synth import generate
    from pipelines.cli import app

    synth = generate("tiny", tmp_path / "raw", seed=0)
    ingest(synth.sources_yaml, tmp_path / "store")
    store = Store(tmp_path / "store")
    run = CliRunner().invoke(app, ["cube", "--store", str(store.root)])
    assert run.exit_code == 0, run.output
    assert "month partitions" in run.output
    cube = store.cube()
    inc = store.validated("incidents")
    inside = inc["zone_id"].isin(store.zones()["zone_id"].astype(str))
    assert cube["incidents"].sum() == inside.sum()
    report = json.loads((store.root / "ingest_report.json").read_text())
    assert cube["incidents"].sum() == report["sources"]["incidents"]["rows_kept"]
    assert (cube["lamps_out"] <= cube["lamps"]).all()
    assert cube["lamps_out"].sum() > 0
    per_day = cube[cube["zone_id"] == cube["zone_id"].iloc[0]].groupby("local_date").size()
    assert per_day[pd.Timestamp("2026-10-25").date()] == 25
    assert set(per_day.drop(pd.Timestamp("2026-10-25").date())) == {24}
    assert cube["dark"].any() and not cube["dark"].all()
    assert cube["present_baseline"].notna().mean() > 0.6
    pandas_root = tmp_path / "store_pd"
    shutil.copytree(
        store.root, pandas_root, ignore=shutil.ignore_patterns("cube", "cube_meta.json")
    )
    build_cube(Store(pandas_root), engine="pandas")
    pd.testing.assert_frame_equal(Store(pandas_root).cube(), cube, check_exact=False, rtol=1e-9)
