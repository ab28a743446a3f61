"""`vigie signals`: the week's weak signals, or the evaluation of the detectors."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import user_errors


def _latest_week(store) -> str:
    """The last complete ISO week of the cube (local dates)."""
    from features.timeutil import last_full_week

    meta = store.cube_meta()
    return last_full_week(meta["end"], meta.get("timezone") or store.timezone)


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
) -> None:
    """Weak signals of a period: excess, drift, clusters, presence anomalies, correlations."""
    from features.errors import InputError
    from features.store import Store

    st = Store(store)
    if evaluate:
        from pipelines.signals.evaluate import evaluate_detectors

        if truth is not None and not truth.exists():
            raise InputError(
                f"{truth}: no such truth file (expected the synthetic city's truth.json)."
            )
        ev = evaluate_detectors(
            st, replicates=replicates, fdr=fdr, truth=truth, use_model=not no_model, seed=seed
        )
        typer.echo(f"{'detector':<9} {'FPR':>6} {'POD>=3SD':>9} {'PPV':>6} {'delay':>6}")
        for name, d in ev.summary["detectors"].items():
            ppv = d["ppv_one_outbreak_per_week"]
            delay = d["median_delay_days"]
            typer.echo(
                f"{name:<9} {d['fpr_zone_week']:>6.3f} {d['pod_3sd_plus'] or 0:>9.2f} "
                f"{'-' if ppv is None else f'{ppv:.2f}':>6} {'-' if delay is None else f'{delay:.0f}':>6}"
            )
        nom = ev.summary["nominal_fdr_pipeline"]
        if "share_null_runs_with_a_signal" in nom:
            typer.echo(
                f"weekly pipeline at FDR {fdr:g}: null runs with a signal "
                f"{nom['share_null_runs_with_a_signal']:.3f}, POD>=3SD {nom.get('pod_3sd_plus') or 0:.2f}"
            )
        typer.echo(f"evaluation: {ev.path}")
        return
    from pipelines.signals.run import parse_period, run_signals

    if week is None and date_from is None and date_to is None:
        week = _latest_week(st)
    period = parse_period(week, start=date_from, end=date_to)
    run = run_signals(st, period, fdr=fdr, seed=seed, use_model=not no_model)
    sig = run.signals
    stat = sig[sig["type"] != "event_conflict"]
    typer.echo(
        f"{period.label}: {len(stat)} signals (q < {fdr:g}) from {run.meta['n_tests']} tests, "
        f"{len(sig) - len(stat)} event conflicts; expected incidents: "
        f"{run.meta['expectation'].get('source') or 'none'}."
    )
    for row in sig.head(top).itertuples(index=False):
        q = "" if row.q_value != row.q_value else f" q={row.q_value:.2g}"
        typer.echo(f"{row.rank:>3}. [{row.type}{q}] {row.explanation}")
    for note in run.meta["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"signals: {run.paths.get('json')}")
