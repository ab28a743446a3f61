"""``vigie fit`` at region scale: the large-study rule (issue 18).

Above ``large_rows`` zone-slots the fit never loads the cube whole
(:mod:`pipelines.models.large`): the GLMs of every group are fitted on the whole period's cells,
aggregated by DuckDB over the month partitions (:mod:`pipelines.models.cells_sql`), and what
needs rows reads a recent window. On the tiny city (the threshold lowered so the rule applies):

* DuckDB's cells are the cells the row path builds (same keys, same sums);
* the Poisson and NB2 GLMs fitted on them are the row path's (coefficients within 1e-6) when the
  window holds every row;
* ``fit_all`` under the rule writes models, backtest and effects, states the rule in
  models.json and in its summary, reads only the window for the rows, and its GLMs are still
  the whole period's.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.store import Store
from pipelines.models import large
from pipelines.models.cells_sql import sql_cells
from pipelines.models.cube_io import cube_columns_needed
from pipelines.models.design import group_counts
from pipelines.models.fit import _design, fit_all, load_cube
from pipelines.models.glm import fit_glm


@pytest.fixture(scope="module")
def whole(tiny_store):
    cube, grain = load_cube(Store(tiny_store))
    return cube, _design(cube, grain=grain, resolution=0.05)


def test_duckdb_cells_are_the_row_cells(tiny_store, whole) -> None:
    """Same cells, rows and incidents; exposure sums to 1e-12 relative."""
    cube, d = whole
    st = Store(tiny_store)
    cols = cube_columns_needed(st.cube_meta()["columns"])
    got = sql_cells(
        large.cube_files(st), columns=cols, grain=d.grain, features=d.features,
        groups={"all": None, "violence": ["atteinte_personne"]}, resolution=0.05,
    )  # fmt: skip
    e = d.dz["exposure"].to_numpy(dtype=np.float64)
    use = np.isfinite(e) & (e > 0)
    ref = d.cells.keys.copy()
    ref["E"] = d.cells.sums(e, use)
    ref["rows"] = d.cells.sums(np.ones(len(e)), use)
    ref["y_all"] = d.cells.sums(group_counts(cube, None), use)
    ref["y_violence"] = d.cells.sums(group_counts(cube, ["atteinte_personne"]), use)
    ref = ref[ref["rows"] > 0]
    keys = ["local_hour", "dow", *d.features]
    m = ref.merge(got, on=keys, how="outer", suffixes=("_row", "_sql"), indicator=True)
    assert (m["_merge"] == "both").all(), m["_merge"].value_counts()
    assert len(got) == len(ref) > 1000
    np.testing.assert_allclose(m["E_sql"], m["E_row"], rtol=1e-12)
    for c in ("rows", "y_all", "y_violence"):
        np.testing.assert_array_equal(m[f"{c}_sql"], m[f"{c}_row"])


@pytest.mark.parametrize("group", ["all", "property"])
def test_cell_glms_equal_the_row_glms(tiny_store, whole, group) -> None:
    """Poisson and NB2 on DuckDB's cells (dispersion on every row) = fit_glm on rows."""
    cube, d = whole
    stats, dropped = large.cell_stats(Store(tiny_store), groups=None, resolution=0.05)
    cats = stats.groups[group]
    y = group_counts(cube, cats)
    pois, nb = large.cell_glms(stats, group, dz=d.dz, y=y, dropped=dropped)
    for got, fam in ((pois, "poisson"), (nb, "negbin")):
        ref = fit_glm(d.dz, y, family=fam, cells=d.cells, group=group, categories=cats)
        assert got.terms == ref.terms
        np.testing.assert_allclose(got.params, ref.params, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.bse, ref.bse, rtol=1e-5)
        # alpha: a bounded 1-d search (xatol 1e-5 on log alpha) on sums added in another order
        assert got.alpha == pytest.approx(ref.alpha, rel=1e-4)
        assert got.overdispersion_t == pytest.approx(ref.overdispersion_t, rel=1e-6)
        assert (got.n_rows, got.n_incidents, got.dropped) == (ref.n_rows, ref.n_incidents,
                                                              ref.dropped)  # fmt: skip
    assert nb.alpha > 0


