"""The typed result of the detectors' evaluation (``store/signals/evaluation.json``).

:func:`summarise` turns the outbreak replicates, the weekly pipeline's runs and the calibration
into :class:`Evaluation`'s parts; ``Evaluation.to_json()`` is the JSON written to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import beta

from features.store import Store


def _flat(obj: Any) -> dict[str, Any]:
    """The fields of a flat dataclass as a dict, tuples as lists (as JSON holds them)."""
    return {
        f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v for f in fields(obj)
    }


@dataclass(frozen=True)
class DetectorScore:
    """One detector at its threshold for the target false-positive rate.

    Attributes
    ----------
    threshold
        Statistic above which a zone-week is flagged.
    fpr_zone_week, fpr_observed_zone_weeks
        Share of the null (calibration) zone-weeks flagged, and of the cube's own outbreak-free
        zone-weeks (None without them).
    pod, pod_3sd_plus, pod_by_size
        Probability of detection overall, for outbreaks of 3 SD or more, and by size.
    ppv_one_outbreak_per_week
        Flags on the outbreak over all flags, in weeks with one outbreak.
    median_delay_days, mean_delay_days
        Days from the outbreak's first day to the first flag, when detected.
    """

    threshold: float
    fpr_zone_week: float
    fpr_observed_zone_weeks: float | None
    pod: float
    pod_3sd_plus: float | None
    pod_by_size: dict[str, float]
    ppv_one_outbreak_per_week: float | None
    median_delay_days: float | None
    mean_delay_days: float | None

    def to_json(self) -> dict[str, Any]:
        return _flat(self) | {"pod_by_size": dict(self.pod_by_size)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DetectorScore:
        vals: dict[str, Any] = {f.name: d.get(f.name) for f in fields(cls)}
        return cls(**vals)


@dataclass(frozen=True)
class PipelineOutbreaks:
    """The weekly pipeline at its nominal FDR on outbreak replicates."""

    outbreak_runs: int
    pod: float
    pod_3sd_plus: float | None
    false_discovery_proportion: float


@dataclass(frozen=True)
class PipelineNulls:
    """The weekly pipeline on parametric null replicates (every signal is false).

    ``share_null_runs_with_a_signal_ci95`` is the Clopper-Pearson 95 % interval of the share.
    """

    null_runs: int
    share_null_runs_with_a_signal: float
    share_null_runs_with_a_signal_ci95: tuple[float, float]
    false_signals_per_null_run: float
    false_signals_per_zone_week: float


@dataclass(frozen=True)
class NominalPipeline:
    """The full weekly pipeline (BH over excess, drift and scan tests) at its nominal FDR."""

    fdr: float
    outbreaks: PipelineOutbreaks | None = None
    nulls: PipelineNulls | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fdr": self.fdr}
        for part in (self.outbreaks, self.nulls):
            if part is not None:
                out.update(_flat(part))
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NominalPipeline:
        def part(kind: type) -> Any:
            names = [f.name for f in fields(kind)]
            if names[0] not in d:
                return None
            vals: dict[str, Any] = {n: d.get(n) for n in names}
            if kind is PipelineNulls:
                vals["share_null_runs_with_a_signal_ci95"] = tuple(
                    vals["share_null_runs_with_a_signal_ci95"]
                )
            return kind(**vals)

        return cls(d["fdr"], part(PipelineOutbreaks), part(PipelineNulls))


@dataclass(frozen=True)
class Acceptance:
    """The acceptance checks of the best non-EARS detector (by POD for sizes >= 3 SD)."""

    target_fpr: float
    calibration: str
    calibration_zone_weeks: int
    observed_outbreak_free_zone_weeks: int
    best_detector: str
    fpr_at_most_target: bool
    pod_3sd_plus_at_least_80pct: bool
    beats_ears_c2_at_equal_fpr: bool
    null_fdr_at_most_nominal: bool | None
    null_fdr_point_estimate_at_most_nominal: bool | None


@dataclass(frozen=True)
class EvaluationSettings:
    """How the evaluation was run (the ``settings`` of the JSON)."""

    replicates: int
    null_replicates: int
    pipeline_replicates: int
    sizes_sd: tuple[float, ...]
    durations_days: tuple[int, ...]
    eval_weeks: tuple[str, ...]
    history_days: int
    monte_carlo: int
    seed: int
    expectation: str
    truth_zone_weeks_excluded: int


@dataclass(frozen=True)
class Evaluation:
    """Results of :func:`~pipelines.signals.evaluate.evaluate_detectors`.

    Attributes
    ----------
    detectors
        Per detector (``vigie`` is the min-p combination): threshold, FPR, POD, PPV, delay.
    nominal
        The weekly pipeline at its nominal FDR.
    acceptance
        The acceptance checks.
    settings
        How it was run.
    replicates
        One row per outbreak replicate: week, zone, size_sd, duration, cases, and per detector
        ``<name>_detected``, ``<name>_delay`` and ``<name>_false`` (empty after
        :meth:`from_json`).
    path
        Where the JSON was written (None when not written).
    """

    detectors: dict[str, DetectorScore]
    nominal: NominalPipeline
    acceptance: Acceptance
    settings: EvaluationSettings
    replicates: pd.DataFrame = field(default_factory=pd.DataFrame)
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The payload of ``store/signals/evaluation.json``."""
        return {
            "detectors": {n: d.to_json() for n, d in self.detectors.items()},
            "nominal_fdr_pipeline": self.nominal.to_json(),
            "acceptance": _flat(self.acceptance),
            "settings": _flat(self.settings),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Evaluation:
        s = dict(d["settings"])
        for k in ("sizes_sd", "durations_days", "eval_weeks"):
            s[k] = tuple(s[k])
        return cls(
            detectors={n: DetectorScore.from_json(v) for n, v in d["detectors"].items()},
            nominal=NominalPipeline.from_json(d["nominal_fdr_pipeline"]),
            acceptance=Acceptance(**d["acceptance"]),
            settings=EvaluationSettings(**s),
        )

    def save(self, store: Store) -> Evaluation:
        """Write :meth:`to_json` to ``signals/evaluation.json``; the evaluation with its path."""
        return replace(self, path=store.write_json(Store.DETECTORS_JSON, self.to_json()))

    def summary(self) -> str:
        """The detectors' table (FPR, POD >= 3 SD, PPV, median delay), the pipeline, the file."""
        lines = [f"{'detector':<9} {'FPR':>6} {'POD>=3SD':>9} {'PPV':>6} {'delay':>6}"]
        for name, d in self.detectors.items():
            ppv, delay = d.ppv_one_outbreak_per_week, d.median_delay_days
            lines.append(
                f"{name:<9} {d.fpr_zone_week:>6.3f} {d.pod_3sd_plus or 0:>9.2f} "
                f"{'-' if ppv is None else f'{ppv:.2f}':>6} "
                f"{'-' if delay is None else f'{delay:.0f}':>6}"
            )
        nulls = self.nominal.nulls
        if nulls is not None:
            pod = self.nominal.outbreaks.pod_3sd_plus if self.nominal.outbreaks else None
            lines.append(
                f"weekly pipeline at FDR {self.nominal.fdr:g}: null runs with a signal "
                f"{nulls.share_null_runs_with_a_signal:.3f}, POD>=3SD {pod or 0:.2f}"
            )
        lines.append(f"evaluation: {self.path}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# from replicates to scores
# ------------------------------------------------------------------------------------------------
def detector_scores(
    reps: pd.DataFrame,
    *,
    names: Sequence[str],
    thresholds: dict[str, float],
    fpr_null: dict[str, float],
    fpr_real: dict[str, float | None],
) -> dict[str, DetectorScore]:
    """Each detector's score over the outbreak replicates."""
    big = reps["size_sd"] >= 3
    out = {}
    for n in names:
        d = reps[f"{n}_detected"]
        tp = int(d.sum())
        fp = int(reps[f"{n}_false"].sum())
        out[n] = DetectorScore(
            threshold=thresholds[n],
            fpr_zone_week=fpr_null[n],
            fpr_observed_zone_weeks=fpr_real[n],
            pod=float(d.mean()),
            pod_3sd_plus=float(d[big].mean()) if big.any() else None,
            pod_by_size={f"{k:g}": float(g.mean()) for k, g in d.groupby(reps["size_sd"])},
            ppv_one_outbreak_per_week=tp / (tp + fp) if tp + fp else None,
            median_delay_days=float(reps.loc[d, f"{n}_delay"].median()) if tp else None,
            mean_delay_days=float(reps.loc[d, f"{n}_delay"].mean()) if tp else None,
        )
    return out


def nominal_pipeline(
    pipe_rows: list[dict], null_runs: list[int], *, fdr: float, zones: int
) -> NominalPipeline:
    """The weekly pipeline's POD and false discoveries on outbreaks, and its null runs."""
    pipe = pd.DataFrame(pipe_rows)
    outbreaks = nulls = None
    if len(pipe):
        bigp = pipe["size_sd"] >= 3
        outbreaks = PipelineOutbreaks(
            outbreak_runs=len(pipe),
            pod=float(pipe["detected"].mean()),
            pod_3sd_plus=float(pipe.loc[bigp, "detected"].mean()) if bigp.any() else None,
            false_discovery_proportion=float(
                (pipe["signals"] - pipe["true_signals"]).sum() / max(1, pipe["signals"].sum())
            ),
        )
    if null_runs:
        arr = np.asarray(null_runs)
        k, n = int((arr > 0).sum()), len(arr)
        lo = float(beta.ppf(0.025, k, n - k + 1)) if k else 0.0
        hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
        nulls = PipelineNulls(
            null_runs=n,
            share_null_runs_with_a_signal=k / n,
            share_null_runs_with_a_signal_ci95=(lo, hi),
            false_signals_per_null_run=float(arr.mean()),
            false_signals_per_zone_week=float(arr.mean() / max(1, zones)),
        )
    return NominalPipeline(fdr, outbreaks, nulls)


def acceptance(
    det: dict[str, DetectorScore],
    nominal: NominalPipeline,
    *,
    target_fpr: float,
    calibration: str,
    n_units: int,
    n_real: int,
) -> Acceptance:
    """The acceptance checks of the best non-EARS detector.

    Under the complete null every signal is false, so FDR = P(any signal); the null check
    passes when the nominal level is inside or above the Clopper-Pearson 95 % interval.
    """
    best = max((n for n in det if not n.startswith("ears")), key=lambda n: det[n].pod_3sd_plus or 0)
    c2 = (det["ears_c2"].pod_3sd_plus if "ears_c2" in det else None) or 0.0
    b = det[best]
    nulls, fdr = nominal.nulls, nominal.fdr
    return Acceptance(
        target_fpr=target_fpr,
        calibration=calibration,
        calibration_zone_weeks=n_units,
        observed_outbreak_free_zone_weeks=n_real,
        best_detector=best,
        fpr_at_most_target=b.fpr_zone_week <= target_fpr + 1e-12,
        pod_3sd_plus_at_least_80pct=(b.pod_3sd_plus or 0) >= 0.8,
        beats_ears_c2_at_equal_fpr=(b.pod_3sd_plus or 0) > c2,
        null_fdr_at_most_nominal=(
            nulls.share_null_runs_with_a_signal_ci95[0] <= fdr if nulls else None
        ),
        null_fdr_point_estimate_at_most_nominal=(
            nulls.share_null_runs_with_a_signal <= fdr if nulls else None
        ),
    )
