"""The cube's plan: everything small that every month needs, read once from the store.

The plan is picklable (plain numpy arrays and strings), so Dask workers receive it with each
month's task. :func:`make_plan` reads the study, the zones and the small per-source facts
(categories, lamps per zone, optional presence columns, the period) and prepares the calendar
tables (holidays and, at hourly grain, sunrise and sunset per location cell and local day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.calendar import day_flags, sun_table
from features.config import default_country
from features.cube.indicators import SPLIT_COLUMNS, VISITOR_KINDS, zone_population
from features.cube.period import (
    DAY,
    HOUR,
    LOOKBACK_HOURS,
    MonthSpec,
    has_values,
    local_day,
    month_specs,
    study_period,
)
from features.errors import ConfigError, StoreError
from features.ingest.writing import PENDING
from features.store import Store
from features.text import slug
from features.zones import centroids

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

#: every column the cube reads, per validated source (the zones give its rows; the presence
#: stock columns are read when the file has them): the benchmark's floor reads exactly these
#: (bench/bench_region.py), and a test builds the same cube from files holding nothing else
INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "zones": ("zone_id", "geometry", "population"),
    "presence": ("zone_id", "start", "slot_minutes", "present", *SPLIT_COLUMNS, *VISITOR_KINDS),
    "incidents": ("zone_id", "occurred_at", "category"),
    "lamps": ("lamp_id", "zone_id"),
    "lighting_faults": ("lamp_id", "reported_at", "repaired_at"),
    "ridership": ("zone_id", "start", "slot_minutes", "entries"),
    "events": ("event_id", "zone_id", "start", "end", "expected_attendance"),
    "weather": ("start", "slot_minutes", "temperature_c", "precipitation_mm"),
}


@dataclass(frozen=True)
class Plan:
    """What every month of the cube needs (see the module docstring)."""

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
    population: np.ndarray | None = None  # zones' resident population (indicators)

    def months(self) -> list[MonthSpec]:
        """One spec per UTC month of slot starts."""
        return month_specs(self.start_s, self.end_s, grain=self.grain, tz=self.tz)


@dataclass(frozen=True)
class _Calendar:
    day0: int
    holiday: np.ndarray
    school_holiday: np.ndarray
    sun_rise: np.ndarray | None
    sun_set: np.ndarray | None
    zone_cell: np.ndarray | None
    country: str | None
    school_zone: str | None


# ------------------------------------------------------------------------------------------
# the steps: each reads one small thing
# ------------------------------------------------------------------------------------------
def _area(store: Store) -> tuple[dict[str, Any], str, str]:
    """The study's area, time zone and grain."""
    area = store.study().get("area", {})
    tz = area.get("timezone", "UTC")
    grain = area.get("grain", "1h")
    if grain not in ("1h", "1d"):
        raise StoreError(f"{store.root}/study.json: grain must be 1h or 1d, got {grain!r}.")
    return area, tz, grain


def _zones(store: Store) -> pd.DataFrame:
    """The zones, one row per zone_id (as str), sorted."""
    zones = store.zones()
    if len(zones) == 0:
        raise StoreError(f"{store.root}: the zones source is empty; a cube needs zones.")
    zones = zones.assign(zone_id=zones["zone_id"].astype(str))
    return zones.sort_values("zone_id", kind="stable").drop_duplicates("zone_id")


def _source_paths(store: Store) -> dict[str, str]:
    """Validated Parquet path of each cube source present (faults need the lamps); refused
    while an ingest of the store is unfinished (a killed run leaves its sources ``pending``,
    some rewritten and others not, see :mod:`features.ingest.writing`)."""
    report = store.read_json(Store.INGEST_REPORT) or {}
    pending = sorted(
        n for n, e in report.get("sources", {}).items() if e.get("fingerprint") == PENDING
    )
    if pending:
        raise StoreError(
            f"{store.root}: the last ingest did not finish (sources {', '.join(pending)} are "
            f"pending in {Store.INGEST_REPORT}); run `vigie ingest SOURCES.yaml --store "
            f"{store.root}` again before building the cube."
        )
    paths = {s: str(store.validated_path(s)) for s in CUBE_SOURCES if store.has(s)}
    if "lighting_faults" in paths and "lamps" not in paths:
        paths.pop("lighting_faults")
    return paths


def _presence_columns(paths: dict[str, str]) -> tuple[str, ...]:
    """The optional presence columns (residents, visitors) that hold at least one value."""
    if "presence" not in paths:
        return ()
    names = pq.read_schema(paths["presence"]).names
    return tuple(
        col
        for col in (*SPLIT_COLUMNS, *VISITOR_KINDS)
        if col in names and has_values(paths["presence"], col)
    )


