"""The zone x slot cube: every validated source on one complete zone x hour (or day) grid.

``build_cube(store)`` reads ``store/validated/*.parquet`` and writes ``store/cube/month=YYYY-MM/
part-0.parquet`` plus ``store/cube_meta.json`` (docs/architecture.md, "The cube").

Rules (the contract, and what was decided where it is silent)
--------------------------------------------------------------
Grid
    One row per zone and slot over the study period, built in UTC so that nothing is dropped
    or doubled on DST days (a local spring-forward day has 23 hourly rows, a fall-back day 25).
    The period runs from the local midnight before the earliest time to the local midnight after
    the latest time found in presence, incidents and ridership (events, lighting faults and
    weather when none of those exist), unless ``start``/``end`` are given.
Partitions
    ``month=YYYY-MM`` is the **UTC** month of ``hour`` (at daily grain ``hour`` is the local
    midnight in UTC, so in Paris the 1st of a month sits in the previous month's partition).
    Every month is built on its own, which bounds memory (one month of a 1 000-zone city is
    0.75 M rows) and lets Dask build months in parallel.
Presence (a stock)
    ``present``, ``residents`` and ``visitors`` are time-weighted means of the slots that
    overlap the hour: a 2 h slot gives its value to both hours, four 15-min slots are averaged
    into their hour; a slot of 1 440 minutes is the local day (23 or 25 h on DST days). At daily
    grain the value is the mean of the day's available hours. Missing stays NaN and
    ``present_missing`` is True; never 0.
Reference value
    ``present_baseline``: :func:`features.baseline.same_slot_median` (median of the same zone,
    local day of week and local clock hour over the previous 8 weeks, past only, hours with an
    event active in the zone left out, NaN with fewer than 2 past values). On a fall-back day
    the repeated clock hour contributes the mean of its two occurrences. At daily grain: the same
    rule over daily values (days with an event in the zone left out). ``present_ratio`` is
    present / present_baseline (NaN when the baseline is NaN or 0).
Flows
    ``ridership_entries`` and ``precipitation_mm`` are split evenly over the hours a slot covers
    (time-weighted) and summed into the cube's slot; 0 where no entries are recorded.
Incidents
    Counted in the UTC hour of ``occurred_at`` for incidents whose ``zone_id`` is one of the
    zones; ``inc_<slug>`` per category (slug: ASCII, lower case, non-alphanumerics to ``_``;
    categories whose slugs collide are merged, cube_meta.json lists the originals).
Lighting
    ``lamps``: lamps of the zone. ``lamps_out``: distinct lamps (known to the lamps source, in
    that lamp's zone) with a fault open at the slot midpoint (reported_at <= mid < repaired_at,
    or no repaired_at), so lamps_out <= lamps always; faults naming no known lamp are counted in
    cube_meta.json (``faults_unmatched``), not in the cube. At daily grain: the most lamps out at
    once over the day's hourly midpoints.
Darkness
    ``dark``: the sun's upper limb is below the horizon (astral's sunrise/sunset, refraction
    included) at the slot midpoint at the zone centroid, from sunrise and sunset computed once
    per location and local date (locations grouped on the 0.05-degree grid of
    :mod:`features.calendar`, under 20 s of sunrise time). Polar day/night handled. Not
    produced at daily grain (a day is neither dark nor light).
Events
    ``events_active``: distinct events whose [start, end) overlaps the slot in the zone (a
    zero-length event counts in the slot holding its start); ``event_attendance``: the sum of
    their expected attendance.
Calendar and weather
    ``holiday`` (python-holidays, the study's country or the one its time zone implies) and
    ``school_holiday`` (vacances-scolaires-france when the country is FR and a school zone is set;
    False elsewhere) by local date. ``temperature_c`` (stock) and ``precipitation_mm`` (flow)
    are study-wide; at daily grain the mean temperature and the total precipitation.
Absent sources
    A source absent from the store (or an optional column that is empty) leaves its columns
    absent; everything else is built.

Engines
-------
``duckdb`` (default) reads, expands and aggregates the Parquet files in SQL, month by month;
``pandas`` does the same with pyarrow + numpy; ``dask`` runs the pandas month builder as one
``dask.delayed`` task per month, on the local threaded scheduler or on a ``distributed``
cluster (``dask_address``). All three produce the same table: the per-source aggregates differ
in engine only, the grid, reference value, calendar and writing are shared code.

References
----------
Orange Business (2023). *Flux Vision* product sheet: present population per zone and time slot,
compared with a reference period.
NOAA Global Monitoring Laboratory, *Solar Calculation Details* (the algorithm astral implements;
Meeus 1998, *Astronomical Algorithms*).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from features.baseline import EVENT_MARGIN_HOURS, LOOKBACK_WEEKS, MIN_WEEKS, same_slot_median
from features.calendar import day_flags, sun_table
from features.errors import ConfigError, StoreError
from features.store import Store
from features.text import slug
from features.timeutil import as_utc

log = logging.getLogger(__name__)

ENGINES = ("duckdb", "pandas", "dask")
#: the validated sources that feed the cube (zones give its rows), in this order in cube_meta.json.
CUBE_SOURCES = (
    "presence",
    "incidents",
    "lamps",
    "lighting_faults",
    "ridership",
    "events",
    "weather",
)
_HOUR = 3600
_DAY = 86400
#: hours of history read before a month for the reference value (8 weeks + a day of margin).
_LOOKBACK_HOURS = (LOOKBACK_WEEKS * 7 + 1) * 24
#: sources whose times define the study period, in order of preference.
_PERIOD_SOURCES = (("presence", "start"), ("incidents", "occurred_at"), ("ridership", "start"))
_FALLBACK_PERIOD_SOURCES = (
    ("events", "start"),
    ("lighting_faults", "reported_at"),
    ("weather", "start"),
)


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CubeResult:
    """What :func:`build_cube` made.

    Attributes
    ----------
    path
        The cube folder (``store/cube``), hive partitioned by ``month=YYYY-MM``.
    meta
        The content of ``cube_meta.json``.
    rows
        Rows written (zones x slots).
    columns
        Column names, in order.
    months
        Partition labels written.
    engine
        Engine used.
    seconds
        Wall-clock build time.
    """

    path: Path
    meta: dict[str, Any]
    rows: int
    columns: tuple[str, ...]
    months: tuple[str, ...]
    engine: str
    seconds: float


def cube_schema(columns: list[str] | tuple[str, ...]):
    """The cube's data contract as a pandera ``DataFrameSchema`` (for the columns present).

    Pins types, ranges and the cross-column rules: ``present_missing`` is exactly
    ``present.isna()``, presence is never 0-filled (NaN or >= 0), ``lamps_out <= lamps``,
    ``incidents`` is the sum of the ``inc_*`` columns, one row per (zone_id, hour). Downstream
    steps can run it on the slice they read (``schema.validate(df, lazy=True)``).

    Parameters
    ----------
    columns
        The cube's columns (``cube_meta.json["columns"]``).

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    import pandera.pandas as pa_

    counts = {"incidents", "lamps", "lamps_out", "events_active"}
    spec: dict[str, Any] = {
        "zone_id": pa_.Column(str, nullable=False),
        "hour": pa_.Column("datetime64[ns, UTC]", nullable=False),
        "local_hour": pa_.Column("int8", pa_.Check.in_range(0, 23)),
        "dow": pa_.Column("int8", pa_.Check.in_range(0, 6)),
        "local_date": pa_.Column(object, nullable=False),
        "present": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "present_missing": pa_.Column(bool),
        "present_baseline": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "present_ratio": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "residents": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "visitors": pa_.Column(float, pa_.Check.ge(0), nullable=True),
        "dark": pa_.Column(bool),
        "ridership_entries": pa_.Column(float, pa_.Check.ge(0)),
        "event_attendance": pa_.Column(float, pa_.Check.ge(0)),
        "holiday": pa_.Column(bool),
        "school_holiday": pa_.Column(bool),
        "temperature_c": pa_.Column(float, pa_.Check.in_range(-80, 70), nullable=True),
        "precipitation_mm": pa_.Column(float, pa_.Check.ge(0), nullable=True),
    }
    cols = {}
    for c in columns:
        if c in counts or c.startswith("inc_"):
            cols[c] = pa_.Column("int32", pa_.Check.ge(0))
        elif c in spec:
            cols[c] = spec[c]
    checks = []
    if "present" in columns:
        checks.append(
            pa_.Check(
                lambda d: d["present_missing"] == d["present"].isna(),
                error="present_missing must equal present.isna()",
            )
        )
    if "lamps_out" in columns:
        checks.append(pa_.Check(lambda d: d["lamps_out"] <= d["lamps"], error="lamps_out <= lamps"))
    cats = [c for c in columns if c.startswith("inc_")]
    if cats:
        checks.append(
            pa_.Check(
                lambda d: d[cats].sum(axis=1) == d["incidents"],
                error="incidents must be the sum of the inc_* columns",
            )
        )
    return pa_.DataFrameSchema(
        cols, checks=checks, unique=["zone_id", "hour"], strict=True, name="cube"
    )


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
    store = store if isinstance(store, Store) else Store(store)
    plan = _make_plan(store, start=start, end=end, memory_limit=memory_limit, threads=threads)
    specs = _month_specs(plan)
    tag = uuid.uuid4().hex[:8]
    build_dir = store.root / f".cube-building-{tag}"
    work_dir = store.root / f".cube-work-{tag}"
    build_dir.mkdir(parents=True)
    work_dir.mkdir()
    try:
        inner = "duckdb" if engine == "duckdb" else "pandas"
        if engine == "dask":
            summaries = _run_dask(plan, specs, build_dir, dask_address)
        else:
            summaries = []
            stage = _DuckStage(plan, specs, work_dir) if inner == "duckdb" else None
            try:
                for spec in specs:
                    summaries.append(_build_month(plan, spec, inner, str(build_dir), stage))
                    log.info("cube %s: %d rows", spec.label, summaries[-1]["rows"])
            finally:
                if stage is not None:
                    stage.close()
        _swap_in(build_dir, store.cube_dir)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    columns = tuple(_output_columns(plan))
    meta = _meta(plan, summaries, columns, engine)
    store.write_json("cube_meta.json", meta)
    return CubeResult(
        path=store.cube_dir,
        meta=meta,
        rows=int(meta["rows"]),
        columns=columns,
        months=tuple(s["month"] for s in summaries),
        engine=engine,
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------------------------------
# the plan: everything small that every month needs (picklable, for Dask workers)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    root: str
    grain: str
    tz: str
    zone_ids: np.ndarray  # sorted str
    paths: dict[str, str]  # source -> validated parquet path, present sources only
    presence_cols: tuple[str, ...]  # optional stock columns given: residents, visitors
    categories: tuple[str, ...]  # slugs, sorted
    category_map: dict[str, int]  # original category -> index into categories
    category_originals: dict[str, str]
    lamps: np.ndarray | None  # lamps per zone
    start_s: int  # period start, UTC epoch seconds (a local midnight)
    end_s: int  # period end, exclusive
    day0: int  # calendar tables: first local day (days since 1970-01-01)
    holiday: np.ndarray  # per local day from day0
    school_holiday: np.ndarray
    sun_rise: np.ndarray | None  # (cells, days) epoch seconds (+/-inf for polar)
    sun_set: np.ndarray | None
    zone_cell: np.ndarray | None  # cell of each zone
    country: str | None
    school_zone: str | None
    memory_limit: str = "4GB"
    threads: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _MonthSpec:
    label: str
    a0: int  # first target hour (epoch hours)
    a1: int  # end of target hours (exclusive)
    w0: int  # first hour read for the reference value
    day_starts: np.ndarray | None  # daily grain: slot starts (epoch seconds)
    day_index: np.ndarray | None  # daily grain: local days (days since epoch)


def _make_plan(
    store: Store,
    *,
    start: Any,
    end: Any,
    memory_limit: str,
    threads: int | None,
) -> _Plan:
    from features.config import default_country
    from features.zones import centroids

    study = store.study()
    area = study.get("area", {})
    tz = area.get("timezone", "UTC")
    grain = area.get("grain", "1h")
    if grain not in ("1h", "1d"):
        raise StoreError(f"{store.root}/study.json: grain must be 1h or 1d, got {grain!r}.")
    zones = store.zones()
    if len(zones) == 0:
        raise StoreError(f"{store.root}: the zones source is empty; a cube needs zones.")
    zones = zones.assign(zone_id=zones["zone_id"].astype(str))
    zones = zones.sort_values("zone_id", kind="stable").drop_duplicates("zone_id")
    zone_ids = zones["zone_id"].to_numpy(dtype=object)
    paths = {s: str(store.validated_path(s)) for s in CUBE_SOURCES if store.has(s)}
    if "lighting_faults" in paths and "lamps" not in paths:
        paths.pop("lighting_faults")
    info: dict[str, Any] = {}

    presence_cols: tuple[str, ...] = ()
    if "presence" in paths:
        schema = pq.read_schema(paths["presence"])
        keep = []
        for col in ("residents", "visitors"):
            if col in schema.names and _has_values(paths["presence"], col):
                keep.append(col)
        presence_cols = tuple(keep)

    categories: tuple[str, ...] = ()
    category_map: dict[str, int] = {}
    originals: dict[str, str] = {}
    if "incidents" in paths:
        cats = pq.read_table(paths["incidents"], columns=["category"]).column(0)
        uniq = sorted(str(c) for c in pc.unique(cats).to_pylist() if c is not None)
        by_slug: dict[str, list[str]] = {}
        for c in uniq:
            by_slug.setdefault(slug(c), []).append(c)
        categories = tuple(sorted(by_slug))
        for i, s in enumerate(categories):
            originals[s] = " / ".join(by_slug[s])
            for c in by_slug[s]:
                category_map[c] = i

    lamps = None
    if "lamps" in paths:
        lamp_tbl = pq.read_table(paths["lamps"], columns=["lamp_id", "zone_id"])
        lz = lamp_tbl.column("zone_id").to_pandas()
        idx = pd.Index(zone_ids).get_indexer(lz.astype(object))
        lamps = np.bincount(idx[idx >= 0], minlength=len(zone_ids)).astype(np.int32)
        info["lamps_outside_zones"] = int((idx < 0).sum())
        if "lighting_faults" in paths:
            flt = pq.read_table(paths["lighting_faults"], columns=["lamp_id"]).column(0)
            matched = pc.is_in(flt, value_set=pc.unique(lamp_tbl.column("lamp_id")))
            info["faults_unmatched"] = int(len(flt) - (pc.sum(matched).as_py() or 0))

    start_s, end_s = _period(store, paths, tz, start, end)
    # calendar tables by local day, covering the lookback and a day of margin each side
    day0 = _local_day(np.array([start_s - _LOOKBACK_HOURS * _HOUR - _DAY]), tz)[0]
    day1 = _local_day(np.array([end_s + _DAY]), tz)[0] + 1
    country = area.get("country") or default_country(tz)
    subdivision = area.get("subdivision")
    school_zone = area.get("school_zone") if country == "FR" else None
    try:
        holiday, school = day_flags(
            int(day0), int(day1), country=country, subdivision=subdivision, school_zone=school_zone
        )
    except ValueError as exc:
        raise ConfigError(
            f"study.json area: {exc}; expected an ISO country known to python-holidays and a "
            "French school zone A, B or C."
        ) from None

    sun_rise = sun_set = zone_cell = None
    if grain == "1h":
        cent = centroids(zones).set_index("zone_id").loc[zone_ids]
        sun_rise, sun_set, zone_cell = sun_table(
            cent["latitude"].to_numpy(float),
            cent["longitude"].to_numpy(float),
            np.arange(day0, day1),
            timezone=tz,
        )
    return _Plan(
        root=str(store.root),
        grain=grain,
        tz=tz,
        zone_ids=zone_ids,
        paths=paths,
        presence_cols=presence_cols,
        categories=categories,
        category_map=category_map,
        category_originals=originals,
        lamps=lamps,
        start_s=start_s,
        end_s=end_s,
        day0=int(day0),
        holiday=holiday,
        school_holiday=school,
        sun_rise=sun_rise,
        sun_set=sun_set,
        zone_cell=zone_cell,
        country=country,
        school_zone=school_zone,
        memory_limit=memory_limit,
        threads=threads,
        info=info,
    )


def _period(store: Store, paths: dict[str, str], tz: str, start: Any, end: Any) -> tuple[int, int]:
    """Study period [start, end) in UTC epoch seconds, aligned on local midnights."""
    lo = hi = None
    for group in (_PERIOD_SOURCES, _FALLBACK_PERIOD_SOURCES):
        for source, col in group:
            if source not in paths:
                continue
            mm = _min_max(paths[source], col)
            if mm is None:
                continue
            vmin, vmax = pd.Timestamp(mm[0]), pd.Timestamp(mm[1])
            lo = vmin if lo is None else min(lo, vmin)
            hi = vmax if hi is None else max(hi, vmax)
        if lo is not None:
            break
    try:
        d_lo = pd.Timestamp(start).date() if start is not None else None
        d_hi = pd.Timestamp(end).date() if end is not None else None
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"cube period: expected local dates like 2026-01-31, got {exc}."
        ) from None
    if d_lo is None:
        if lo is None:
            raise StoreError(
                f"{store.root}: no dated source (presence, incidents, ridership, events, lighting "
                "faults or weather) to build the cube's period from; ingest one, or give start "
                "and end."
            )
        d_lo = as_utc(lo).tz_convert(tz).date()
    if d_hi is None:
        if hi is None:
            raise StoreError(f"{store.root}: no dated source to end the cube's period; give end.")
        d_hi = as_utc(hi).tz_convert(tz).date() + dt.timedelta(days=1)
    if d_hi <= d_lo:
        raise ConfigError(f"cube period: end ({d_hi}) must be after start ({d_lo}).")
    return _local_midnight(d_lo, tz), _local_midnight(d_hi, tz)


