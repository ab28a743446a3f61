"""Vectorised hot paths of the zones: H3 assignment (features.h3index.h3_ints and its callers) and
the k nearest zones by k-d tree (pipelines.signals.scan.knn_neighbours), each against the
reference it replaced: ``h3.latlng_to_cell`` point by point, and the full distance matrix."""

from __future__ import annotations

from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest

from features import h3index
from features import zones as fz
from features.ingest import ingest
from features.store import Store
from pipelines.signals.scan import knn_neighbours, knn_neighbours_dense

CHICAGO_AREAS = (
    Path(__file__).resolve().parents[2]
    / "shared/data/chicago-cta-2015-2019/chicago-community-areas.geojson"
)


def _reference(lat, lon, res) -> np.ndarray:
    """h3.latlng_to_cell point by point (the loop h3_ints replaced), 0 for a non-finite point."""
    return np.array(
        [
            h3.str_to_int(h3.latlng_to_cell(a, o, res)) if np.isfinite(a) and np.isfinite(o) else 0
            for a, o in zip(lat, lon)
        ],
        dtype=np.uint64,
    )


@pytest.mark.parametrize("res", [5, 8, 9, 12, 15])
def test_h3_ints_equal_latlng_to_cell_over_a_city(res, monkeypatch):
    """Points dense enough for the grid's shortcut (about 30 cells across, at each resolution)
    get exactly the cells of h3.latlng_to_cell, and the shortcut decided most of them."""
    rng = np.random.default_rng(res)
    n = 60_000
    half = 15 * h3.average_hexagon_edge_length(res, unit="km") / 111.0
    lat = 48.85 + rng.uniform(-half, half, n)
    lon = 2.35 + rng.uniform(-half, half, n) / np.cos(np.radians(48.85))
    exact = h3index._h3_exact
    seen = []
    monkeypatch.setattr(h3index, "_h3_exact", lambda a, o, r: seen.append(len(a)) or exact(a, o, r))
    np.testing.assert_array_equal(h3index.h3_ints(lat, lon, res), _reference(lat, lon, res))
    assert sum(seen) < 0.5 * n


@pytest.mark.parametrize(("res", "lat0"), [(5, 79.0), (6, -79.4), (7, 70.0), (10, -33.9)])
def test_h3_shortcut_exact_at_high_latitudes(res, lat0, monkeypatch):
    """Where cells are most distorted in the tangent plane the shortcut works on (coarse cells
    near its 80 degree limit), it is still exact, and it was used."""
    rng = np.random.default_rng(res)
    n = 60_000
    half = 15 * h3.average_hexagon_edge_length(res, unit="km") / 111.0
    lat = lat0 + rng.uniform(-half, half, n)
    lon = 20.0 + rng.uniform(-half, half, n) / np.cos(np.radians(lat0))
    exact = h3index._h3_exact
    seen = []
    monkeypatch.setattr(h3index, "_h3_exact", lambda a, o, r: seen.append(len(a)) or exact(a, o, r))
    np.testing.assert_array_equal(h3index.h3_ints(lat, lon, res), _reference(lat, lon, res))
    assert sum(seen) < 0.5 * n


def test_h3_shortcut_takes_most_points_and_is_exact(monkeypatch):
    """The shortcut is what makes it fast: with points dense enough for its grid (here 200 000
    over 5 km x 5 km) it decides about three points in four without the exact computation,
    and every point it decides is right, chunk by chunk, also in a chunk with holes."""
    rng = np.random.default_rng(7)
    n = 200_000
    lat = 41.85 + rng.uniform(-0.0225, 0.0225, n)
    lon = -87.70 + rng.uniform(-0.03, 0.03, n)
    lat[150_000:150_010] = np.nan  # one chunk (of several, run in threads) with holes
    lon[150_010] = 200.0  # and a point the grid does not take
    exact = h3index._h3_exact
    seen = []

    def counting(a, o, r):
        seen.append(len(a))
        return exact(a, o, r)

    monkeypatch.setattr(h3index, "_h3_exact", counting)
    got = h3index.h3_ints(lat, lon, 9)
    assert sum(seen) < 0.35 * n
    np.testing.assert_array_equal(got, _reference(lat, lon, 9))


def test_h3_ints_edge_cases_world_wide():
    """Random points over the whole sphere, the poles, both sides of the antimeridian, high
    latitudes near the shortcut's limit, longitudes outside [-180, 180] and non-finite values
    (0, None as str) all match h3.latlng_to_cell."""
    rng = np.random.default_rng(3)
    n = 40_000
    lat = np.concatenate(
        [
            np.degrees(np.arcsin(rng.uniform(-1, 1, n))),  # uniform on the sphere
            [90.0, -90.0, 89.999999, -89.999999, 0.0, 0.0, 45.0, 45.0, 79.9999, -80.0001],
            rng.uniform(-5, 5, 5000),  # a band across the antimeridian
            rng.uniform(79.0, 80.5, 5000),  # around the shortcut's latitude limit
            [np.nan, 1.0, np.inf, 10.0, 200.0, -91.0],
        ]
    )
    lon = np.concatenate(
        [
            rng.uniform(-180, 180, n),
            [0.0, 0.0, 179.9, -179.9, 180.0, -180.0, 360.0, -540.0, 10.0, 10.0],
            np.where(rng.random(5000) < 0.5, 180, -180) - rng.uniform(-0.05, 0.05, 5000),
            rng.uniform(10.0, 12.0, 5000),
            [1.0, np.nan, 1.0, -np.inf, 1.0, 1.0],
        ]
    )
    for res in (0, 3, 6, 9, 14):
        np.testing.assert_array_equal(h3index.h3_ints(lat, lon, res), _reference(lat, lon, res))
    cells = fz.h3_cells(lat[-6:], lon[-6:], 9)
    assert cells.tolist()[:4] == [None] * 4
    assert cells[4] == h3.latlng_to_cell(200.0, 1.0, 9)
    with pytest.raises(ValueError, match="resolution"):
        h3index.h3_ints(lat, lon, 16)
    with pytest.raises(ValueError, match="one length"):
        h3index.h3_ints(lat, lon[:-1], 9)


