"""`python -m bench.evaluate origins`: the origin-shift test on planted inflows.

Synthetic cities of 30 zones over 60 weeks (the tiny city's world, seeds 0-3), each with
origin inflows planted in its Flux Vision origins file (one origin's share of a zone's visitors
x4-8 over an ISO week, the visitors unchanged; truth.json ``origin_inflows``). Every zone-week
with 8 reference weeks is tested as ``vigie signals`` tests it
(:func:`pipelines.signals.origins.origin_review`), Benjamini-Hochberg at 5 % over each week's
zone tests. Reported: planted inflows found (the zone-week flagged and the planted origin named),
other zone-weeks flagged, and the same with the textbook test, scipy's chi-square test of
homogeneity (``scipy.stats.chi2_contingency``: the week's visitors by origin against the
reference weeks' pooled), which assumes multinomial counts. Speed: the origin review of one week
of the city demo's store when it exists.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.bench_cube import bench_dir
from bench.evaluate import Section
from features.cube.origins import weekly_mix
from features.ingest import ingest
from features.store import Store
from pipelines.signals.origins import REFERENCE_WEEKS, origin_review, origin_table
from pipelines.signals.pvalues import benjamini_hochberg

SEEDS = (0, 1, 2, 3)
ROOT = Path(__file__).resolve().parents[1]
CITY_STORE = Path("/tmp/demo_city/city/store")


def _town(seed: int) -> tuple[Store, dict]:
    from features.synth import scales
    from features.synth.generate import generate

    base = bench_dir() / f"origins-town-seed{seed}"
    raw = base / "raw"
    if not (raw / "truth.json").exists():
        scales.SCALES["otown"] = replace(scales.SCALES["tiny"], weeks=60)
        try:
            generate("otown", raw, seed=seed)
        finally:
            scales.SCALES.pop("otown", None)
    store = base / "store"
    if not (store / "validated" / "presence_origin.parquet").exists():
        ingest(raw / "sources.yaml", store)
    return Store(store), json.loads((raw / "truth.json").read_text())


def _chi2_contingency(mix: pd.DataFrame, weeks: list[str]) -> pd.DataFrame:
    """scipy's chi-square test of homogeneity, week against its pooled reference weeks."""
    arr, zones, all_weeks, _ = origin_table(mix)
    rows = []
    for week in weeks:
        w = all_weeks.index(week)
        if w < REFERENCE_WEEKS:
            continue
        for z, zone in enumerate(zones):
            x = np.nan_to_num(arr[z, w])
            ref = np.nansum(arr[z, w - REFERENCE_WEEKS : w], axis=0)
            keep = (x + ref) > 0
            if keep.sum() < 2 or x.sum() <= 0:
                continue
            p = stats.chi2_contingency(np.vstack([x[keep], ref[keep]]))[1]
            rows.append({"zone": zone, "week": week, "p": p})
    return pd.DataFrame(rows)


def _flags(tests: pd.DataFrame) -> set[tuple[str, str]]:
    q = np.zeros(len(tests))
    for _, idx in tests.groupby("week").groups.items():
        q[tests.index.get_indexer(idx)] = benjamini_hochberg(tests.loc[idx, "p"].to_numpy())
    return {(z, w) for z, w, qq in zip(tests["zone"], tests["week"], q, strict=True) if qq < 0.05}


def one_city(seed: int) -> dict:
    st, truth = _town(seed)
    src = st.validated("presence_origin")
    mix = weekly_mix(src, timezone=st.timezone)
    weeks = sorted(mix["week"].unique())[REFERENCE_WEEKS:]
    t0 = time.perf_counter()
    tests = origin_review(src, weeks=weeks, timezone=st.timezone)
    seconds = time.perf_counter() - t0
    ours = pd.DataFrame({"zone": [z[0] for z in tests["zones"]],
                         "week": [d["week"] for d in tests["details"]],
                         "origin": [d["origin"] for d in tests["details"]],
                         "p": tests["p_value"]})  # fmt: skip
    flagged = _flags(ours)
    named = dict(zip(zip(ours["zone"], ours["week"], strict=True), ours["origin"], strict=True))
    planted = {(t["zone"], t["week"]): t["origin"] for t in truth["origin_inflows"]}
    planted = {k: o for k, o in planted.items() if k[1] in weeks}
    chi = _chi2_contingency(mix, weeks)
    chi_flags = _flags(chi)
    return {
        "seed": seed, "zone_weeks": len(ours), "planted": len(planted),
        "found": sum(k in flagged and named.get(k) == o for k, o in planted.items()),
        "other_flagged": len(flagged - set(planted)),
        "chi2_found": sum(k in chi_flags for k in planted),
        "chi2_other_flagged": len(chi_flags - set(planted)), "chi2_zone_weeks": len(chi),
        "seconds": round(seconds, 1),
    }  # fmt: skip


