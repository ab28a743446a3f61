"""`vigie fit`: fit the incident models of a store, backtest them and estimate effects."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from features.errors import InputError
from features.store import Store
from pipelines.cli.common import scheduler_option, user_errors
from pipelines.cli.progress import FIT_STEPS, progress
from pipelines.models.design import MIN_INCIDENTS, XGB_ROUNDS


@user_errors
def fit_cmd(
    store: Path = typer.Option(..., "--store", help="Store folder holding a cube."),
    backtest_weeks: int = typer.Option(
        8, "--backtest-weeks", min=0, help="Weekly origins of the rolling backtest (0: none)."
    ),
    group: list[str] = typer.Option(
        None,
        "--group",
        help="Category group to model besides 'all' (repeatable; default: every group present).",
    ),
    min_incidents: int = typer.Option(
        MIN_INCIDENTS,
        "--min-incidents",
        min=1,
        help="Groups with fewer incidents are not modelled.",
    ),
    xgb_rounds: int = typer.Option(XGB_ROUNDS, "--xgb-rounds", min=1, help="XGBoost rounds."),
    covariates: str = typer.Option(
        "forecast",
        "--covariates",
        help="Backtest covariates after the origin: forecast (known at the origin) or observed.",
    ),
    no_effects: bool = typer.Option(
        False, "--no-effects", help="Skip the outage event study and event uplift."
    ),
    scheduler: str = scheduler_option(),
) -> None:
    """Fit Poisson/NB rate models and XGBoost per category group, backtest, estimate effects.

    Writes store/models/: models.json, glm_<group>.json, xgb_<group>.json, irr.parquet,
    backtest.parquet, evaluation.json and effects.json. With --scheduler: only the Poisson
    GLMs, from sufficient statistics summed on Dask, into store/models/cluster_glm.json, and
    XGBoost on the same cells through xgboost.dask (store/models/cluster_xgb.json).
    """
    # the fitting stack (statsmodels, xgboost) loads only when the command runs: `vigie --help`
    # and the other commands stay fast
    from pipelines.models.fit import fit_all

    if covariates not in ("forecast", "observed"):
        raise InputError(f"--covariates must be 'forecast' or 'observed', got {covariates!r}.")
    st = Store(store)
    st.study()
    if scheduler:
        _fit_on_cluster(
            st, scheduler, groups=group or None, min_incidents=min_incidents, xgb_rounds=xgb_rounds
        )
        return
    fit_steps, backtest_step = FIT_STEPS
    steps = [fit_steps, *([replace(backtest_step, total=backtest_weeks)] if backtest_weeks else [])]
    with progress(steps, label=f"vigie fit {st.root.name}"):
        report = fit_all(
            st,
            backtest_weeks=backtest_weeks,
            groups=group or None,
            min_incidents=min_incidents,
            xgb_rounds=xgb_rounds,
            covariates=covariates,
            effects=not no_effects,
        )
    typer.echo(report.summary())


def _fit_on_cluster(
    st: Store, scheduler: str, *, groups: list[str] | None, min_incidents: int, xgb_rounds: int
) -> None:
    """`vigie fit --scheduler`: the GLM's sufficient statistics on Dask, Poisson fits on them,
    and XGBoost on the same cells through xgboost.dask."""
    from features.cube.dask_engine import scheduler as dask_scheduler
    from pipelines.models import distributed as dist

    with dask_scheduler(scheduler) as address:
        stats = dist.cell_statistics(st, groups=groups, address=address)
        fits = dist.fits_of_cells(stats, min_incidents=min_incidents)
        assert address is not None  # a --scheduler value always gives one
        boosts = dist.boost_on_cluster(stats, fits, address=address, rounds=xgb_rounds)
    paths = [dist.save_cluster_fits(st, fits), dist.save_cluster_boosters(st, boosts)]
    typer.echo(dist.cluster_summary(fits, boosts) + f"\nwritten: {paths[0]}, {paths[1]}")
