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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError
from features.store import Store
from features.timeutil import as_utc
from pipelines.signals.drift import drift_null
from pipelines.signals.evaluation import (
    Evaluation,
    EvaluationSettings,
    acceptance,
    detector_scores,
    nominal_pipeline,
)
from pipelines.signals.expectation import estimate_dispersion, fallback_expected, model_expected
from pipelines.signals.harness import (
    Calibration,
    Week,
    calibrate,
    null_pipeline_runs,
    outbreak_replicates,
)
from pipelines.signals.inputs import build_panel, zone_neighbours
from pipelines.signals.panel import Panel
from pipelines.signals.period import Period
from pipelines.signals.scan import scan_null

log = logging.getLogger(__name__)


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
    replicates, pipeline_replicates, null_replicates
        Outbreak replicates; how many of them also go through the weekly pipeline at ``fdr``;
        parametric null replicates of that pipeline (the FDR check).
    sizes, durations
        Outbreak sizes in SDs of the zone's weekly count; durations in days.
    eval_weeks, history_days
        How many of the cube's last complete weeks serve; the look-back before each (cut to 28
        days when the cube is too short for three weeks).
    target_fpr, calibration_units
        FPR per zone-week at which detectors are compared; null zone-weeks wanted to set the
        thresholds (parametric ones when the cube has fewer outbreak-free ones).
    n_sim, k_neighbours, max_window, seed
        Monte Carlo replicates of the pipeline's p values; the scan's sizes; the seed.
    truth
        truth.json (dict or path) of a synthetic city (planted zone-weeks are left out);
        looked for beside the store when None.
    use_model, write
        Use the store's fitted model when there is one; write ``signals/evaluation.json``.

    Returns
    -------
    Evaluation

    Raises
    ------
    InputError
        When the cube has no incidents or too short a history.
    """
    st = store if isinstance(store, Store) else Store(store)
    data = load_evaluation_data(st, truth=truth, use_model=use_model, history_days=history_days)
    neighbours = _neighbours(st, data.zones, k=k_neighbours)
    weeks, expectation = evaluation_weeks(
        st, data, data.periods[-eval_weeks:], neighbours, use_model=use_model, n_sim=n_sim,
        seed=seed, max_window=max_window,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    cal = calibrate(weeks, neighbours, rng, target_fpr=target_fpr,
                    calibration_units=calibration_units, max_window=max_window)  # fmt: skip
    reps, pipe_rows = outbreak_replicates(
        weeks, neighbours, rng, cal, replicates=replicates, sizes=sizes, durations=durations,
        pipeline_replicates=pipeline_replicates, fdr=fdr, max_window=max_window,
    )  # fmt: skip
    null_runs = null_pipeline_runs(weeks, neighbours, rng, null_replicates=null_replicates,
                                   fdr=fdr, max_window=max_window)  # fmt: skip
    ev = _assemble(
        cal, reps, pipe_rows, null_runs, weeks, fdr=fdr, target_fpr=target_fpr,
        zones=len(data.zones), settings=dict(
            replicates=replicates, null_replicates=null_replicates, sizes_sd=tuple(sizes),
            durations_days=tuple(durations), history_days=data.history_days, monte_carlo=n_sim,
            seed=seed, expectation=expectation),
    )  # fmt: skip
    return ev.save(st) if write else ev


def _neighbours(st: Store, zones: list[str], *, k: int) -> np.ndarray | None:
    """The zones' nearest neighbours, or None (no scan) on any geometry problem."""
    try:
        return zone_neighbours(st, zones, k=k)
    except Exception as exc:  # noqa: BLE001 - any geometry problem only disables the scan
        log.info("no scan in the evaluation: %s", exc)
        return None


def _assemble(
    cal: Calibration,
    reps: pd.DataFrame,
    pipe_rows: list[dict],
    null_runs: list[int],
    weeks: list[Week],
    *,
    fdr: float,
    target_fpr: float,
    zones: int,
    settings: dict,
) -> Evaluation:
    """The typed result from the calibration, the replicates and the pipeline's runs."""
    det = detector_scores(
        reps, names=[*cal.names, "vigie"], thresholds=cal.thresholds, fpr_null=cal.fpr_null,
        fpr_real=cal.fpr_real,
    )  # fmt: skip
    nominal = nominal_pipeline(pipe_rows, null_runs, fdr=fdr, zones=zones)
    return Evaluation(
        detectors=det,
        nominal=nominal,
        acceptance=acceptance(
            det,
            nominal,
            target_fpr=target_fpr,
            calibration=cal.label,
            n_units=cal.n_units,
            n_real=cal.n_real,
        ),  # fmt: skip
        settings=EvaluationSettings(
            **settings,
            pipeline_replicates=len(pipe_rows),
            eval_weeks=tuple(w.period.label for w in weeks),
            truth_zone_weeks_excluded=int(sum(w.excluded.sum() for w in weeks)),
        ),
        replicates=reps,
    )