def city_speed() -> dict | None:
    """The origin review of the city demo's last week (300 zones), when the store exists."""
    if not (CITY_STORE / "validated" / "presence_origin.parquet").exists():
        return None
    st = Store(CITY_STORE)
    src = st.validated("presence_origin")
    last = pd.to_datetime(src["start"], utc=True).max().tz_convert(st.timezone)
    week = f"{last.isocalendar()[0]}-W{last.isocalendar()[1]:02d}"
    t0 = time.perf_counter()
    tests = origin_review(src, weeks=[week], timezone=st.timezone)
    return {"zones": len(tests), "week": week, "rows": len(src),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def run() -> Section:
    """The origins section of docs/evaluation.md."""
    res = [one_city(s) for s in SEEDS]
    rows = ["| seed | zone-weeks tested | planted inflows | found (zone, week and origin) | other zone-weeks flagged | scipy chi2_contingency: found | scipy: other flagged | review (s) |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res:
        rows.append(f"| {r['seed']} | {r['zone_weeks']} | {r['planted']} | {r['found']} | "
                    f"{r['other_flagged']} ({100 * r['other_flagged'] / r['zone_weeks']:.2f} %) | "
                    f"{r['chi2_found']} | {r['chi2_other_flagged']} "
                    f"({100 * r['chi2_other_flagged'] / max(r['chi2_zone_weeks'], 1):.1f} %) | "
                    f"{r['seconds']} |")  # fmt: skip
    tot = {k: sum(r[k] for r in res) for k in ("zone_weeks", "planted", "found", "other_flagged",
                                                "chi2_found", "chi2_other_flagged")}  # fmt: skip
    sp = city_speed()
    speed = (
        f"Speed: the origin review of one week of the city demo's store ({sp['zones']} zones, "
        f"{sp['rows']:,} origin rows read, week {sp['week']}): {sp['seconds']} s."
        if sp
        else "Speed: the city demo's store was not found (run `make demo`)."
    )
    md = f"""Synthetic cities of 30 zones over 60 weeks (seeds {", ".join(map(str, SEEDS))}); in each,
origin inflows are planted in the daily origins file (one origin's share of a zone's visitors
x4-8 over an ISO week, visitors unchanged, `truth.json` `origin_inflows`); every zone's mix also
varies day to day (Dirichlet, over-dispersed against a multinomial) and foreigners follow the
tourist season. Each zone-week with 8 reference weeks is tested as `vigie signals` tests it
(quasi-likelihood F, dispersion from the zone's own reference weeks), Benjamini-Hochberg at 5 %
over each week's zones. Peer: scipy's chi-square test of homogeneity
(`scipy.stats.chi2_contingency`, the week's visitors by origin against the pooled reference weeks),
which assumes multinomial counts.

{chr(10).join(rows)}

Total: {tot["found"]} of {tot["planted"]} planted inflows found with their origin;
{tot["other_flagged"]} other zone-weeks flagged of {tot["zone_weeks"]}
({100 * tot["other_flagged"] / tot["zone_weeks"]:.2f} %). scipy's chi-square flags
{tot["chi2_found"]} of the planted and {tot["chi2_other_flagged"]} other zone-weeks.

{speed}
"""
    figures = {"cities": res, "total": tot, "city_speed": sp}
    return Section(title="Origin anomalies (planted inflows)", markdown=md,
                   data="synthetic cities (vigie synth, 30 zones x 60 weeks, seeds 0-3)",
                   figures=figures)  # fmt: skip
