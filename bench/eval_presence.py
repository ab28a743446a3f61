"""`python -m bench.evaluate presence`: presence anomalies on real counts and on withheld
recurring gatherings.

* **Brooklyn Bridge** (real hourly pedestrian counts, ../shared/data; the study in
  examples/brooklyn-bridge): ``vigie signals`` over 2017-12-01..2018-07-31; every gathering or
  emptied signal with its day, the export's label and precipitation, and what explains it;
  ordinary days (no label, < 1 mm) flagged either way.
* **Withheld gatherings**: a synthetic city of 30 zones over 60 weeks with realism on (the
  ballpark's games, about twice a week April-October at 1.3-1.5x the day's presence, are not in
  the events file; truth.json lists them), at hourly grain and at daily grain (the same files,
  ``grain: 1d``); one run over 2026-03-01..2026-11-15; recall = game days with a gathering
  signal at the ballpark, precision = share of the ballpark's unexplained gathering signals on
  game days; the other zones' unexplained signals per zone-day; at daily grain with the visitor
  share joined (the export splits residents from visitors) and with the count alone.
* **Speed**: ``vigie signals`` over three years of hourly presence and incidents at 25 zones
  (tests/_toy_store.py), and the presence review alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_cube import bench_dir
from bench.evaluate import SHARED_DATA, Section
from features.cube import build_cube
from features.ingest import ingest
from features.store import Store
from pipelines.signals.period import parse_period
from pipelines.signals.run import run_signals

ROOT = Path(__file__).resolve().parents[1]
#: seeds of the synthetic city on which the reference was chosen (seed 0 is scored).
DEV_SEEDS = (1, 2, 3, 4, 5)
BB_CSV = (
    SHARED_DATA
    / "nyc-brooklyn-bridge/Brooklyn_Bridge_Automated_Pedestrian_Counts_Demonstration_Project.csv"
)


def _store(sources: Path, root: Path) -> Path:
    if not (root / "cube_meta.json").exists():
        ingest(sources, root)
        build_cube(root)
    return root


def _anomalies(run, tz: str) -> pd.DataFrame:
    s = run.signals[run.signals["type"].isin(["gathering", "emptied"])].copy()
    s["day"] = pd.to_datetime(s["start"], utc=True).dt.tz_convert(tz).dt.strftime("%Y-%m-%d")
    s["zone"] = s["zones"].map(lambda z: z[0])
    s["by"] = s["details"].map(lambda d: ", ".join(d["explained_by"]) or "-")
    return s


def brooklyn() -> tuple[str, dict]:
    """The Brooklyn Bridge table and its figures."""
    if not BB_CSV.exists():
        return f"*{BB_CSV} is absent: not run.*", {}
    store = _store(ROOT / "examples/brooklyn-bridge/sources.yaml", bench_dir() / "presence-bb")
    t0 = time.perf_counter()
    run = run_signals(store, parse_period(None, start="2017-12-01", end="2018-07-31"),
                      use_model=False, write=False)  # fmt: skip
    secs = time.perf_counter() - t0
    raw = pd.read_csv(
        BB_CSV,
        usecols=["hour_beginning", "precipitation", "temperature", "weather_summary", "events"],
    )
    raw["day"] = pd.to_datetime(raw["hour_beginning"], format="%m/%d/%Y %I:%M:%S %p").dt.date
    raw["snow_mm"] = 25.4 * raw["precipitation"].where(raw["temperature"] <= 33.8, 0.0)  # 1 °C
    days = raw.groupby("day").agg(
        mm=("precipitation", lambda s: 25.4 * s.sum()), label=("events", "first"),
        snow_mm=("snow_mm", "sum"), snow_hours=("weather_summary", lambda s: int((s == "snow").sum())),
    )  # fmt: skip
    days.index = days.index.astype(str)
    days = days.loc["2017-12-01":"2018-07-31"]
    s = _anomalies(run, "America/New_York")
    rows = ["| day | signal | observed / reference | label | precipitation (mm) | explained by |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for _, x in s.sort_values("day").iterrows():
        label = days["label"].get(x["day"])
        rows.append(f"| {x['day']} | {x['type']} | {x['ratio']:.2f} | "
                    f"{label if isinstance(label, str) else '-'} | "
                    f"{days['mm'].get(x['day'], float('nan')):.1f} | {x['by']} |")  # fmt: skip
    ordinary = days[days["label"].isna() & (days["mm"] < 1.0)].index
    labelled = days[days["label"].notna()].index
    heavy = days[days["mm"] >= 10.0].index
    snowy = days[(days["snow_mm"] >= 2.5) & (days["mm"] < 10.0)].index  # explain.SNOW_MM
    fig = {
        "seconds": round(secs, 1), "tests": run.n_tests, "signals": len(s),
        "holiday_signals": int(s["day"].isin(labelled).sum()),
        "holiday_signals_explained": int((s["day"].isin(labelled) & s["by"].str.contains("holiday")).sum()),
        "heavy_signals": int(s["day"].isin(heavy).sum()),
        "heavy_signals_explained": int((s["day"].isin(heavy) & s["by"].str.contains("weather")).sum()),
        "snow_signals": int(s["day"].isin(snowy).sum()),
        "snow_signals_explained": int((s["day"].isin(snowy) & s["by"].str.contains("weather")).sum()),
        "snow_days": [f"{d} ({days['snow_mm'][d]:.1f} mm, {days['snow_hours'][d]} h of snow)" for d in snowy],
        "ordinary_days": len(ordinary), "ordinary_days_flagged": int(len(set(s["day"]) & set(ordinary))),
        "labelled_days": len(labelled), "labelled_days_flagged": int(len(set(s["day"]) & set(labelled))),
        "memorial_day_flagged": bool((s["day"] == "2018-05-28").any()),
        "memorial_day": memorial_day(run),
        "labelled_far_tests": labelled_far_tests(run, set(labelled)),
        "ordinary_p": ordinary_p(run, set(ordinary)),
    }  # fmt: skip
    from pipelines.signals import presence  # the same run without the day tests' pooled tail

    presence.POOLED_TAIL = False
    try:
        fig["ordinary_p_own_tail"] = ordinary_p(
            run_signals(store, parse_period(None, start="2017-12-01", end="2018-07-31"),
                        use_model=False, write=False), set(ordinary))  # fmt: skip
    finally:
        presence.POOLED_TAIL = True
    op, ow = fig["ordinary_p"], fig["ordinary_p_own_tail"]
    md = fig["memorial_day"]
    text = (
        f"One run of `vigie signals` over 2017-12-01..2018-07-31 ({fig['tests']} tests, "
        f"{fig['seconds']} s): {fig['signals']} presence signals. On labelled days (holidays "
        f"and observances of the export): {fig['holiday_signals_explained']} of "
        f"{fig['holiday_signals']} signals explained by the holiday; "
        f"{fig['labelled_days_flagged']} of {fig['labelled_days']} labelled days flagged "
        f"(Memorial Day flagged: {'yes' if fig['memorial_day_flagged'] else 'no'}). On days of "
        f">= 10 mm: {fig['heavy_signals_explained']} of {fig['heavy_signals']} signals explained "
        f"by the weather. Snow days under 10 mm (>= 2.5 mm of water at or below 1 °C in the "
        f"export: {', '.join(fig['snow_days']) or 'none'}): {fig['snow_signals_explained']} of "
        f"{fig['snow_signals']} signals explained by the weather. Ordinary days (no label, < 1 mm) flagged either way: "
        f"{fig['ordinary_days_flagged']} of {fig['ordinary_days']} "
        f"({100 * fig['ordinary_days_flagged'] / max(fig['ordinary_days'], 1):.1f} %; goal <= 2 %). "
        f"Tests on labelled days standing more than 4 SD out, signals or not: "
        + "; ".join(
            f"{x['day']} {x['type']} x{x['ratio']:.1f} (z {x['z']:.1f}, q {x['q']:.2f}, "
            f"explained by {x['by'] or '-'})"
            for x in fig["labelled_far_tests"]
        )
        + " (their scale is read on the 6 to 9 weeks of this export before them, and the slot "
        "test reads that scale's degrees of freedom, 0.19 m: tests/test_presence_scale.py). "
        f"Calibration on real ordinary days: of their {op['n']} gathering and emptied tests, "
        f"{100 * op['p05']:.1f} % have p below 0.05 and {100 * op['p01']:.1f} % below 0.01 "
        f"(nominal 5 % and 1 %; with the day-level test reading the zone's own degrees of "
        f"freedom instead of the pooled tail's: {100 * ow['p05']:.1f} % and "
        f"{100 * ow['p01']:.1f} %).\n\n"
        f"Memorial Day (2018-05-28, {md['count']} walkers) against references that follow the "
        f"season: x{md['ratio_8w_median']:.2f} the median Monday of the 8 weeks before (the "
        f'issue\'s "1.9x the usual Monday": that median lags the spring rise), '
        f"x{md['ratio_recent_dry']:.2f} the median of the {md['recent_weeks']} dry, unlabelled "
        f"Mondays before it, x{md['vigie_ratio']:.2f} vigie's quiet-day reference "
        f"(its test's z = {md['vigie_z']:.2f}). Dry, unlabelled days of March-July stray from that "
        f"{md['recent_weeks']}-week reference with a robust SD of {md['error_sd']:.2f} (log): "
        f"Memorial Day stands {md['z_recent_dry']:.1f} SD above it, as busy as the weekend "
        f"days around it. In this export it does not stand out from ordinary days' spread once "
        f"the reference follows the season, so the reference is not changed for it (flagging "
        f"it would flag ordinary days as often).\n\n" + "\n".join(rows)
    )
    return text, fig


def ordinary_p(run, ordinary: set[str]) -> dict:
    """The share of a run's presence tests (gathering and emptied, unweighted p) below 0.05 and
    0.01 on the given days: under no anomaly, about 5 % and 1 %."""
    t = run.tests[run.tests["type"].isin(["gathering", "emptied"])]
    day = pd.to_datetime(t["start"], utc=True).dt.tz_convert(run.timezone).dt.strftime("%Y-%m-%d")
    p = t.loc[day.isin(ordinary), "details"].map(lambda d: d["p_unweighted"]).to_numpy(float)
    return {"n": len(p), "p05": float((p < 0.05).mean()), "p01": float((p < 0.01).mean())}


def labelled_far_tests(run, labelled: set[str], *, z: float = 4.0) -> list[dict]:
    """The presence tests on the export's labelled days whose statistic exceeds ``z``, signals or
    not: their day, type, ratio, z, q value and what explains them."""
    t = run.tests[run.tests["type"].isin(["gathering", "emptied"])]
    day = (
        pd.to_datetime(t["start"], utc=True)
        .dt.tz_convert("America/New_York")
        .dt.strftime("%Y-%m-%d")
    )
    far = t[day.isin(labelled) & (t["statistic"] > z)]
    return [{"day": day[i], "type": r["type"], "ratio": round(float(r["ratio"]), 2),
             "z": round(float(r["statistic"]), 2), "q": round(float(r["q_value"]), 3),
             "by": ", ".join(r["details"]["explained_by"])}
            for i, r in far.sort_values("start").iterrows()]  # fmt: skip


def memorial_day(run, *, day: str = "2018-05-28", weeks: int = 4) -> dict:
    """Whether Memorial Day 2018 stands out against references that follow the season.

    From the export's daily totals: the day against the median of the same weekday over the 8
    weeks before (the "usual Monday" of the issue: it lags the spring rise), against the median
    of the same weekday over the ``weeks`` weeks before among dry (< 1 mm), unlabelled days, and
    against vigie's own quiet-day reference (its gathering test that day). The noise is the
    robust SD (1.4826 MAD) of the log errors of the dry, unlabelled days of March-July against
    the same ``weeks``-week reference: the day's z is its log ratio over that SD.
    """
    raw = pd.read_csv(BB_CSV, usecols=["hour_beginning", "Pedestrians", "precipitation", "events"])
    raw["day"] = pd.to_datetime(raw["hour_beginning"], format="%m/%d/%Y %I:%M:%S %p").dt.normalize()
    d = raw.groupby("day").agg(
        n=("Pedestrians", "sum"), mm=("precipitation", lambda s: 25.4 * s.sum()),
        label=("events", "first"),
    )  # fmt: skip
    y = np.log(d["n"].clip(lower=1))
    ordinary = (d["mm"] < 1.0) & d["label"].isna()
    wd = d.index.dayofweek

    def usual(v: pd.Series, k: int) -> pd.Series:
        return v.groupby(wd).transform(lambda s: s.shift(1).rolling(k, min_periods=k // 2).median())

    eight, recent = usual(y, 8), usual(y.where(ordinary), weeks)
    err = (y - recent)[ordinary].loc["2018-03-01":"2018-07-31"]
    sd = float(1.4826 * (err - err.median()).abs().median())
    t = run.tests
    on = t[(t["type"] == "gathering")
           & (pd.to_datetime(t["start"], utc=True).dt.tz_convert("America/New_York")
              .dt.strftime("%Y-%m-%d") == day)]  # fmt: skip
    lr = float(y[day] - recent[day])
    return {
        "count": int(d.loc[day, "n"]),
        "ratio_8w_median": round(float(np.exp(y[day] - eight[day])), 2),
        "ratio_recent_dry": round(float(np.exp(lr)), 2),
        "recent_weeks": weeks,
        "error_sd": round(sd, 3),
        "z_recent_dry": round(lr / sd, 2),
        "vigie_ratio": round(float(on["ratio"].iloc[0]), 2) if len(on) else float("nan"),
        "vigie_z": round(float(on["statistic"].iloc[0]), 2) if len(on) else float("nan"),
    }


def _town(grain: str, *, seed: int = 0) -> tuple[Path, dict]:
    """The 60-week, 30-zone synthetic city with realism on, at ``grain`` (seed 0 is scored;
    other seeds serve to choose the method)."""
    from features.synth import scales
    from features.synth.generate import generate
    from features.synth.realism import Realism

    base = bench_dir() / ("presence-town" if seed == 0 else f"presence-town-seed{seed}")
    raw = base / "raw"
    if not (raw / "truth.json").exists():
        scales.SCALES["town"] = replace(scales.SCALES["tiny"], weeks=60, realism=Realism())
        try:
            generate("town", raw, seed=seed)
        finally:
            scales.SCALES.pop("town", None)
    src = raw / "sources.yaml"
    if grain == "1d":
        src = raw / "sources_daily.yaml"
        src.write_text((raw / "sources.yaml").read_text().replace("grain: 1h", "grain: 1d"))
    return _store(src, base / f"store-{grain}"), json.loads((raw / "truth.json").read_text())


def without(flag: str, grain: str, *, seed: int = 0) -> dict:
    """:func:`gatherings` with one of :mod:`pipelines.signals.presence`'s switches off
    (``MODERATE_SCALE``: the daily scales left unmoderated; ``PERIOD_FOLDS``: the weights read on
    the past alone; ``RECENTRE``: the reference not moved by the common bias): what that part
    changes."""
    from pipelines.signals import presence

    setattr(presence, flag, False)
    try:
        return gatherings(grain, seed=seed)
    finally:
        setattr(presence, flag, True)


#: variants of the daily weights tried on the development seeds: (label, patch); each patch sets
#: a default of :func:`~pipelines.signals.presence_pvalues.optimal_weights` or a module constant
VARIANTS = (
    *((f"design effect {e} SD", ("effect", e)) for e in (2.0, 2.5, 3.0)),
    *((f"design level {lv:g}", ("level", lv)) for lv in (7e-4, 3e-3)),
    ("high days beyond 1.5 scales", ("EXCESS_Z", 1.5)),
)


def variants() -> list[tuple[str, list[dict]]]:
    """:func:`gatherings` at daily grain on the development seeds under each of ``VARIANTS``."""
    from pipelines.signals import presence_pvalues, reference

    out = []
    for label, (name, value) in VARIANTS:
        kw = presence_pvalues.optimal_weights.__kwdefaults__
        old = kw[name] if name in kw else getattr(reference, name)
        if name in kw:
            kw[name] = value
        else:
            setattr(reference, name, value)
        try:
            out.append((label, [gatherings("1d", seed=k) for k in DEV_SEEDS]))
        finally:
            if name in kw:
                kw[name] = old
            else:
                setattr(reference, name, old)
    return out


def _variants_text(tried: list[tuple[str, list[dict]]]) -> str:
    return "; ".join(
        f"{label} {np.mean([x['recall'] for x in xs]):.2f} (lowest precision "
        f"{min(x['precision'] for x in xs):.2f})"
        for label, xs in tried
    )


def gatherings(grain: str, *, seed: int = 0) -> dict:
    """Recall and precision of the withheld games at one grain."""
    store, truth = _town(grain, seed=seed)
    wg = truth["realism"]["withheld_gatherings"]
    ballpark, games = wg["zone_id"], {d["local_date"] for d in wg["days"]}
    period = parse_period(None, start="2026-03-01", end="2026-11-15")
    t0 = time.perf_counter()
    run = run_signals(store, period, use_model=False, write=False)
    secs = time.perf_counter() - t0
    oracle = _oracle(store, truth)  # read once: the error SD and the game-day lift
    s = _anomalies(run, Store(store).cube_meta()["timezone"])
    days = {d.strftime("%Y-%m-%d") for d in pd.date_range("2026-03-01", "2026-11-15")}
    game_days = games & days
    hit = s[(s["zone"] == ballpark) & (s["type"] == "gathering")]
    unexpl = hit[~hit["explained"].astype(bool)]
    others = s[(s["zone"] != ballpark) & ~s["explained"].astype(bool)]
    return {
        "grain": grain, "seconds": round(secs, 1), "game_days": len(game_days),
        "game_days_flagged": len(set(hit["day"]) & game_days),
        "recall": round(len(set(hit["day"]) & game_days) / max(len(game_days), 1), 3),
        "ballpark_unexplained_gatherings": len(unexpl),
        "precision": round(float(unexpl["day"].isin(game_days).mean()) if len(unexpl) else float("nan"), 3),
        "other_zone_days": (run.zones - 1) * len(days),
        "other_unexplained": len(others[["zone", "day"]].drop_duplicates()),
        "oracle_error_sd": round(oracle_error_sd(oracle), 3),
        # at hourly grain a test's observed / expected is its window's, not the day's
        "game_day_lift": game_day_lift(run, oracle, truth) if grain == "1d" else None,
        "ballpark_mean_weight": round(float(hit_weights(run, ballpark)), 2),
        "ceiling_recall": weight_ceiling(run, period, ballpark, game_days),
        "recall_at_weight": {w: weight_ceiling(run, period, ballpark, game_days, w=w)
                             for w in (3.0, 6.0, 10.0, 15.0)},
        "own_family_recall": own_family(run, period, ballpark, game_days),
        "visitor_share_game_days": len(_flagged_days(run, ballpark, "visitor_share") & game_days),
        "visitor_share_other_days": len((_flagged_days(run, ballpark, "visitor_share") & days) - game_days),
    }  # fmt: skip


def weekly(grain: str, *, seed: int = 0) -> dict:
    """The withheld games as a weekly user meets them: one ``vigie signals`` run per week
    (Monday to Sunday) over 2026-03-02..2026-11-15, each reading its own window before the
    week; recall of the game days and the ballpark's unexplained gatherings on other days."""
    store, truth = _town(grain, seed=seed)
    wg = truth["realism"]["withheld_gatherings"]
    games = {d["local_date"] for d in wg["days"]}
    tz = Store(store).cube_meta()["timezone"]
    hits, false, seen, start = set(), 0, set(), pd.Timestamp("2026-03-02")
    t0 = time.perf_counter()
    while start < pd.Timestamp("2026-11-15"):
        end = start + pd.Timedelta(days=6)
        period = parse_period(None, start=str(start.date()), end=str(end.date()))
        s = _anomalies(run_signals(store, period, use_model=False, write=False), tz)
        h = s[(s["zone"] == wg["zone_id"]) & (s["type"] == "gathering")]
        hits |= set(h["day"]) & games
        false += int((~h["explained"].astype(bool) & ~h["day"].isin(games)).sum())
        seen |= {d for d in games if str(start.date()) <= d <= str(end.date())}
        start += pd.Timedelta(days=7)
    return {"grain": grain, "runs_seconds": round(time.perf_counter() - t0, 1),
            "game_days": len(seen), "game_days_flagged": len(hits),
            "recall": round(len(hits) / max(len(seen), 1), 3), "false_gatherings": false}  # fmt: skip


