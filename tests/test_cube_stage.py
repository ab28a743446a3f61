"""The DuckDB engine's staging (issue 18): the pieces it stages give, month by month, exactly
the aggregates one SQL GROUP BY over the same slots gives; the cube reads no column outside
``INPUT_COLUMNS``; months built two at a time give the same cube as one at a time.

The reference aggregates below are the engine's former statements (a GROUP BY per zone and
hour after expanding every slot), kept here as the independent computation.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _cube_fixtures import make_store  # noqa: E402

import features.cube.build as cube_build  # noqa: E402
import features.cube.duck as duck  # noqa: E402
from features.cube import build_cube  # noqa: E402
from features.cube.duck import DuckStage, _Sql  # noqa: E402
from features.cube.period import DAY, HOUR  # noqa: E402
from features.cube.plan import INPUT_COLUMNS, make_plan  # noqa: E402
from features.store import Store  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Every source, 4 zones over six weeks, presence in 2 h, 15 min and 1 h slots."""
    root = make_store(tmp_path_factory.mktemp("stage"))
    build_cube(Store(root), engine="duckdb")
    return Store(root)


def _reference(q: _Sql, source: str) -> str:
    """One GROUP BY per (zone, hour) over every slot spread on the hours it overlaps."""
    if source == "presence":
        stocks = ("present", *q.plan.presence_cols)
        aggs = ", ".join(
            f"sum({c} * w) / sum(CASE WHEN {c} IS NOT NULL THEN w END) AS {c}" for c in stocks
        )
        cols, lo, extra = ", ".join(f"p.{c}" for c in stocks), q.w0, ""
        value = aggs
    else:
        cols, lo, extra = "p.entries", q.a0, " AND p.entries IS NOT NULL"
        value = "sum(entries * w / (e - s)) AS entries"
    return f"""
        WITH src AS (
          SELECT z.zi, epoch(p.start::TIMESTAMPTZ) AS s,
                 {q.slot_end("p.start", "coalesce(p.slot_minutes, 60)")} AS e, {cols}
          FROM {q.read(source)} p JOIN zmap z ON z.zone_id = p.zone_id
          WHERE p.start >= {q.lit(source, "start", lo * HOUR - 2 * DAY)}
            AND p.start < {q.lit(source, "start", q.a1 * HOUR)}{extra}
        ), {q.overlaps(lo)}
        SELECT zi, k AS eh, {value} FROM ov WHERE w > 0 GROUP BY zi, k ORDER BY zi, k
        """


@pytest.mark.parametrize("sort_rows", [duck.SORT_ROWS, 0])
def test_staged_pieces_give_the_group_by_exactly(
    tmp_path, store: Store, monkeypatch, sort_rows: int
) -> None:
    """Presence means and ridership sums of every month equal the GROUP BY's to the last bit
    (the 2 h and 15 min slots go through the spreading path, the hourly ones the direct one),
    whether the stage is sorted by hour (large sources) or not."""
    monkeypatch.setattr(duck, "SORT_ROWS", sort_rows)
    plan = make_plan(store)
    specs = plan.months()
    stage = DuckStage(plan, specs, tmp_path)
    try:
        for spec in specs:
            got = stage.inputs(spec)
            for source in ("presence", "ridership"):
                q = _Sql(stage.con, plan, spec.a0, spec.a1, spec.w0)
                want = stage.con.sql(_reference(q, source)).df()
                have = pd.DataFrame(got[source]).sort_values(["zi", "eh"], ignore_index=True)
                have = have.astype({"zi": want["zi"].dtype, "eh": want["eh"].dtype})
                pd.testing.assert_frame_equal(have[list(want.columns)], want, check_exact=True)
    finally:
        stage.close()
    # the fixture does hold slots of every kind
    kinds = set(pq.read_table(plan.paths["presence"], columns=["slot_minutes"])[0].to_pylist())
    assert {15, 60, 120} <= kinds


def test_cube_reads_only_its_input_columns(tmp_path, store: Store) -> None:
    """A store whose validated files hold only INPUT_COLUMNS builds the same cube."""
    root = tmp_path / "slim"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("cube", "cube_meta.json"))
    dropped = 0
    for source, cols in INPUT_COLUMNS.items():
        path = root / "validated" / f"{source}.parquet"
        if not path.exists():
            continue
        table = pq.read_table(path)
        keep = [c for c in table.column_names if c in cols]
        dropped += table.num_columns - len(keep)
        pq.write_table(table.select(keep), path)
    assert dropped > 0  # the fixture's files do carry other columns
    build_cube(Store(root), engine="duckdb")
    pd.testing.assert_frame_equal(Store(root).cube(), store.cube(), check_exact=True)


def test_months_two_at_a_time_equal_one_at_a_time(tmp_path, store: Store, monkeypatch) -> None:
    """The month threads change nothing in the cube."""
    root = tmp_path / "serial"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("cube", "cube_meta.json"))
    monkeypatch.setattr(cube_build, "MONTH_THREADS", 1)
    build_cube(Store(root), engine="duckdb")
    cube = Store(root).cube()
    assert len(cube) and np.isfinite(cube["present"]).any()
    pd.testing.assert_frame_equal(cube, store.cube(), check_exact=True)


def test_cube_refused_while_an_ingest_is_unfinished(tmp_path, store: Store) -> None:
    """A killed re-ingest leaves some sources rewritten and others not, marked pending in the
    ingest report: the cube refuses to mix them, naming the sources and the command to run."""
    import json

    from features.errors import StoreError

    root = tmp_path / "store"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("cube", "cube_meta.json"))
    # the report as features.ingest.writing._mark_pending leaves it (this fixture has none)
    sources = {"presence": {"fingerprint": "pending"}, "incidents": {"fingerprint": "0" * 64}}
    (root / Store.INGEST_REPORT).write_text(json.dumps({"sources": sources}))
    with pytest.raises(StoreError, match=r"did not finish \(sources presence are pending") as err:
        build_cube(Store(root), engine="duckdb")
    assert "vigie ingest" in str(err.value)
    assert not (root / "cube").exists()
