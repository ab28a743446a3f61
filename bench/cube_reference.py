"""The plain DuckDB cube of the benchmark: one SQL statement written by hand (not by vigie).

It computes the same columns as ``features.cube.build_cube`` at hourly grain (slot expansion of
presence/ridership/weather, incidents per category, distinct lamps out at the midpoint, events,
the windowed 8-week median reference value, darkness from a sunrise/sunset table and holiday
flags) and writes the same month partitions with ``COPY ... PARTITION_BY``. DuckDB cannot compute
sunrise or holidays, so those two small tables are prepared first (:func:`reference_sql`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.calendar import day_flags, sun_table
from features.config import default_country
from features.cube import CUBE_SOURCES
from features.store import Store
from features.text import slug
from features.zones import centroids


def _calendar_inputs(store: Store, meta: dict, work: Path) -> None:
    """Write the small tables DuckDB cannot compute to ``work``: zone -> sun cell, sunrise and
    sunset per cell and local date, and holiday flags per local date."""
    tz = meta["timezone"]
    zones = store.zones()
    zones["zone_id"] = zones["zone_id"].astype(str)
    cent = centroids(zones)
    day0 = pd.Timestamp(meta["start"]).tz_convert(tz).normalize().tz_localize(None) - pd.Timedelta(
        days=60
    )
    day1 = pd.Timestamp(meta["end"]).tz_convert(tz).normalize().tz_localize(None) + pd.Timedelta(
        days=2
    )
    days = np.arange(day0.value // 86_400_000_000_000, day1.value // 86_400_000_000_000)
    rise, sset, cell = sun_table(
        cent["latitude"].to_numpy(), cent["longitude"].to_numpy(), days, timezone=tz
    )
    area = store.study()["area"]
    country = area.get("country") or default_country(tz)
    hol, school = day_flags(
        int(days[0]),
        int(days[-1]) + 1,
        country=country,
        subdivision=area.get("subdivision"),
        school_zone=area.get("school_zone") if country == "FR" else None,
    )
    work.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"zone_id": cent["zone_id"], "cell": cell}).to_parquet(work / "zcell.parquet")
    dates = pd.to_datetime(days, unit="D").date
    pd.DataFrame(
        {
            "cell": np.repeat(np.arange(rise.shape[0]), len(days)),
            "d": np.tile(dates, rise.shape[0]),
            "rise": rise.ravel(),
            "sset": sset.ravel(),
        }
    ).to_parquet(work / "sun.parquet")
    pd.DataFrame({"d": dates, "holiday": hol, "school_holiday": school}).to_parquet(
        work / "days.parquet"
    )


_TS = "::TIMESTAMPTZ"


class _Reference:
    """The hand-written statement, built as CTEs, SELECT items and JOINs, one source at a time."""

    def __init__(self, store: Store, meta: dict, work: Path) -> None:
        self.work = work
        self.tz = meta["timezone"]
        self.h0 = int(pd.Timestamp(meta["start"]).value // 10**9) // 3600
        self.h1 = int(pd.Timestamp(meta["end"]).value // 10**9) // 3600
        self.lookback = self.h0 - 57 * 24
        self.v = store.validated_dir
        self.has = {s: (self.v / f"{s}.parquet").exists() for s in CUBE_SOURCES}
        self.cols = set(meta["columns"])
        self.cats = {
            s: [c for c, sl in ((c, slug(c)) for c in _categories(self.v)) if sl == s]
            for s in meta["categories"]
        }
        tz, h0, h1 = self.tz, self.h0, self.h1
        self.ctes = [
            f"""hours AS (
          SELECT eh, to_timestamp(eh * 3600) AS hour, timezone('{tz}', to_timestamp(eh * 3600)) AS lt,
                 timezone('{tz}', to_timestamp(eh * 3600 + 1800)) AS lmid
          FROM range({h0}, {h1}) t(eh))""",
            f"grid AS (SELECT z.zone_id, h.* FROM (SELECT zone_id FROM read_parquet('{work / 'zcell.parquet'}')) z, hours h)",
        ]
        self.select = [
            "g.zone_id",
            "g.hour::TIMESTAMPTZ_NS AS hour",
            "hour(g.lt)::TINYINT AS local_hour",
            "(isodow(g.lt) - 1)::TINYINT AS dow",
            "g.lt::DATE AS local_date",
        ]
        self.joins: list[str] = []

    def q(self, source: str) -> str:
        return f"read_parquet('{self.v / (source + '.parquet')}')"

    def slot_end(self, start: str) -> str:
        m, tz = "coalesce(slot_minutes, 60)", self.tz
        return (
            f"CASE WHEN {m} % 1440 = 0 THEN epoch(timezone('{tz}', timezone('{tz}', {start}{_TS})"
            f" + to_days(({m} // 1440)::INTEGER))) ELSE epoch({start}{_TS}) + 60 * {m} END"
        )

    def spread(self, src: str, lo: int, value_sql: str, group: str, where: str = "TRUE") -> str:
        return f"""
          SELECT {group}, k AS eh, {value_sql}
          FROM (SELECT *, least(e, (k + 1) * 3600.0) - greatest(s, k * 3600.0) AS w FROM (
                  SELECT *, unnest(range(greatest(floor(s / 3600), {lo})::BIGINT,
                                         least(ceil(e / 3600), {self.h1})::BIGINT)) AS k
                  FROM (SELECT *, epoch(start{_TS}) AS s, {self.slot_end("start")} AS e
                        FROM {src} WHERE {where})))
          WHERE w > 0 GROUP BY ALL"""

    def presence(self) -> None:
        extra = [c for c in ("residents", "visitors") if c in self.cols]
        vals = ", ".join(
            f"sum({c} * w) / sum(CASE WHEN {c} IS NOT NULL THEN w END) AS {c}"
            for c in ["present", *extra]
        )
        lb = self.lookback
        self.ctes.append(
            f"pres AS ({self.spread(self.q('presence'), lb, vals, 'zone_id', f'start >= to_timestamp({lb * 3600 - 172800})::TIMESTAMPTZ_NS')})"
        )
        self.ctes.append(
            "evh AS (SELECT DISTINCT zone_id, eh + d AS eh FROM events_h, range(-3, 4) t(d))"
            if self.has["events"]
            else "evh AS (SELECT NULL::VARCHAR AS zone_id, NULL::BIGINT AS eh WHERE FALSE)"
        )
        self.ctes += self._baseline_ctes()
        self.joins.append("LEFT JOIN pres p ON p.zone_id = g.zone_id AND p.eh = g.eh")
        self.joins.append(
            "LEFT JOIN base b ON b.zone_id = g.zone_id AND b.d = g.lt::DATE AND b.lh = hour(g.lt)"
        )
        self.select += [
            "p.present",
            "p.present IS NULL AS present_missing",
            "b.present_baseline",
            "CASE WHEN b.present_baseline > 0 THEN p.present / b.present_baseline END AS present_ratio",
            *[f"p.{c}" for c in extra],
        ]

    def _baseline_ctes(self) -> list[str]:
        return [
            f"""pool AS (
          SELECT zone_id, timezone('{self.tz}', to_timestamp(eh * 3600)) AS lt, present
          FROM pres ANTI JOIN evh USING (zone_id, eh))""",
            """agg AS (
          SELECT zone_id, lt::DATE AS d, hour(lt) AS lh, avg(present) AS v FROM pool GROUP BY ALL)""",
            """slots AS (
          SELECT k.zone_id, k.d, k.lh, a.v FROM (
            SELECT DISTINCT zone_id, lt::DATE AS d, hour(lt) AS lh FROM grid
            UNION SELECT zone_id, d, lh FROM agg) k
          LEFT JOIN agg a ON a.zone_id = k.zone_id AND a.d = k.d AND a.lh = k.lh)""",
            """base AS (
          SELECT zone_id, d, lh,
                 CASE WHEN count(v) OVER w >= 2 THEN median(v) OVER w END AS present_baseline
          FROM slots
          WINDOW w AS (PARTITION BY zone_id, lh, isodow(d) ORDER BY d
                       RANGE BETWEEN INTERVAL 56 DAYS PRECEDING AND INTERVAL 7 DAYS PRECEDING))""",
        ]

    def incidents(self) -> None:
        cats = self.cats
        filt = ", ".join(
            f"count(*) FILTER (WHERE category IN ({', '.join(repr(c) for c in cats[s])}))::INTEGER AS inc_{s}"
            for s in sorted(cats)
        )
        self.ctes.append(f"""inc AS (
          SELECT zone_id, floor(epoch(occurred_at{_TS}) / 3600)::BIGINT AS eh, count(*)::INTEGER AS incidents, {filt}
          FROM {self.q("incidents")} WHERE zone_id IS NOT NULL GROUP BY ALL)""")
        self.joins.append("LEFT JOIN inc i ON i.zone_id = g.zone_id AND i.eh = g.eh")
        self.select.append("coalesce(i.incidents, 0)::INTEGER AS incidents")
        self.select += [f"coalesce(i.inc_{s}, 0)::INTEGER AS inc_{s}" for s in sorted(cats)]

    def lamps(self) -> None:
        self.ctes.append(
            f"lampn AS (SELECT zone_id, count(*)::INTEGER AS lamps FROM {self.q('lamps')} GROUP BY ALL)"
        )
        self.joins.append("LEFT JOIN lampn ln ON ln.zone_id = g.zone_id")
        self.select.append("coalesce(ln.lamps, 0)::INTEGER AS lamps")
        if not self.has["lighting_faults"]:
            return
        self.ctes.append(f"""lout AS (
              SELECT zone_id, eh, count(DISTINCT lamp_id)::INTEGER AS lamps_out FROM (
                SELECT l.zone_id, f.lamp_id,
                       unnest(range(greatest(ceil((epoch(f.reported_at{_TS}) - 1800) / 3600), {self.h0})::BIGINT,
                                    least(ceil((coalesce(epoch(f.repaired_at{_TS}), 1e18) - 1800) / 3600), {self.h1})::BIGINT)) AS eh
                FROM {self.q("lighting_faults")} f JOIN {self.q("lamps")} l ON l.lamp_id = f.lamp_id)
              GROUP BY ALL)""")
        self.joins.append("LEFT JOIN lout lo ON lo.zone_id = g.zone_id AND lo.eh = g.eh")
        self.select.append("coalesce(lo.lamps_out, 0)::INTEGER AS lamps_out")

    def dark(self) -> None:
        self.ctes.append(f"zc AS (SELECT * FROM read_parquet('{self.work / 'zcell.parquet'}'))")
        self.ctes.append(f"sun AS (SELECT * FROM read_parquet('{self.work / 'sun.parquet'}'))")
        self.joins.append("JOIN zc ON zc.zone_id = g.zone_id")
        self.joins.append("JOIN sun ON sun.cell = zc.cell AND sun.d = g.lmid::DATE")
        self.select.append(
            "(g.eh * 3600 + 1800 < sun.rise OR g.eh * 3600 + 1800 >= sun.sset) AS dark"
        )

    def ridership(self) -> None:
        self.ctes.append(
            f"rid AS ({self.spread(self.q('ridership'), self.h0, 'sum(entries * w / (e - s)) AS entries', 'zone_id', 'zone_id IS NOT NULL AND entries IS NOT NULL')})"
        )
        self.joins.append("LEFT JOIN rid r ON r.zone_id = g.zone_id AND r.eh = g.eh")
        self.select.append("coalesce(r.entries, 0.0) AS ridership_entries")

    def events(self) -> None:
        self.ctes.insert(
            2,
            f"""events_h AS (
          SELECT DISTINCT zone_id, event_id, att, unnest(range(greatest(floor(s / 3600), {self.lookback})::BIGINT,
                                                       least(ceil(e / 3600), {self.h1})::BIGINT)) AS eh
          FROM (SELECT zone_id, event_id, coalesce(expected_attendance, 0.0) AS att, epoch(start{_TS}) AS s,
                       greatest(epoch("end"{_TS}), epoch(start{_TS}) + 1) AS e
                FROM {self.q("events")} WHERE zone_id IS NOT NULL))""",
        )
        self.ctes.append(
            "eva AS (SELECT zone_id, eh, count(*)::INTEGER AS n, sum(att) AS att FROM events_h GROUP BY ALL)"
        )
        self.joins.append("LEFT JOIN eva ea ON ea.zone_id = g.zone_id AND ea.eh = g.eh")
        self.select += [
            "coalesce(ea.n, 0)::INTEGER AS events_active",
            "coalesce(ea.att, 0.0) AS event_attendance",
        ]

    def holidays(self) -> None:
        self.ctes.append(f"days AS (SELECT * FROM read_parquet('{self.work / 'days.parquet'}'))")
        self.joins.append("JOIN days dd ON dd.d = g.lt::DATE")
        self.select += ["dd.holiday", "dd.school_holiday"]

    def weather(self) -> None:
        vals = (
            "sum(temperature_c * w) / sum(CASE WHEN temperature_c IS NOT NULL THEN w END) AS temperature_c, "
            "sum(precipitation_mm * w / (e - s)) AS precipitation_mm"
        )
        self.ctes.append(f"wx AS ({self.spread(self.q('weather'), self.h0, vals, '1 AS one')})")
        self.joins.append("LEFT JOIN wx ON wx.eh = g.eh")
        self.select += ["wx.temperature_c", "wx.precipitation_mm"]

    def statement(self, out_dir: Path) -> str:
        """Every part, in the cube's column order, as one COPY ... PARTITION_BY statement."""
        for source in ("presence", "incidents", "lamps"):
            if self.has[source]:
                getattr(self, source)()
        self.dark()
        for source in ("ridership", "events"):
            if self.has[source]:
                getattr(self, source)()
        self.holidays()
        if self.has["weather"]:
            self.weather()
        self.select.append("strftime(g.hour, '%Y-%m') AS month")
        return (
            "COPY (WITH "
            + ",\n".join(self.ctes)
            + "\nSELECT "
            + ", ".join(self.select)
            + "\nFROM grid g\n"
            + "\n".join(self.joins)
            + f"\n) TO '{out_dir}' (FORMAT PARQUET, PARTITION_BY (month), OVERWRITE_OR_IGNORE)"
        )


def reference_sql(store_root: Path, out_dir: Path, work: Path) -> dict:
    """The hand-written DuckDB statement for the same cube as vigie's (hourly grain).

    Small calendar inputs (zone -> sun cell, sunrise/sunset per cell and local date, holiday
    flags per local date) are written to ``work`` as Parquet first; everything else is read from
    the store's validated Parquet files by the SQL itself.
    """
    store = Store(store_root)
    meta = store.cube_meta()  # the period and categories vigie used, so both build the same grid
    if meta["grain"] != "1h":
        raise ValueError("the DuckDB reference is written for the hourly grain")
    _calendar_inputs(store, meta, work)
    sql = _Reference(store, meta, work).statement(out_dir)
    return {
        "setup": [
            "SET TimeZone='UTC'",
            "SET memory_limit='8GB'",
            f"SET temp_directory='{work / 'spill'}'",
            "SET preserve_insertion_order=false",
        ],
        "sql": sql,
        "count": f"SELECT count(*) FROM read_parquet('{out_dir}/*/*.parquet')",
    }


def _categories(validated: Path) -> list[str]:
    col = pq.read_table(validated / "incidents.parquet", columns=["category"]).column(0)
    return sorted({c for c in col.to_pylist() if c is not None})
