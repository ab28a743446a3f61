"""The maps' offline base (pipelines/reports/basemap.py, issue 15 "Maps that orient")."""

from __future__ import annotations

import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, box

from pipelines.reports import maps
from pipelines.reports.basemap import MAX_PLACES, local_layer_path, provider_tiles, spread_places

HOSTILE = "</script><img src=x onerror=alert(1)>`${x}`"


def _zones(side: int = 6, names: bool = True) -> gpd.GeoDataFrame:
    cells, ids, nm = [], [], []
    for i in range(side):
        for j in range(side):
            cells.append(
                box(2.30 + 0.01 * j, 48.84 + 0.007 * i, 2.31 + 0.01 * j, 48.847 + 0.007 * i)
            )
            ids.append(f"Z{i}{j}")
            nm.append(f"Quarter {i}-{j}")
    z = gpd.GeoDataFrame({"zone_id": ids, "geometry": cells}, crs=4326)
    if names:
        z["name"] = nm
    return z


def _places(page: str) -> list[list]:
    m = re.search(r"(\[\[[-\d.]+, [-\d.]+, \"[^\]]*\"\](?:, \[[^\]]*\])*\])\.forEach", page)
    return json.loads(m.group(1)) if m else []


def test_the_default_base_is_offline_and_says_where_things_are():
    page = maps.to_html(maps.zones_map(_zones(), None))
    assert "tile.openstreetmap" not in page and "L.tileLayer" not in page
    assert "html .leaflet-container { background: #f4f1ea; }" in page  # a light background
    assert '"place names"' in page  # a layer of its own in the layer control
    names = [p[2] for p in _places(page)]
    assert names and all(n.startswith("Quarter ") for n in names)
    # the study area's outline: one line around the zones, not interactive
    assert '"interactive": false' in page


def test_provider_tiles_replace_the_place_names():
    page = maps.to_html(maps.zones_map(_zones(), None, tiles="OpenStreetMap"))
    assert "L.tileLayer" in page and "openstreetmap" in page.lower()
    assert _places(page) == []


def test_a_local_vector_file_is_drawn_underneath_offline(tmp_path):
    streets = gpd.GeoDataFrame(
        {"name": ["Rue de la Paix", HOSTILE]},
        geometry=[
            LineString([(2.30, 48.84), (2.36, 48.88)]),
            LineString([(2.31, 48.85), (2.35, 48.85)]),
        ],
        crs=4326,
    )
    path = tmp_path / "streets.geojson"
    streets.to_file(path, driver="GeoJSON")
    assert local_layer_path(str(path)) == path and provider_tiles(str(path)) is None
    page = maps.to_html(maps.zones_map(_zones(), None, tiles=str(path)))
    assert "L.tileLayer" not in page
    assert '"base: streets"' in page and "Rue de la Paix" in page
    assert "<img src=x" not in page and "`${x}`" not in page  # the hostile name stays text
    assert _places(page)  # the place names stay (no tiles carry them)


def test_hostile_zone_names_stay_text_in_the_labels():
    z = _zones(side=2)
    z.loc[0, "name"] = HOSTILE
    page = maps.to_html(maps.zones_map(z, None))
    assert "<img src=x" not in page
    assert HOSTILE in [p[2] for p in _places(page)]  # set with textContent, as it is


def test_place_names_are_spread_one_per_name_and_few():
    z = _zones(side=20)
    z["name"] = [f"Quarter {i // 3}" for i in range(len(z))]  # names shared by 3 zones
    places = spread_places(z)
    assert 3 <= len(places) <= MAX_PLACES
    names = [p[2] for p in places]
    assert len(set(names)) == len(names)
    metric = gpd.GeoDataFrame(
        geometry=gpd.points_from_xy([p[1] for p in places], [p[0] for p in places]), crs=4326
    ).to_crs(z.estimate_utm_crs())
    xy = np.c_[metric.geometry.x, metric.geometry.y]
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    minx, miny, maxx, maxy = z.to_crs(z.estimate_utm_crs()).total_bounds
    gap = np.hypot(maxx - minx, maxy - miny) / 7
    assert d[np.triu_indices(len(places), 1)].min() >= gap * 0.99


def test_no_names_no_labels():
    assert spread_places(_zones(names=False)) == []


def test_a_study_layer_path_is_found_from_here_or_the_store(tmp_path, monkeypatch):
    from features.store import Store
    from pipelines.reports.catalog import _tiles
    from pipelines.reports.errors import ReportError

    store = tmp_path / "store"
    store.mkdir()
    (store / "study.json").write_text(json.dumps({"area": {"tiles": "streets.geojson"}}))
    st = Store(store)
    gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs=4326).to_file(
        store / "streets.geojson", driver="GeoJSON"
    )
    monkeypatch.chdir(tmp_path)
    assert _tiles(st, None) == str((store / "streets.geojson").resolve())  # the store's
    assert _tiles(st, "OpenStreetMap") == "OpenStreetMap"
    with pytest.raises(ReportError, match="no such file"):
        _tiles(st, "missing.geojson")


def test_the_zones_still_draw_with_their_values_and_legend():
    z = _zones(side=3)
    vals = pd.DataFrame({"zone_id": z["zone_id"], "present_ratio": np.linspace(0.4, 2.5, len(z))})
    page = maps.to_html(maps.zones_map(z, vals))
    assert "vigie-legend" in page and "of usual" in page
