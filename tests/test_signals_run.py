"""The store-level runner and `vigie signals` on toy stores with planted signals."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pandera.errors
import pytest
from _toy_store import toy_store
from typer.testing import CliRunner

from features.errors import InputError
from features.store import Store
from pipelines.signals.result import SIGNALS_SCHEMA, TESTS_SCHEMA, SignalRun
from pipelines.signals.run import (
    build_panel,
    consolidate,
    parse_period,
    run_signals,
    zone_neighbours,
)

MATCH = {
    "gathering": {"gathering"},
    "event_gathering": {"gathering"},
    "emerging": {"drift", "excess", "cluster"},
    "cluster": {"cluster", "excess"},
}


def _found(signals: pd.DataFrame, truth: dict, top: int = 10) -> pd.Series | None:
    """The best-ranked signal matching a planted one: compatible type, a shared zone, an
    overlapping window."""
    head = signals.head(top)
    for _, s in head.iterrows():
        if s["type"] in MATCH[truth["type"]] and set(s["zones"]) & set(truth["zones"]):
            if pd.Timestamp(s["start"]) < truth["end"] and pd.Timestamp(s["end"]) > truth["start"]:
                return s
    return None


@pytest.fixture(scope="module")
def hourly(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_hourly")
    truth = toy_store(root)
    run = run_signals(root, parse_period(truth["week"]), n_sim=199, seed=1)
    return root, truth, run


def test_planted_signals_in_top_ten_with_q_below_005(hourly):
    """Each planted signal of the toy city is in the top ten with q < 0.05; the unexplained night
    gathering ranks above the event-explained one, which says it is explained."""
    _, truth, run = hourly
    for t in truth["signals"]:
        s = _found(run.signals, t)
        assert s is not None, f"planted {t['type']} in {t['zones']} not in the top ten"
        assert s["q_value"] < 0.05
    g = _found(run.signals, truth["signals"][0])
    ev = _found(run.signals, truth["signals"][1])
    assert not g["explained"] and ev["explained"]
    assert g["rank"] < ev["rank"]
    assert "explained by the event Concert" in ev["explanation"]


def test_outputs_written_and_consistent(hourly):
    """JSON and Parquet hold the same ranked signals; every signal carries the contract fields;
    the tests table holds every test with BH q values >= p values."""
    root, truth, run = hourly
    js = json.loads((root / "signals" / f"{truth['week']}.json").read_text())
    pq = pd.read_parquet(root / "signals" / f"{truth['week']}.parquet")
    tests = pd.read_parquet(root / "signals" / f"{truth['week']}.tests.parquet")
    assert js["period"] == truth["week"] and js["expectation"]["source"] == "fallback"
    assert len(js["signals"]) == len(pq) == len(run.signals)
    need = {
        "type",
        "zones",
        "start",
        "end",
        "observed",
        "expected",
        "ratio",
        "p_value",
        "q_value",
        "score",
        "explanation",
        "rank",
    }
    for s in js["signals"]:
        assert need <= set(s)
        assert s["explanation"].endswith(".")
    assert [s["rank"] for s in js["signals"]] == list(range(1, len(js["signals"]) + 1))
    ok = tests["p_value"].notna()
    assert (tests.loc[ok, "q_value"] >= tests.loc[ok, "p_value"] - 1e-15).all()
    assert js["n_tests"] == int(ok.sum())
    assert set(js["ears_baseline"]) == {"C1", "C2", "C3"}


def test_signal_run_round_trips_and_tables_meet_their_schema(hourly):
    """SignalRun reads back its JSON unchanged; the written tables pass their pandera schemas,
    which refuse a table out of contract."""
    root, truth, run = hourly
    js = json.loads((root / "signals" / f"{truth['week']}.json").read_text())
    back = SignalRun.from_json(js)
    assert back.to_json() == js
    assert back.n_signals == js["n_signals"] and back.expectation.source == "fallback"
    assert back.summary().splitlines()[0] == run.summary().splitlines()[0]
    pq = pd.read_parquet(root / "signals" / f"{truth['week']}.parquet")
    tests = pd.read_parquet(root / "signals" / f"{truth['week']}.tests.parquet")
    SIGNALS_SCHEMA.validate(pq)
    TESTS_SCHEMA.validate(tests)
    bad = tests.assign(p_value=tests["p_value"] + 2.0)
    with pytest.raises(pandera.errors.SchemaError):
        TESTS_SCHEMA.validate(bad)


def test_daily_grain(tmp_path):
    """At daily grain the cluster, the drift and the night-gathering day still come out."""
    truth = toy_store(tmp_path, grain="1d")
    run = run_signals(tmp_path, parse_period(truth["week"]), n_sim=199)
    sig = run.signals
    for t in truth["signals"]:
        if t["type"] == "event_gathering":
            continue
        assert _found(sig, t) is not None, t["type"]


def test_presence_only(tmp_path):
    """Without incidents, presence anomalies still come out and the notes say why no more."""
    truth = toy_store(tmp_path, incidents=False)
    run = run_signals(tmp_path, parse_period(truth["week"]), n_sim=99)
    assert set(run.signals["type"]) <= {"gathering", "emptied", "event_conflict"}
    assert _found(run.signals, truth["signals"][0]) is not None
    assert any("no incidents" in n for n in run.notes)
    assert run.expectation.source is None


def test_parse_period_forms_and_errors():
    """ISO weeks and date ranges give local first/last days and the file label; bad input is
    refused with what was expected."""
    p = parse_period("2026-W46")
    assert (p.first, p.last, p.label) == (dt.date(2026, 11, 9), dt.date(2026, 11, 15), "2026-W46")
    r = parse_period(start="2026-11-01", end="2026-11-07")
    assert r.label == "2026-11-01_2026-11-07" and r.days == 7
    a, b = p.bounds("Europe/Paris")
    assert a == pd.Timestamp("2026-11-08 23:00", tz="UTC") and b - a == pd.Timedelta(days=7)
    with pytest.raises(InputError, match="expected an ISO week such as 2026-W46"):
        parse_period("week 46")
    with pytest.raises(InputError, match="not both"):
        parse_period("2026-W46", start="2026-11-01", end="2026-11-02")
    with pytest.raises(InputError, match="is before --from"):
        parse_period(start="2026-11-07", end="2026-11-01")
    with pytest.raises(InputError, match="has no week 60"):
        parse_period("2026-W60")


def test_days_starting_in_a_dst_gap_at_midnight():
    """Where midnight falls in the DST gap (Santiago, 2026-09-06 00:00 -> 01:00) the period and
    the panel's day starts at 01:00 instead of failing, and the days stay contiguous."""
    tz = "America/Santiago"
    p = parse_period(start="2026-09-06", end="2026-09-12")
    a, b = p.bounds(tz)
    assert a == pd.Timestamp("2026-09-06 01:00", tz=tz) and b == pd.Timestamp("2026-09-13", tz=tz)
    dates = pd.date_range("2026-09-02", "2026-09-12", freq="D").date
    frame = pd.DataFrame({"zone_id": "A", "local_date": dates, "incidents": 1.0, "expected": 1.0})
    panel = build_panel(frame, zones=["A"], period=p, timezone=tz, history_days=4)
    assert panel.days[4] == a and panel.day_ends[-1] == b
    assert (panel.day_ends[:-1] == panel.days[1:]).all()
    assert panel.window(3, 4) == (pd.Timestamp("2026-09-05", tz=tz), a)
    assert (panel.observed == 1.0).all()


