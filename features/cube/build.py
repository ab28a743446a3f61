"""``build_cube``: plan -> months (by the chosen engine) -> swap the new cube in -> metadata.

The cube is built in a fresh folder next to the old one and renamed into place only when every
month is written, so a failed build leaves the previous cube as it was. Its metadata is written
inside that folder (``cube/_meta.json``, with the build's id) before the swap, so the cube and
what describes it change together; ``cube_meta.json`` beside it is a copy written after the swap,
which :meth:`Store.cube_meta` rewrites when a killed build left it describing another build.
Folders left by killed builds are removed at the next build (only those of runs that are gone).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from features.baseline import EVENT_MARGIN_HOURS, LOOKBACK_WEEKS, MIN_WEEKS
from features.cube.dask_engine import run_dask
from features.cube.duck import DuckStage
from features.cube.month import build_month
from features.cube.period import MonthSpec
from features.cube.plan import Plan, make_plan
from features.cube.schema import CubeResult, output_columns
from features.errors import ConfigError
from features.jsonio import json_default
from features.store import (
    Store,
    new_tag,
    swap_in,
    temp_sibling,
    write_text_atomic,
)

log = logging.getLogger(__name__)

ENGINES = ("duckdb", "pandas", "dask")
#: months built at once by the DuckDB engine, when a month has at most MONTH_THREAD_ROWS rows
#: (a month of a 2 000-zone hourly study; a 5 000-zone month is 3.7 M rows, about 1 GB of
#: output columns alone, so a region builds its months one at a time)
MONTH_THREADS = 2
MONTH_THREAD_ROWS = 1_500_000


def build_cube(
    store: Store | str | Path,
    *,
    engine: str = "duckdb",
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    dask_address: str | None = None,
    memory_limit: str = "4GB",
    threads: int | None = None,
) -> CubeResult:
    """Build the zone x slot cube of a store from its validated sources.

    Parameters
    ----------
    store
        The store (or its folder) holding ``study.json`` and ``validated/*.parquet``.
    engine
        ``duckdb`` (default: SQL over the Parquet files), ``pandas`` or ``dask`` (the pandas
        month builder as one delayed task per month).
    start, end
        Optional study period as local dates (``end`` exclusive); by default the period of the
        data, in whole local days.
    dask_address
        Address of a ``distributed`` scheduler (``tcp://host:8786``) for ``engine="dask"``;
        None runs the tasks on the local threaded scheduler. Workers must see the store's
        folder at the same path.
    memory_limit
        DuckDB memory limit per month query.
    threads
        DuckDB threads (default: DuckDB's own choice, the number of cores).

    Returns
    -------
    CubeResult

    Raises
    ------
    ConfigError
        Unknown engine, or ``dask_address`` with another engine, or an unreadable period.
    StoreError
        No study.json or no zones in the store, or no dated source to build a period from.

    References
    ----------
    See the module docstring (Flux Vision reference periods; NOAA/Meeus solar position).

    Examples
    --------
    >>> result = build_cube(Store("demo/store"))  # doctest: +SKIP
    >>> result.rows, result.months[:2]  # doctest: +SKIP
    (1411200, ('2026-01', '2026-02'))
    """
    t0 = time.perf_counter()
    _check_engine(engine, dask_address)
    store = store if isinstance(store, Store) else Store(store)
    store.clean_stale()
    plan = make_plan(store, start=start, end=end, memory_limit=memory_limit, threads=threads)
    columns = tuple(output_columns(plan))
    meta = _build_and_swap(
        store,
        plan,
        describe=lambda summaries: _meta(plan, summaries, columns, engine),
        engine=engine,
        dask_address=dask_address,
    )
    store.write_json("cube_meta.json", meta)
    return CubeResult(
        path=store.cube_dir,
        meta=meta,
        rows=int(meta["rows"]),
        columns=columns,
        months=tuple(meta["months"]),
        engine=engine,
        seconds=time.perf_counter() - t0,
    )


def _check_engine(engine: str, dask_address: str | None) -> None:
    if engine not in ENGINES:
        raise ConfigError(
            f"unknown cube engine {engine!r}: expected one of {', '.join(ENGINES)} "
            "(duckdb is the default and the fastest on one machine)."
        )
    if dask_address is not None and engine != "dask":
        raise ConfigError(
            f"a Dask scheduler address was given ({dask_address}) but the engine is {engine!r}; "
            "use engine 'dask' (`--engine dask`) with a scheduler address."
        )


def _build_and_swap(
    store: Store,
    plan: Plan,
    *,
    describe: Callable[[list[dict[str, Any]]], dict[str, Any]],
    engine: str,
    dask_address: str | None,
) -> dict[str, Any]:
    """Build every month in a fresh folder, write its metadata (``describe(summaries)`` plus
    the build's id) inside it, then swap it into ``store/cube`` (the old cube is kept when
    anything fails); returns the metadata."""
    tag = new_tag()
    cube_dir = store.root / "cube"
    build_dir = temp_sibling(cube_dir, "tmp", tag)
    work_dir = temp_sibling(cube_dir, "work", tag)
    build_dir.mkdir(parents=True)
    work_dir.mkdir()
    try:
        summaries = _build_months(
            plan,
            plan.months(),
            engine=engine,
            dirs=(build_dir, work_dir),
            dask_address=dask_address,
        )
        meta = {**describe(summaries), "build_id": tag}
        text = json.dumps(meta, indent=2, ensure_ascii=False, default=json_default)
        write_text_atomic(build_dir / Store.CUBE_META_INSIDE, text)
        swap_in(build_dir, cube_dir, tag=tag)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return meta


def _build_months(
    plan: Plan,
    specs: list[MonthSpec],
    *,
    engine: str,
    dirs: tuple[Path, Path],
    dask_address: str | None,
) -> list[dict[str, Any]]:
    """Write every month into the build folder (dirs[0]); DuckDB stages in dirs[1]."""
    build_dir, work_dir = dirs
    if engine == "dask":
        return run_dask(plan, specs, build_dir=build_dir, address=dask_address)
    if engine == "pandas":
        return [_one_month(plan, spec, build_dir, None) for spec in specs]
    stage = DuckStage(plan, specs, work_dir)
    try:
        # two months at a time: while one is written (pyarrow, outside the GIL) the next is
        # read and assembled; one at a time when a month is large (memory)
        month_rows = len(plan.zone_ids) * 31 * (24 if plan.grain == "1h" else 1)
        workers = MONTH_THREADS if month_rows <= MONTH_THREAD_ROWS else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda spec: _one_month(plan, spec, build_dir, stage), specs))
    finally:
        stage.close()


def _one_month(plan: Plan, spec: MonthSpec, build_dir: Path, stage: DuckStage | None) -> dict:
    summary = build_month(plan, spec, out_dir=str(build_dir), stage=stage)
    log.info("cube %s: %d rows", spec.label, summary["rows"])
    return summary


def _meta(
    plan: Plan, summaries: list[dict[str, Any]], columns: tuple[str, ...], engine: str
) -> dict[str, Any]:
    """The content of cube_meta.json."""
    try:
        version = importlib.metadata.version("vigie")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    meta: dict[str, Any] = {
        "grain": plan.grain,
        "timezone": plan.tz,
        "first_date": str(
            pd.Timestamp(plan.start_s, unit="s", tz="UTC").tz_convert(plan.tz).date()
        ),
        "last_date": str(
            (
                pd.Timestamp(plan.end_s, unit="s", tz="UTC").tz_convert(plan.tz)
                - pd.Timedelta(hours=12)
            ).date()
        ),
        "start": pd.Timestamp(plan.start_s, unit="s", tz="UTC").isoformat(),
        "end": pd.Timestamp(plan.end_s, unit="s", tz="UTC").isoformat(),
        "zones": len(plan.zone_ids),
        "rows": int(sum(s["rows"] for s in summaries)),
        "columns": list(columns),
        "categories": dict(plan.category_originals),
        "sources": list(plan.paths),
        "months": [s["month"] for s in summaries],
        "partitioning": "month=YYYY-MM, the UTC month of `hour`",
        "engine": engine,
        "country": plan.country,
        "school_zone": plan.school_zone,
        "baseline": {
            "weeks": LOOKBACK_WEEKS,
            "min_weeks": MIN_WEEKS,
            "statistic": "median",
            "excludes": f"slots with events_active > 0 in the zone and the {EVENT_MARGIN_HOURS} h before and after",
        },
        "built_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "code_version": version,
    }
    if "incidents" in plan.paths:
        meta["incidents_in_cube"] = int(sum(s.get("incidents", 0) for s in summaries))
    meta.update(plan.info)
    return meta
