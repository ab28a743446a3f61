"""The realistic synthetic city (`features.synth.realism`): each departure from the models'
process is in the generated files with its planted size.

The tiny city is generated with realism on and off (same seed). Expectations are rebuilt from the
raw files alone (``test_synth._rebuild``: presence, features, incidents) and truth.json's model
terms; the realism's multipliers are then estimated from the counts and compared with what
truth.json says was planted. Zones touched by a planted signal, a listed event or the ballpark
(their crowds are not proportional) are left out of the estimates. Tolerances are stated next to
each check, from the sampling error of the estimator at the tiny city's size (30 zones, 57 days).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_synth import _read, _rebuild

from features.synth import generate

FEATS = ["dark", "dark_lamps_out", "event_k", "rain", "transit_k", "holiday", "school_holiday"]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The tiny city with realism on (seed 0), rebuilt from its raw files."""
    out = tmp_path_factory.mktemp("tiny_real")
    generate("tiny", out, seed=0, realism=True)
    return {**_rebuild(out), "out": out}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The same city with realism off."""
    out = tmp_path_factory.mktemp("tiny_plain")
    generate("tiny", out, seed=0, realism=False)
    return out


def _expected(r: dict) -> np.ndarray:
    """(H, Z) incidents expected from the model's terms alone, on the presence the files deliver
    divided by each zone's planted proxy bias (so without the realism's multipliers)."""
    t = r["truth"]
    bias = np.array([t["realism"]["presence_proxy"]["zone_bias"][z] for z in r["ids"]])
    x = {
        "dark": r["dark"].astype(float),
        "dark_lamps_out": r["dark"] * 10 * r["lamps_out"] / r["lamps"][None, :],
        "event_k": r["event_k"],
        "rain": np.broadcast_to(r["rain"][:, None], r["dark"].shape).astype(float),
        "transit_k": r["transit"] / 1000,
        "holiday": np.broadcast_to(r["holiday"][:, None], r["dark"].shape).astype(float),
        "school_holiday": np.broadcast_to(r["school"][:, None], r["dark"].shape).astype(float),
    }
    hour, dow = r["local"].hour.to_numpy(), r["local"].dayofweek.to_numpy()
    exp = np.zeros(r["dark"].shape)
    for c in r["cats"]:
        lin = sum(np.log(e["irr"]) * x[e["feature"]] for e in t["effects"] if c in e["categories"])
        rate = (
            t["base_rates"][c]
            * np.asarray(t["hour_of_day"][c])[hour]
            * np.asarray(t["day_of_week"])[dow]
        )
        exp += rate[:, None] * np.exp(lin)
    return exp * np.nan_to_num(r["present"], nan=0.0) / bias[None, :]


def _quiet_zones(r: dict) -> np.ndarray:
    """Zones with no planted signal, no listed event and no crowd elasticity."""
    t = r["truth"]
    busy = {z for s in t["signals"] for z in s["zones"] + s["params"].get("neighbours", [])}
    busy |= {e["zone_id"] for e in t["events"]}
    busy |= {c["zone_id"] for c in t["realism"]["crowd_elasticity"]}
    busy |= {t["presence_gaps"][0]["zone_id"]}
    return np.array([z not in busy for z in r["ids"]])


def _days(r: dict) -> np.ndarray:
    """Local day index of each hour."""
    d = r["local"].tz_localize(None).normalize()
    return ((d - d[0]).days).to_numpy()


def test_zone_effects_have_their_planted_log_sd(real):
    """log(observed / expected) per quiet zone, the expectation holding every planted multiplier
    but the zone's, tracks the planted zone multiplier: slope 1 within 0.1, correlation above
    0.97, residual SD below 0.08 (counts of ~1 000 per zone and the proxy's noise leave about
    0.03 on each log ratio, against a planted log-SD of 0.4)."""
    t = real["truth"]["realism"]["zone_effects"]
    assert t["log_sd_planted"] == 0.4 and abs(t["log_sd_realised"] - 0.4) < 0.15
    shocks = real["truth"]["realism"]["day_shocks"]
    city = np.array(list(shocks["city_day"].values()))
    zd = np.asarray(shocks["zone_day"]["values"])
    ts = np.array(list(real["truth"]["realism"]["trend_season"]["multiplier"].values()))
    days = _days(real)
    exp = _expected(real) * (city * ts)[days][:, None] * zd[days]
    quiet = _quiet_zones(real)
    obs = real["counts"].sum(axis=2)
    ratio = np.log(obs.sum(axis=0) / exp.sum(axis=0))[quiet]
    planted = np.log([t["multiplier"][z] for z in np.asarray(real["ids"])[quiet]])
    slope = np.polyfit(planted, ratio, 1)[0]
    assert quiet.sum() >= 12
    assert abs(slope - 1) < 0.1, slope
    assert np.corrcoef(planted, ratio)[0, 1] > 0.97
    assert (ratio - ratio.mean() - planted + planted.mean()).std() < 0.08


def test_day_shocks_and_zone_day_overdispersion_have_their_planted_size(real):
    """City-wide daily counts over their expectation (zone and zone-day multipliers included)
    vary with the planted city shock (correlation > 0.8, CV within 0.05 of the realised 0.19);
    zone-day counts are over-dispersed with the planted gamma shape (CV 0.5 within 0.1)."""
    t = real["truth"]["realism"]
    days = _days(real)
    quiet = _quiet_zones(real)
    zmult = np.array([t["zone_effects"]["multiplier"][z] for z in real["ids"]])
    ts = np.array(list(t["trend_season"]["multiplier"].values()))
    city = np.array(list(t["day_shocks"]["city_day"].values()))
    zd = np.asarray(t["day_shocks"]["zone_day"]["values"])
    base = _expected(real) * zmult[None, :] * ts[days][:, None]
    D = days.max() + 1
    obs = real["counts"].sum(axis=2)
    y = np.zeros((D, len(zmult)))
    e = np.zeros((D, len(zmult)))
    np.add.at(y, days, obs)
    np.add.at(e, days, base)
    yq, eq = y[:, quiet], e[:, quiet]
    # city: expectation with the planted zone-day multipliers, ratio to the counts
    r_city = yq.sum(axis=1) / (eq * zd[:, quiet]).sum(axis=1)
    r_city /= r_city.mean()
    assert np.corrcoef(r_city, city)[0, 1] > 0.8
    cv = np.sqrt(max(r_city.var(ddof=1) - np.mean(1 / yq.sum(axis=1)), 0))
    assert abs(cv - t["day_shocks"]["city_cv_realised"]) < 0.05, cv
    # zone-day: expectation with the city shock, moment estimate of the gamma's squared CV
    mu = eq * city[:, None]
    r_zd = yq / mu
    cv2 = np.mean((r_zd - 1) ** 2 - 1 / mu)
    assert abs(np.sqrt(cv2) - t["day_shocks"]["zone_day_cv_planted"]) < 0.1, np.sqrt(cv2)


def test_presence_files_are_a_biased_noisy_proxy(real, plain):
    """Delivered presence with realism over the same city without it (the same true presence
    outside the ballpark's game days, which are left out): the per-zone geometric mean is the
    planted zone bias (within 5 %: the day noise averages over 57 days to an SE of 1.1 %); the
    day-level and hour-level log-SDs are the planted 0.08 and 0.05 (within 0.02).

    Each city leaves the rows of one zone out of its export (``presence_gaps``), not the same
    zone in both (the realism city keeps its ballpark whole): both zones are left out here, as
    the rows are aligned by position (a zone 6 rows short would compare hours 6 apart: a
    log-SD of 0.37 on that zone, 0.088 over all, before both were left out)."""
    t = real["truth"]["realism"]
    pres = _read(plain, "presence/flux_vision_horaire_*", dtype={"id_zone": str})
    ids = real["ids"]
    plain_truth = json.loads((plain / "truth.json").read_text(encoding="utf-8"))
    gaps = {g["zone_id"] for tr in (real["truth"], plain_truth) for g in tr["presence_gaps"]}
    hourly = sorted(set(pres["id_zone"]) - gaps)
    assert len(hourly) >= 20
    pres = pres[pres["id_zone"].isin(hourly)]
    off = pres.pivot_table(index=pres.groupby("id_zone").cumcount(), columns="id_zone",
                           values="volume_present").to_numpy()  # fmt: skip
    on = real["present"][: len(off), [ids.index(z) for z in hourly]]
    days = _days(real)[: len(off)]
    first = pd.Timestamp(real["truth"]["local_start"][:10])
    game_days = [
        (pd.Timestamp(g["local_date"]) - first).days for g in t["withheld_gatherings"]["days"]
    ]
    ok = ~np.isnan(on) & (off > 200) & ~np.isin(days, game_days)[:, None]
    lr = np.where(ok, np.log(on / np.where(ok, off, 1)), np.nan)
    bias = np.array([t["presence_proxy"]["zone_bias"][z] for z in hourly])
    assert np.allclose(np.exp(np.nanmean(lr, axis=0)), bias, rtol=0.05)
    df = pd.DataFrame(lr - np.log(bias)[None, :]).assign(day=days)
    day_mean = df.groupby("day").mean()
    assert abs(np.nanstd(day_mean.to_numpy()) - t["presence_proxy"]["day_sd"]) < 0.02
    resid = (df.drop(columns="day") - day_mean.loc[days].to_numpy()).to_numpy()
    assert abs(np.nanstd(resid) - t["presence_proxy"]["hour_sd"]) < 0.02


def test_withheld_games_are_absent_from_events_and_raise_presence(real):
    """About two games a week in season, none in evenements.csv; on game days the ballpark zone's
    delivered daily mean presence is 1.3-1.5x its level on other days of the same kind (median
    within [1.25, 1.6]: the proxy's day noise has SD 0.08)."""
    t = real["truth"]
    w = t["realism"]["withheld_gatherings"]
    assert w["in_events_csv"] is False and w["kind"] == "ballgame"
    games = w["days"]
    local_days = pd.to_datetime([g["local_date"] for g in games])
    season = pd.date_range(t["local_start"][:10], t["local_end"][:10], freq="D", inclusive="left")
    season = season[season.month.isin(w["season_months"])]
    per_week = len(games) / (len(season) / 7)
    assert 1.0 <= per_week <= 3.0, per_week
    for g in games:
        assert 1.3 <= g["uplift_planted"] <= 1.5 and 1.2 < g["uplift_true"] < 1.6
    ev = pd.read_csv(real["out"] / "evenements.csv", dtype={"id_evenement": str})
    assert not ev["type"].eq("ballgame").any()
    assert w["zone_id"] not in {e["zone_id"] for e in t["events"]}
    z = real["ids"].index(w["zone_id"])
    days = _days(real)
    daily = pd.Series(real["present"][:, z]).groupby(days).mean()
    first = pd.Timestamp(t["local_start"][:10])
    dates = first + pd.to_timedelta(daily.index, unit="D")
    game = dates.isin(local_days)
    weekend = dates.dayofweek >= 5
    ratios = []
    for is_we in (False, True):
        ref = daily[~game & (weekend == is_we)].median()
        ratios += list(daily[game & (weekend == is_we)] / ref)
    assert 1.25 <= float(np.median(ratios)) <= 1.6, ratios


def test_crowds_at_inelastic_venues_are_written_with_their_irr(real):
    """The ballpark and the stadium carry elasticity 0.3; their crowds raise incidents, but less
    than in proportion (irr_vs_no_crowd > 1 > irr_vs_proportional); event_k skips them."""
    t = real["truth"]
    crowd = {c["zone_id"]: c for c in t["realism"]["crowd_elasticity"]}
    stadium = next(z for z, k in t["zone_types"].items() if k == "stadium")
    bp = t["realism"]["withheld_gatherings"]["zone_id"]
    assert set(crowd) == {stadium, bp}
    for c in crowd.values():
        assert c["elasticity"] == 0.3
        assert c["irr_vs_no_crowd"] > 1.0 > c["irr_vs_proportional"]
        # the elasticity bounds the IRR: (P/P0)^0.3 averaged, never above the crowd ratio^0.3
        assert c["irr_vs_no_crowd"] <= c["mean_crowd_ratio"] ** 0.3 * 1.05
    ek = next(e for e in t["effects"] if e["feature"] == "event_k")
    assert set(ek["zones_excluded"]) == {stadium, bp}


def test_sparse_categories_at_real_data_rates(real):
    """The sparse categories are in the incident file at 0.1 to 1 per zone and day."""
    t = real["truth"]
    sparse = t["realism"]["sparse_categories"]
    assert set(sparse) == {"vol_transports", "stupefiants"}
    n_days = (real["hours"][-1] - real["hours"][0]).days + 1
    for i, c in enumerate(real["cats"]):
        if c in sparse:
            rate = real["counts"][:, :, i].sum() / (len(real["ids"]) * n_days)
            assert 0.1 <= rate <= 1.0, (c, rate)
            assert abs(rate / sparse[c]["per_zone_day"] - 1) < 0.05


def test_expected_weighted_truth_of_the_effects(real):
    """Binary effects' expected-weighted multiplier is their IRR; continuous ones' lies between
    1 and the IRR at their mean feature value's upper range (Jensen), and is not the nominal IRR."""
    for e in real["truth"]["effects"]:
        ew = e["expected_weighted"]
        if e["feature"] in ("dark", "rain", "holiday", "school_holiday"):
            assert ew["multiplier"] == pytest.approx(e["irr"], rel=1e-9)
        else:
            assert ew["multiplier"] != pytest.approx(e["irr"], rel=1e-3)
            assert (ew["multiplier"] - 1) * (e["irr"] - 1) > 0
    out = real["truth"]["planted_outage"]
    assert out["dark_lamps_out_multiplier_dark_hours"] > out["dark_lamps_out_multiplier_all_hours"]


def test_realism_off_keeps_the_models_process(plain):
    """Without realism, truth.json says so and no sparse category is drawn."""
    truth = json.loads((plain / "truth.json").read_text())
    assert truth["realism"] is None
    assert set(truth["base_rates"]) == {
        "vol", "atteinte_personne", "trouble_ordre_public", "incendie", "secours_a_personne",
        "accident_circulation"}  # fmt: skip


def test_cli_realism_option(tmp_path):
    """`vigie synth --realism on` writes a realistic tiny city; a wrong value exits 2."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    res = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--realism", "on"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "truth.json").read_text())["realism"]["settings"]["sparse"]
    bad = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--realism", "maybe"])
    assert bad.exit_code == 2 and "--realism" in bad.output