def test_zone_neighbours_names_zones_without_geometry(hourly):
    """Neighbours come itself first; a cube zone missing from the zones file is an error that
    names it (the runner turns it into a note saying why there is no scan), not a silent skip."""
    root, truth, _ = hourly
    st = Store(root)
    zones = sorted(truth["zones"])
    nb = zone_neighbours(st, zones, k=3)
    assert nb.shape == (len(zones), 3) and (nb[:, 0] == range(len(zones))).all()
    with pytest.raises(
        ValueError, match=r"1 zone\(s\) of the cube are not in the zones file.*ghost"
    ):
        zone_neighbours(st, [*zones, "ghost"], k=3)


def test_consolidate_folds_subsets_of_a_stronger_signal():
    """An excess in one zone inside a stronger cluster's zones and window is folded into it."""
    t0 = pd.Timestamp("2026-11-02", tz="UTC")

    def row(id_, type_, zones, days, q, score, ratio):
        end = t0 + pd.Timedelta(days=days)
        return dict(id=id_, type=type_, zones=zones, start=t0, end=end, q_value=q,
                    score=score, ratio=ratio, explained=False)  # fmt: skip

    rows = [
        row("T1", "cluster", ["A", "B"], 3, 1e-6, 8.0, 2.0),
        row("T2", "excess", ["A"], 1, 1e-3, 5.0, 3.0),
        row("T3", "excess", ["C"], 1, 1e-3, 4.0, 3.0),
        row("T4", "excess", ["D"], 1, 0.2, 1.0, 1.5),
    ]
    out = consolidate(pd.DataFrame(rows), fdr=0.05)
    assert out["id"].tolist() == ["T1", "T3"]
    assert out.loc[0, "related"] == ["T2"]


def test_cli_signals_and_errors(hourly):
    """`vigie signals` prints the ranked list and the output path; a bad week or store exits 2
    with a one-paragraph message."""
    from pipelines.cli import app

    root, truth, _ = hourly
    runner = CliRunner()
    res = runner.invoke(app, ["signals", "--store", str(root), "--no-model"])
    assert res.exit_code == 0, res.output
    assert f"{truth['week']}:" in res.output and "signals:" in res.output
    bad = runner.invoke(app, ["signals", "--store", str(root), "--week", "2030-W01"])
    assert bad.exit_code == 2 and "outside the cube" in bad.output
    nostore = runner.invoke(app, ["signals", "--store", str(root / "nope")])
    assert nostore.exit_code == 2 and "no cube in the store" in nostore.output


def test_run_with_a_year_of_history_uses_the_calibrated_tests(tmp_path):
    """With 40 weeks of daily history the incident tests are one per zone and week, calibrated
    on past zone-weeks (no fallback note, no Monte Carlo); the planted three-zone cluster of the
    last week (x2.5 over 5 days) comes out as an excess signal on its zones; a two-week period
    adjusts each week on its own and keeps one test per zone and week."""
    truth = toy_store(tmp_path / "s", weeks=40, grain="1d", seed=3)
    run = run_signals(tmp_path / "s", parse_period(truth["week"]), use_model=False, write=False)
    assert run.test_counts["incidents"] == 16
    assert run.replicates == {"drift": 0, "scan": 0}
    assert not any("too little history" in n for n in run.notes)
    cluster = next(t for t in truth["signals"] if t["type"] == "cluster")
    inc = run.signals[run.signals["type"].isin(["excess", "drift", "cluster"])]
    assert len(inc) and set(cluster["zones"]) & set().union(*inc["zones"])
    assert "components" in inc.iloc[0]["details"]
    last = pd.Timestamp(truth["signals"][0]["end"]).tz_convert("Europe/Paris").date()
    two = parse_period(None, start=str(last - dt.timedelta(days=13)), end=str(last))
    run2 = run_signals(tmp_path / "s", two, use_model=False, write=False)
    assert run2.test_counts["incidents"] == 32
