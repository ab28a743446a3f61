"""`make evaluate` section ``detectors``: outbreaks planted into real Chicago transit crimes.

The data are the Chicago Police crime reports on CTA premises, 2015-2019, by community area
(``examples/chicago/sources.yaml`` over ``../shared/data``), ingested and cubed at daily grain
by vigie itself (cached under ``$VIGIE_BENCH_DIR``). The weeks 2016-W01 .. 2019-W52 are
reviewed as ``vigie signals --from 2016-01-04 --to 2019-12-29 --no-model`` reviews them (2015
is the first calibration year): one history-calibrated incident test per zone and week,
Benjamini-Hochberg within each week (:func:`pipelines.signals.retrospective.weekly_flags`).

* **False alarms** are counted on the real, untouched zone-weeks: every flag there is false
  by this evaluation's convention (real rises included, as a user would see them).
* **Outbreaks** are planted after Noufaily et al. (2013): ``k x`` the SD of the zone's weekly
  count over the year before, cases with lognormal(0, 0.5) onsets
  (:func:`~pipelines.signals.retrospective.plant_outbreaks`), in zones with at least one
  crime a week on average, at least 8 weeks apart in a zone; an outbreak is detected when its
  zone is flagged in its week or the next (its cases may spill over).
* **Peers**, each on the zone's own daily series: EARS C1/C2/C3 (Hutwagner et al. 2003; as
  vigie computes them) and CDC's ESSENCE detectors through NSSP's own package ``pynssp``
  (``alert_ewma``, ``alert_regression``, ``alert_switch``, default settings; a zone-week's
  statistic is its smallest daily p value). Each is calibrated to the *same observed*
  false-alarm rate as vigie on the same real zone-weeks (the largest threshold whose rate does
  not exceed vigie's), then its POD is read off.

Usage: ``python -m bench.evaluate detectors`` (writes docs/evaluation.md) or ``run()``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_cube import bench_dir
from bench.evaluate import SHARED_DATA, Section
from pipelines.signals.calibration import Blocks
from pipelines.signals.ears import ears_statistic
from pipelines.signals.expectation import estimate_dispersion
from pipelines.signals.incidents import expected_incidents, recent_panel
from pipelines.signals.inputs import build_panel, zone_neighbours
from pipelines.signals.panel import Panel
from pipelines.signals.period import parse_period
from pipelines.signals.retrospective import plant_outbreaks, weekly_flags, weekly_sd
from pipelines.signals.run import load_inputs, run_signals
from pipelines.signals.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = "2016-01-04", "2019-12-29"
#: (size in SD, outbreaks) of each round of planting
ROUNDS = ((3.0, 210), (2.0, 60), (4.0, 60))
FPR_GRID = (0.002, 0.005, 0.01, 0.02, 0.05)
NSSP = ("alert_ewma", "alert_regression", "alert_switch")
#: days of the zone's series before an outbreak week given to the ESSENCE detectors
NSSP_LEAD = 63


def chicago_store() -> Path:
    """The Chicago example ingested and cubed by vigie (made once)."""
    from features.cube import build_cube
    from features.ingest import ingest

    store = bench_dir() / "chicago-store"
    if not (store / "cube_meta.json").exists():
        ingest(ROOT / "examples" / "chicago" / "sources.yaml", store)
        build_cube(store)
    return store


def chicago_panel(store: Path) -> tuple[Panel, np.ndarray, float]:
    """The panel, neighbours and dispersion a retrospective run over 2016-2019 uses."""
    from features.store import Store

    st = Store(store)
    cfg = RunSettings(use_model=False)
    period = parse_period(None, start=FIRST, end=LAST)
    inp = load_inputs(st, period, history_days=cfg.read_days, use_model=False)
    exp, _, _ = expected_incidents(st, inp.frame, inp.start, use_model=False)
    inp.frame["expected"] = exp
    panel = build_panel(
        inp.frame, zones=inp.zones, period=period, timezone=inp.timezone,
        history_days=cfg.read_days,
    )  # fmt: skip
    recent = recent_panel(panel, cfg.history_days)
    p0 = recent.period[0]
    alpha = estimate_dispersion(recent.observed[:, :p0], recent.expected[:, :p0])
    return panel, zone_neighbours(st, inp.zones, k=cfg.k_neighbours), alpha


def week_max(x: np.ndarray, blocks: Blocks) -> np.ndarray:
    """Largest daily value of each zone in each period week, shape (Z, weeks)."""
    fp = blocks.first_period
    return np.stack(
        [np.nanmax(x[:, a:b], axis=1) for a, b in zip(blocks.a[fp:], blocks.b[fp:], strict=True)],
        axis=1,
    )


def ears_scores(observed: np.ndarray, blocks: Blocks) -> dict[str, np.ndarray]:
    raw = np.nan_to_num(observed)
    return {
        f"EARS {m}": week_max(np.nan_to_num(ears_statistic(raw, method=m), nan=-np.inf), blocks)
        for m in ("C1", "C2", "C3")
    }


def nssp_series(counts: np.ndarray, days: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """-log10 p of each pynssp detector per day of one zone's series (NaN without baseline)."""
    import pynssp

    df = pd.DataFrame({"date": days.tz_localize(None).normalize(), "count": counts})
    out = {}
    for name in NSSP:
        res = getattr(pynssp, name)(df).set_index("date")["p_value"]
        p = res.reindex(df["date"]).to_numpy(float)
        out[name] = -np.log10(np.clip(p, 1e-300, 1.0))
    return out


