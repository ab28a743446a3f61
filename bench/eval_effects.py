"""`make evaluate` section ``effects``: planted effects recovered by the shipped ``vigie fit``.

The synthetic city is the ``tiny`` scale with **realism on** (:mod:`features.synth.realism`:
zone effects beyond presence, city-wide and zone-day shocks, trend and season, presence
delivered as a biased proxy, withheld recurring games, crowds that raise incidents less than in
proportion at the stadiums, sparse categories), its planted weak signals **left in**. Each city
is written by :func:`features.synth.generate`, ingested and cubed by vigie itself, and fitted by
:func:`pipelines.models.fit_all` (what ``vigie fit`` runs); the figures are read back from
``store/models/effects.json``.

* **Planted against estimated** (seed 0): every IRR ``truth.json`` plants, in each group whose
  categories all carry it, with its 95 % interval, p value and Benjamini-Hochberg q value over
  the IRRs reported; effects planted absent (IRR 1) are listed with them.
* **Events**: the event IRR and the uplifts, with the stadiums' crowds as planted (their
  elasticity and the IRR of the crowd against no crowd).
* **Outage study coverage** over :data:`SEEDS`: the zone's night ``start`` ratio against the
  ratio the planted lamp IRR implies for the same outages and phases
  (:func:`pipelines.models.outage.implied_lamp_ratio`); goal 18 of 20.

Usage: ``python -m bench.evaluate effects`` (writes docs/evaluation.md) or ``run()``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.bench_cube import bench_dir
from bench.evaluate import Section
from features.cube import build_cube
from features.ingest import ingest
from features.store import Store
from features.synth import generate
from pipelines.models import fit_all
from pipelines.models.design import design, group_categories
from pipelines.models.effects import store_neighbours
from pipelines.models.outage import implied_lamp_ratio, outage_event_study
from pipelines.models.results import Effect, Effects

SCALE = "tiny"
SEEDS = tuple(range(20))
FIT_SEED = 0


def city(seed: int, work: Path) -> tuple[dict[str, Any], Store]:
    """The realism city of ``seed``: its truth and its store (ingested and cubed)."""
    raw, root = work / f"city-{seed}", work / f"store-{seed}"
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    generate(SCALE, raw, seed=seed, realism=True)
    ingest(raw / "sources.yaml", root)
    store = Store(root)
    build_cube(store)
    return json.loads((raw / "truth.json").read_text()), store


def _groups_for(categories: list[str], groups: dict[str, list[str]]) -> list[str]:
    """The groups whose categories all carry a planted effect (``all`` when it covers all)."""
    cats = set(categories)
    if cats >= set(groups["all"]):
        return ["all"]
    return [g for g, members in groups.items() if g != "all" and set(members) <= cats]


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def irr_rows(truth: dict[str, Any], eff: Effects, groups: dict[str, list[str]]) -> list[dict]:
    """One row per planted IRR and group it applies to."""
    rows = []
    for t in truth["effects"]:
        for g in _groups_for(t["categories"], groups):
            e = eff.get(f"irr.{g}.{t['feature']}")
            if e is None or not e.estimable or e.estimate is None:
                continue
            lo, hi = e.ci_low or 0.0, e.ci_high or float("inf")
            rows.append(
                {
                    "effect": t["name"],
                    "group": g,
                    "planted": float(t["irr"]),
                    "estimate": e.estimate,
                    "ci": (lo, hi),
                    "p": e.p_value,
                    "q": (e.details or {}).get("q_value_bh"),
                    "inside": lo <= t["irr"] <= hi,
                    "within_10": abs(e.estimate / t["irr"] - 1) <= 0.10,
                    "note": "stadium crowds in the estimate, not in the truth"
                    if t.get("zones_excluded")
                    else "",
                }
            )
    return rows


def _irr_table(rows: list[dict]) -> str:
    head = (
        "| effect | group | planted | estimate [95 % CI] | p | q (BH) | inside CI | within 10 % |"
        " note |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['effect']} | {r['group']} | {r['planted']:.3f} | {r['estimate']:.3f} "
        f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {_num(r['p'], '.3g')} | {_num(r['q'], '.3g')} "
        f"| {'yes' if r['inside'] else '**no**'} | {'yes' if r['within_10'] else '**no**'} "
        f"| {r['note']} |\n"
        for r in rows
    )
    return head + body


def _effect_line(e: Effect | None) -> str:
    if e is None:
        return "| – | – | – | – |"
    if not e.estimable:
        return f"| {e.label} | not estimable: {e.why} | | |"
    label = "Event IRR per 1 000 attendees, all incidents" if e.kind == "irr" else e.label
    return (
        f"| {label} | {_num(e.estimate)} [{_num(e.ci_low)}, {_num(e.ci_high)}] | "
        f"{_num(e.p_value, '.3g')} | {e.n} |"
    )


def event_section(truth: dict[str, Any], eff: Effects) -> str:
    """The event effects and the crowds as planted."""
    names = ["irr.all.event_k"] + [
        f"event.{c}.{r}.incidents"
        for c in [
            "all",
            *sorted({e.category for e in eff if e.kind == "event_uplift" and e.category}),
        ]
        for r in ("venue", "ring")
    ]
    lines = "".join(_effect_line(eff.get(n)) + "\n" for n in dict.fromkeys(names) if eff.get(n))
    crowds = (truth.get("realism") or {}).get("crowd_elasticity") or []
    planted = "".join(
        f"| {c['zone_id']} | {c['elasticity']:.2f} | {c['mean_crowd_ratio']:.2f} | "
        f"{c['irr_vs_no_crowd']:.3f} | {c['irr_vs_proportional']:.3f} |\n"
        for c in crowds
    )
    return (
        "| effect | estimate [95 % CI] | p | n |\n|---|---|---|---|\n"
        + lines
        + "\nCrowds as planted (stadium zones; elsewhere elasticity 1 and the planted `event_k`):\n\n"
        "| zone | elasticity | mean (present + crowd) / present | IRR vs no crowd | "
        "IRR vs proportional |\n|---|---|---|---|---|\n" + planted
    )


def outage_coverage(seeds: tuple[int, ...], work: Path) -> tuple[list[dict], str]:
    """The outage study's zone night ``start`` ratio against the planted lamp effect, per seed."""
    rows = []
    for seed in seeds:
        truth, store = city(seed, work)
        cube = store.cube()
        grain = store.cube_meta().get("grain", "1h")
        dz = design(cube, grain=grain)
        nb = store_neighbours(store)
        irr = next(t["irr"] for t in truth["effects"] if t["feature"] == "dark_lamps_out")
        implied = implied_lamp_ratio(cube, irr_per_10pct=irr, grain=grain, neighbours=nb, dz=dz)
        eff = {e.name: e for e in outage_event_study(cube, grain=grain, neighbours=nb, dz=dz)}
        e = eff.get("outage.zone.night.start") or eff.get("outage.zone.all.start")
        ok = e is not None and e.estimable and implied is not None
        rows.append(
            {
                "seed": seed,
                "implied": implied,
                "estimate": e.estimate if ok else None,
                "ci": (e.ci_low, e.ci_high) if ok else (None, None),
                "covered": bool(ok and (e.ci_low or 0) <= implied <= (e.ci_high or 1e9)),
                "interval": (e.details or {}).get("interval") if ok else None,
            }
        )
        shutil.rmtree(store.root, ignore_errors=True)
        shutil.rmtree(work / f"city-{seed}", ignore_errors=True)
    covered = sum(r["covered"] for r in rows)
    table = "| seed | implied by the planted IRR | estimate [95 % CI] | covered | interval |\n"
    table += "|---|---|---|---|---|\n" + "".join(
        f"| {r['seed']} | {_num(r['implied'])} | {_num(r['estimate'])} "
        f"[{_num(r['ci'][0])}, {_num(r['ci'][1])}] | {'yes' if r['covered'] else '**no**'} "
        f"| {r['interval'] or '–'} |\n"
        for r in rows
    )
    return (
        rows,
        f"**Covered in {covered} of {len(rows)} seeds** (goal: at least 18 of 20).\n\n" + table,
    )