@dataclass(frozen=True)
class EvaluationData:
    """What the evaluation reads: the cube's rows, its weeks, zones and the planted truth.

    Attributes
    ----------
    frame
        Cube rows (local_date as dates, incidents numeric).
    timezone
        The cube's time zone.
    periods
        Every complete week with ``history_days`` before it.
    history_days
        The look-back (cut to 28 days when the cube is too short for three weeks).
    zones
        Sorted zone ids.
    planted
        Planted truth windows ``(zones, start, end)`` of a synthetic city.
    model
        Whether the store has a fitted model to use.
    """

    frame: pd.DataFrame
    timezone: str
    periods: list[Period]
    history_days: int
    zones: list[str]
    planted: list[tuple[set[str], pd.Timestamp, pd.Timestamp]]
    model: bool


def load_evaluation_data(
    st: Store, *, truth: dict | str | Path | None, use_model: bool, history_days: int
) -> EvaluationData:
    """Read the cube, the truth file and the evaluation weeks.

    Raises
    ------
    InputError
        When the cube has no incidents or too short a history.
    """
    meta = st.cube_meta()
    if "incidents" not in meta.get("columns", []):
        raise InputError(
            f"{st.root}: the cube has no incidents, so there is nothing to inject outbreaks into; "
            "the evaluation needs an incidents source."
        )
    truth_doc: dict | None = (
        json.loads(Path(truth).read_text()) if isinstance(truth, (str, Path)) else truth
    )
    if truth_doc is None:
        truth_doc = _find_truth(st)
    read_all = use_model and st.model_file("models.json").exists()
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
    return EvaluationData(
        frame=frame,
        timezone=meta.get("timezone") or st.timezone,
        periods=periods,
        history_days=history_days,
        zones=sorted(frame["zone_id"].astype(str).unique()),
        planted=_truth_windows(truth_doc),
        model=read_all,
    )


def evaluation_weeks(
    st: Store,
    data: EvaluationData,
    periods: list[Period],
    neighbours: np.ndarray | None,
    *,
    use_model: bool,
    n_sim: int,
    seed: int,
    max_window: int,
) -> tuple[list[Week], str]:
    """The evaluation weeks, with null replicates for the last four (the pipeline's weeks).

    Returns
    -------
    tuple
        The weeks, and where the expectation came from (``model`` or ``fallback (<why>)``;
        once the model fails for a week, the later weeks use the fallback too).
    """
    source, how = ("model", "") if data.model else ("fallback", "no model in the store")
    weeks = []
    for i, per in enumerate(periods):
        sub, source, how = _week_rows(st, data, per, source=source, how=how)
        panel = build_panel(
            sub, zones=data.zones, period=per, timezone=data.timezone,
            history_days=data.history_days,
        )  # fmt: skip
        week = _week(panel, per, data)
        if i >= len(periods) - max(1, min(len(periods), 4)):
            week = _with_nulls(week, neighbours, n_sim=n_sim, seed=seed, i=i, max_window=max_window)
        weeks.append(week)
    return weeks, source if source == "model" else f"fallback ({how})"


def _week_rows(
    st: Store, data: EvaluationData, per: Period, *, source: str, how: str
) -> tuple[pd.DataFrame, str, str]:
    """The week's rows and its look-back with their expected incidents (column ``expected``)."""
    ps, _ = per.bounds(data.timezone)
    frame = data.frame
    first_hist = per.first - dt.timedelta(days=data.history_days)
    sub = frame[(frame["local_date"] >= first_hist) & (frame["local_date"] <= per.last)]
    sub = sub.reset_index(drop=True)
    exp = None
    if source == "model":
        exp, how = model_expected(st, sub)
        if exp is None or not np.isfinite(exp).any():
            source, exp = "fallback", None
    if exp is None:
        exp = fallback_expected(sub, fit_end=ps)
    return sub.assign(expected=exp), source, how


def _week(panel: Panel, per: Period, data: EvaluationData) -> Week:
    """A week with its dispersion, zones' weekly SD and the zones holding planted truth."""
    ps, pe = per.bounds(data.timezone)
    p0 = panel.period[0]
    alpha = estimate_dispersion(panel.observed[:, :p0], panel.expected[:, :p0])
    # SD of the zone's count over the week under the baseline model (NB2), as Noufaily
    # et al. size outbreaks in SDs of the baseline count
    ew = np.where(panel.valid, panel.expected, 0.0)[:, p0 : panel.period[1]]
    weekly_sd = np.maximum(np.sqrt(ew.sum(axis=1) + alpha * (ew**2).sum(axis=1)), 1.0)
    excluded = np.array(
        [any(z in zs and a < pe and b > ps for zs, a, b in data.planted) for z in data.zones]
    )
    return Week(per, panel, alpha, weekly_sd, excluded)


def _with_nulls(
    week: Week, neighbours: np.ndarray | None, *, n_sim: int, seed: int, i: int, max_window: int
) -> Week:
    """The week with null replicates of the drift charts and (with neighbours) the scan."""
    nd = drift_null(week.panel, dispersion=week.dispersion, n_sim=n_sim, seed=seed + 11 * i)
    ns = None
    if neighbours is not None:
        ns = scan_null(
            week.panel, neighbours, max_window=max_window, n_sim=n_sim, seed=seed + 13 * i,
            dispersion=week.dispersion,
        )  # fmt: skip
    return Week(week.period, week.panel, week.dispersion, week.weekly_sd, week.excluded, nd, ns)


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