def counts_only(fn, *args, **kwargs):
    """``fn`` with the daily gathering test reading the count alone, the visitor share not joined
    (``presence.JOIN_SHARE`` off): what transit entries or a sensor, which do not split
    residents from visitors, give."""
    from pipelines.signals import presence

    presence.JOIN_SHARE = False
    try:
        return fn(*args, **kwargs)
    finally:
        presence.JOIN_SHARE = True


def half_year_presence(fn, *args, **kwargs):
    """``fn`` with the presence tests reading 26 weeks of history at every grain, as before
    2026-12-04 (:meth:`~pipelines.signals.settings.RunSettings.presence_days`)."""
    from pipelines.signals.settings import RunSettings

    old = RunSettings.presence_days
    RunSettings.presence_days = lambda self, grain: self.recent_days
    try:
        return fn(*args, **kwargs)
    finally:
        RunSettings.presence_days = old


def hit_weights(run, zone: str) -> float:
    """The mean weight of the zone's gathering tests over the run."""
    t = run.tests[run.tests["type"] == "gathering"]
    mine = t["zones"].map(lambda z: z[0] if len(z) else "") == zone
    return float(t.loc[mine, "details"].map(lambda d: d["weight"]).mean())


def _flagged_days(run, zone: str, kind: str) -> set[str]:
    """The local days of the zone's tests of ``kind`` with q below the run's FDR level."""
    t = run.tests
    hit = t[(t["type"] == kind) & (t["q_value"] < run.fdr)
            & (t["zones"].map(lambda z: z[0] if len(z) else "") == zone)]  # fmt: skip
    return set(
        pd.to_datetime(hit["start"], utc=True).dt.tz_convert(run.timezone).dt.strftime("%Y-%m-%d")
    )