def nssp_clean(panel: Panel, blocks: Blocks) -> dict[str, np.ndarray]:
    """The pynssp detectors' zone-week statistics on the untouched series (cached)."""
    obs = np.nan_to_num(panel.observed)
    key = hashlib.sha1(obs.tobytes()).hexdigest()[:12]
    cache = bench_dir() / f"chicago-nssp-{key}.npz"
    if cache.exists():
        return dict(np.load(cache))
    daily = {n: np.full(obs.shape, np.nan) for n in NSSP}
    for i in range(obs.shape[0]):
        for n, v in nssp_series(obs[i], panel.days).items():
            daily[n][i] = v
    out = {n: week_max(np.nan_to_num(v, nan=-np.inf), blocks) for n, v in daily.items()}
    np.savez(cache, **out)
    return out


def nssp_outbreaks(panel: Panel, blocks: Blocks, obs: np.ndarray, table: pd.DataFrame) -> dict:
    """The pynssp detectors' statistics of each outbreak's zone in its week and the next, on a
    slice of the planted series (``NSSP_LEAD`` days of baseline before the week)."""
    fp = blocks.first_period
    out = {n: np.zeros((len(table), 2)) for n in NSSP}
    for r, (z, w) in enumerate(zip(table["zone"], table["week"], strict=True)):
        a = int(blocks.a[fp + w])
        b = int(blocks.b[min(fp + w + 1, len(blocks.b) - 1)])
        s0 = a - NSSP_LEAD
        v = nssp_series(obs[z, s0:b], panel.days[s0:b])
        for n in NSSP:
            x = np.nan_to_num(v[n], nan=-np.inf)
            out[n][r] = [x[a - s0 : a - s0 + 7].max(), x[a - s0 + 7 :].max(initial=-np.inf)]
    return out


def threshold_at(scores: np.ndarray, fpr: float) -> float:
    """Largest-rate threshold whose flag rate (score > t) on these zone-weeks is <= fpr."""
    s = np.sort(scores[np.isfinite(scores)])
    t = float(np.quantile(s, 1.0 - fpr, method="higher")) if len(s) else np.inf
    return t


def run(*, seed: int = 0) -> Section:
    """Plant the outbreaks, run vigie and its peers, and write the section."""
    if not SHARED_DATA.exists():
        return Section("Detectors on real data", f"{SHARED_DATA} is absent: not run.", "none")
    t0 = time.perf_counter()
    store = chicago_store()
    period = parse_period(None, start=FIRST, end=LAST)
    t_run = time.perf_counter()
    run_signals(store, period, use_model=False, write=False)
    t_run = time.perf_counter() - t_run
    panel, nbr, alpha = chicago_panel(store)
    blocks = Blocks.of(panel)
    clean = weekly_flags(panel, nbr, dispersion=alpha)
    scores = {"vigie": -np.log10(clean.q_min)}
    scores |= ears_scores(panel.observed, blocks)
    scores |= nssp_clean(panel, blocks)
    vigie_fpr = float(clean.flagged().mean())
    thr = {n: threshold_at(s, vigie_fpr) for n, s in scores.items()}
    thr["vigie"] = -np.log10(0.05)
    rows = _plant_rounds(panel, nbr, alpha, blocks, np.random.default_rng(seed))
    return _section(scores, thr, rows, vigie_fpr, panel, t_run, time.perf_counter() - t0)


def _plant_rounds(
    panel: Panel, nbr: np.ndarray, alpha: float, blocks: Blocks, rng: np.random.Generator
) -> pd.DataFrame:
    """Every round: plant, rerun vigie and EARS on the whole panel, pynssp on slices."""
    fp = blocks.first_period
    sd_all = weekly_sd(panel.observed, blocks)[:, fp:]
    n_w = sd_all.shape[1]
    obs0 = np.nan_to_num(panel.observed)
    wk = np.stack([obs0[:, a:b].sum(1) for a, b in zip(blocks.a, blocks.b, strict=True)], 1)
    past_mean = np.stack([wk[:, max(0, j - 52) : j].mean(1) for j in range(fp, fp + n_w)], 1)
    eligible = past_mean >= 1.0
    eligible[:, :8] = False
    eligible[:, -1] = False
    out = []
    for size, n in ROUNDS:
        ob = plant_outbreaks(panel, rng, n=n, size_sd=size, eligible=eligible, sd=sd_all)
        obs = obs0 + ob.added
        planted = Panel(
            zones=panel.zones, days=panel.days,
            observed=np.where(np.isfinite(panel.observed), obs, np.nan),
            expected=panel.expected, period=panel.period, day_ends=panel.day_ends,
        )  # fmt: skip
        tab = ob.table.copy()
        z, w = tab["zone"].to_numpy(), tab["week"].to_numpy()
        w1 = np.minimum(w + 1, n_w - 1)
        q = weekly_flags(planted, nbr, dispersion=alpha).q_min
        tab["vigie"] = -np.log10(np.minimum(q[z, w], q[z, w1]))
        ears = ears_scores(planted.observed, blocks)
        for name, s in ears.items():
            tab[name] = np.maximum(s[z, w], s[z, w1])
        for name, v in nssp_outbreaks(panel, blocks, obs, tab).items():
            tab[name] = v.max(axis=1)
        out.append(tab)
    return pd.concat(out, ignore_index=True)


