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
``duckdb`` (default) reads each source's Parquet file once in SQL into hour pieces (hourly
slots whole, the others spread over the hours they overlap), which each month sums or averages
per zone-hour in numpy, two months at a time up to 2 000 zones;
``pandas`` does the same with pyarrow + numpy; ``dask`` runs the pandas month builder as one
``dask.delayed`` task per month, on the local threaded scheduler or on a ``distributed``
cluster (``dask_address``). All three produce the same table: the per-source aggregates differ
in engine only, the grid, reference value, calendar and writing are shared code.

Every engine returns, for one month, a dict of source -> dict of numpy arrays (``zi`` an index
into the plan's zones, ``eh`` an epoch hour, UTC seconds // 3600)::

    presence:  zi, eh, present[, residents, visitors]   hours [w0, a1)
    incidents: zi, eh, ci, n                              hours [a0, a1)
    ridership: zi, eh, entries                            hours [a0, a1)
    events:    zi, eh, ev (event_id), att                 hours [w0, a1)
    lamps_out: zi, k0, k1: each lamp's merged out-intervals of hours (midpoint rule), those
               meeting [a0, a1); a sweep line counts them per hour (distinct lamps)
    weather:   eh, temperature_c, precipitation_mm        hours [a0, a1)

Modules
-------
``period`` (study period, months, local calendar), ``plan`` (what every month needs, read once),
``duck`` / ``pandas_engine`` / ``dask_engine`` (the engines), ``assemble`` (the shared dense
columns), ``month`` (one partition), ``schema`` (columns, types, the pandera contract,
:class:`CubeResult`) and ``build`` (:func:`build_cube`).

References
----------
Orange Business (2023). *Flux Vision* product sheet: present population per zone and time slot,
compared with a reference period.
NOAA Global Monitoring Laboratory, *Solar Calculation Details* (the algorithm astral implements;
Meeus 1998, *Astronomical Algorithms*).
"""

from features.cube.build import ENGINES, build_cube
from features.cube.plan import CUBE_SOURCES
from features.cube.schema import CubeResult, cube_schema

__all__ = ["CUBE_SOURCES", "ENGINES", "CubeResult", "build_cube", "cube_schema"]
