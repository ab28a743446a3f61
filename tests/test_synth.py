"""The synthetic city (`features.synth`): files, determinism, and its truth recovered from raw data.

The zone x hour design is rebuilt here from the raw files alone (their own column names, pyproj,
geopandas, :mod:`features.calendar`), independently of the generator's internals; a Poisson GLM
on it must recover the planted IRRs of truth.json within 15 %.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from features import calendar
from features import zones as fz
from features.errors import InputError
from features.synth import generate

FEATS = ["dark", "dark_lamps_out", "event_k", "rain", "transit_k", "holiday", "school_holiday"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny city, seed 0."""
    out = tmp_path_factory.mktemp("tiny")
    res = generate("tiny", out, seed=0)
    return res


def _zone_of(zg: gpd.GeoDataFrame, lat, lon) -> np.ndarray:
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326)
    j = gpd.sjoin(pts, zg[["zone_id", "geometry"]], predicate="within", how="left")
    j = j[~j.index.duplicated()]
    return j["zone_id"].to_numpy()


def _read(out: Path, pattern: str, **kw) -> pd.DataFrame:
    """All files matching ``pattern`` (CSV for tiny, Parquet for larger cities), in name order."""
    paths = sorted(out.glob(pattern + ".csv")) or sorted(out.glob(pattern + ".parquet"))
    if paths[0].suffix == ".csv":
        return pd.concat([pd.read_csv(p, **kw) for p in paths], ignore_index=True)
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def _rebuild(out: Path) -> dict:
    """The zone x hour table of the model features, from the raw files only."""
    truth = json.loads((out / "truth.json").read_text())
    tz = truth["timezone"]
    hours = pd.date_range(truth["start"], truth["end"], freq="h", inclusive="left").as_unit("ns")
    H = len(hours)
    zg = gpd.read_file(out / "zones_iris.geojson").rename(columns={"code_iris": "zone_id"})
    zg["zone_id"] = zg["zone_id"].astype(str)
    ids = zg["zone_id"].tolist()
    Z = len(ids)
    zi = {z: i for i, z in enumerate(ids)}
    cent = fz.centroids(zg)
    local = hours.tz_convert(tz)
    loc_txt = np.asarray(local.strftime("%Y-%m-%d %H:%M:%S"))
    # presence: the k-th row of a zone is its k-th slot
    pres = np.full((H, Z), np.nan)
    hourly = _read(out, "presence/flux_vision_horaire_*", dtype={"id_zone": str})
    # rows are matched on (local time, occurrence): the repeated fall-back hour comes twice, in order
    occ = pd.Series(loc_txt).groupby(loc_txt).cumcount().to_numpy()
    slot_of = {(t, k): i for i, (t, k) in enumerate(zip(loc_txt, occ, strict=True))}
    hourly["occ"] = hourly.groupby(["id_zone", "date_heure"], sort=False).cumcount()
    idx = np.array(
        [slot_of[(t, k)] for t, k in zip(hourly["date_heure"], hourly["occ"], strict=True)]
    )
    pres[idx, hourly["id_zone"].map(zi).to_numpy()] = hourly["volume_present"].to_numpy()
    two = _read(out, "presence/flux_vision_2h_secteur_est", dtype={"id_zone": str})
    for z, g in two.groupby("id_zone", sort=False):
        reps = g["duree_min"].to_numpy() // 60
        assert reps.sum() == H
        pres[:, zi[z]] = np.repeat(g["volume_present"].to_numpy(), reps)
    # incidents
    inc = _read(out, "incidents/main_courante_*", dtype=str)
    t = pd.to_datetime(inc["date_heure"], format="%d/%m/%Y %H:%M:%S%z", errors="coerce", utc=True)
    bad_time = t.isna().to_numpy()
    tr = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(
        inc["x_l93"].astype(float).to_numpy(), inc["y_l93"].astype(float).to_numpy()
    )
    inc["zone_id"] = _zone_of(zg, lat, lon)
    outside = inc["zone_id"].isna().to_numpy() & ~bad_time
    dup = inc["numero"].duplicated().to_numpy() & ~bad_time & ~outside
    keep = ~(bad_time | outside | dup)
    quarantine = {
        "unparseable_time": int(bad_time.sum()),
        "outside_area": int(outside.sum()),
        "duplicate_id": int(dup.sum()),
    }
    inc = inc[keep].copy()
    hidx = hours.get_indexer(t[keep].dt.floor("h"))
    assert (hidx >= 0).all()
    cats = list(truth["base_rates"])
    counts = np.zeros((H, Z, len(cats)), dtype=np.int64)
    np.add.at(
        counts,
        (
            hidx,
            inc["zone_id"].map(zi).to_numpy(),
            inc["nature"].map({c: i for i, c in enumerate(cats)}).to_numpy(),
        ),
        1,
    )
    # darkness at the zone centroid, the cube's definition
    dark = np.stack(
        [
            calendar.dark_mask(hours, la, lo)
            for la, lo in zip(cent["latitude"], cent["longitude"], strict=True)
        ],
        axis=1,
    )
    # lamps out at the slot midpoint
    lamps = pd.read_csv(out / "eclairage/lampadaires.csv", dtype={"id_lampadaire": str})
    lamps["zone_id"] = _zone_of(zg, lamps["lat"].to_numpy(), lamps["lon"].to_numpy())
    n_l = lamps.groupby("zone_id").size().reindex(ids).to_numpy()
    fl = pd.read_csv(out / "eclairage/pannes.csv", dtype=str, keep_default_na=False)
    rep = (
        pd.to_datetime(fl["date_signalement"], utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    )
    fix = pd.to_datetime(fl["date_reparation"].replace("", None), utc=True)
    fix = np.where(
        fix.isna(),
        np.iinfo(np.int64).max,
        fix.dt.as_unit("ns").astype("int64").fillna(0).to_numpy(),
    )
    fzone = fl["id_lampadaire"].map(lamps.set_index("id_lampadaire")["zone_id"]).map(zi).to_numpy()
    mids = (hours + pd.Timedelta(minutes=30)).asi8
    lamps_out = np.zeros(
        (H + 1, Z), dtype=np.int64
    )  # +1 from the first midpoint >= report, -1 at repair
    np.add.at(lamps_out, (np.searchsorted(mids, rep), fzone), 1)
    np.add.at(lamps_out, (np.searchsorted(mids, fix), fzone), -1)
    lamps_out = np.cumsum(lamps_out, axis=0)[:H]
    # events active in the zone (slot overlaps [start, end)), expected attendance
    ev = pd.read_csv(out / "evenements.csv", dtype={"id_evenement": str})
    ev["zone_id"] = _zone_of(zg, ev["latitude"].to_numpy(), ev["longitude"].to_numpy())
    s = pd.to_datetime(ev["debut"]).dt.tz_localize(tz).dt.tz_convert("UTC")
    e = pd.to_datetime(ev["fin"]).dt.tz_localize(tz).dt.tz_convert("UTC")
    event_k = np.zeros((H, Z))
    for k in range(len(ev)):
        act = (hours < e[k]) & (hours + pd.Timedelta(hours=1) > s[k])
        event_k[act, zi[ev["zone_id"][k]]] += ev["jauge"][k] / 1000
    # transit entries of the zone's stops
    stops = pd.read_csv(
        io.BytesIO(zipfile.ZipFile(out / "transport/gtfs.zip").read("stops.txt")),
        dtype={"stop_id": str},
    )
    stops["zone_id"] = _zone_of(zg, stops["stop_lat"].to_numpy(), stops["stop_lon"].to_numpy())
    szone = stops.set_index("stop_id")["zone_id"]
    rid = _read(out, "transport/validations_*", dtype={"id_arret": str})
    transit = np.zeros((H, Z))
    for sid, g in rid.groupby("id_arret", sort=False):
        assert len(g) == H
        transit[:, zi[szone[sid]]] += g["nb_validations"].to_numpy()
    w = pd.read_csv(out / "meteo_horaire.csv")
    assert (pd.to_datetime(w["date"], utc=True).to_numpy() == hours.to_numpy()).all()
    dates = local.tz_localize(None).normalize()
    return {
        "truth": truth, "hours": hours, "local": local, "ids": ids, "zg": zg, "present": pres,
        "counts": counts, "cats": cats, "quarantine": quarantine, "rows_read": len(keep),
        "dark": dark, "lamps_out": lamps_out, "lamps": n_l, "event_k": event_k, "transit": transit,
        "rain": w["rr1"].to_numpy() >= 1, "holiday": calendar.public_holidays(dates, country="FR"),
        "school": calendar.school_holidays(dates, zone="C"), "incidents": inc,
    }  # fmt: skip


@pytest.fixture(scope="module")
def rebuilt(tiny):
    """The tiny city's design rebuilt from its raw files."""
    return _rebuild(tiny.out)


def _glm(r: dict, group: list[str]):
    """Poisson GLM of the group's incidents, exposure present, hour and weekday dummies.

    Zone-hours touched by a planted signal are left out (signals are not part of the model).
    """
    import statsmodels.api as sm

    H, Z = r["present"].shape
    y = r["counts"][:, :, [r["cats"].index(c) for c in group]].sum(axis=2)
    excl = np.zeros((H, Z), dtype=bool)
    for s in r["truth"]["signals"]:
        during = (r["hours"] >= pd.Timestamp(s["start"])) & (r["hours"] < pd.Timestamp(s["end"]))
        for z in s["zones"] + s["params"].get("neighbours", []):
            if z in r["ids"]:
                excl[during, r["ids"].index(z)] = True
    full = lambda a: np.broadcast_to(np.asarray(a)[:, None], (H, Z)).ravel()  # noqa: E731
    df = pd.DataFrame(
        {
            "y": y.ravel(), "present": r["present"].ravel(), "dark": r["dark"].ravel().astype(float),
            "dark_lamps_out": (r["dark"] * 10 * r["lamps_out"] / r["lamps"][None, :]).ravel(),
            "event_k": r["event_k"].ravel(), "rain": full(r["rain"]).astype(float),
            "transit_k": r["transit"].ravel() / 1000, "holiday": full(r["holiday"]).astype(float),
            "school_holiday": full(r["school"]).astype(float), "h": full(r["local"].hour),
            "d": full(r["local"].day_of_week), "excl": excl.ravel(),
        }
    )  # fmt: skip
    df = df[~df["excl"] & df["present"].notna()]
    X = pd.get_dummies(
        df["h"].astype(pd.CategoricalDtype(range(24))), prefix="h", dtype=float
    ).drop(columns="h_12")
    X = X.join(
        pd.get_dummies(df["d"].astype(pd.CategoricalDtype(range(7))), prefix="d", dtype=float).drop(
            columns="d_0"
        )
    )
    X = X.join(df[FEATS])
    X.insert(0, "const", 1.0)
    fit = sm.GLM(
        df["y"].to_numpy(),
        X.to_numpy(),
        family=sm.families.Poisson(),
        exposure=df["present"].to_numpy(),
    ).fit()
    return pd.Series(np.exp(fit.params), index=X.columns), pd.Series(fit.bse, index=X.columns)


# ---------------------------------------------------------------------------------------------


def test_tiny_writes_every_source_and_a_loadable_study(tiny):
    """Every canonical source is written, sources.yaml loads as a Study, every path exists."""
    from features.config import SOURCE_NAMES, load_study
    from features.readers import expand

    study = load_study(tiny.sources_yaml)
    assert set(study.sources()) == set(SOURCE_NAMES)
    for name, spec in study.sources().items():
        assert expand(spec.paths(study.base_dir), name), name
    assert study.area.timezone == "Europe/Paris" and study.area.school_zone == "C"


def test_period_ends_on_week_46_and_spans_the_fall_back(tiny):
    """Tiny covers 8 ISO weeks ending Sunday 2026-11-15 24:00 local; 25 hours on 2026-10-25."""
    truth = json.loads(tiny.truth_json.read_text())
    assert truth["local_start"] == "2026-09-21T00:00:00+02:00"
    assert truth["local_end"] == "2026-11-16T00:00:00+01:00"
    assert truth["last_week"] == "2026-W46"
    assert truth["hours"] == 8 * 7 * 24 + 1
    first = pd.read_csv(
        tiny.out / "presence/flux_vision_horaire_20260921.csv", dtype={"id_zone": str}
    )
    later = pd.read_csv(
        tiny.out / "presence/flux_vision_horaire_20261019.csv", dtype={"id_zone": str}
    )
    allp = pd.concat([first, later])
    z = allp["id_zone"].iloc[0]
    day = allp[(allp["id_zone"] == z) & allp["date_heure"].str.startswith("2026-10-25")]
    assert len(day) == 25
    assert (day["date_heure"] == "2026-10-25 02:00:00").sum() == 2


def test_presence_gap_is_missing_not_zero(rebuilt):
    """The planted export gap is absent from the files (NaN once rebuilt); nothing else is missing."""
    gaps = rebuilt["truth"]["presence_gaps"]
    missing = np.isnan(rebuilt["present"])
    assert missing.sum() == sum(g["hours"] for g in gaps) == 6
    z = rebuilt["ids"].index(gaps[0]["zone_id"])
    hours = rebuilt["hours"]
    inside = (hours >= pd.Timestamp(gaps[0]["start"])) & (hours < pd.Timestamp(gaps[0]["end"]))
    assert missing[inside, z].all()
    assert (rebuilt["present"][~missing] >= 1).all()


def test_same_seed_gives_byte_identical_files(tiny, tmp_path):
    """Generating again with the same seed reproduces every file byte for byte."""

    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    again = generate("tiny", tmp_path / "again", seed=0)
    assert digest(again.out) == digest(tiny.out)


def test_bad_rows_match_the_expected_quarantine(tiny, rebuilt):
    """The deliberately bad incident rows are exactly those truth.json announces."""
    exp = json.loads(tiny.truth_json.read_text())["expected_ingest"]["incidents"]
    assert rebuilt["quarantine"] == exp["reasons"]
    assert rebuilt["rows_read"] == exp["rows_read"]
    assert len(rebuilt["incidents"]) == exp["rows_kept"] == rebuilt["truth"]["incidents"]["total"]


def test_glm_recovers_planted_effects_within_15_percent(rebuilt):
    """A Poisson GLM on the rebuilt design recovers every planted IRR within 15 % (per rain group).

    The groups share one rain effect each, so summing their categories keeps the model exact.
    """
    effects = rebuilt["truth"]["effects"]
    groups = [["vol", "atteinte_personne", "trouble_ordre_public"], ["accident_circulation"],
              ["incendie", "secours_a_personne"]]  # fmt: skip
    for group in groups:
        irr, se = _glm(rebuilt, group)
        if group == groups[0]:  # the intercept is the group's summed base rate at 12:00 on Mondays
            base = sum(rebuilt["truth"]["base_rates"][c] for c in group)
            assert abs(irr["const"] / base - 1) < 0.15
        for f in FEATS:
            true = next(
                e["irr"] for e in effects if e["feature"] == f and group[0] in e["categories"]
            )
            assert abs(irr[f] / true - 1) < 0.15, (group, f, irr[f], true)
            if true == 1.0:  # planted absent: not significant at the 0.1 % level
                assert abs(np.log(irr[f])) < 3.3 * se[f], (group, f)


def test_planted_signals_stand_out_in_raw_data(rebuilt):
    """Each planted signal is visible in the raw files, computed without the generator's model."""
    r = rebuilt
    hours, ids = r["hours"], r["ids"]
    total = r["counts"].sum(axis=2)
    sig = {s["type"]: s for s in r["truth"]["signals"]}
    weeks = ((hours - hours[0]) // pd.Timedelta(weeks=1)).to_numpy()
    for s in sig.values():
        assert s["week"] in {"2026-W44", "2026-W45", "2026-W46"}
    # emerging: the zone's last week is at least 1.8x its mean of the first five weeks
    z = ids.index(sig["emerging"]["zones"][0])
    per_week = np.bincount(weeks[: len(weeks) - 1], weights=total[:-1, z])
    assert per_week[7] > 1.8 * per_week[:5].mean()
    # cluster: the window holds at least 2x the same hours one and two weeks earlier
    s = sig["cluster"]
    win = (hours >= pd.Timestamp(s["start"])) & (hours < pd.Timestamp(s["end"]))
    zs = [ids.index(z) for z in s["zones"]]
    before = np.roll(win, -168) | np.roll(win, -336)
    assert total[win][:, zs].sum() > 2 * total[before][:, zs].sum() / 2
    # gathering: present at night far above the same hours of the previous weeks
    s = sig["gathering"]
    win = (hours >= pd.Timestamp(s["start"])) & (hours < pd.Timestamp(s["end"]))
    z = ids.index(s["zones"][0])
    ref = np.nanmedian(np.stack([r["present"][np.roll(win, -168 * k), z] for k in (1, 2, 3, 4)]))
    assert r["present"][win, z].mean() > 3 * ref
    # outage spillover: the zone's lamps mostly out; its neighbours' dark-hour rate rises
    s = sig["outage_spillover"]
    win = (hours >= pd.Timestamp(s["start"])) & (hours < pd.Timestamp(s["end"]))
    z = ids.index(s["zones"][0])
    assert (r["lamps_out"][win, z] / r["lamps"][z]).max() >= 0.8
    nb = [ids.index(m) for m in s["params"]["neighbours"]]
    dark_nb = r["dark"][:, nb]
    rate_in = total[win][:, nb][dark_nb[win]].sum() / r["present"][win][:, nb][dark_nb[win]].sum()
    early = weeks < 5
    rate_before = (
        total[early][:, nb][dark_nb[early]].sum() / r["present"][early][:, nb][dark_nb[early]].sum()
    )
    assert rate_in > 1.8 * rate_before


def test_points_lie_in_their_zone_and_lambert_round_trips(rebuilt):
    """Kept incidents fall inside a zone after the Lambert-93 round trip, none on a 2-zone border."""
    inc = rebuilt["incidents"]
    assert inc["zone_id"].notna().all()
    assert set(inc["service"]) <= {"police", "pompiers", "samu"}
    assert set(inc["nature"]) == set(rebuilt["cats"])


def test_events_truth_covers_past_and_upcoming(tiny, rebuilt):
    """Past events' truth presence is the delivered presence; upcoming ones lie after the end."""
    truth = rebuilt["truth"]
    end = pd.Timestamp(truth["end"])
    up = [e for e in truth["events"] if e["upcoming"]]
    past = [e for e in truth["events"] if not e["upcoming"]]
    assert up and past and {e["kind"] for e in up} >= {"match", "concert"}
    for e in up:
        assert pd.Timestamp(e["start"]) >= end and e["truth_present"]
        assert max(e["truth_present"].values()) > 0.5 * e["attendance"] * (e["kind"] != "marche")
    zi = {z: i for i, z in enumerate(rebuilt["ids"])}
    hidx = {h: i for i, h in enumerate(rebuilt["hours"].strftime("%Y-%m-%dT%H:%M:%SZ"))}
    for e in past[:10]:
        for h, v in e["truth_present"].items():
            if h in hidx:
                assert rebuilt["present"][hidx[h], zi[e["zone_id"]]] == v


def test_lamps_out_never_exceed_lamps_and_outages_are_common(rebuilt):
    """Lamps out stay within the zone's lamps; large outages happen (power for dark_lamps_out)."""
    share = rebuilt["lamps_out"] / rebuilt["lamps"][None, :]
    assert share.max() <= 1.0
    assert (share >= 0.15).mean() > 0.03  # a cabinet or more out in 3 % of zone-hours
    assert (share >= 0.5).mean() > 0.002  # sector outages
    assert 0.05 < rebuilt["rain"].mean() < 0.2


def test_unknown_scale_and_bad_seed_are_user_errors(tmp_path):
    """A wrong scale or seed raises InputError naming what was expected; the CLI exits 2."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    with pytest.raises(InputError, match="expected one of tiny, city, metropolis"):
        generate("huge", tmp_path)
    with pytest.raises(InputError, match="non-negative integer"):
        generate("tiny", tmp_path, seed=-1)
    res = CliRunner().invoke(app, ["synth", "--scale", "huge", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "unknown scale" in res.output


def test_tiny_ingests_with_the_expected_quarantine(tiny, tmp_path):
    """`vigie ingest` of the tiny city keeps every row but the planted bad ones."""
    ingest_mod = pytest.importorskip("features.ingest")
    ingest_mod.ingest(tiny.sources_yaml, tmp_path / "store")
    report = json.loads((tmp_path / "store" / "ingest_report.json").read_text())
    expected = json.loads(tiny.truth_json.read_text())["expected_ingest"]
    sources = report.get("sources", report)
    for name, exp in expected.items():
        got = sources[name]
        assert (got["rows_read"], got["rows_kept"], got["rows_quarantined"]) == (
            exp["rows_read"], exp["rows_kept"], exp["rows_quarantined"]), name  # fmt: skip
    reasons = sources["incidents"]["reasons"]
    assert sum(v for k, v in reasons.items() if "duplicate" in k) == 5
    assert sum(v for k, v in reasons.items() if "unparseable" in k) == 3
    assert sum(v for k, v in reasons.items() if "outside" in k) == 4


def test_chunks_are_four_weeks_and_a_short_tail_joins_the_last():
    from features.synth.chunks import chunk_bounds
    from features.synth.scales import CHUNK_HOURS

    assert chunk_bounds(100) == [(0, 100)]
    assert chunk_bounds(2 * CHUNK_HOURS + 1) == [
        (0, CHUNK_HOURS),
        (CHUNK_HOURS, 2 * CHUNK_HOURS + 1),
    ]
    assert chunk_bounds(2 * CHUNK_HOURS) == [(0, CHUNK_HOURS), (CHUNK_HOURS, 2 * CHUNK_HOURS)]


def test_steps_are_deterministic_and_each_draws_from_its_own_stream(tmp_path):
    """The world drawn before the simulation depends on the seed only, component by component."""
    from features.synth.generate import draw_world, drivers, make_context
    from features.synth.zones import make_zones

    ctx = make_context("tiny", tmp_path, seed=4)
    w1, w2 = draw_world(ctx), draw_world(ctx)
    assert list(w1.zones.ids) == list(w2.zones.ids)
    assert [e.event_id for e in w1.events] == [e.event_id for e in w2.events]
    pd.testing.assert_frame_equal(w1.light.faults, w2.light.faults)
    pd.testing.assert_frame_equal(w1.weather, w2.weather)
    # zones come from stream 1 alone: drawing them again gives the same city
    z = make_zones(ctx.spec, seed=4)
    assert list(z.types) == list(w1.zones.types) and list(z.names) == list(w1.zones.names)
    drv = drivers(ctx, w1)
    H, Z = len(ctx.hours), len(w1.zones.ids)
    assert drv.dark.shape == drv.lamps_out.shape == drv.event_k.shape == (H, Z)
    assert (drv.lamps_out <= w1.light.per_zone[None, :]).all()
    assert w1.spill.type == "outage_spillover" and all(not e.upcoming for e in w1.past)
