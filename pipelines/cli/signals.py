"""`vigie signals`: the week's weak signals, or the evaluation of the detectors."""

from __future__ import annotations

from pathlib import Path

import typer

from features.errors import InputError
from features.store import Store
from features.timeutil import last_full_week
from pipelines.cli.common import scheduler_option, user_errors
from pipelines.cli.naming import with_zone_names
from pipelines.cli.progress import EVALUATION_STEPS, progress


def _latest_week(store: Store) -> str:
    """The last complete ISO week of the cube (local dates)."""
    meta = store.cube_meta()
    return last_full_week(meta["end"], meta.get("timezone") or store.timezone)


def _evaluate(
    st: Store, *, replicates: int, fdr: float, truth: Path | None, no_model: bool, seed: int
) -> None:
    """`vigie signals --evaluate`: the detectors on injected outbreaks."""
    from pipelines.signals.evaluate import evaluate_detectors

    if truth is not None and not truth.exists():
        raise InputError(f"{truth}: no such truth file (expected the synthetic city's truth.json).")
    with progress(EVALUATION_STEPS, label="vigie signals --evaluate"):
        ev = evaluate_detectors(
            st, replicates=replicates, fdr=fdr, truth=truth, use_model=not no_model, seed=seed
        )
    typer.echo(with_zone_names(ev.summary(), st))


@user_errors
def signals_cmd(
    store: Path = typer.Option(..., "--store", help="Store folder with a cube."),
    week: str = typer.Option(
        None, "--week", help="ISO week, e.g. 2026-W46 (default: the cube's last complete week)."
    ),
    date_from: str = typer.Option(
        None, "--from", help="First local date of the period, e.g. 2026-11-01."
    ),
    date_to: str = typer.Option(None, "--to", help="Last local date of the period (inclusive)."),
    evaluate: bool = typer.Option(
        False, "--evaluate", help="Evaluate the detectors on injected outbreaks instead."
    ),
    fdr: float = typer.Option(
        0.05, "--fdr", min=0.0001, max=0.5, help="Benjamini-Hochberg FDR level."
    ),
    replicates: int = typer.Option(
        400, "--replicates", min=10, help="Outbreak replicates (--evaluate)."
    ),
    truth: Path = typer.Option(
        None, "--truth", help="truth.json of a synthetic city (--evaluate)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the Monte Carlo replicates."),
    no_model: bool = typer.Option(
        False, "--no-model", help="Ignore a fitted model; use the per-capita fallback."
    ),
    top: int = typer.Option(10, "--top", min=0, help="How many signals to print."),
    calibration_weeks: int = typer.Option(
        52,
        "--calibration-weeks",
        min=0,
        help="Past weeks whose zone-weeks calibrate the incident tests (0: the model's tails).",
    ),
    scheduler: str = scheduler_option(),
    zone_blocks: int = typer.Option(
        8, "--zone-blocks", min=1, help="Zone blocks (Dask tasks) of a run with --scheduler."
    ),
) -> None:
    """Weak signals of a period: excess, drift, clusters, presence anomalies, correlations."""
    # the analysis modules load scipy, statsmodels, pandera and the models: imported when the
    # command runs, so that `vigie --help` stays fast
    st = Store(store)
    if evaluate:
        if scheduler:
            raise InputError(
                "--scheduler runs a period's signals on Dask; --evaluate runs in this process: "
                "give one of them."
            )
        _evaluate(st, replicates=replicates, fdr=fdr, truth=truth, no_model=no_model, seed=seed)
        return
    from pipelines.signals.period import parse_period
    from pipelines.signals.run import run_signals

    if week is None and date_from is None and date_to is None:
        week = _latest_week(st)
    period = parse_period(week, start=date_from, end=date_to)
    from features.cube.dask_engine import scheduler as dask_scheduler

    with (
        dask_scheduler(scheduler) as address,
        progress(label=f"vigie signals {period.label}: tests, Monte Carlo and scan"),
    ):
        run = run_signals(
            st,
            period,
            fdr=fdr,
            seed=seed,
            use_model=not no_model,
            calibration_weeks=calibration_weeks,
            address=address,
            zone_blocks=zone_blocks,
        )
    typer.echo(with_zone_names(run.summary(top=top), st))
