"""The Dask distributed path gives the local path's results (issue 18).

On the tiny city, a ``distributed.LocalCluster`` of 2 workers computes the GLM's sufficient
statistics (a groupby of the cube's month partitions on the cluster); they equal the cells the
local fit builds from the whole cube, and the Poisson GLM fitted on them has the local fit's
IRRs within 1e-6. The cube and fit commands on the cluster give the local cube and fits; the
signals of a week, with the space-time scan per zone block on the cluster, are the local run's
tests, p values, q values and signals exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cube.dask_engine import scheduler
from features.errors import ConfigError
from features.store import Store
from pipelines.models.design import group_counts
from pipelines.models.distributed import cell_statistics, fit_cells
from pipelines.models.fit import _design, load_cube
from pipelines.models.glm import fit_glm

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster_stats(tiny_store):
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        return cell_statistics(Store(tiny_store), address=cluster.scheduler_address)


@pytest.fixture(scope="module")
def local(tiny_store):
    cube, grain = load_cube(Store(tiny_store))
    return cube, _design(cube, grain=grain, resolution=0.05)


def _local_cells(local, group_cats) -> pd.DataFrame:
    cube, d = local
    use = np.isfinite(d.dz["exposure"].to_numpy()) & (d.dz["exposure"].to_numpy() > 0)
    e = np.where(use, d.dz["exposure"].to_numpy(dtype=np.float64), 0.0)
    y = np.where(use, group_counts(cube, group_cats), 0.0)
    keys = d.cells.keys.copy()
    keys["E"] = d.cells.sums(e)
    keys["y"] = d.cells.sums(y)
    keys["rows"] = np.bincount(d.cells.cell, weights=use, minlength=d.cells.n)
    keys = keys[keys["rows"] > 0]
    cols = ["local_hour", "dow", *d.features]
    return keys.sort_values(cols, kind="stable").reset_index(drop=True)


def test_cluster_cells_equal_the_local_cells(cluster_stats, local) -> None:
    """Same cells, same row counts and incident sums, exposure sums to 1e-12 relative."""
    assert cluster_stats.partitions >= 2  # the tiny city spans several months
    ref = _local_cells(local, None)
    got = cluster_stats.cells
    assert list(cluster_stats.features) == list(local[1].features)
    key_cols = cluster_stats.keys
    pd.testing.assert_frame_equal(
        got[key_cols].astype(float).reset_index(drop=True),
        ref[key_cols].astype(float).reset_index(drop=True),
    )
    np.testing.assert_array_equal(got["rows"].to_numpy(), ref["rows"].to_numpy())
    np.testing.assert_array_equal(got["y_all"].to_numpy(), ref["y"].to_numpy())
    np.testing.assert_allclose(got["E"].to_numpy(), ref["E"].to_numpy(), rtol=1e-12)


def test_cluster_glm_has_the_local_irrs(cluster_stats, local) -> None:
    """The Poisson GLM on the cluster's cells: the local fit's terms, IRRs within 1e-6."""
    cube, d = local
    for group, cats in cluster_stats.groups.items():
        ref = fit_glm(d.dz, group_counts(cube, cats), family="poisson", cells=d.cells,
                      group=group, categories=cats, min_incidents=1)  # fmt: skip
        got = fit_cells(cluster_stats, group, min_incidents=1)
        assert got.terms == ref.terms, group
        np.testing.assert_allclose(np.exp(got.params), np.exp(ref.params), rtol=1e-6, atol=0)
        np.testing.assert_allclose(np.sqrt(np.diag(got.cov)), ref.bse, rtol=1e-5)
        assert got.n_rows == ref.n_rows and got.n_incidents == ref.n_incidents


def test_threads_and_cluster_give_the_same_cells(cluster_stats, tiny_store) -> None:
    """The same code path without a scheduler (local threads) gives identical cells."""
    threads = cell_statistics(Store(tiny_store))
    pd.testing.assert_frame_equal(threads.cells, cluster_stats.cells, check_exact=False, rtol=1e-12)


def test_scheduler_option_values() -> None:
    """None means local threads; a dead address fails with a clear message."""
    with scheduler(None) as address:
        assert address is None
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        with scheduler("tcp://127.0.0.1:1"):
            pass


def test_cube_command_on_a_cluster(tmp_path, tiny_store) -> None:
    """`vigie cube --scheduler ADDRESS` builds, on the cluster, the same cube as DuckDB."""
    import shutil

    from typer.testing import CliRunner

    from pipelines.cli import app

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        res = CliRunner().invoke(
            app, ["cube", "--store", str(root), "--scheduler", cluster.scheduler_address]
        )
    assert res.exit_code == 0, res.output
    assert "engine dask" in res.output
    got, ref = Store(root).cube(), Store(tiny_store).cube()
    pd.testing.assert_frame_equal(got[ref.columns], ref, check_exact=False, rtol=1e-9)


def test_local_scheduler_starts_and_stops_a_cluster() -> None:
    """`--scheduler local` runs tasks on a LocalCluster started for the command."""
    import dask

    from features.cube.dask_engine import run_tasks

    with scheduler("local", workers=1) as address:
        assert address is not None and address.startswith("tcp://")
        assert run_tasks([dask.delayed(sum)([1, 2, 3])], address) == [6]


def test_fit_command_on_a_cluster(tmp_path, tiny_store, cluster_stats, local) -> None:
    """`vigie fit --scheduler ADDRESS` writes the cluster's Poisson GLMs (models/cluster_glm.json)
    and XGBoost trained through xgboost.dask on the same cells (models/cluster_xgb.json), whose
    predictions are the local cell fit's within 1e-6.

    The tolerance: xgboost.dask adds each tree's gradient histograms across workers (another
    order of additions) and merges the workers' quantile sketches; with the tiny city's
    features (fewer distinct values than max_bin) the bins are the same and the predictions
    came out equal, but neither is promised in general.
    """
    import json
    import shutil

    from typer.testing import CliRunner

    from pipelines.cli import app

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        res = CliRunner().invoke(
            app, ["fit", "--store", str(root), "--scheduler", cluster.scheduler_address]
        )
    assert res.exit_code == 0, res.output
    assert "all: Poisson on" in res.output
    saved = json.loads((root / "models" / "cluster_glm.json").read_text())
    ref = fit_cells(cluster_stats, "all")
    np.testing.assert_allclose(saved["all"]["params"], ref.params, rtol=1e-9)
    assert saved["all"]["terms"] == list(ref.terms)
    import xgboost as xgb

    from pipelines.models.xgb import XGBFit, fit_xgb

    assert "through xgboost.dask" in res.output
    listing = json.loads((root / "models" / "cluster_xgb.json").read_text())["all"]
    booster = xgb.Booster(model_file=str(root / "models" / listing["file"]))
    got = XGBFit("all", booster, tuple(listing["columns"]), 0.0, listing["n_rows"],
                 listing["n_incidents"], offset=listing["offset"])  # fmt: skip
    cube, d = local
    ref_x = fit_xgb(d.dz, group_counts(cube, None), cells=d.cells, zone_features=False)
    assert got.columns == ref_x.columns and got.n_rows == ref_x.n_rows
    assert got.offset == pytest.approx(ref_x.offset, rel=1e-12)
    a, b = ref_x.mean(d.dz), got.mean(d.dz)
    ok = np.isfinite(a)
    assert ok.sum() > 1000
    np.testing.assert_allclose(b[ok], a[ok], rtol=1e-6)


def _week_local_and_on_cluster(store: Store, **options):
    """The store's last full week of signals in one process and on a 2-worker LocalCluster."""
    from features.timeutil import last_full_week
    from pipelines.signals.period import parse_period
    from pipelines.signals.run import run_signals

    meta = store.cube_meta()
    period = parse_period(last_full_week(meta["end"], meta.get("timezone") or "UTC"))
    local = run_signals(store, period, write=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        dist = run_signals(store, period, write=False, address=cluster.scheduler_address, **options)
    return local, dist


@pytest.fixture(scope="module")
def signals_pair(fitted_store):
    """The tiny city's last week of signals in one process, and per zone block on a cluster
    (with its fitted model: the blocks read their zones' rows and the model's expectation)."""
    local, dist = _week_local_and_on_cluster(Store(fitted_store), zone_blocks=4)
    return local, dist


def test_cluster_signals_are_the_local_signals(signals_pair) -> None:
    """Per zone block on 2 workers: the same tests, p values, q values and signals, exactly."""
    local, dist = signals_pair
    # the tiny city has 8 weeks: the model-based path, whose scan runs per zone block
    assert dist.test_counts["cluster"] > 0 and dist.replicates["scan"] >= 199
    assert any("the daily panel" in n and "zone-block tasks" in n for n in dist.notes)
    assert dist.expectation == local.expectation and dist.expectation.source == "model"
    assert dist.test_counts == local.test_counts
    pd.testing.assert_frame_equal(dist.tests, local.tests)
    pd.testing.assert_frame_equal(dist.signals, local.signals)
    assert (dist.tests["detector"] == "scan").sum() == local.test_counts["cluster"]


def test_scan_blocks_cross_and_equal_the_whole_scan() -> None:
    """Blocks whose cylinders reach other blocks' zones: the same clusters, null and zone-days."""
    from pipelines.signals.blocks import scan_on_blocks, with_halo, zone_blocks
    from pipelines.signals.panel import Panel
    from pipelines.signals.scan import knn_neighbours, space_time_scan

    rng = np.random.default_rng(1)
    z, t = 41, 30
    e = rng.gamma(2.0, 1.0, size=(z, t))
    o = rng.poisson(e).astype(float)
    o[[4, 5, 6, 7], 24:29] += 6.0  # a cluster across the first blocks' border
    o[3, 2] = np.nan
    xy = rng.uniform(0, 5000, size=(z, 2))
    nbr = knn_neighbours(xy[:, 0], xy[:, 1], k=6)
    panel = Panel(zones=np.array([f"z{i}" for i in range(z)], dtype=object),
                  days=pd.date_range("2026-01-01", periods=t, freq="D"), observed=o, expected=e,
                  period=(23, 30))  # fmt: skip
    own = zone_blocks(z, 5)
    assert [len(b) for b in own] == [9, 8, 8, 8, 8]
    rows, local = with_halo(own[0], nbr)
    assert len(rows) > len(own[0])  # the halo: zones of other blocks
    np.testing.assert_array_equal(rows[local], nbr[own[0]])
    for dispersion in (0.0, 0.3):
        ref = space_time_scan(panel, nbr, max_window=7, n_sim=99, seed=3, dispersion=dispersion)
        got = scan_on_blocks(panel, nbr, address=None, blocks=5, max_window=7, n_sim=99, seed=3,
                             dispersion=dispersion)  # fmt: skip
        np.testing.assert_array_equal(got.null_max, ref.null_max)
        np.testing.assert_array_equal(got.zone_day_llr, ref.zone_day_llr)
        pd.testing.assert_frame_equal(got.clusters, ref.clusters)
        assert len(ref.clusters) > 1


def test_signals_command_on_a_cluster(tmp_path, fitted_store, signals_pair) -> None:
    """`vigie signals --scheduler ADDRESS` writes the signals of the local path."""
    import shutil

    from typer.testing import CliRunner

    from pipelines.cli import app

    local, _ = signals_pair
    root = tmp_path / "store"
    shutil.copytree(fitted_store, root)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        res = CliRunner().invoke(app, ["signals", "--store", str(root), "--week",
                                       local.period.label, "--scheduler",
                                       cluster.scheduler_address])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = pd.read_parquet(root / "signals" / f"{local.period.label}.tests.parquet")
    np.testing.assert_array_equal(saved["id"], local.tests["id"])
    np.testing.assert_array_equal(saved["p_value"], local.tests["p_value"].astype(float))
    np.testing.assert_array_equal(saved["q_value"], local.tests["q_value"].astype(float))


def test_calibrated_statistics_per_block_equal_the_whole_panel() -> None:
    """The calibrated tests' statistics per zone block (every component, the scan's cylinders
    crossing blocks): the one-process statistics and tests exactly."""
    from pipelines.signals.blocks import block_statistics_on_blocks
    from pipelines.signals.calibration import (
        Blocks,
        CalibrationSettings,
        block_statistics,
        calibrated_tests,
    )
    from pipelines.signals.panel import Panel
    from pipelines.signals.scan import knn_neighbours

    rng = np.random.default_rng(1)
    z, t = 41, 7 * 36
    e = rng.gamma(2.0, 1.0, size=(z, t))
    o = rng.poisson(e).astype(float)
    o[[4, 5, 6, 7], t - 5 : t - 1] += 6.0
    o[3, 20:30] = np.nan
    xy = rng.uniform(0, 5000, size=(z, 2))
    nbr = knn_neighbours(xy[:, 0], xy[:, 1], k=6)
    panel = Panel(zones=np.array([f"z{i}" for i in range(z)], dtype=object),
                  days=pd.date_range("2026-01-01", periods=t, freq="D"), observed=o, expected=e,
                  period=(t - 7, t))  # fmt: skip
    cfg = CalibrationSettings(components=("excess_3d", "excess_week", "excess_sd", "excess_day",
                                          "cusum", "ewma", "scan"), combine="minp")  # fmt: skip
    got = block_statistics_on_blocks(panel, nbr, dispersion=0.1, cfg=cfg, address=None, blocks=5)
    ref = block_statistics(panel, nbr, Blocks.of(panel), dispersion=0.1, cfg=cfg)
    for f in ("obs", "exp", "day_p", "scan_best", "scan_len", "level", "p3", "usable"):
        np.testing.assert_array_equal(getattr(got, f), getattr(ref, f), err_msg=f)
    assert got.scores.keys() == ref.scores.keys() and got.paths.keys() == ref.paths.keys()
    for n in ref.scores:
        np.testing.assert_array_equal(got.scores[n], ref.scores[n], err_msg=n)
    for n in ref.paths:
        np.testing.assert_array_equal(got.paths[n], ref.paths[n], err_msg=n)
    tests, info = calibrated_tests(panel, nbr, dispersion=0.1, cfg=cfg, stats=got)
    pd.testing.assert_frame_equal(tests, calibrated_tests(panel, nbr, dispersion=0.1, cfg=cfg)[0])
    assert info["weeks_without_reference"] == 0 and (tests["detector"] == "scan").any()


def test_signals_evaluate_refuses_a_scheduler(tiny_store) -> None:
    """--evaluate does not run on Dask: with --scheduler the command says so."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    res = CliRunner().invoke(app, ["signals", "--store", str(tiny_store), "--evaluate",
                                   "--scheduler", "local"])  # fmt: skip
    assert res.exit_code != 0
    assert "--evaluate runs in this process" in res.output


def test_cluster_signals_fall_back_like_the_local_run(tmp_path, tiny_store) -> None:
    """A model file that gives no expectation: the blocks say so, the client reads the history
    and uses the per-capita fallback, as the local run does (the same tests)."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "models.json").write_text("{}")
    local, dist = _week_local_and_on_cluster(Store(root))
    assert local.expectation.source == dist.expectation.source == "fallback"
    pd.testing.assert_frame_equal(dist.tests, local.tests)