def _column_stats(path: str, col: str) -> list[Any] | None:
    """Row-group statistics of a column, or None when some row group has none."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if col not in names:
        return None
    j = names.index(col)
    stats = [meta.row_group(i).column(j).statistics for i in range(meta.num_row_groups)]
    return None if any(st is None for st in stats) else stats


def _has_values(path: str, col: str) -> bool:
    """Whether a column has at least one non-null value (from Parquet statistics when there)."""
    stats = _column_stats(path, col)
    if stats is not None and all(st.has_null_count for st in stats):
        rows = pq.ParquetFile(path).metadata.num_rows
        return sum(st.null_count for st in stats) < rows
    values = pq.read_table(path, columns=[col]).column(0)
    return values.null_count < len(values)


def _min_max(path: str, col: str) -> tuple[Any, Any] | None:
    """Minimum and maximum of a column (Parquet statistics when there; else a read)."""
    stats = _column_stats(path, col)
    if stats is not None and stats and all(st.has_min_max for st in stats):
        return min(st.min for st in stats), max(st.max for st in stats)
    mm = pc.min_max(pq.read_table(path, columns=[col]).column(0)).as_py()
    return None if mm["min"] is None else (mm["min"], mm["max"])


def _local_midnight(day: dt.date, tz: str) -> int:
    ts = pd.Timestamp(day).tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return int(ts.tz_convert("UTC").value // 1_000_000_000)


def _local_parts(seconds: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local day (days since 1970-01-01), clock hour and day of week (Monday 0) of UTC seconds."""
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True))
    local = idx.tz_convert(tz)
    naive = local.tz_localize(None)
    days = naive.normalize().to_numpy().astype("datetime64[D]").astype(np.int64)
    return days, local.hour.to_numpy(np.int8), local.dayofweek.to_numpy(np.int8)


