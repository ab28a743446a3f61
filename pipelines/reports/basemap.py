"""The offline base of the reports' maps: where things are, with no network at all.

Police and fire networks often have no internet, so a report's maps cannot count on tiles. By
default (no ``--tiles``, no ``area.tiles``) a map gets an offline base drawn from the study's own
data (:func:`add_underlay` before the report's layers, :func:`add_overlay` after the zones):

- a light paper background instead of Leaflet's grey;
- the study area's outline (the union of the zones), a dark line that frames the city;
- place names: the zones' names as small labels, spread so that they do not overlap at the
  map's first view (largest zones first, at most :data:`MAX_PLACES`), a layer of their own;
- the study's own vector layer when ``tiles`` names a local file (GeoJSON, GeoPackage,
  Shapefile or GeoParquet: its streets or districts), drawn in grey under the zones, simplified
  to about 5 m, with the ``name`` of a feature, if any, as its tooltip.

``tiles`` naming a tile provider (e.g. ``OpenStreetMap``) gives that provider's tiles instead
(fetched from the network when the page is opened); the outline stays, the place names go (the
tiles carry their own).

Names from data are set as text (``textContent``), never as HTML.

References
----------
Leaflet ``L.divIcon`` (``html`` as an element): https://leafletjs.com/reference.html#divicon.
"""

from __future__ import annotations

import html as _html
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
from branca.element import Element, Figure, MacroElement
from jinja2 import Template

#: suffixes of local vector files taken as the study's own offline layer
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".parquet")

#: at most this many place names on a map
MAX_PLACES = 30

#: the background and the labels of the offline base
BASE_STYLE = """<style>
html .leaflet-container { background: #f4f1ea; }
.vigie-place { font: 11px/1.1 system-ui, sans-serif; color: #3b3b3b; white-space: nowrap;
  text-shadow: 0 0 3px #fff, 0 0 3px #fff, 0 0 3px #fff; pointer-events: none; }
.vigie-place span { display: inline-block; transform: translate(-50%, -50%); }
</style>"""


def local_layer_path(tiles: str | None) -> Path | None:
    """The local vector file ``tiles`` names (an existing file with a vector suffix), else None."""
    if not tiles or "://" in tiles or not tiles.lower().endswith(VECTOR_SUFFIXES):
        return None
    path = Path(tiles).expanduser()
    return path if path.is_file() else None


def provider_tiles(tiles: str | None) -> str | None:
    """What folium should fetch as tiles: ``tiles`` unless it is a local file or unset."""
    if not tiles or local_layer_path(tiles) is not None or tiles.lower().endswith(VECTOR_SUFFIXES):
        return None
    return tiles


class PlaceNames(MacroElement):
    """Text labels at points, added to the parent layer, their text set with ``textContent``
    (never parsed as HTML)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this.places|tojson }}.forEach(function (p) {
            var span = document.createElement("span");
            span.textContent = p[2];
            L.marker([p[0], p[1]], {
                icon: L.divIcon({className: "vigie-place", html: span, iconSize: null}),
                interactive: false, keyboard: false
            }).addTo({{ this._parent.get_name() }});
        });
        {% endmacro %}
        """
    )

    def __init__(self, places: list[tuple[float, float, str]]) -> None:
        super().__init__()
        self._name = "PlaceNames"
        self.places = [[round(lat, 6), round(lon, 6), str(t)] for lat, lon, t in places]


def spread_places(
    gz: gpd.GeoDataFrame, *, most: int = MAX_PLACES
) -> list[tuple[float, float, str]]:
    """Named zones to label: largest first, each at least a seventh of the area's diagonal from
    the labels already kept (one label per name), at most ``most``."""
    if "name" not in gz.columns or gz.empty:
        return []
    named = gz[gz["name"].notna() & (gz["name"].astype(str).str.strip() != "")]
    if named.empty:
        return []
    metric = named.to_crs(named.estimate_utm_crs()) if named.crs is not None else named
    order = np.argsort(-metric.geometry.area.to_numpy(), kind="stable")
    pts = metric.geometry.representative_point()
    ll = named.geometry.representative_point()
    minx, miny, maxx, maxy = metric.total_bounds
    gap = float(np.hypot(maxx - minx, maxy - miny)) / 7
    kept: list[int] = []
    seen: set[str] = set()
    for i in order:
        name = str(named["name"].iloc[i]).strip()
        p = pts.iloc[i]
        if name in seen or any(p.distance(pts.iloc[j]) < gap for j in kept):
            continue
        kept.append(int(i))
        seen.add(name)
        if len(kept) >= most:
            break
    return [(ll.iloc[i].y, ll.iloc[i].x, str(named["name"].iloc[i]).strip()) for i in kept]


def _text(value: str) -> str:
    """Text for a tooltip that folium sets as HTML: escaped, template-literal characters too."""
    text = _html.escape(value, quote=True)
    return text.replace("`", "&#96;").replace("$", "&#36;").replace("\\", "&#92;")


def _outline(gz: gpd.GeoDataFrame) -> folium.GeoJson:
    area = gpd.GeoDataFrame(geometry=[gz.geometry.union_all().boundary], crs=gz.crs)
    return folium.GeoJson(
        area.__geo_interface__,
        name="study area",
        style_function=lambda f: {"color": "#333333", "weight": 2.5, "fill": False},
        interactive=False,
        control=False,
    )


def _local_layer(path: Path) -> folium.GeoJson:
    """The study's own vector file, in grey, simplified to about 5 m, names as tooltips."""
    layer = gpd.read_file(path) if path.suffix != ".parquet" else gpd.read_parquet(path)
    layer = layer.to_crs(4326) if layer.crs is not None else layer
    keep = [c for c in ("name",) if c in layer.columns]
    layer = layer[[*keep, "geometry"]].copy()
    layer["geometry"] = layer.geometry.simplify(0.00005, preserve_topology=True)
    if keep:
        layer["name"] = layer["name"].astype(str).map(_text)
    return folium.GeoJson(
        layer.__geo_interface__,
        name=f"base: {_html.escape(path.stem)}",
        style_function=lambda f: {
            "color": "#9a9a9a",
            "weight": 1,
            "fillColor": "#e6e2d8",
            "fillOpacity": 0.4,
        },
        tooltip=folium.GeoJsonTooltip(fields=["name"], labels=False) if keep else None,
    )


def add_underlay(m: folium.Map, *, tiles: str | None) -> None:
    """What goes under a map's layers (call before adding them): the light background and the
    study's local layer when ``tiles`` names a local vector file."""
    fig = m.get_root()
    if isinstance(fig, Figure) and "vigie_base_css" not in fig.header._children:
        fig.header.add_child(Element(BASE_STYLE), name="vigie_base_css")
    local = local_layer_path(tiles)
    if local is not None:
        _local_layer(local).add_to(m)


def add_overlay(m: folium.Map, gz: gpd.GeoDataFrame, *, tiles: str | None) -> None:
    """What goes over the zones (not interactive: their tooltips still answer): the area's
    outline and, without provider tiles, the place names."""
    _outline(gz).add_to(m)
    if provider_tiles(tiles) is None:
        places = spread_places(gz)
        if places:
            fg = folium.FeatureGroup(name="place names")
            PlaceNames(places).add_to(fg)
            fg.add_to(m)