def own_family(run, period, ballpark: str, game_days: set[str]) -> float:
    """The ballpark's recall had the presence tests (gatherings and emptied zones) been their
    own Benjamini-Hochberg family, each week apart from the run's other tests (same p values)."""
    from pipelines.signals.run import adjust

    t = run.tests.drop(columns=["id", "q_value"])
    pres = t[t["type"].isin(["gathering", "emptied"])].reset_index(drop=True)
    q = adjust([pres], period=period, timezone=run.timezone)
    hit = q[(q["type"] == "gathering") & (q["zones"].map(lambda z: z[0]) == ballpark)
            & (q["q_value"] < run.fdr)]  # fmt: skip
    day = pd.to_datetime(hit["start"], utc=True).dt.tz_convert(run.timezone).dt.strftime("%Y-%m-%d")
    return round(len(set(day) & game_days) / max(len(game_days), 1), 3)


def weight_ceiling(run, period, ballpark: str, game_days: set[str], *, w: float = 30.0) -> float:
    """The ballpark's recall had its gathering tests held weight ``w`` of the 60 presence tests
    of a day (30: half of the day's weight; the others ``(60 - w) / 59``), the same unweighted
    p values and the run's weekly Benjamini-Hochberg: what weighting alone can reach (at hourly
    grain the unweighted p divided by w, not the run's weighting of the day-level half)."""
    from pipelines.signals.run import adjust

    t = run.tests.drop(columns=["id", "q_value"])
    pres = t["type"].isin(["gathering", "emptied"])
    mine = pres & (t["type"] == "gathering") & (t["zones"].map(lambda z: z[0]) == ballpark)
    pu = t["details"].map(lambda d: d.get("p_unweighted", np.nan)).astype(float)
    k = 2 * run.zones
    t.loc[pres, "p_value"] = np.minimum(1.0, pu[pres] / np.where(mine[pres], w, (k - w) / (k - 1)))
    q = adjust([t], period=period, timezone=run.timezone)
    hit = q[mine & (q["q_value"] < run.fdr)]
    day = pd.to_datetime(hit["start"], utc=True).dt.tz_convert(run.timezone).dt.strftime("%Y-%m-%d")
    return round(len(set(day) & game_days) / max(len(game_days), 1), 3)