def _local_day(seconds: np.ndarray, tz: str) -> np.ndarray:
    return _local_parts(seconds, tz)[0]


def _month_specs(plan: _Plan) -> list[_MonthSpec]:
    """One spec per UTC month of slot starts."""
    h_lo, h_hi = plan.start_s // _HOUR, -(-plan.end_s // _HOUR)
    specs = []
    if plan.grain == "1h":
        months = pd.date_range(
            pd.Timestamp(h_lo * _HOUR, unit="s", tz="UTC").floor("D").replace(day=1),
            pd.Timestamp((h_hi - 1) * _HOUR, unit="s", tz="UTC"),
            freq="MS",
        )
        for m in months:
            m0 = int(m.value // 10**9) // _HOUR
            m1 = int((m + pd.offsets.MonthBegin(1)).value // 10**9) // _HOUR
            a0, a1 = max(h_lo, m0), min(h_hi, m1)
            if a0 < a1:
                specs.append(
                    _MonthSpec(m.strftime("%Y-%m"), a0, a1, a0 - _LOOKBACK_HOURS, None, None)
                )
        return specs
    d_lo = _local_day(np.array([plan.start_s]), plan.tz)[0]
    d_hi = _local_day(np.array([plan.end_s]), plan.tz)[0]
    days = np.arange(d_lo, d_hi)
    starts = np.array(
        [_local_midnight(dt.date(1970, 1, 1) + dt.timedelta(days=int(d)), plan.tz) for d in days]
    )
    ends = np.append(starts[1:], plan.end_s)
    labels = pd.to_datetime(starts, unit="s", utc=True).strftime("%Y-%m").to_numpy()
    for label in pd.unique(labels):
        sel = labels == label
        a0, a1 = int(starts[sel][0] // _HOUR), int(-(-ends[sel][-1] // _HOUR))
        specs.append(_MonthSpec(str(label), a0, a1, a0 - _LOOKBACK_HOURS, starts[sel], days[sel]))
    return specs


# ------------------------------------------------------------------------------------------
# engines: per-source sparse hourly aggregates for one month
# ------------------------------------------------------------------------------------------
# Every engine returns a dict of source -> dict of numpy arrays:
#   presence:  zi, eh, present[, residents, visitors]   hours [w0, a1)
#   incidents: zi, eh, ci, n                              hours [a0, a1)
#   ridership: zi, eh, entries                            hours [a0, a1)
#   events:    zi, eh, ev (event_id), att                 hours [w0, a1)
#   lamps_out: zi, k0, k1: each lamp's merged out-intervals of hours (midpoint rule), those
#              meeting [a0, a1); a sweep line counts them per hour (distinct lamps)
#   weather:   eh, temperature_c, precipitation_mm        hours [a0, a1)
# zi = index into plan.zone_ids, eh = epoch hour (UTC seconds // 3600).


class _DuckStage:
    """Hourly aggregates of every source over the whole period, staged once in DuckDB.

    One pass of SQL per source over the Parquet files (slot expansion, zone and category
    mapping, distinct lamps and events) writes small sorted tables into a DuckDB file in the
    build folder; each month then reads its hours back by range (zone maps make that cheap), so
    the big files are scanned once, not once per month, and memory stays bounded by DuckDB's
    ``memory_limit`` (spilling to the build folder).
    """

    def __init__(self, plan: _Plan, specs: list[_MonthSpec], workdir: Path) -> None:
        import duckdb

        self.con = con = duckdb.connect(str(workdir / "stage.duckdb"))
        con.execute("SET TimeZone='UTC'")
        con.execute(f"SET memory_limit='{plan.memory_limit}'")
        con.execute(f"SET temp_directory='{str(workdir / 'spill').replace(chr(39), chr(39) * 2)}'")
        if plan.threads:
            con.execute(f"SET threads={int(plan.threads)}")
        con.execute("SET preserve_insertion_order=false")
        a0 = min(s.a0 for s in specs)
        a1 = max(s.a1 for s in specs)
        w0 = min(s.w0 for s in specs)
        self.names = []
        for name, sql in _duckdb_sql(con, plan, a0, a1, w0).items():
            order = "k0" if name == "lamps_out" else "eh"
            con.execute(f"CREATE TABLE s_{name} AS SELECT * FROM ({sql}) ORDER BY {order}")
            self.names.append(name)

    def inputs(self, spec: _MonthSpec) -> dict[str, dict[str, np.ndarray]]:
        """The month's sparse hourly aggregates (see the engines' contract above)."""
        out = {}
        for name in self.names:
            lo = spec.w0 if name in ("presence", "events") else spec.a0
            where = (
                f"k0 < {spec.a1} AND k1 > {spec.a0}"
                if name == "lamps_out"
                else f"eh >= {lo} AND eh < {spec.a1}"
            )
            tbl = self.con.sql(f"SELECT * FROM s_{name} WHERE {where}").to_arrow_table()
            out[name] = {c: tbl.column(c).to_numpy(zero_copy_only=False) for c in tbl.column_names}
        return out

    def close(self) -> None:
        self.con.close()


def _duckdb_sql(con: Any, plan: _Plan, a0: int, a1: int, w0: int) -> dict[str, str]:
    """SQL per source for hours [a0, a1) (presence and events from w0), on connection ``con``."""
    zmap = pa.table(
        {
            "zone_id": pa.array(plan.zone_ids.astype(str), pa.string()),
            "zi": pa.array(np.arange(len(plan.zone_ids), dtype=np.int32)),
        }
    )
    con.register("zmap", zmap)
    p = {k: v.replace("'", "''") for k, v in plan.paths.items()}
    tz = plan.tz.replace("'", "''")

    def slot_end(start: str, minutes: str) -> str:
        return (
            f"CASE WHEN {minutes} % 1440 = 0 THEN epoch(timezone('{tz}', timezone('{tz}', "
            f"{start}::TIMESTAMPTZ) + to_days(({minutes} // 1440)::INTEGER))) "
            f"ELSE epoch({start}::TIMESTAMPTZ) + 60 * {minutes} END"
        )

    def overlaps(lo: int) -> str:
        """CTEs ``ex``, ``ov`` after ``src`` (slots [s, e) in epoch seconds): each slot against
        the hours k in [lo, a1) it overlaps, with the overlap w in seconds (``_hour_overlaps``)."""
        return f"""ex AS (
              SELECT *, unnest(range(greatest(floor(s / 3600), {lo})::BIGINT,
                                     least(ceil(e / 3600), {a1})::BIGINT)) AS k
              FROM src
            ), ov AS (
              SELECT *, least(e, (k + 1) * 3600.0) - greatest(s, k * 3600.0) AS w FROM ex
            )"""

    types: dict[tuple[str, str], str] = {}

    def lit(source: str, col: str, seconds: int) -> str:
        """A time literal of the column's own type (so DuckDB pushes the filter down)."""
        if (source, col) not in types:
            rows = con.execute(f"DESCRIBE SELECT {col} FROM read_parquet('{p[source]}')").fetchall()
            types[(source, col)] = rows[0][1]
        return f"to_timestamp({int(seconds)})::{types[(source, col)]}"

    out: dict[str, str] = {}

    if "presence" in plan.paths:
        extra = "".join(f", p.{c}" for c in plan.presence_cols)
        aggs = "".join(
            f", sum({c} * w) / sum(CASE WHEN {c} IS NOT NULL THEN w END) AS {c}"
            for c in plan.presence_cols
        )
        out["presence"] = f"""
            WITH src AS (
              SELECT z.zi, epoch(p.start::TIMESTAMPTZ) AS s,
                     {slot_end("p.start", "coalesce(p.slot_minutes, 60)")} AS e,
                     p.present{extra}
              FROM read_parquet('{p["presence"]}') p JOIN zmap z ON z.zone_id = p.zone_id
              WHERE p.start >= {lit("presence", "start", w0 * _HOUR - 2 * _DAY)}
                AND p.start < {lit("presence", "start", a1 * _HOUR)}
            ), {overlaps(w0)}
            SELECT zi, k AS eh,
                   sum(present * w) / sum(CASE WHEN present IS NOT NULL THEN w END)
                     AS present{aggs}
            FROM ov WHERE w > 0 GROUP BY zi, k
            """
    if "incidents" in plan.paths:
        cmap = pa.table(
            {
                "category": pa.array(list(plan.category_map), pa.string()),
                "ci": pa.array(list(plan.category_map.values()), pa.int32()),
            }
        )
        con.register("cmap", cmap)
        out["incidents"] = f"""
            SELECT z.zi, floor(epoch(i.occurred_at::TIMESTAMPTZ) / 3600)::BIGINT AS eh, c.ci,
                   count(*)::BIGINT AS n
            FROM read_parquet('{p["incidents"]}') i
            JOIN zmap z ON z.zone_id = i.zone_id JOIN cmap c ON c.category = i.category
            WHERE i.occurred_at >= {lit("incidents", "occurred_at", a0 * _HOUR)}
              AND i.occurred_at < {lit("incidents", "occurred_at", a1 * _HOUR)}
            GROUP BY ALL
            """
    if "ridership" in plan.paths:
        out["ridership"] = f"""
            WITH src AS (
              SELECT z.zi, epoch(r.start::TIMESTAMPTZ) AS s,
                     {slot_end("r.start", "coalesce(r.slot_minutes, 60)")} AS e, r.entries
              FROM read_parquet('{p["ridership"]}') r JOIN zmap z ON z.zone_id = r.zone_id
              WHERE r.start >= {lit("ridership", "start", a0 * _HOUR - 2 * _DAY)}
                AND r.start < {lit("ridership", "start", a1 * _HOUR)} AND r.entries IS NOT NULL
            ), {overlaps(a0)}
            SELECT zi, k AS eh, sum(entries * w / (e - s)) AS entries
            FROM ov WHERE w > 0 GROUP BY zi, k
            """
    if "events" in plan.paths:
        out["events"] = f"""
            WITH src AS (
              SELECT z.zi, e.event_id AS ev, epoch(e.start::TIMESTAMPTZ) AS s,
                     greatest(epoch(e."end"::TIMESTAMPTZ), epoch(e.start::TIMESTAMPTZ) + 1) AS e,
                     coalesce(e.expected_attendance, 0.0) AS att
              FROM read_parquet('{p["events"]}') e JOIN zmap z ON z.zone_id = e.zone_id
              WHERE e.start < {lit("events", "start", a1 * _HOUR)}
            )
            SELECT DISTINCT zi, ev, att,
                   unnest(range(greatest(floor(s / 3600), {w0})::BIGINT,
                                least(ceil(e / 3600), {a1})::BIGINT)) AS eh
            FROM src
            """
    if "lighting_faults" in plan.paths:
        out["lamps_out"] = f"""
            WITH lz AS (
              SELECT l.lamp_id, z.zi FROM read_parquet('{p["lamps"]}') l
              JOIN zmap z ON z.zone_id = l.zone_id
            ), f AS (
              SELECT lz.zi, f.lamp_id, epoch(f.reported_at::TIMESTAMPTZ) AS r,
                     coalesce(epoch(f.repaired_at::TIMESTAMPTZ), 1e18) AS q
              FROM read_parquet('{p["lighting_faults"]}') f JOIN lz ON lz.lamp_id = f.lamp_id
              WHERE f.reported_at < {lit("lighting_faults", "reported_at", a1 * _HOUR)}
                AND (f.repaired_at IS NULL OR f.repaired_at > {lit("lighting_faults", "repaired_at", a0 * _HOUR)})
            ), iv AS (  -- hours whose midpoint is in [reported_at, repaired_at)
              SELECT zi, lamp_id, ceil((r - 1800) / 3600)::BIGINT AS k0,
                     least(ceil((q - 1800) / 3600), {a1})::BIGINT AS k1
              FROM f
            ), o AS (  -- merge each lamp's overlapping faults (gaps and islands)
              SELECT *, max(k1) OVER (PARTITION BY lamp_id ORDER BY k0, k1
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
              FROM iv WHERE k0 < k1
            ), g AS (
              SELECT *, sum(CASE WHEN prev_end >= k0 THEN 0 ELSE 1 END)
                          OVER (PARTITION BY lamp_id ORDER BY k0, k1 ROWS UNBOUNDED PRECEDING) AS grp
              FROM o
            )
            SELECT zi, min(k0) AS k0, max(k1) AS k1 FROM g GROUP BY lamp_id, zi, grp
            """
    if "weather" in plan.paths:
        out["weather"] = f"""
            WITH src AS (
              SELECT epoch(start::TIMESTAMPTZ) AS s,
                     {slot_end("start", "coalesce(slot_minutes, 60)")} AS e,
                     temperature_c, precipitation_mm
              FROM read_parquet('{p["weather"]}')
              WHERE start >= {lit("weather", "start", a0 * _HOUR - 2 * _DAY)}
                AND start < {lit("weather", "start", a1 * _HOUR)}
            ), {overlaps(a0)}
            SELECT k AS eh,
              sum(temperature_c * w)
                / sum(CASE WHEN temperature_c IS NOT NULL THEN w END) AS temperature_c,
              sum(precipitation_mm * w / (e - s)) AS precipitation_mm
            FROM ov WHERE w > 0 GROUP BY k
            """
    return out


def _read(
    path: str,
    columns: list[str],
    time_col: str | None = None,
    lo_s: int | None = None,
    hi_s: int | None = None,
) -> pa.Table:
    """Read columns of a Parquet file, rows with lo_s <= time_col < hi_s (UTC seconds)."""
    dataset = pads.dataset(path, format="parquet")
    names = dataset.schema.names
    cols = [c for c in columns if c in names]
    expr = None
    if time_col is not None:
        typ = dataset.schema.field(time_col).type
        f = pads.field(time_col)
        if lo_s is not None:
            expr = f >= pa.scalar(pd.Timestamp(lo_s, unit="s", tz="UTC"), type=typ)
        if hi_s is not None:
            hi = f < pa.scalar(pd.Timestamp(hi_s, unit="s", tz="UTC"), type=typ)
            expr = hi if expr is None else expr & hi
    return dataset.to_table(columns=cols, filter=expr)


def _np(tbl: pa.Table, name: str, dtype: Any = float) -> np.ndarray:
    """A column as numpy; nulls become NaN for floats."""
    col = tbl.column(name)
    if dtype is float:
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(float)
    return col.to_numpy(zero_copy_only=False)


def _seconds(tbl: pa.Table, name: str) -> np.ndarray:
    """Timestamps as float UTC epoch seconds (NaN for nulls)."""
    col = tbl.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    arr = col.to_numpy(zero_copy_only=False)
    out = np.asarray(arr, dtype=float) / 1e6
    if col.null_count:
        out[np.asarray(col.is_null().to_numpy(zero_copy_only=False))] = np.nan
    return out


def _slot_end(tbl: pa.Table, s: np.ndarray, tz: str) -> np.ndarray:
    """End of each slot in seconds: start + slot_minutes, or local days for 1 440-minute slots."""
    minutes = (
        tbl.column("slot_minutes").to_pandas().fillna(60).to_numpy(np.int64)
        if "slot_minutes" in tbl.column_names
        else np.full(len(s), 60, dtype=np.int64)
    )
    e = s + 60.0 * minutes
    daily = (minutes % 1440) == 0
    if daily.any():
        start = pd.DatetimeIndex(pd.to_datetime(s[daily] * 1e6, unit="us", utc=True))
        local = start.tz_convert(tz).tz_localize(None) + pd.to_timedelta(
            minutes[daily] // 1440, unit="D"
        )
        end = local.tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")
        e[daily] = end.as_unit("us").asi8 / 1e6
    return e


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows repeated over the integer ranges [lo, hi): (row index, value)."""
    n = np.maximum(hi - lo, 0).astype(np.int64)
    rows = np.repeat(np.arange(len(lo)), n)
    offsets = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return rows, lo[rows] + offsets


def _zone_index(plan: _Plan, values: np.ndarray) -> np.ndarray:
    return pd.Index(plan.zone_ids).get_indexer(pd.Index(values.astype(object)))


def _group(keys: list[np.ndarray], sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Group rows by the key columns, summing the given arrays (NaN-aware: NaNs skipped)."""
    if len(keys[0]) == 0:
        return {
            **{f"k{i}": k[:0] for i, k in enumerate(keys)},
            **{n: v[:0] for n, v in sums.items()},
        }
    frame = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)} | sums)
    g = frame.groupby([f"k{i}" for i in range(len(keys))], sort=False).sum(min_count=1)
    g = g.reset_index()
    return {c: g[c].to_numpy() for c in g.columns}


