"""Chicago smoke test (issue 12): the real incidents-only study gets a forecast for every zone.

Needs ../shared/data (skipped with a message where it is absent). Two weekly origins only: the
26-origin evaluation runs in `make evaluate` (bench/eval_forecasts.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "chicago-cta-2015-2019"
STUDY = ROOT / "examples" / "chicago" / "sources.yaml"

pytestmark = pytest.mark.skipif(
    not DATA.exists(), reason=f"{DATA} is absent: the real Chicago exports are not here"
)


def test_chicago_every_zone_gets_every_forecast(tmp_path):
    """Ingest and cube the Chicago study, then backtest two origins of 2019 as `vigie fit`
    does: every model forecasts every one of the 77 community areas on every day, none is
    absent, PAI runs on true areas, and a downstream model is chosen."""
    from typer.testing import CliRunner

    from features.store import Store
    from pipelines.cli import app
    from pipelines.models.backtest import run_backtest, spread_origins
    from pipelines.models.fit import _centroids, _design, load_cube
    from pipelines.models.forecasts import resolve_exposure, true_areas

    root = tmp_path / "chi"
    for args in (["ingest", str(STUDY), "--store", str(root)], ["cube", "--store", str(root)]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    store = Store(root)
    cube, grain = load_cube(store)
    assert grain == "1d" and "present" not in cube.columns
    d = _design(cube, grain=grain, resolution=0.05)
    plan = resolve_exposure(store, d.dz)
    assert plan.counts() == {"none": 77}
    origins = spread_origins(
        cube,
        n=2,
        start=pd.Timestamp("2019-06-01", tz="UTC"),
        end=pd.Timestamp("2019-07-01", tz="UTC"),
    )
    areas = true_areas(store)
    assert areas is not None and len(areas) == 77
    assert 1.0 < np.median(list(areas.values())) < 20.0  # community areas: a few km² each
    res = run_backtest(
        cube, grain=grain, dz=d.dz, cells=d.cells, centroids=_centroids(store), area=areas,
        origins=origins, xgb_rounds=50,
    )  # fmt: skip
    ev = res.evaluation
    assert ev.n_origins == 2 and not ev.absent
    f = res.frame
    for model in ("zone_glm", "glm", "xgb"):
        m = f[f["model"] == model]
        assert np.isfinite(m["predicted"]).all()
        assert m["zone_id"].nunique() == 77 and len(m) == 77 * 14
    assert ev.area and ev.area.startswith("true areas")
    assert ev.downstream in ("zone_glm", "glm", "xgb")
    assert set(ev.versus_baselines or {}) == {"zone_glm", "glm", "xgb"}