def _oracle(store: Path, truth: dict) -> tuple[pd.Series, np.ndarray]:
    """The ballpark's daily ``log(1 + present)`` less an *oracle* reference that knows the game
    days (the median of the same weekday over the 26 weeks before, game days left out), and
    which days are game days."""
    wg = truth["realism"]["withheld_gatherings"]
    f = Store(store).cube(columns=["local_date", "present"])
    f = f[f["zone_id"].astype(str) == wg["zone_id"]]
    g = f.groupby(pd.to_datetime(f["local_date"]))["present"].mean().sort_index()
    y = pd.Series(np.log1p(g.to_numpy()), index=g.index)
    game = y.index.strftime("%Y-%m-%d").isin({d["local_date"] for d in wg["days"]})
    ref = (
        y.where(~game)
        .groupby(y.index.dayofweek)
        .transform(lambda v: v.shift(1).rolling(26, min_periods=8).median())
    )
    return y - ref, game


def oracle_error_sd(oracle: tuple[pd.Series, np.ndarray]) -> float:
    """The out-of-sample error SD (log) of the ballpark's quiet days against the oracle
    reference (:func:`_oracle`). A bound on any reference's precision at that grain."""
    err, game = oracle
    return float(err[~game][err.index[~game] >= pd.Timestamp("2026-03-01")].std())