def test_h3_cells_codes_and_unique_agree():
    """h3_cells (str), h3_codes (positions in a list of zone ids) and h3_unique say the same;
    an id that is not an H3 cell as h3 spells it (upper case, garbage) matches no point."""
    rng = np.random.default_rng(5)
    lat = 45.76 + rng.uniform(-0.05, 0.05, 20_000)
    lon = 4.83 + rng.uniform(-0.05, 0.05, 20_000)
    lat[::997] = np.nan
    cells = fz.h3_cells(lat, lon, 8)
    ref = [h3.latlng_to_cell(a, o, 8) if np.isfinite(a) else None for a, o in zip(lat, lon)]
    assert cells.tolist() == ref
    uniq = fz.h3_unique(lat, lon, 8)
    assert sorted(uniq) == sorted({c for c in ref if c is not None})
    ids = ["garbage", uniq[0].upper(), *uniq[1:]]
    codes = fz.h3_codes(lat, lon, 8, ids)
    expect = pd.Categorical(cells, categories=pd.Index(ids)).codes.astype(np.int64)
    np.testing.assert_array_equal(codes, expect)
    assert (codes == -1).sum() == sum(c is None or c == uniq[0] for c in cells)


def test_h3_zoned_study_ingests_every_point_in_its_cell(tmp_path: Path):
    """An H3-zoned study (no zones file) of 30 000 incidents: each row's zone_id is its point's
    h3.latlng_to_cell, the zones file holds exactly those cells, nothing is quarantined."""
    rng = np.random.default_rng(11)
    n = 30_000
    lat = 41.85 + rng.uniform(-0.1, 0.1, n)
    lon = -87.68 + rng.uniform(-0.1, 0.1, n)
    pd.DataFrame(
        {
            "incident_id": [f"i{i}" for i in range(n)],
            "occurred_at": ["2026-07-01T10:00:00Z"] * n,
            "latitude": lat,
            "longitude": lon,
            "category": ["THEFT"] * n,
        }
    ).to_csv(tmp_path / "i.csv", index=False)
    y = tmp_path / "sources.yaml"
    y.write_text("area: {timezone: America/Chicago, h3_resolution: 9}\nincidents: {path: i.csv}\n")
    ingest(y, tmp_path / "s")
    st = Store(tmp_path / "s")
    inc = st.validated("incidents").set_index("incident_id").loc[[f"i{i}" for i in range(n)]]
    back = pd.read_csv(tmp_path / "i.csv")  # the coordinates as the ingest read them
    assert inc["zone_id"].tolist() == [
        h3.latlng_to_cell(a, o, 9) for a, o in zip(back["latitude"], back["longitude"])
    ]
    assert set(st.zones()["zone_id"]) == set(inc["zone_id"])


def _check_knn(x, y, ks=(1, 2, 8, 20)):
    for k in ks:
        got = knn_neighbours(x, y, k=k)
        np.testing.assert_array_equal(got, knn_neighbours_dense(x, y, k=k))


def test_knn_tree_equals_dense_on_random_zones():
    """Random centroids (longitude/latitude over a city, and metres): the k-d tree gives the
    dense matrix's neighbours in the same order, itself first."""
    rng = np.random.default_rng(2)
    for n in (65, 700, 3000):
        _check_knn(rng.uniform(2.2, 2.5, n), rng.uniform(48.8, 48.95, n))
        _check_knn(rng.uniform(0, 5e4, n), rng.uniform(0, 5e4, n))
    got = knn_neighbours(rng.uniform(0, 1e3, 500), rng.uniform(0, 1e3, 500), k=8)
    assert (got[:, 0] == np.arange(500)).all()


def test_knn_tree_keeps_the_dense_order_of_ties():
    """Ties, the dense ranking's stable order by zone position: a regular grid (four zones at
    each distance), zones stacked at one place (more than the tree's spare candidates, so
    itself may not come back from the tree) and a few non-finite centroids."""
    g = np.arange(900)
    _check_knn(g % 30 * 100.0, g // 30 * 100.0)
    rng = np.random.default_rng(4)
    x = np.round(rng.uniform(0, 8, 800)) * 1000.0
    y = np.round(rng.uniform(0, 8, 800)) * 1000.0
    _check_knn(x, y)
    x[[3, 50]] = np.nan
    _check_knn(x, y, ks=(8,))
    assert knn_neighbours(np.zeros(0), np.zeros(0), k=8).shape == (0, 0)


def test_knn_tree_equals_dense_on_chicago_community_areas():
    """The real zones: Chicago's 77 community areas (representative points, as the signals run
    takes them), every k up to all the zones."""
    if not CHICAGO_AREAS.exists():
        pytest.skip(f"{CHICAGO_AREAS} absent (../shared/data is not laid out here)")
    import geopandas as gpd

    pts = gpd.read_file(CHICAGO_AREAS).to_crs(4326).geometry.representative_point()
    _check_knn(pts.x.to_numpy(), pts.y.to_numpy(), ks=(1, 5, 8, 30, len(pts)))