def run() -> Section:
    """Fit the seed-0 city with ``fit_all`` and run the outage study over :data:`SEEDS`."""
    work = bench_dir() / "eval_effects"
    work.mkdir(parents=True, exist_ok=True)
    truth, store = city(FIT_SEED, work)
    fit_all(store, backtest_weeks=3)
    eff = Effects.from_json(json.loads((store.root / Store.EFFECTS_JSON).read_text()))
    cats = [c[4:] for c in store.cube_meta()["columns"] if c.startswith("inc_")]
    rows = irr_rows(truth, eff, group_categories(cats))
    absent = [r for r in rows if r["planted"] == 1.0]
    present = [r for r in rows if r["planted"] != 1.0]
    cov_rows, coverage = outage_coverage(SEEDS, work)
    sig_p = sum((r["p"] or 1) < 0.05 for r in absent)
    sig_q = sum((r["q"] or 1) < 0.05 for r in absent)
    md = f"""
The `tiny` synthetic city with realism on (not the model vigie fits), planted weak signals left
in, through the shipped path: `generate` -> `ingest` -> `build_cube` -> `fit_all` (`vigie fit`).
IRRs are refitted without the zone x day/week windows an excess detector flags, event slots
against the zone's reference presence, intervals clustered by local day with a t reference on
the days that carry each feature; q is the Benjamini-Hochberg q value over every IRR reported.

### Planted IRRs (seed {FIT_SEED})

Inside the 95 % interval: {sum(r["inside"] for r in present)} of {len(present)}; within 10 %
of the truth: {sum(r["within_10"] for r in present)} of {len(present)}.

{_irr_table(present)}
### Effects planted absent (IRR 1)

Significant at p < 0.05: {sig_p} of {len(absent)}; at q < 0.05 (the family of IRRs): {sig_q}
of {len(absent)}.

{_irr_table(absent)}
### Events (seed {FIT_SEED})

The event IRR is per 1 000 attendees against the same slot at the zone's reference presence
(the crowd's own effect is in it; its `n` is zone-slots); the uplifts are against the zone's own
hour-of-week history, clustered by event (`n` is events). The stadium zones' events are the
crowds that raise incidents less than in proportion; elsewhere crowds raise them in proportion
and `event_k` adds to it, so a significant uplift there is a true effect.

{event_section(truth, eff)}
### Lighting outage study over {len(SEEDS)} cities

{coverage}"""
    figures = {
        "irr": [{k: v for k, v in r.items() if k != "ci"} | {"ci": list(r["ci"])} for r in rows],
        "outage_coverage": sum(r["covered"] for r in cov_rows),
        "outage_seeds": len(cov_rows),
        "absent_significant_p": sig_p,
        "absent_significant_q": sig_q,
    }
    return Section(
        title="Effects: planted against estimated",
        markdown=md,
        data=f"synthetic `{SCALE}` city, realism on, seeds {SEEDS[0]}-{SEEDS[-1]}",
        figures=figures,
    )