def game_day_lift(run, oracle: tuple[pd.Series, np.ndarray], truth: dict) -> dict:
    """How far the ballpark's game days stand above their reference, against the lift planted
    (``uplift_true``, the truth's ratio of the day's true presence with and without its game),
    over April-October of the period: the mean of ``error - log(uplift)`` on game days and the
    mean error on the other days, against vigie's reference (its gathering tests) and against
    the oracle's (:func:`_oracle`); and the median scale of vigie's tests on game days. Where
    the oracle shows the same shortfall on game days, it is the delivered data's, not the
    reference's."""
    wg = truth["realism"]["withheld_gatherings"]
    lift = {d["local_date"]: np.log(d["uplift_true"]) for d in wg["days"]}
    t = run.tests[run.tests["type"] == "gathering"]
    t = t[t["zones"].map(lambda z: z[0] if len(z) else "") == wg["zone_id"]]
    day = pd.to_datetime(t["start"], utc=True).dt.tz_convert(run.timezone).dt.strftime("%Y-%m-%d")
    e = np.log(t["observed"] / t["expected"])
    season = day.str[5:7].astype(int).between(4, 10).to_numpy()
    game = day.isin(lift).to_numpy()
    ours = (e - day.map(lift).fillna(0.0)).to_numpy()
    oe, og = oracle
    od = oe.index.strftime("%Y-%m-%d")
    oin = (oe.index >= pd.Timestamp("2026-04-01")) & (oe.index < pd.Timestamp("2026-11-01"))
    ol = (oe - pd.Series(od, index=oe.index).map(lift).fillna(0.0)).to_numpy()
    return {
        "vigie_game": round(float(np.nanmean(ours[game & season])), 3),
        "vigie_other": round(float(np.nanmean(ours[~game & season])), 3),
        "oracle_game": round(float(np.nanmean(ol[og & oin])), 3),
        "oracle_other": round(float(np.nanmean(ol[~og & oin])), 3),
        "scale": round(float(np.median((e / t["statistic"]).to_numpy()[game])), 3),
    }


def speed() -> dict:
    """``vigie signals`` over three years of 25 hourly zones, and the presence review alone."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _toy_store import toy_store

    from pipelines.signals.presence import presence_review

    root = bench_dir() / "signals-speed-3y"
    if not (root / "cube_meta.json").exists():
        toy_store(root, side=5, weeks=160, grain="1h", seed=3, daily_incidents=2.0)
    meta = Store(root).cube_meta()
    last = (
        (pd.Timestamp(meta["end"]) - pd.Timedelta(hours=1))
        .tz_convert(meta.get("timezone") or "UTC")
        .date()
    )
    period = parse_period(None, start=str(last - pd.Timedelta(days=7 * 156 - 1)), end=str(last))
    t0 = time.perf_counter()
    run = run_signals(root, period, use_model=False, write=False)
    full = time.perf_counter() - t0
    st = Store(root)
    frame = st.cube(columns=["local_date", "local_hour", "present", "present_baseline"])
    frame["local_date"] = pd.to_datetime(frame["local_date"]).dt.date
    ps, pe = period.bounds(meta.get("timezone") or "UTC")
    t0 = time.perf_counter()
    presence_review(frame, period_start=ps, period_end=pe)
    alone = time.perf_counter() - t0
    return {"zones": run.zones, "days": period.days, "tests": run.n_tests,
            "signals_seconds": round(full, 1), "presence_seconds": round(alone, 1),
            "load": round(os.getloadavg()[0], 1)}  # fmt: skip


def _goal(rows: list[dict]) -> str:
    """Whether each grain's run meets the goal of recall >= 0.80 at precision >= 0.90."""
    return "; ".join(
        f"{x['grain']} {'met' if x['recall'] >= 0.8 and x['precision'] >= 0.9 else 'NOT met'} "
        f"(recall {x['recall']:.2f}, precision {x['precision']:.2f})"
        for x in rows
    )


def _brief(xs: list[dict]) -> str:
    """Recall, precision and other zones' flag rate of some runs, for the text."""
    rec = ", ".join(f"{x['recall']:.2f}" for x in xs)
    prec = ", ".join(f"{x['precision']:.2f}" for x in xs)
    other = ", ".join(f"{100 * x['other_unexplained'] / x['other_zone_days']:.1f} %" for x in xs)
    return f"daily recall {rec} at precision {prec}, other zones {other}"