def _section(
    scores: dict[str, np.ndarray],
    thr: dict[str, float],
    rows: pd.DataFrame,
    vigie_fpr: float,
    panel: Panel,
    t_run: float,
    seconds: float,
) -> Section:
    names = list(scores)
    n_zw = scores["vigie"].size
    lines = [
        f"{n_zw:,} real zone-weeks (77 community areas x {scores['vigie'].shape[1]} weeks, "
        f"2016-W01 to 2019-W52), {len(rows)} planted outbreaks "
        + ", ".join(
            f"{(rows['size_sd'] == s).sum()} of {s:g} SD" for s in sorted(rows["size_sd"].unique())
        )
        + f" (median {rows.loc[rows['size_sd'] == 3, 'cases'].median():.0f} cases at 3 SD).",
        "",
        "**At vigie's observed false-alarm rate** (its weekly runs at FDR 0.05; every peer "
        "calibrated to the same rate on the same zone-weeks):",
        "",
        "| detector | false alarms on real zone-weeks | POD 2 SD | POD 3 SD | POD 4 SD |",
        "|---|---|---|---|---|",
    ]
    pod3 = {}
    figures: dict = {"vigie_fpr": vigie_fpr, "pod": {}, "fpr": {}, "curves": {}}
    for n in names:
        fpr = float((scores[n] > thr[n]).mean())
        det = rows[n] > thr[n]
        pods = {s: float(det[rows["size_sd"] == s].mean()) for s in (2.0, 3.0, 4.0)}
        pod3[n] = pods[3.0]
        figures["pod"][n], figures["fpr"][n] = pods[3.0], fpr
        lines.append(
            f"| {n} | {100 * fpr:.2f} % | {100 * pods[2.0]:.0f} % | {100 * pods[3.0]:.0f} % "
            f"| {100 * pods[4.0]:.0f} % |"
        )
    best = max((n for n in names if n != "vigie"), key=lambda n: pod3[n])
    margin = 100 * (pod3["vigie"] - pod3[best])
    lines += [
        "",
        "**POD of 3 SD outbreaks against the false-alarm rate** (each detector's threshold set "
        "to flag at most that share of the real zone-weeks):",
        "",
        "| detector | " + " | ".join(f"FPR {100 * f:g} %" for f in FPR_GRID) + " |",
        "|---|" + "---|" * len(FPR_GRID),
    ]
    big = rows["size_sd"] == 3.0
    for n in names:
        cells = []
        for f in FPR_GRID:
            t = threshold_at(scores[n], f)
            cells.append(f"{100 * (rows.loc[big, n] > t).mean():.0f} %")
        figures["curves"][n] = cells
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- vigie's flag rate on the real zone-weeks: **{100 * vigie_fpr:.2f} %** "
        f"({'within' if vigie_fpr <= 0.02 else 'above'} the 2 % target).",
        f"- At that rate, vigie detects **{100 * pod3['vigie']:.0f} %** of the 3 SD outbreaks, "
        f"the best peer ({best}) {100 * pod3[best]:.0f} %: margin **{margin:+.0f} points** "
        f"(target >= 0, goal +10).",
        f"- `vigie signals --from {FIRST} --to {LAST} --no-model` on this store (the whole "
        f"retrospective, 208 weekly reviews of 77 zones) took {t_run:.1f} s.",
        "- How vigie's weekly test was chosen (the larger of the 3-day and week excesses over "
        "an expectation rescaled to the zone's last 4 weeks, calibrated on the 52 weeks before "
        "with a tail anchored on the reference's 90th and 98th percentiles, shape 0.1): on "
        "outbreaks planted with seeds 101 and 102 and on the null test "
        "of permuted real weeks (`tests/test_detectors_null.py`), never on these (seed 0). "
        "The tail fitted to the reference's top values it replaces compared each outbreak with "
        "the other planted ones (1.3 % of the zone-weeks): at equal false-alarm rate it found "
        "half as many.",
    ]
    figures |= {"best_peer": best, "margin_points": margin, "retrospective_seconds": t_run}
    data = (
        "Chicago CTA-premises crimes 2015-2019 (../shared/data/chicago-cta-2015-2019), "
        f"outbreaks planted with seed 0; {seconds:.0f} s"
    )
    return Section(
        "Detectors on real data (Chicago, planted outbreaks)", "\n".join(lines), data, figures
    )


if __name__ == "__main__":
    print(run().markdown)