def _categories(paths: dict[str, str]) -> tuple[tuple[str, ...], dict[str, int], dict[str, str]]:
    """Category slugs (sorted), original -> slug index, and slug -> originals joined by ' / '."""
    if "incidents" not in paths:
        return (), {}, {}
    cats = pq.read_table(paths["incidents"], columns=["category"]).column(0)
    uniq = sorted(str(c) for c in pc.unique(cats).to_pylist() if c is not None)
    by_slug: dict[str, list[str]] = {}
    for c in uniq:
        by_slug.setdefault(slug(c), []).append(c)
    categories = tuple(sorted(by_slug))
    category_map: dict[str, int] = {}
    originals: dict[str, str] = {}
    for i, s in enumerate(categories):
        originals[s] = " / ".join(by_slug[s])
        for c in by_slug[s]:
            category_map[c] = i
    return categories, category_map, originals


def _lamps(paths: dict[str, str], zone_ids: np.ndarray) -> tuple[np.ndarray | None, dict[str, int]]:
    """Lamps per zone, and the counts cube_meta.json reports (lamps outside zones, unmatched
    faults)."""
    if "lamps" not in paths:
        return None, {}
    info: dict[str, int] = {}
    lamp_tbl = pq.read_table(paths["lamps"], columns=["lamp_id", "zone_id"])
    lz = lamp_tbl.column("zone_id").to_pandas()
    idx = pd.Index(zone_ids).get_indexer(lz.astype(object))
    lamps = np.bincount(idx[idx >= 0], minlength=len(zone_ids)).astype(np.int32)
    info["lamps_outside_zones"] = int((idx < 0).sum())
    if "lighting_faults" in paths:
        flt = pq.read_table(paths["lighting_faults"], columns=["lamp_id"]).column(0)
        matched = pc.is_in(flt, value_set=pc.unique(lamp_tbl.column("lamp_id")))
        info["faults_unmatched"] = int(len(flt) - (pc.sum(matched).as_py() or 0))
    return lamps, info


def _calendar(
    area: dict[str, Any],
    *,
    tz: str,
    grain: str,
    period: tuple[int, int],
    zones: pd.DataFrame,
    zone_ids: np.ndarray,
) -> _Calendar:
    """Holiday flags and (hourly grain) sun tables by local day, over the lookback and a day of
    margin each side of the period."""
    start_s, end_s = period
    day0 = local_day(np.array([start_s - LOOKBACK_HOURS * HOUR - DAY]), tz)[0]
    day1 = local_day(np.array([end_s + DAY]), tz)[0] + 1
    country = area.get("country") or default_country(tz)
    school_zone = area.get("school_zone") if country == "FR" else None
    try:
        holiday, school = day_flags(
            int(day0),
            int(day1),
            country=country,
            subdivision=area.get("subdivision"),
            school_zone=school_zone,
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
    return _Calendar(int(day0), holiday, school, sun_rise, sun_set, zone_cell, country, school_zone)


# ------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------
def make_plan(
    store: Store,
    *,
    start: Any = None,
    end: Any = None,
    memory_limit: str = "4GB",
    threads: int | None = None,
) -> Plan:
    """Read the store's study, zones and source facts into a :class:`Plan`.

    Parameters
    ----------
    store
        The store holding ``study.json`` and ``validated/*.parquet``.
    start, end
        Optional study period as local dates (``end`` exclusive).
    memory_limit, threads
        DuckDB settings, carried to the DuckDB engine.

    Returns
    -------
    Plan

    Raises
    ------
    StoreError
        Bad grain, no zones, or no dated source to build a period from.
    ConfigError
        Unreadable period, or a country or school zone the calendars do not know.
    """
    area, tz, grain = _area(store)
    zones = _zones(store)
    zone_ids = zones["zone_id"].to_numpy(dtype=object)
    paths = _source_paths(store)
    categories, category_map, originals = _categories(paths)
    lamps, info = _lamps(paths, zone_ids)
    start_s, end_s = study_period(store.root, paths, tz=tz, start=start, end=end)
    cal = _calendar(
        area, tz=tz, grain=grain, period=(start_s, end_s), zones=zones, zone_ids=zone_ids
    )
    return Plan(
        root=str(store.root),
        grain=grain,
        tz=tz,
        zone_ids=zone_ids,
        paths=paths,
        presence_cols=_presence_columns(paths),
        categories=categories,
        category_map=category_map,
        category_originals=originals,
        lamps=lamps,
        start_s=start_s,
        end_s=end_s,
        day0=cal.day0,
        holiday=cal.holiday,
        school_holiday=cal.school_holiday,
        sun_rise=cal.sun_rise,
        sun_set=cal.sun_set,
        zone_cell=cal.zone_cell,
        country=cal.country,
        school_zone=cal.school_zone,
        memory_limit=memory_limit,
        threads=threads,
        info=info,
        population=zone_population(zones, zone_ids),
    )