def run() -> Section:
    """The presence section of docs/evaluation.md."""
    bb_text, bb = brooklyn()
    g = [gatherings("1h"), gatherings("1d")]
    alone = counts_only(gatherings, "1d")  # the count alone (no residents/visitors split)
    wk = weekly("1d")
    wk_alone = counts_only(weekly, "1d")
    wk_short = counts_only(half_year_presence, weekly, "1d")
    joined = [gatherings("1d", seed=k) for k in DEV_SEEDS]
    # the count alone: where the method of the day-level test was chosen, and its parts
    dev = [counts_only(gatherings, "1d", seed=k) for k in DEV_SEEDS]
    plain = [counts_only(without, "MODERATE_SCALE", "1d", seed=k) for k in (*DEV_SEEDS, 0)]
    past = [counts_only(without, "PERIOD_FOLDS", "1d", seed=k) for k in (*DEV_SEEDS, 0)]
    biased = [counts_only(without, "RECENTRE", "1d", seed=k) for k in (*DEV_SEEDS, 0)]
    tried = counts_only(variants)
    sp = speed()
    rows = ["| grain | game days | flagged | recall | ballpark's unexplained gatherings | precision | other zones: unexplained zone-days flagged | run (s) | oracle error SD |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for x in (*g, {**alone, "grain": "1d, count alone"}):
        rows.append(f"| {x['grain']} | {x['game_days']} | {x['game_days_flagged']} | "
                    f"{x['recall']:.2f} | {x['ballpark_unexplained_gatherings']} | "
                    f"{x['precision']:.2f} | {x['other_unexplained']} of {x['other_zone_days']} "
                    f"({100 * x['other_unexplained'] / x['other_zone_days']:.1f} %) | {x['seconds']} | "
                    f"{x['oracle_error_sd']:.3f} |")  # fmt: skip
    sd = g[1]["oracle_error_sd"]  # the daily-grain day level: what a daily test sees
    lift = alone["game_day_lift"]
    bound = f"{np.log(1.3) / sd:.1f} to {np.log(1.5) / sd:.1f} SD of the oracle's daily errors"
    md = f"""### Brooklyn Bridge (real hourly counts)

{bb_text}

### Withheld recurring gatherings (synthetic city, 30 zones, 60 weeks, realism on)

A ballpark hosts games about twice a week April-October (1.3-1.5x the day's presence), absent
from the events file. One run over 2026-03-01..2026-11-15 per grain (goal: recall >= 0.80,
precision >= 0.90 at both grains). Precision counts the ballpark's *unexplained* gathering
signals (a gathering on a public holiday is explained by it).

Since 2026-12-04 (second session), where the export splits residents from visitors (as Flux
Vision does, and the synthetic city's does), the daily gathering test of a zone-day whose total
stands above its reference also reads the visitor share's rise, joined to the count's own test
by Stouffer's Z for correlated tests with the zone's own correlation of the two over its quiet
days of the 26 weeks before, and taken with the count's test by Bonferroni
(`pipelines.signals.crowd`; Strube 1985): a crowd at a venue is mostly visitors, while a zone's
day-to-day noise (a delivered total a few per cent off) moves residents and visitors together.
On the scored seed 0 at daily grain: recall {g[1]["recall"]:.2f} at precision
{g[1]["precision"]:.2f}, other zones {100 * g[1]["other_unexplained"] / g[1]["other_zone_days"]:.1f} %
(the table); on seeds {", ".join(str(k) for k in DEV_SEEDS)}: {_brief(joined)}; week by week
(below) {wk["recall"]:.2f}. The count alone (the same runs without the share joined: what transit
entries or a sensor give) reaches recall {alone["recall"]:.2f} at precision
{alone["precision"]:.2f} on seed 0 and {_brief(dev)} on seeds {", ".join(str(k) for k in DEV_SEEDS)}:
the goal is met at daily grain only with the split. The join was designed with seeds 0-5 in
view at once (seed 0 is not held out for it): the share's own scale was kept over its log odds,
whose tests flagged many more other zone-days there (development runs, not re-run by this
command); its constants (26 weeks,
56 pairs, z clipped at 2.5) were set before and not varied. On
simulated panels with no gathering, whose two tests are correlated under the null,
tests/test_presence_visitors.py checks that the joined tests keep the bounds of the count's own
null test, and that joining them as if independent is liberal. Hourly grain keeps the count's
own tests: its slot test sees a crowd's hours. What follows is the count-alone test's own
history; each figure in it is re-run without the share joined.

The count alone: the reference takes out the
study's shift of each day (since 2026-12-04 against each zone's median of the 26 weeks before
the day; it read every day of the study before, later ones too) and learns each zone's level
against it over 26 weeks; a second pass
leaves out the past values that stood more than 2 scales above the reference they had before
they were observed (a season of games otherwise inflates the level and the scale; at daily grain
1.5 scales, in two passes: a game at 1.3x stands 2.9 scales up, so one on a low day stayed in at
2, and the ballpark's quiet days sat up to 0.5 scales below a reference its games had raised); at daily
grain each zone-day's scale is shrunk towards the zones' by empirical Bayes (Smyth 2004, limma's
moderated variances: a venue's scale, read on the lower half of its errors, otherwise swings
from 0.07 early in a season to 0.13 late in it against quiet-day errors of SD 0.10), and its
p values read the degrees of freedom of that moderated scale, the prior's d0 plus the lower
half's 0.19 m (Smyth's moderated t; 0.37 m - 1 before, a full MAD's, which left them
conservative where the zones agree: tests/test_presence_scale.py); a zone's
gathering tests are weighted by its own past rate of high days (weighted Benjamini-Hochberg), so
the ballpark's weigh more once games are behind it. Since 2026-12-04 those weights are the ones
that find the most anomalies of a design effect (2.25 SD) for their expected false ones, the
threshold falling with the log odds of each test's prior rate (`presence_pvalues.optimal_weights`;
Roeder & Wasserman 2009, Pena, Habiger & Wu 2011), where they were proportional to the rate:
proportional weights spread the day's budget over zones whose high days are a small, diffuse
excess (a business zone's working days in school holidays, a stadium's quiet days); and a
zone's errors of its first 8 weeks, read against a reference still forming, no longer count in
its rate (they weighed as recurring gatherings for a year). On seeds 1-5 the two together
took mean daily recall from 0.75 to 0.80 at precision 0.90 or more on each seed (development
runs; the maturity rule alone 0.76; design effects of 3.0, 2.5 and 2.0 SD gave 0.76, 0.78 and
0.82, the last at precision 0.86 and 0.88 on seeds 4 and 5); each weight is then mixed with an
equal share, at least 0.1 (an emptied test's prior is assumed, not measured, and a study of
five zones with a venue left the others a twentieth of an equal share; mean 0.79 on seeds 1-5,
a floor of 0.25 0.77). Later on 2026-12-04, in a study over a period, a zone's rate is also
read on the period's other weeks within 8 weeks either side of each week, never on the week's
own days (its tests' weights do not depend on their own p values: the cross-weighting of
independent hypothesis weighting, Ignatiadis & Huber 2021): the ballpark's first games of a
season, which had no games behind them and a weight below 1, are weighted by the games that
follow (mean daily recall on seeds 1-5 0.82, at precision 0.90 or more on each; over the
whole period instead of 8 weeks either side 0.83, at precision 0.88 on seed 5; 4 weeks either
side 0.81; the whole period with the prior rates capped at 0.1, 0.80; not at hourly grain,
where they cost seed 4 precision 0.92 -> 0.85). A weekly run's period is its week, so its
weights read the past alone (the week-by-week figure below). Then a null test found the daily
tests liberal: on panels with no gathering (tests/test_presence_daily.py), 1.9 % of the
gathering tests' p values fell below 0.01 and a tenth of the weekly families held a discovery
at FDR 0.05, because a reference learnt on the values that look quiet (trimmed, past high
values left out) sits about 0.08 scales below a quiet day and the lower-half scale read around
it is short. The reference is now moved by the study's common bias, the median over the 26
weeks before of each week's median over all zones' errors (a week counting when 10 zones or
more have errors in it: one venue cannot move it), and the scale read around it
(`reference.recentred`; 1.2 % and 5 of 108 weeks on the same panels): mean daily recall on
seeds 1-5 fell from 0.82 to 0.72, the ballpark's precision rose to 0.94-0.97 and the other
zones' flags halved, so part of the former recall was bought by liberal p values. The prior
rate of a gathering day where a zone's history shows none was then lowered from 0.01 to 0.003
(0.77; 0.001 gave 0.79 at precision 0.91 on seed 4). Without those folds:
{_brief(past[:-1])}; on seed 0 {_brief(past[-1:])}. Without the move by the common bias:
{_brief(biased[:-1])}; on seed 0 {_brief(biased[-1:])}. That method was chosen on seeds
{", ".join(str(k) for k in DEV_SEEDS)} of the same synthetic city and never tuned on the scored
seed 0: there, daily recall {", ".join(f"{x['recall']:.2f}" for x in dev)} at precision
{", ".join(f"{x['precision']:.2f}" for x in dev)}, other zones' unexplained zone-days flagged
{", ".join(f"{100 * x['other_unexplained'] / x['other_zone_days']:.1f} %" for x in dev)}
(without the moderated scale: {_brief(plain[:-1])}; on seed 0 {_brief(plain[-1:])}).
Tried on those seeds and left out, each giving a lower recall on one of them or more false
alarms elsewhere (the 2026-12-04 ones as mean daily recall over seeds 1-5 against 0.75 before):
high days counted beyond 2.5 or 3 scales instead of 2 (0.73, 0.72: fewer of the ballpark's
games count); high days read on errors less the median of the 3 days either side or of the 6
days before (0.60, 0.61); around each zone's trimmed location of its errors instead of zero
(0.71: the games move it up); against a scale of at least 5 or 7 % (0.75, 0.76); a level over
13 or 8 weeks with the two-pass trim (0.71, 0.70); with the optimal weights (0.80), high days
counted only outside runs (the median of the 3 days either side, or of the 6 days before,
within 1 scale of zero: a drift's days are not a venue's games; 0.80 and 0.81, the latter at
precision 0.88 on seed 4); a prior rate of 0.003 instead of 0.01 with them (0.82, at precision
0.89, 0.86 and 0.88 on seeds 2, 4 and 5: at daily grain, recall 0.8 and precision 0.9 sit on the
same edge, the ballpark's quiet days at 2.3-2.8 SD being as many as its missed games). Before: a level learnt over 8 or 13 weeks instead of 26; a profile over 13 or 17; a
scale centred on the errors' median; each zone's own slope on the study's shift (a robust
regression); the rate of high days read on errors less their running 7-day median, or over a
13- or 26-week recent window, or as an empirical-Bayes (beta-binomial) posterior rate or a point
estimate instead of its lower bound. A lower prior rate of gathering days (0.003 or 0.001 instead
of 0.01), the same shrinkage of the day-level scales behind the weights, gained little
recall there (within the seeds' spread) and would change the hourly and single-zone weights: not
taken. Nor, on the weights: the smaller of the 8- and 52-week rates instead of the larger (a
zone's recent drift would not count; seeds 1, 2: 0.64, 0.60); the rates raised to a power
before they are scaled to average 1, concentrating the weight (optimal weights are a
non-linear function of each test's prior rate and effect: Roquain & van de Wiel 2009; power
1.5: 0.69, 0.67 at precision 0.94, 1.00; power 2: 0.79, 0.67 at 0.90, 1.00: precision lost on
seed 1, seed 2 barely moved); the high days counted on errors less the median of the same
weekday's errors over the 4 weeks before (a recurrence on one weekday, a park's Sundays, as
the reference's miss; 0.53, 0.38: the residuals' wider spread leaves every zone at the floor
weight); the high and low days counted around the errors' median instead of zero (0.62, 0.43:
the ballpark's games move that median up); the days a listed event's window and margin cover
taken out of the high-day count (0.67, 0.62: unchanged; a stadium's listed-match days already
leave it, being outside the quiet pool, tests/test_presence_daily.py). Nor a reference that
absorbs each zone's weekday pattern: the trimmed location (the reference's own, from the lower
quartile) of the same weekday's out-of-sample errors over the 26 or 13 weeks before, added to
the reference (0.62, 0.37 and 0.59, 0.41: the games, on any weekday, still raise each weekday's
location by up to 0.5 scales, and on seed 2 the stadium's quiet days stand beyond 2 scales on
8 to 36 % of every weekday, not of its weekends only, so it keeps its weight); the same
location taken out of the errors behind the weights only (0.69, 0.68; 0.66, 0.67 on positive
locations only). The daily exclusion at 1.5 scales was chosen among (with 0.37 m - 1 degrees of
freedom): one pass at 1.5 (0.66, 0.75), two (0.67, 0.78 at precision 1.00, 0.95, other zones
0.3 %, 1.0 %), three (0.67, 0.79, other zones 0.4 %, 1.1 %), one at 1.0 (0.69, 0.84 at precision
1.00, 0.93, other zones 0.5 %, 1.2 %) and two at 1.0 (0.71, 0.94 at precision 0.97, 0.87, other
zones 0.8 %, 1.8 %: a reference biased low); before both changes, seeds 1, 2 gave 0.67, 0.62 at
precision 0.97, 1.00, other zones 0.2 %, 0.9 %. What keeps the
ballpark's weight from the ceiling below is other zones' own recurring departures: on seed 2,
the quiet days of a stadium stand on average 0.6 to 1.6 day-level scales above their reference
(by weekday), a park's weekends 1.7 to 1.9, a business zone's working days 0.8 to 1.2 (the
quiet-day reference reads the lower, quiet side of a right-skewed history), with 20 to 35 % of
their days beyond 2 scales in some months, so they weigh as recurring unlisted gatherings do;
on seed 1, residential and business zones' winter months.
After the move by the common bias (mean daily recall {np.mean([x["recall"] for x in dev]):.2f} on seeds 1-5), tried again
on them and left out (mean daily recall; re-run by this command): {_variants_text(tried)}.
Also left out on 2026-12-04 (development runs, not re-run here), none reaching 0.80: the
excess less fewer standard errors (noise zones gain weight), the excess scaled up for the 1.3x
games that never pass 2 scales, and each zone's own design effect (the ballpark's larger effect
lowers its own weight). On development seed 3 the missed games are days the day's noise left
well below their planted lift, in the weeks when a park with unlisted fine-day crowds read a
higher rate of high days than the ballpark and held most of the day's weight.
How far a game day stands above vigie's daily reference, against its planted lift (the truth's
ratio of the day's true presence with and without the game), April-October on seed 0: the
error less the lift's log is {lift["vigie_game"]:+.3f} on game days and {lift["vigie_other"]:+.3f}
on the other days; against the oracle reference below, {lift["oracle_game"]:+.3f} and
{lift["oracle_other"]:+.3f}. Game days fall short of the other days by
{lift["vigie_other"] - lift["vigie_game"]:.3f} against vigie's reference and by
{lift["oracle_other"] - lift["oracle_game"]:.3f} against the oracle's, which no game inflates: that much of
the shortfall is the delivered counts' (their lift falls short of the planted one), not a
reference the games raise; on the other days vigie's reference sits closer than the oracle's.
With vigie's day-level scale on game days ({lift["scale"]:.3f}), a 1.3x game then stands about
{(np.log(1.3) + lift["vigie_game"]) / lift["scale"]:.1f} scales up and a 1.5x game
{(np.log(1.5) + lift["vigie_game"]) / lift["scale"]:.1f}: the daily goal rests on how much of
the day's test weight the ballpark's tests hold (below). Also tried on 2026-12-04 (runs on
seeds 0-3, not re-run here; neither was taken) and left out: the gathering test at daily grain also
reading the visitors present where the export splits residents from visitors (the smaller of
the two p values, doubled): every game found on each seed, but the visitors of other zones and
of the ballpark's own weekends depart from their quiet reference on many ordinary days (tourist
weekends, crowds of listed events nearby), so the ballpark's precision fell to 0.72 and 0.68 on
seeds 0 and 2 and other zones' unexplained zone-days flagged rose from 61 to 514 of 7540 on
seed 0; and each zone's rate of gathering days
estimated as the share of a second component in a binned two-component mixture of its day
errors (a Student t null, a normal component 2 to 6 scales up, its lower bound at two standard
errors): business, nightlife and park zones read rates as high as the ballpark's, whose mean
weight fell from 8.5 to 4.5 (seed 0 recall 0.64; with the null's centre free, more zones read
high rates).
The last column bounds what any reference can
do: the out-of-sample error SD (log) of the ballpark's quiet days against an oracle that knows
the game days (the median of the same weekday over 26 weeks, games left out); a game day stands
log(1.3) = 0.26 to log(1.5) = 0.41 above it: {bound}. The weights read the upper tail of each
zone's day errors on every quiet day (wet ones too: rain only lowers presence) over the last 8
and 52 weeks. What the run's weekly Benjamini-Hochberg over all its tests allows: had the
ballpark's gathering tests held half of each day's test weight (same p values), daily recall
would be {alone["ceiling_recall"]:.2f} (hourly {g[0]["ceiling_recall"]:.2f}; seeds
{", ".join(str(k) for k in DEV_SEEDS)}: {", ".join(f"{x['ceiling_recall']:.2f}" for x in dev)});
by weight alone, had the ballpark's gathering tests held 3, 6, 10 or 15 of each day's 60
weights (its own average {alone["ballpark_mean_weight"]:.1f} over the period), daily recall would be
{", ".join(f"{v:.2f}" for v in alone["recall_at_weight"].values())} (seeds
{", ".join(str(k) for k in DEV_SEEDS)} at 10: {", ".join(f"{x['recall_at_weight'][10.0]:.2f}" for x in dev)});
had the presence tests been their own FDR family, apart from the run's other tests, it would be
{alone["own_family_recall"]:.2f} (hourly {g[0]["own_family_recall"]:.2f}; seeds
{", ".join(str(k) for k in DEV_SEEDS)}: {", ".join(f"{x['own_family_recall']:.2f}" for x in dev)}):
the other families' many discoveries raise Benjamini-Hochberg's threshold more than their
number lowers it, so presence stays in the run's family. The same run's visitor-share test
(who is present, `pipelines.signals.mix`) flags the ballpark on
{g[1]["visitor_share_game_days"]} of the {g[1]["game_days"]} game days at daily grain (and on
{g[1]["visitor_share_other_days"]} other days): the synthetic crowds are 70 % visitors in a zone
of residents, a split that a presence count alone (transit entries, sensors) does not have; on
its own it is not a gathering test (visitors replacing residents who left raise the share, not
the count), which is why it joins the count's test rather than replaces it.

{chr(10).join(rows)}

Against the goal (recall >= 0.80 at precision >= 0.90, scored seed 0): {_goal(g)}; the count
alone: {_goal([{**alone, "grain": "1d"}])}.

Run week by week at daily grain instead (one `vigie signals` run per week, Monday to Sunday,
2026-03-02..2026-11-15, each reading its own window before the week, as a weekly user does:
at daily grain the run's year of presence history; {wk["runs_seconds"]} s in all):
{wk["game_days_flagged"]} of {wk["game_days"]} game days flagged (recall {wk["recall"]:.2f}),
{wk["false_gatherings"]} unexplained gatherings of the ballpark on other days; the count alone
{wk_alone["game_days_flagged"]} of {wk_alone["game_days"]} (recall {wk_alone["recall"]:.2f}),
{wk_alone["false_gatherings"]} on other days. The count alone with 26 weeks
of presence history, as weekly runs read before 2026-12-04 (and with today's shift of the day):
{wk_short["game_days_flagged"]} of {wk_short["game_days"]} (recall {wk_short["recall"]:.2f}),
{wk_short["false_gatherings"]} unexplained gatherings on other days: a weekly run's reference
and weights then read half the history a study over the season reads.

### Speed

`vigie signals` over {sp["days"]} days of hourly presence and incidents at {sp["zones"]} zones
(tests/_toy_store.py, {sp["tests"]} tests): {sp["signals_seconds"]} s (goal < 60 s); the presence
review alone over the same period: {sp["presence_seconds"]} s (load average {sp["load"]} on the
machine's cores at the end: other work shares them).
"""
    return Section(
        title="Presence anomalies",
        markdown=md,
        data="../shared/data/nyc-brooklyn-bridge (NYC DOT export), a synthetic city "
        "(features.synth, 30 zones, 60 weeks, realism on, seed 0 scored, seeds 1 to 5 for choosing "
        "the method, 1 and 2 before 2026-12-04; the visitor-share join tried on seeds 0 to 5 at "
        "once), a toy store (tests/_toy_store.py)",
        figures={
            "brooklyn": bb,
            "gatherings": g,
            "gatherings_count_alone": alone,
            "weekly": wk,
            "weekly_count_alone": wk_alone,
            "weekly_half_year_presence": wk_short,
            "development_joined": joined,
            "development": dev,
            "unmoderated": plain,
            "past_weights_only": past,
            "not_recentred": biased,
            "variants": {label: xs for label, xs in tried},
            "speed": sp,
        },
    )
