"""Evaluation harness: injected outbreaks and null replicates, detector by detector.

The design follows Noufaily et al. (2013): outbreaks are added to real baseline series in many
replicates, in different zones, of different sizes (in standard deviations of the zone's weekly
count) and durations, and the detectors are judged on

- **FPR**: the share of outbreak-free zone-weeks that a detector flags;
- **POD**: the probability of detecting an outbreak (its zone flagged on or after its first day,
  within its week);
- **PPV**: the share of flagged zone-weeks that hold the outbreak, in weeks with one outbreak;
- **delay**: days from the outbreak's first day to the first flag.

Every daily detector (excess, CUSUM, EWMA, space-time scan, EARS C1/C2/C3) is compared at the
*same* FPR: each gets the threshold that flags ``target_fpr`` of the null zone-weeks (the
cube's own outbreak-free zone-weeks, planted truth excluded, when there are enough of them;
otherwise parametric null zone-weeks drawn from the expectation, with the FPR on the cube's own
zone-weeks reported beside). ``vigie`` combines excess, CUSUM,
EWMA and scan by the min-p rule (a zone-week's score is its largest null percentile across the
four; Westfall & Young 1993), calibrated the same way.

The full weekly pipeline at its nominal FDR (Benjamini-Hochberg over excess, drift and scan
tests, Monte Carlo p values) is run on outbreak replicates and on *parametric null replicates*
(counts drawn from the expectation, so every signal is false): the share of null runs with any
signal estimates the FDR under the complete null and must stay at or below the nominal level.

References
----------
Noufaily, A., Enki, D. G., Farrington, P., Garthwaite, P., Andrews, N. & Charlett, A. (2013).
An improved algorithm for outbreak detection in multiple surveillance systems. Stat. Med. 32(7),
1206-1222.
Hutwagner, L. et al. (2003). J. Urban Health 80(suppl. 1), i89-i96 (EARS C1-C3).
Fricker, R. D., Hegler, B. L. & Dunfee, D. A. (2008). Stat. Med. 27, 3407-3429 (comparison at
equal false-alarm rate).
Westfall, P. H. & Young, S. S. (1993). Resampling-Based Multiple Testing. Wiley (min-p).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError
from features.store import Store
from features.timeutil import as_utc
from pipelines.signals.drift import (
    cusum_path,
    drift_null,
    drift_tests,
    ewma_path,
    standardised_residuals,
)
from pipelines.signals.ears import ears_statistic
from pipelines.signals.excess import excess_tests
from pipelines.signals.expectation import estimate_dispersion, fallback_expected, model_expected
from pipelines.signals.inputs import build_panel, zone_neighbours
from pipelines.signals.panel import P_FLOOR, Panel
from pipelines.signals.period import Period
from pipelines.signals.pvalues import benjamini_hochberg, count_upper_p, simulate_counts
from pipelines.signals.scan import scan_null, space_time_scan

log = logging.getLogger(__name__)

#: daily detectors compared at equal FPR.
DETECTORS = ("excess", "cusum", "ewma", "scan", "ears_c1", "ears_c2", "ears_c3")
#: the detectors combined into ``vigie``.
COMBINED = ("excess", "cusum", "ewma", "scan")


# ------------------------------------------------------------------------------------------------
# prospective daily statistics
# ------------------------------------------------------------------------------------------------
def daily_statistics(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    dispersion: float = 0.0,
    k: float = 0.5,
    lam: float = 0.2,
    max_window: int = 14,
) -> dict[str, np.ndarray]:
    """Each detector's statistic per zone and period day, using data up to that day only.

    Returns
    -------
    dict
        name -> array (Z, period days); larger is more alarming. ``excess`` is -log10 of the
        smaller of the day's and the trailing 7 days' Poisson/NB p values; ``cusum`` and
        ``ewma`` the chart values; ``scan`` the largest LLR of a cylinder containing the zone
        and ending that day; ``ears_c*`` the EARS statistics on the raw counts.
    """
    p0, p1 = panel.period
    valid = panel.valid
    o = np.where(valid, panel.observed, 0.0)
    e = np.where(valid, panel.expected, 0.0)
    p_day = count_upper_p(o, np.where(valid, e, np.nan), dispersion=dispersion)
    co = np.concatenate([np.zeros((o.shape[0], 1)), np.cumsum(o, axis=1)], axis=1)
    ce = np.concatenate([np.zeros((e.shape[0], 1)), np.cumsum(e, axis=1)], axis=1)
    t = np.arange(p0, p1)
    lo = np.maximum(t + 1 - 7, 0)
    o7 = co[:, t + 1] - co[:, lo]
    e7 = ce[:, t + 1] - ce[:, lo]
    p7 = count_upper_p(o7, np.where(e7 > 0, e7, np.nan), dispersion=dispersion)
    pmin = np.fmin(np.nan_to_num(p_day[:, p0:p1], nan=1.0), np.nan_to_num(p7, nan=1.0))
    out = {"excess": -np.log10(np.clip(pmin, P_FLOOR, 1.0))}
    z = standardised_residuals(
        panel.observed[:, :p1], panel.expected[:, :p1], dispersion=dispersion
    )
    out["cusum"] = cusum_path(z, k=k)[:, p0:p1]
    out["ewma"] = ewma_path(z, lam=lam)[:, p0:p1]
    if neighbours is not None:
        out["scan"] = space_time_scan(
            panel, neighbours, max_window=max_window, n_sim=0
        ).zone_day_llr
    raw = np.where(np.isfinite(panel.observed), panel.observed, 0.0)
    for m in ("C1", "C2", "C3"):
        out[f"ears_{m.lower()}"] = np.nan_to_num(
            ears_statistic(raw, method=m)[:, p0:p1], nan=-np.inf
        )
    return out


# ------------------------------------------------------------------------------------------------
# the harness
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Week:
    period: Period
    panel: Panel
    dispersion: float
    weekly_sd: np.ndarray
    excluded: np.ndarray  # (Z,) zone-week holds planted truth
    null_drift: dict[str, np.ndarray] | None = None
    null_scan: np.ndarray | None = None


@dataclass(frozen=True)
class Evaluation:
    """Results of :func:`evaluate_detectors` (also written to ``signals/evaluation.json``).

    Attributes
    ----------
    summary
        The JSON payload: settings, per-detector threshold / FPR / POD (overall, by size, for
        sizes >= 3 SD) / PPV / delay, the nominal-FDR pipeline's figures and the acceptance
        checks.
    replicates
        One row per outbreak replicate: week, zone, size_sd, duration, cases, and per detector
        ``<name>_detected`` and ``<name>_delay``.
    path
        Where the JSON was written (None when ``write=False``).
    """

    summary: dict[str, Any]
    replicates: pd.DataFrame
    path: Path | None = field(default=None)


def _truth_windows(truth: dict | None) -> list[tuple[set[str], pd.Timestamp, pd.Timestamp]]:
    out = []
    for s in (truth or {}).get("signals", []):
        try:
            out.append((set(map(str, s["zones"])), as_utc(s["start"]), as_utc(s["end"])))
        except (KeyError, ValueError, TypeError):
            continue
    return out


def _find_truth(st: Store) -> dict | None:
    for p in (
        st.root / "truth.json",
        st.root.parent / "truth.json",
        st.root.parent / "raw" / "truth.json",
    ):
        if p.exists():
            try:
                return json.loads(p.read_text())
            except json.JSONDecodeError:
                return None
    return None


def _weeks_available(frame_dates: Sequence[dt.date], history_days: int) -> list[Period]:
    first, last = min(frame_dates), max(frame_dates)
    start = first + dt.timedelta(days=history_days)
    start += dt.timedelta(days=(7 - start.weekday()) % 7)
    weeks = []
    d = start
    while d + dt.timedelta(days=6) <= last:
        iso = d.isocalendar()
        weeks.append(Period(f"{iso[0]}-W{iso[1]:02d}", d, d + dt.timedelta(days=6)))
        d += dt.timedelta(days=7)
    return weeks


def _inject(
    rng: np.random.Generator, week: _Week, zone: int, size_sd: float, duration: int, start_day: int
) -> tuple[np.ndarray, int]:
    """Outbreak cases added to the panel's observed counts (after Noufaily et al. 2013).

    The outbreak holds Poisson(size_sd x SD) cases, SD being the standard deviation of the
    zone's count over the week under the baseline model (NB2: ``sqrt(sum E + alpha sum E^2)``),
    spread over ``duration`` days from ``start_day`` (a period day index) with log-normal(0, 0.5)
    day weights.
    """
    n = int(rng.poisson(size_sd * week.weekly_sd[zone]))
    w = rng.lognormal(0.0, 0.5, duration)
    added = np.zeros_like(week.panel.observed)
    t0 = week.panel.period[0] + start_day
    added[zone, t0 : t0 + duration] = rng.multinomial(n, w / w.sum())
    return added, n


def _pipeline_flags(
    week: _Week,
    observed: np.ndarray,
    neighbours: np.ndarray | None,
    *,
    fdr: float,
    max_window: int,
) -> list[set[int]]:
    """Zones of each significant incident signal of the weekly pipeline (BH at ``fdr``)."""
    panel = replace(week.panel, observed=observed)
    parts = [
        excess_tests(panel, dispersion=week.dispersion),
        drift_tests(panel, dispersion=week.dispersion, null=week.null_drift),
    ]
    if neighbours is not None:
        parts.append(
            space_time_scan(
                panel,
                neighbours,
                max_window=max_window,
                null_max=week.null_scan,
                dispersion=week.dispersion,
            ).clusters
        )
    tests = pd.concat([p for p in parts if len(p)], ignore_index=True)
    q = benjamini_hochberg(tests["p_value"].to_numpy(float))
    index = {z: i for i, z in enumerate(panel.zones)}
    flags = [{index[z] for z in zs} for zs, qq in zip(tests["zones"], q, strict=True) if qq < fdr]
    truth = set(np.flatnonzero(week.excluded))
    return [
        f for f in flags if not f & truth
    ]  # signals on planted truth are neither true nor false


def evaluate_detectors(
    store: str | Path | Store,
    *,
    replicates: int = 400,
    null_replicates: int = 200,
    pipeline_replicates: int = 100,
    sizes: Sequence[float] = (1, 2, 3, 4, 5),
    durations: Sequence[int] = (1, 2, 3, 5, 7),
    eval_weeks: int = 8,
    target_fpr: float = 0.01,
    calibration_units: int = 2000,
    fdr: float = 0.05,
    history_days: int = 56,
    n_sim: int = 199,
    k_neighbours: int = 8,
    max_window: int = 14,
    truth: dict | str | Path | None = None,
    use_model: bool = True,
    seed: int = 0,
    write: bool = True,
) -> Evaluation:
    """Inject outbreaks into the cube's incident series and score every detector.

    Parameters
    ----------
    store
        A store with a cube holding incidents.
    replicates
        Outbreak replicates (one outbreak each: week, zone, size, duration, start drawn at
        random).
    null_replicates
        Parametric null replicates of the weekly pipeline (FDR check).
    pipeline_replicates
        Outbreak replicates also run through the weekly pipeline at its nominal FDR.
    sizes
        Outbreak sizes in SDs of the zone's weekly count.
    durations
        Outbreak durations in days (within one week).
    eval_weeks
        How many of the cube's last complete weeks (with ``history_days`` before them) serve
        as evaluation weeks.
    history_days
        Look-back days before each evaluation week (drift charts, EARS baselines, fallback
        expectation); cut to 28 when the cube is too short for three evaluation weeks.
    target_fpr
        False-positive rate per zone-week at which detectors are compared.
    calibration_units
        Outbreak-free zone-weeks wanted to set each detector's threshold at ``target_fpr``. When
        the cube's own outbreak-free zone-weeks (planted truth excluded) are fewer, thresholds
        come from parametric null zone-weeks (the whole panel drawn from the expectation with
        its NB2 dispersion) and the FPR on the cube's own zone-weeks is reported beside.
    fdr
        Nominal FDR of the weekly pipeline.
    n_sim
        Monte Carlo replicates of the pipeline's drift and scan p values.
    truth
        truth.json (dict or path) of a synthetic city: its planted signals' zone-weeks are left
        out of the null zone-weeks and of the outbreak draws. Looked for in the store folder, its
        parent and the parent's ``raw/`` when None.
    use_model
        Use the store's fitted model for the expectation when there is one.

    Returns
    -------
    Evaluation

    Raises
    ------
    InputError
        When the cube has no incidents or too short a history.

    References
    ----------
    Noufaily, A. et al. (2013). Stat. Med. 32(7), 1206-1222.
    Hutwagner, L. et al. (2003). J. Urban Health 80(suppl. 1), i89-i96.
    Benjamini, Y. & Hochberg, Y. (1995). JRSS B 57(1), 289-300.
    """
    st = store if isinstance(store, Store) else Store(store)
    meta = st.cube_meta()
    if "incidents" not in meta.get("columns", []):
        raise InputError(
            f"{st.root}: the cube has no incidents, so there is nothing to inject outbreaks into; "
            "the evaluation needs an incidents source."
        )
    tz = meta.get("timezone") or st.timezone
    if isinstance(truth, (str, Path)):
        truth = json.loads(Path(truth).read_text())
    if truth is None:
        truth = _find_truth(st)
    planted = _truth_windows(truth)
    rng = np.random.default_rng(seed)

    read_all = use_model and (st.models_dir / "models.json").exists()
    cols = ["local_hour", "dow", "local_date", "present", "present_baseline", "incidents"]
    cols = [c for c in cols if c in meta["columns"] or c in ("local_hour", "dow", "local_date")]
    frame = st.cube(columns=None if read_all else cols)
    frame["local_date"] = pd.to_datetime(frame["local_date"]).dt.date
    frame["incidents"] = pd.to_numeric(frame["incidents"], errors="coerce")
    all_dates = sorted(set(frame["local_date"]))
    periods = _weeks_available(all_dates, history_days)
    if len(periods) < 3 and history_days > 28:  # a short cube: four weeks of look-back will do
        history_days = 28
        periods = _weeks_available(all_dates, history_days)
    if len(periods) < 1:
        raise InputError(
            f"{st.root}: the cube is too short to evaluate: it needs {history_days} days of "
            "history plus at least one complete week."
        )
    periods = periods[-eval_weeks:]
    zones = sorted(frame["zone_id"].astype(str).unique())
    source, how = ("model", "") if read_all else ("fallback", "no model in the store")

    neighbours = None
    try:
        neighbours = zone_neighbours(st, zones, k=k_neighbours)
    except Exception as exc:  # noqa: BLE001 - any geometry problem only disables the scan
        log.info("no scan in the evaluation: %s", exc)

    weeks: list[_Week] = []
    for i, per in enumerate(periods):
        ps, pe = per.bounds(tz)
        first_hist = per.first - dt.timedelta(days=history_days)
        sub = frame[(frame["local_date"] >= first_hist) & (frame["local_date"] <= per.last)]
        sub = sub.reset_index(drop=True)
        exp = None
        if source == "model":
            exp, how = model_expected(st, sub)
            if exp is None or not np.isfinite(exp).any():
                source, exp = "fallback", None
        if exp is None:
            exp = fallback_expected(sub, fit_end=ps)
        sub = sub.assign(expected=exp)
        panel = build_panel(sub, zones=zones, period=per, timezone=tz, history_days=history_days)
        p0 = panel.period[0]
        alpha = estimate_dispersion(panel.observed[:, :p0], panel.expected[:, :p0])
        # SD of the zone's count over the week under the baseline model (NB2), as Noufaily
        # et al. size outbreaks in SDs of the baseline count
        ew = np.where(panel.valid, panel.expected, 0.0)[:, p0 : panel.period[1]]
        weekly_sd = np.maximum(np.sqrt(ew.sum(axis=1) + alpha * (ew**2).sum(axis=1)), 1.0)
        excluded = np.array(
            [any(z in zs and a < pe and b > ps for zs, a, b in planted) for z in zones]
        )
        nd = ns = None
        if i >= len(periods) - max(1, min(len(periods), 4)):
            nd = drift_null(panel, dispersion=alpha, n_sim=n_sim, seed=seed + 11 * i)
            if neighbours is not None:
                ns = scan_null(
                    panel,
                    neighbours,
                    max_window=max_window,
                    n_sim=n_sim,
                    seed=seed + 13 * i,
                    dispersion=alpha,
                )
        weeks.append(_Week(per, panel, alpha, weekly_sd, excluded, nd, ns))

    names = [d for d in DETECTORS if d != "scan" or neighbours is not None]
    comb = [d for d in COMBINED if d in names]

    # --- null zone-weeks: thresholds at the target FPR -----------------------------------------
    observed_scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for w in weeks:
        s = daily_statistics(w.panel, neighbours, dispersion=w.dispersion, max_window=max_window)
        keep = ~w.excluded
        for n in names:
            observed_scores[n].append(s[n].max(axis=1)[keep])
    real = {n: np.concatenate(v) for n, v in observed_scores.items()}
    n_real = len(next(iter(real.values())))
    if n_real >= calibration_units:
        nulls, calibration = real, "observed outbreak-free zone-weeks"
    else:
        # parametric null zone-weeks: the whole panel drawn from the expectation (NB2)
        sim_scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
        per_week = int(np.ceil(calibration_units / max(1, len(zones) * len(weeks))))
        for w in weeks:
            exp = np.where(w.panel.valid, w.panel.expected, 0.0)
            for y in simulate_counts(exp, per_week, rng, w.dispersion):
                panel = replace(w.panel, observed=np.where(w.panel.valid, y, np.nan))
                s = daily_statistics(
                    panel, neighbours, dispersion=w.dispersion, max_window=max_window
                )
                for n in names:
                    sim_scores[n].append(s[n].max(axis=1))
        nulls = {n: np.concatenate(v) for n, v in sim_scores.items()}
        calibration = "parametric null zone-weeks (counts drawn from the expectation)"
    nulls = {n: np.sort(v) for n, v in nulls.items()}
    n_units = len(next(iter(nulls.values())))

    def pct(n: str, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(nulls[n], x, side="right") / len(nulls[n])

    comb_null = np.sort(np.max([pct(n, nulls[n]) for n in comb], axis=0))
    thresholds = {n: float(np.quantile(nulls[n], 1 - target_fpr, method="higher")) for n in names}
    comb_thr = float(np.quantile(comb_null, 1 - target_fpr, method="higher"))
    fpr_null = {n: float(np.mean(nulls[n] > thresholds[n])) for n in names}
    fpr_null["vigie"] = float(np.mean(comb_null > comb_thr))
    real["vigie"] = np.max([pct(n, real[n]) for n in comb], axis=0) if n_real else np.zeros(0)
    thr_all = dict(thresholds, vigie=comb_thr)
    fpr_real = {n: float(np.mean(real[n] > thr_all[n])) if n_real else None for n in thr_all}

    # --- outbreak replicates -------------------------------------------------------------------
    rows = []
    pipe_rows = []
    cand = [(wi, z) for wi, w in enumerate(weeks) for z in range(len(zones)) if not w.excluded[z]]
    pipe_weeks = [i for i, w in enumerate(weeks) if w.null_drift is not None]
    for r in range(replicates):
        wi, z = cand[rng.integers(len(cand))]
        w = weeks[wi]
        size = float(rng.choice(sizes))
        dur = int(rng.choice(durations))
        start = int(rng.integers(0, 7 - dur + 1))
        added, cases = _inject(rng, w, z, size, dur, start)
        obs = w.panel.observed + added
        panel = replace(w.panel, observed=obs)
        s = daily_statistics(panel, neighbours, dispersion=w.dispersion, max_window=max_window)
        row: dict[str, Any] = {
            "week": w.period.label,
            "zone": zones[z],
            "size_sd": size,
            "duration": dur,
            "start_day": start,
            "cases": cases,
        }
        series = {n: s[n] for n in names}
        series["vigie"] = np.max([pct(n, s[n]) for n in comb], axis=0)
        thr = dict(thresholds, vigie=comb_thr)
        for n, arr in series.items():
            hit = np.flatnonzero(arr[z, start:] > thr[n])
            row[f"{n}_detected"] = bool(len(hit))
            row[f"{n}_delay"] = float(hit[0]) if len(hit) else np.nan
            others = np.delete(arr.max(axis=1) > thr[n], z)
            others = others[~np.delete(w.excluded, z)]
            row[f"{n}_false"] = int(others.sum())
        rows.append(row)
        if r < pipeline_replicates and wi in pipe_weeks:
            flags = _pipeline_flags(w, obs, neighbours, fdr=fdr, max_window=max_window)
            pipe_rows.append(
                {
                    "size_sd": size,
                    "detected": any(z in f for f in flags),
                    "signals": len(flags),
                    "true_signals": sum(z in f for f in flags),
                }
            )
    reps = pd.DataFrame(rows)

    # --- parametric nulls through the weekly pipeline ------------------------------------------
    null_runs = []
    for r in range(null_replicates if pipe_weeks else 0):
        w = weeks[pipe_weeks[r % len(pipe_weeks)]]
        exp = np.where(w.panel.valid, w.panel.expected, 0.0)
        y = simulate_counts(exp, 1, rng, w.dispersion)[0]
        y = np.where(w.panel.valid, y, np.nan)
        flags = _pipeline_flags(w, y, neighbours, fdr=fdr, max_window=max_window)
        null_runs.append(len(flags))

    summary = _summarise(
        reps,
        pipe_rows,
        null_runs,
        names=[*names, "vigie"],
        thresholds=thr_all,
        fpr_null=fpr_null,
        fpr_real=fpr_real,
        target_fpr=target_fpr,
        fdr=fdr,
        n_units=n_units,
        n_real=n_real,
        zones=len(zones),
        calibration=calibration,
    )
    summary["settings"] = {
        "replicates": replicates,
        "null_replicates": null_replicates,
        "pipeline_replicates": len(pipe_rows),
        "sizes_sd": list(sizes),
        "durations_days": list(durations),
        "eval_weeks": [w.period.label for w in weeks],
        "history_days": history_days,
        "monte_carlo": n_sim,
        "seed": seed,
        "expectation": source if source == "model" else f"fallback ({how})",
        "truth_zone_weeks_excluded": int(sum(w.excluded.sum() for w in weeks)),
    }
    path = st.write_json("signals/evaluation.json", summary) if write else None
    return Evaluation(summary=summary, replicates=reps, path=path)


def _summarise(
    reps: pd.DataFrame,
    pipe_rows: list[dict],
    null_runs: list[int],
    *,
    names: Sequence[str],
    thresholds: dict[str, float],
    fpr_null: dict[str, float],
    fpr_real: dict[str, float | None],
    target_fpr: float,
    fdr: float,
    n_units: int,
    n_real: int,
    zones: int,
    calibration: str,
) -> dict[str, Any]:
    big = reps["size_sd"] >= 3
    det: dict[str, Any] = {}
    for n in names:
        d = reps[f"{n}_detected"]
        tp = int(d.sum())
        fp = int(reps[f"{n}_false"].sum())
        det[n] = {
            "threshold": thresholds[n],
            "fpr_zone_week": fpr_null[n],
            "fpr_observed_zone_weeks": fpr_real[n],
            "pod": float(d.mean()),
            "pod_3sd_plus": float(d[big].mean()) if big.any() else None,
            "pod_by_size": {f"{k:g}": float(g.mean()) for k, g in d.groupby(reps["size_sd"])},
            "ppv_one_outbreak_per_week": tp / (tp + fp) if tp + fp else None,
            "median_delay_days": float(reps.loc[d, f"{n}_delay"].median()) if tp else None,
            "mean_delay_days": float(reps.loc[d, f"{n}_delay"].mean()) if tp else None,
        }
    pipe = pd.DataFrame(pipe_rows)
    nominal: dict[str, Any] = {"fdr": fdr}
    if len(pipe):
        bigp = pipe["size_sd"] >= 3
        nominal.update(
            {
                "outbreak_runs": len(pipe),
                "pod": float(pipe["detected"].mean()),
                "pod_3sd_plus": float(pipe.loc[bigp, "detected"].mean()) if bigp.any() else None,
                "false_discovery_proportion": float(
                    (pipe["signals"] - pipe["true_signals"]).sum() / max(1, pipe["signals"].sum())
                ),
            }
        )
    if null_runs:
        arr = np.asarray(null_runs)
        from scipy.stats import beta

        k, n = int((arr > 0).sum()), len(arr)
        lo = float(beta.ppf(0.025, k, n - k + 1)) if k else 0.0
        hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
        nominal.update(
            {
                "null_runs": n,
                "share_null_runs_with_a_signal": k / n,
                "share_null_runs_with_a_signal_ci95": [lo, hi],
                "false_signals_per_null_run": float(arr.mean()),
                "false_signals_per_zone_week": float(arr.mean() / max(1, zones)),
            }
        )
    best = max(
        (n for n in names if not n.startswith("ears")), key=lambda n: det[n]["pod_3sd_plus"] or 0
    )
    c2 = det.get("ears_c2", {}).get("pod_3sd_plus") or 0.0
    acc = {
        "target_fpr": target_fpr,
        "calibration": calibration,
        "calibration_zone_weeks": n_units,
        "observed_outbreak_free_zone_weeks": n_real,
        "best_detector": best,
        "fpr_at_most_target": det[best]["fpr_zone_week"] <= target_fpr + 1e-12,
        "pod_3sd_plus_at_least_80pct": (det[best]["pod_3sd_plus"] or 0) >= 0.8,
        "beats_ears_c2_at_equal_fpr": (det[best]["pod_3sd_plus"] or 0) > c2,
        # under the complete null every signal is false, so FDR = P(any signal); the check
        # passes when the nominal level is inside or above the Clopper-Pearson 95 % interval
        "null_fdr_at_most_nominal": (
            nominal["share_null_runs_with_a_signal_ci95"][0] <= fdr if null_runs else None
        ),
        "null_fdr_point_estimate_at_most_nominal": (
            nominal["share_null_runs_with_a_signal"] <= fdr if null_runs else None
        ),
    }
    return {"detectors": det, "nominal_fdr_pipeline": nominal, "acceptance": acc}