def _hour_overlaps(
    s: np.ndarray, e: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each slot [s, e) (epoch seconds) against the hours it overlaps within [lo, hi) (hour
    numbers): the slot's row, the hour, and the overlap in seconds (> 0)."""
    rows, k = _expand(
        np.maximum(np.floor(s / _HOUR), lo).astype(np.int64),
        np.minimum(np.ceil(e / _HOUR), hi).astype(np.int64),
    )
    w = np.minimum(e[rows], (k + 1) * float(_HOUR)) - np.maximum(s[rows], k * float(_HOUR))
    keep = w > 0
    return rows[keep], k[keep], w[keep]


def _pandas_inputs(plan: _Plan, spec: _MonthSpec) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    a0, a1, w0 = spec.a0, spec.a1, spec.w0
    tz = plan.tz
    if "presence" in plan.paths:
        cols = ["zone_id", "start", "slot_minutes", "present", *plan.presence_cols]
        t = _read(plan.paths["presence"], cols, "start", w0 * _HOUR - 2 * _DAY, a1 * _HOUR)
        zi = _zone_index(plan, _np(t, "zone_id", object))
        t = t.filter(pa.array(zi >= 0))
        zi = zi[zi >= 0]
        s = _seconds(t, "start")
        e = _slot_end(t, s, tz)
        rows, k, w = _hour_overlaps(s, e, w0, a1)
        sums = {}
        for c in ("present", *plan.presence_cols):
            v = _np(t, c)[rows]
            ok = ~np.isnan(v)
            sums[f"{c}_vw"] = np.where(ok, v * w, np.nan)
            sums[f"{c}_w"] = np.where(ok, w, np.nan)
        g = _group([zi[rows], k], sums)
        res = {"zi": g["k0"], "eh": g["k1"]}
        for c in ("present", *plan.presence_cols):
            with np.errstate(invalid="ignore", divide="ignore"):
                res[c] = g[f"{c}_vw"] / g[f"{c}_w"]
        out["presence"] = res
    if "incidents" in plan.paths:
        t = _read(
            plan.paths["incidents"],
            ["zone_id", "occurred_at", "category"],
            "occurred_at",
            a0 * _HOUR,
            a1 * _HOUR,
        )
        zi = _zone_index(plan, _np(t, "zone_id", object))
        cats = pd.Series(_np(t, "category", object)).map(plan.category_map)
        ok = (zi >= 0) & cats.notna().to_numpy()
        eh = np.floor(_seconds(t, "occurred_at") / _HOUR).astype(np.int64)
        g = _group(
            [zi[ok], eh[ok], cats.to_numpy()[ok].astype(np.int64)],
            {"n": np.ones(int(ok.sum()), dtype=np.int64)},
        )
        out["incidents"] = {"zi": g["k0"], "eh": g["k1"], "ci": g["k2"], "n": g["n"]}
    if "ridership" in plan.paths:
        t = _read(
            plan.paths["ridership"],
            ["zone_id", "start", "slot_minutes", "entries"],
            "start",
            a0 * _HOUR - 2 * _DAY,
            a1 * _HOUR,
        )
        zi = _zone_index(plan, _np(t, "zone_id", object))
        v = _np(t, "entries")
        ok = (zi >= 0) & ~np.isnan(v)
        t, zi, v = t.filter(pa.array(ok)), zi[ok], v[ok]
        s = _seconds(t, "start")
        e = _slot_end(t, s, tz)
        rows, k, w = _hour_overlaps(s, e, a0, a1)
        g = _group([zi[rows], k], {"entries": v[rows] * w / (e[rows] - s[rows])})
        out["ridership"] = {"zi": g["k0"], "eh": g["k1"], "entries": g["entries"]}
    if "events" in plan.paths:
        t = _read(
            plan.paths["events"],
            ["event_id", "zone_id", "start", "end", "expected_attendance"],
            "start",
            None,
            a1 * _HOUR,
        )
        zi = _zone_index(plan, _np(t, "zone_id", object))
        ok = zi >= 0
        t, zi = t.filter(pa.array(ok)), zi[ok]
        s = _seconds(t, "start")
        e = np.fmax(_seconds(t, "end"), s + 1)
        rows, k = _expand(
            np.maximum(np.floor(s / _HOUR), w0).astype(np.int64),
            np.minimum(np.ceil(e / _HOUR), a1).astype(np.int64),
        )
        att = np.nan_to_num(_np(t, "expected_attendance"), nan=0.0)
        frame = pd.DataFrame(
            {"zi": zi[rows], "ev": _np(t, "event_id", object)[rows], "att": att[rows], "eh": k}
        ).drop_duplicates()
        out["events"] = {c: frame[c].to_numpy() for c in frame.columns}
    if "lighting_faults" in plan.paths:
        lamps = _read(plan.paths["lamps"], ["lamp_id", "zone_id"])
        lzi = _zone_index(plan, _np(lamps, "zone_id", object))
        lamp_ids = _np(lamps, "lamp_id", object)[lzi >= 0]
        lzi = lzi[lzi >= 0]
        f = _read(
            plan.paths["lighting_faults"],
            ["lamp_id", "reported_at", "repaired_at"],
            "reported_at",
            None,
            a1 * _HOUR,
        )
        li = pd.Index(lamp_ids).get_indexer(pd.Index(_np(f, "lamp_id", object)))
        r = _seconds(f, "reported_at")
        q = np.nan_to_num(_seconds(f, "repaired_at"), nan=1e18)
        k0 = np.ceil((r - 1800) / _HOUR)
        k1 = np.minimum(np.ceil((q - 1800) / _HOUR), a1)
        ok = (li >= 0) & (k0 < k1) & (k1 > a0)
        iv = pd.DataFrame(
            {"li": li[ok], "k0": k0[ok].astype(np.int64), "k1": k1[ok].astype(np.int64)}
        )
        iv = iv.sort_values(["li", "k0", "k1"], kind="stable")
        # merge each lamp's overlapping faults, so that a lamp counts once
        prev_end = iv.groupby("li")["k1"].cummax().groupby(iv["li"]).shift()
        iv["grp"] = (~(prev_end >= iv["k0"])).cumsum()
        m = iv.groupby(["li", "grp"], sort=False).agg(k0=("k0", "min"), k1=("k1", "max"))
        li_m = m.index.get_level_values("li").to_numpy()
        out["lamps_out"] = {"zi": lzi[li_m], "k0": m["k0"].to_numpy(), "k1": m["k1"].to_numpy()}
    if "weather" in plan.paths:
        t = _read(
            plan.paths["weather"],
            ["start", "slot_minutes", "temperature_c", "precipitation_mm"],
            "start",
            a0 * _HOUR - 2 * _DAY,
            a1 * _HOUR,
        )
        s = _seconds(t, "start")
        e = _slot_end(t, s, tz)
        rows, k, w = _hour_overlaps(s, e, a0, a1)
        temp = _np(t, "temperature_c")[rows]
        rain = _np(t, "precipitation_mm")[rows]
        g = _group(
            [k],
            {
                "t_vw": np.where(np.isnan(temp), np.nan, temp * w),
                "t_w": np.where(np.isnan(temp), np.nan, w),
                "precipitation_mm": rain * w / (e[rows] - s[rows]),
            },
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            out["weather"] = {
                "eh": g["k0"],
                "temperature_c": g["t_vw"] / g["t_w"],
                "precipitation_mm": g["precipitation_mm"],
            }
    return out


# ------------------------------------------------------------------------------------------
# shared: grid, reference value, calendar, daily roll-up, writing
# ------------------------------------------------------------------------------------------
def _output_columns(plan: _Plan) -> list[str]:
    cols = ["zone_id", "hour", "local_hour", "dow", "local_date"]
    if "presence" in plan.paths:
        cols += ["present", "present_missing", "present_baseline", "present_ratio"]
        cols += list(plan.presence_cols)
    if "incidents" in plan.paths:
        cols += ["incidents"] + [f"inc_{c}" for c in plan.categories]
    if plan.lamps is not None:
        cols.append("lamps")
        if "lighting_faults" in plan.paths:
            cols.append("lamps_out")
    if plan.grain == "1h":
        cols.append("dark")
    if "ridership" in plan.paths:
        cols.append("ridership_entries")
    if "events" in plan.paths:
        cols += ["events_active", "event_attendance"]
    cols += ["holiday", "school_holiday"]
    if "weather" in plan.paths:
        cols += ["temperature_c", "precipitation_mm"]
    return cols


_TYPES: dict[str, pa.DataType] = {
    "zone_id": pa.string(),
    "hour": pa.timestamp("ns", tz="UTC"),
    "local_hour": pa.int8(),
    "dow": pa.int8(),
    "local_date": pa.date32(),
    "present_missing": pa.bool_(),
    "incidents": pa.int32(),
    "lamps": pa.int32(),
    "lamps_out": pa.int32(),
    "dark": pa.bool_(),
    "events_active": pa.int32(),
    "holiday": pa.bool_(),
    "school_holiday": pa.bool_(),
}


def _schema(columns: list[str]) -> pa.Schema:
    return pa.schema(
        [(c, _TYPES.get(c, pa.int32() if c.startswith("inc_") else pa.float64())) for c in columns]
    )


def _arrow(values: Any, typ: pa.DataType) -> pa.Array:
    """A numpy column as an Arrow array of the cube's type."""
    if pa.types.is_string(typ):
        return pa.array(np.asarray(values, dtype=object), typ)
    if pa.types.is_timestamp(typ):
        return pa.array(np.asarray(values, dtype=np.int64), pa.int64()).cast(typ)
    if pa.types.is_date32(typ):
        return pa.array(np.asarray(values, dtype=np.int32), pa.int32()).cast(typ)
    return pa.array(np.asarray(values).astype(typ.to_pandas_dtype()), typ)


def _sweep(
    n_zones: int, a0: int, a1: int, zi: np.ndarray, k0: np.ndarray, k1: np.ndarray
) -> np.ndarray:
    """Number of intervals [k0, k1) covering each hour of [a0, a1), per zone (a sweep line)."""
    H = a1 - a0
    delta = np.zeros((n_zones, H + 1), dtype=np.int64)
    zi = np.asarray(zi, dtype=np.int64)
    np.add.at(delta, (zi, np.clip(np.asarray(k0, np.int64) - a0, 0, H)), 1)
    np.add.at(delta, (zi, np.clip(np.asarray(k1, np.int64) - a0, 0, H)), -1)
    return np.cumsum(delta[:, :H], axis=1)


def _dense(
    n_zones: int,
    h0: int,
    n_hours: int,
    zi: np.ndarray,
    eh: np.ndarray,
    values: np.ndarray,
    fill: float,
) -> np.ndarray:
    """Scatter sparse (zone, hour) values into a (zones, hours) array; out-of-range rows dropped."""
    out = np.full((n_zones, n_hours), fill, dtype=float)
    j = np.asarray(eh, dtype=np.int64) - h0
    ok = (j >= 0) & (j < n_hours)
    out[np.asarray(zi, dtype=np.int64)[ok], j[ok]] = np.asarray(values, dtype=float)[ok]
    return out


def _build_month(
    plan: _Plan, spec: _MonthSpec, engine: str, out_dir: str, stage: _DuckStage | None = None
) -> dict[str, Any]:
    """Build and write one month partition; returns a small summary (picklable)."""
    inputs = stage.inputs(spec) if stage is not None else _pandas_inputs(plan, spec)
    columns = _output_columns(plan)
    data = _assemble(plan, spec, inputs)
    schema = _schema(columns)
    table = pa.table([_arrow(data[f.name], f.type) for f in schema], schema=schema)
    part = Path(out_dir) / f"month={spec.label}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, part / "part-0.parquet", compression="snappy")
    summary: dict[str, Any] = {"month": spec.label, "rows": table.num_rows}
    if "incidents" in data:
        summary["incidents"] = int(np.asarray(data["incidents"]).sum())
    return summary


@dataclass(frozen=True)
class _Window:
    """The hours [w0, a1) read for a month: its target hours and the reference value's past."""

    day: np.ndarray  # local day of each hour (days since 1970-01-01)
    local_hour: np.ndarray
    dow: np.ndarray
    off: int  # index of the first target hour (a0 - w0)
    present: np.ndarray | None  # (zones, hours) presence, NaN where missing
    events: np.ndarray  # (zones, hours) an event (or its margin) is running in the zone

    @property
    def dayidx(self) -> np.ndarray:
        """Day of each hour counted from the window's first local day."""
        return self.day - self.day[0]

    @property
    def n_days(self) -> int:
        return int(self.day[-1] - self.day[0]) + 1


def _assemble(
    plan: _Plan, spec: _MonthSpec, inputs: dict[str, dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Dense (zones x slots) columns of one month from the engines' sparse hourly aggregates."""
    Z = len(plan.zone_ids)
    a0, a1, w0 = spec.a0, spec.a1, spec.w0
    H, W = a1 - a0, a1 - w0
    day_w, lh_w, dow_w = _local_parts(np.arange(w0, a1, dtype=np.int64) * _HOUR, plan.tz)
    off = a0 - w0  # first target hour within the window
    present_w = None

    hourly: dict[str, np.ndarray] = {}  # (Z, H) arrays over target hours
    ev_flag_w = np.zeros((Z, W), dtype=bool)
    ev = inputs.get("events")
    if ev is not None:
        j = ev["eh"].astype(np.int64) - w0
        ev_flag_w[ev["zi"].astype(np.int64), j] = True
        # the reference also leaves out the hours around events (arrivals and departures)
        core = ev_flag_w.copy()
        for shift in range(1, EVENT_MARGIN_HOURS + 1):
            ev_flag_w[:, :-shift] |= core[:, shift:]
            ev_flag_w[:, shift:] |= core[:, :-shift]
    if "presence" in inputs:
        pr = inputs["presence"]
        present_w = _dense(Z, w0, W, pr["zi"], pr["eh"], pr["present"], np.nan)
        hourly["present"] = present_w[:, off:]
        for c in plan.presence_cols:
            hourly[c] = _dense(Z, a0, H, pr["zi"], pr["eh"], pr[c], np.nan)
    if "incidents" in inputs:
        inc = inputs["incidents"]
        j = inc["eh"].astype(np.int64) - a0
        ok = (j >= 0) & (j < H)
        counts = np.zeros((len(plan.categories), Z, H), dtype=np.int64)
        np.add.at(
            counts,
            (inc["ci"][ok].astype(np.int64), inc["zi"][ok].astype(np.int64), j[ok]),
            inc["n"][ok].astype(np.int64),
        )
        for i, c in enumerate(plan.categories):
            hourly[f"inc_{c}"] = counts[i]
        hourly["incidents"] = counts.sum(axis=0)
    if plan.lamps is not None:
        hourly["lamps"] = np.repeat(plan.lamps[:, None], H, axis=1)
        if "lamps_out" in inputs:
            hourly["lamps_out"] = _sweep(Z, a0, a1, **inputs["lamps_out"])
    if "ridership" in inputs:
        rd = inputs["ridership"]
        hourly["ridership_entries"] = _dense(Z, a0, H, rd["zi"], rd["eh"], rd["entries"], 0.0)
    if "weather" in inputs:
        wx = inputs["weather"]
        for c in ("temperature_c", "precipitation_mm"):
            row = np.full(H, np.nan)
            j = wx["eh"].astype(np.int64) - a0
            ok = (j >= 0) & (j < H)
            row[j[ok]] = wx[c][ok]
            hourly[c] = row  # study-wide: broadcast at the end

    win = _Window(day_w, lh_w, dow_w, off, present_w, ev_flag_w)
    if plan.grain == "1h":
        return _hourly_columns(plan, spec, hourly, inputs, win)
    return _daily_columns(plan, spec, hourly, inputs, win)


def _hourly_columns(
    plan: _Plan,
    spec: _MonthSpec,
    hourly: dict[str, np.ndarray],
    inputs: dict[str, dict[str, np.ndarray]],
    win: _Window,
) -> dict[str, Any]:
    Z = len(plan.zone_ids)
    a0, a1 = spec.a0, spec.a1
    H = a1 - a0
    hours = np.arange(a0, a1, dtype=np.int64)
    off = win.off
    day_t, lh_t, dow_t = win.day[off:], win.local_hour[off:], win.dow[off:]
    data: dict[str, Any] = {
        "zone_id": np.repeat(plan.zone_ids, H),
        "hour": np.tile(hours * _HOUR * 10**9, Z),
        "local_hour": np.tile(lh_t, Z),
        "dow": np.tile(dow_t, Z),
        "local_date": np.tile(day_t.astype(np.int32), Z),
    }
    if win.present is not None:
        usable = np.where(win.events, np.nan, win.present)
        pool = _pool(usable, win.dayidx, win.local_hour, win.n_days, 24)
        base = same_slot_median(
            pool, target_days=win.dayidx[off:], target_slots=lh_t.astype(np.int64)
        )
        _presence_out(data, hourly, base, plan)
    for c in (
        "incidents",
        *(f"inc_{c}" for c in plan.categories),
        "lamps",
        "lamps_out",
        "ridership_entries",
    ):
        if c in hourly:
            data[c] = hourly[c].ravel()
    # darkness at the slot midpoint, from sunrise/sunset by location cell and local date
    mid = hours * _HOUR + _HOUR // 2
    mid_day = _local_day(mid, plan.tz) - plan.day0
    rise = plan.sun_rise[plan.zone_cell][:, mid_day]
    sset = plan.sun_set[plan.zone_cell][:, mid_day]
    data["dark"] = ((mid[None, :] < rise) | (mid[None, :] >= sset)).ravel()
    if "events" in inputs:
        ev = inputs["events"]
        j = ev["eh"].astype(np.int64) - a0
        ok = (j >= 0) & (j < H)
        _events_out(data, (Z, H), ev["zi"][ok], j[ok], ev["att"][ok])
    _calendar_out(data, plan, day_t, Z)
    _weather_out(data, hourly, Z)
    return data


def _pool(
    values_w: np.ndarray, dayidx: np.ndarray, slot: np.ndarray, n_days: int, n_slots: int
) -> np.ndarray:
    """(zones, days, slots) means of the usable values (NaN = not usable, or no value)."""
    Z, W = values_w.shape
    flat = (np.arange(Z)[:, None] * n_days + dayidx[None, :]) * n_slots + slot[None, :].astype(
        np.int64
    )
    ok = ~np.isnan(values_w)
    size = Z * n_days * n_slots
    sums = np.bincount(flat[ok], weights=values_w[ok], minlength=size)
    counts = np.bincount(flat[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        pool = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return pool.reshape(Z, n_days, n_slots)


def _presence_out(
    data: dict[str, Any], dense: dict[str, np.ndarray], base: np.ndarray, plan: _Plan
) -> None:
    present = dense["present"]
    data["present"] = present.ravel()
    data["present_missing"] = np.isnan(present).ravel()
    data["present_baseline"] = base.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(base > 0, present / np.where(base > 0, base, 1.0), np.nan)
    data["present_ratio"] = ratio.ravel()
    for c in plan.presence_cols:
        data[c] = dense[c].ravel()


def _events_out(data: dict[str, Any], shape: tuple[int, int], zi: Any, slot: Any, att: Any) -> None:
    """events_active and event_attendance from one row per (event, zone, slot) it is active in."""
    zi, slot = np.asarray(zi, dtype=np.int64), np.asarray(slot, dtype=np.int64)
    active = np.zeros(shape, dtype=np.int64)
    total = np.zeros(shape)
    np.add.at(active, (zi, slot), 1)
    np.add.at(total, (zi, slot), np.asarray(att, dtype=float))
    data["events_active"] = active.ravel()
    data["event_attendance"] = total.ravel()


def _calendar_out(data: dict[str, Any], plan: _Plan, days: np.ndarray, Z: int) -> None:
    j = days - plan.day0
    data["holiday"] = np.tile(plan.holiday[j], Z)
    data["school_holiday"] = np.tile(plan.school_holiday[j], Z)


def _weather_out(data: dict[str, Any], dense: dict[str, np.ndarray], Z: int) -> None:
    for c in ("temperature_c", "precipitation_mm"):
        if c in dense:
            data[c] = np.tile(dense[c], Z)


def _daily_columns(
    plan: _Plan,
    spec: _MonthSpec,
    hourly: dict[str, np.ndarray],
    inputs: dict[str, dict[str, np.ndarray]],
    win: _Window,
) -> dict[str, Any]:
    """Daily grain: local days of the month, rolled up from the hourly arrays."""
    Z = len(plan.zone_ids)
    days = spec.day_index.astype(np.int64)
    D = len(days)
    target_day = win.day[win.off :]  # local day of each target hour
    seg = np.searchsorted(days, target_day)  # index into the month's days
    seg_ok = (seg < D) & (days[np.minimum(seg, D - 1)] == target_day)

    def roll(arr: np.ndarray, how: str) -> np.ndarray:
        arr = arr[:, seg_ok]
        s = seg[seg_ok]
        out = np.zeros((Z, D))
        if how == "max":
            out[:] = -np.inf
            for d in range(D):
                cols = s == d
                if cols.any():
                    out[:, d] = arr[:, cols].max(axis=1)
            out[np.isinf(out)] = 0
            return out
        ok = ~np.isnan(arr)
        sums = np.zeros((Z, D))
        cnt = np.zeros((Z, D))
        for d in range(D):
            cols = s == d
            sums[:, d] = np.where(ok[:, cols], arr[:, cols], 0).sum(axis=1)
            cnt[:, d] = ok[:, cols].sum(axis=1)
        if how == "sum":
            return sums
        if how == "sum_nan":
            return np.where(cnt > 0, sums, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)

    dow = ((days + 3) % 7).astype(np.int8)  # 1970-01-01 was a Thursday (3)
    data: dict[str, Any] = {
        "zone_id": np.repeat(plan.zone_ids, D),
        "hour": np.tile(spec.day_starts.astype(np.int64) * 10**9, Z),
        "local_hour": np.zeros(Z * D, dtype=np.int8),
        "dow": np.tile(dow, Z),
        "local_date": np.tile(days.astype(np.int32), Z),
    }
    if win.present is not None:
        # daily value per window day = mean of the day's hours; event days are not usable
        dayidx, ones = win.dayidx, np.zeros_like(win.day)
        daily_w = _pool(win.present, dayidx, ones, win.n_days, 1)
        ev_day = _pool(np.where(win.events, 1.0, np.nan), dayidx, ones, win.n_days, 1)
        usable = np.where(np.isnan(ev_day), daily_w, np.nan)
        target_idx = days - win.day[0]
        base = same_slot_median(usable, target_days=target_idx, target_slots=np.zeros(D, np.int64))
        daily = {"present": daily_w[:, target_idx, 0]}
        for c in plan.presence_cols:
            daily[c] = roll(hourly[c], "mean")
        _presence_out(data, daily, base, plan)
    for c in ("incidents", *(f"inc_{c}" for c in plan.categories), "ridership_entries"):
        if c in hourly:
            data[c] = roll(hourly[c].astype(float), "sum").ravel()
    if "lamps" in hourly:
        data["lamps"] = np.repeat(plan.lamps, D)
    if "lamps_out" in hourly:
        data["lamps_out"] = roll(hourly["lamps_out"], "max").ravel()
    if "events" in inputs:
        ev = inputs["events"]
        eh = ev["eh"].astype(np.int64)
        j = eh - spec.a0
        ok = (j >= 0) & (j < len(target_day))
        jd = np.where(ok, j, 0)
        day = np.where(ok & seg_ok[jd], seg[jd], -1)
        frame = pd.DataFrame({"zi": ev["zi"], "ev": ev["ev"], "att": ev["att"], "d": day})
        frame = frame[frame["d"] >= 0].drop_duplicates(["zi", "ev", "d"])
        _events_out(data, (Z, D), frame["zi"], frame["d"], frame["att"])
    _calendar_out(data, plan, days, Z)
    if "temperature_c" in hourly:
        data["temperature_c"] = np.tile(roll(hourly["temperature_c"][None, :], "mean")[0], Z)
        data["precipitation_mm"] = np.tile(
            roll(hourly["precipitation_mm"][None, :], "sum_nan")[0], Z
        )
    return data


def _run_dask(
    plan: _Plan, specs: list[_MonthSpec], build_dir: Path, address: str | None
) -> list[dict[str, Any]]:
    import dask

    tasks = [dask.delayed(_build_month)(plan, spec, "pandas", str(build_dir)) for spec in specs]
    if address is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError(
            "engine 'dask' with a scheduler address needs the distributed package."
        ) from exc
    _check_reachable(address)
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address!r} ({exc}); expected the address of a "
            "running distributed scheduler, e.g. tcp://127.0.0.1:8786."
        ) from None
    try:
        return list(client.gather(client.compute(tasks)))
    finally:
        client.close()


def _check_reachable(address: str) -> None:
    """Fail fast (2 s) when nothing listens at a tcp://host:port scheduler address."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme in ("inproc", "ucx", "ws", "wss"):
        return  # not a plain socket: let distributed connect
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        raise ConfigError(
            f"bad Dask scheduler address {address!r}: expected tcp://host:port, "
            "e.g. tcp://127.0.0.1:8786."
        )
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address!r} ({exc.strerror or exc}); expected the "
            "address of a running distributed scheduler, e.g. tcp://127.0.0.1:8786."
        ) from None


def _swap_in(build_dir: Path, cube_dir: Path) -> None:
    """Replace the cube folder with the freshly built one (old one removed after the rename)."""
    old = None
    if cube_dir.exists():
        old = cube_dir.with_name(f".cube-old-{uuid.uuid4().hex[:8]}")
        cube_dir.rename(old)
    build_dir.rename(cube_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _meta(
    plan: _Plan, summaries: list[dict[str, Any]], columns: tuple[str, ...], engine: str
) -> dict[str, Any]:
    import importlib.metadata

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
