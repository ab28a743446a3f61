"""`vigie cube`: build the zone x slot cube of a store from its validated sources."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import scheduler_option, user_errors
from pipelines.cli.progress import CUBE_STEPS, progress


@user_errors
def cube_cmd(
    store: Path = typer.Option(..., "--store", help="Store folder (after `vigie ingest`)."),
    engine: str = typer.Option(
        None,
        "--engine",
        help="duckdb (default, SQL over the Parquet files), pandas, or dask (one task per month; "
        "the default with --scheduler).",
    ),
    scheduler: str = scheduler_option(),
    start: str = typer.Option(None, "--start", help="First local date (default: the data's)."),
    end: str = typer.Option(None, "--end", help="Local date after the last (exclusive)."),
    memory_limit: str = typer.Option("4GB", "--memory-limit", help="DuckDB memory limit."),
) -> None:
    """Build the zone x hour (or day) cube: presence and its reference value, incidents,
    lighting, darkness, transit, events, holidays and weather, partitioned by month."""
    from features.cube import CUBE_SOURCES, build_cube
    from features.cube.dask_engine import scheduler as dask_scheduler
    from features.store import Store

    engine = engine or ("dask" if scheduler else "duckdb")
    with dask_scheduler(scheduler) as address, progress(CUBE_STEPS, label="vigie cube"):
        result = build_cube(
            Store(store),
            engine=engine,
            start=start,
            end=end,
            dask_address=address,
            memory_limit=memory_limit,
        )
    meta = result.meta
    typer.echo(
        f"cube: {result.rows:,} rows ({meta['zones']} zones x {meta['grain']} slots, "
        f"local dates {meta['first_date']} to {meta['last_date']}), {len(result.columns)} columns, "
        f"{len(result.months)} month partitions, engine {result.engine}, "
        f"{result.seconds:.1f} s"
    )
    absent = sorted(set(CUBE_SOURCES) - set(meta["sources"]))
    if absent:
        typer.echo(f"sources absent (their columns are left out): {', '.join(absent)}")
    typer.echo(f"written: {result.path}  and  {Path(result.path).parent / 'cube_meta.json'}")