def test_fit_all_under_the_large_study_rule(tiny_store, whole, store_copy, monkeypatch) -> None:
    """Models, backtest and effects written; the rule stated; rows read from the window only;
    the GLMs the whole period's."""
    monkeypatch.setattr(large, "WINDOW_EXTRA_WEEKS", 4)  # the tiny city spans 8 weeks
    root = store_copy(tiny_store)
    rep = fit_all(Store(root), backtest_weeks=1, large_rows=1_000, xgb_rounds=20)
    scale = rep.scale
    assert scale["large"] and scale["window_weeks"] == 5 and scale["rows"] == 40_350
    assert 0 < scale["window_rows"] < scale["rows"]
    # the window holds whole local days: it starts at a local midnight of the study's zone
    tz = json.loads((root / "cube_meta.json").read_text())["timezone"]
    start = pd.Timestamp(scale["window_start"]).tz_convert(tz)
    assert (start.hour, start.minute) == (0, 0), start
    assert "large study" in rep.summary() and "last 5 weeks" in rep.summary()
    man = json.loads((root / "models" / "models.json").read_text())
    assert man["scale"]["large"] and "last 5 weeks" in man["scale"]["rule"]
    cube, d = whole
    assert pd.Timestamp(man["period"]["start"]) == cube["hour"].min()
    for f in ("backtest.parquet", "evaluation.json", "effects.json", "irr.parquet"):
        assert (root / "models" / f).exists(), f
    bt = pd.read_parquet(root / "models" / "backtest.parquet")
    assert (bt["origin"] >= pd.Timestamp(scale["window_start"])).all()
    assert {"zone_glm", "glm", "xgb"} <= set(bt["model"])
    # the zone model is fitted on the window's rows; the GLMs on the whole period's
    glm_all = json.loads((root / "models" / "glm_all.json").read_text())
    ref = fit_glm(d.dz, group_counts(cube, None), family=glm_all["family"], cells=d.cells)
    assert glm_all["n_rows"] == ref.n_rows > scale["window_rows"]
    if glm_all["family"] == "poisson":
        np.testing.assert_allclose(glm_all["params"], ref.params, atol=1e-6)
    zone = json.loads((root / "models" / "zone_glm_all.json").read_text())
    assert zone["n_rows"] <= scale["window_rows"]


def test_below_the_threshold_nothing_changes(fitted_store) -> None:
    """The default fit of the tiny city reads the whole cube and says no rule applied."""
    man = json.loads((fitted_store / "models" / "models.json").read_text())
    assert man["scale"] == {**man["scale"], "large": False, "rows": 40_350}
    assert "rule" not in man["scale"]


@pytest.mark.parametrize(
    ("tz", "end", "local"),
    [
        ("Europe/Paris", "2026-11-15 23:00", "2026-07-20 00:00"),
        # midnight skipped by daylight saving (Santiago, 2023-09-03): the day starts at 01:00
        ("America/Santiago", "2023-12-03 12:00", "2023-09-03 01:00"),
        # midnight repeated (Havana, 2023-11-05): the standard-time one
        ("America/Havana", "2024-02-04 12:00", "2023-11-05 00:00"),
    ],
)
def test_window_starts_at_a_local_midnight(tz, end, local) -> None:
    """Whole local days, also when the window's first day begins or ends daylight saving at
    midnight (normalising a local time there raised)."""
    start = large.window_start(pd.Timestamp(end, tz="UTC"), weeks=13 if tz != "Europe/Paris"
                               else 17, tz=tz)  # fmt: skip
    assert start.tz_convert(tz).strftime("%Y-%m-%d %H:%M") == local
