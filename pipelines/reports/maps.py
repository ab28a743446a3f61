"""Maps for reports: folium (Leaflet) maps that draw with no network at all.

Police and fire networks often have no internet. folium's default page loads Leaflet, jQuery,
Bootstrap and Leaflet.awesome-markers from public CDNs; :class:`OfflineMap` loads none of them and
inlines instead the one library its maps need, Leaflet 1.9.4 (BSD-2-Clause, vendored from the
``leaflet`` npm package under ``pipelines/assets/`` with its licence), its CSS and the CSS's
images as data URIs. Markers are circle markers and the legend is plain HTML, so neither
awesome-markers nor branca's d3 colour bar are needed. Base tiles are off by default (a tile
server is a network resource): the maps get an offline base instead (the area's outline and the
zones' names on a light background, or the study's own street or district file,
:mod:`pipelines.reports.basemap`); pass ``tiles="OpenStreetMap"`` where the network allows it.

Layers (each a toggle in the layer control):

- zones coloured by presence ratio (present / reference, diverging around 1, log-spaced classes)
  or by excess incidents (observed − expected, diverging around 0);
- weak signals (zones flagged, ringed in red at their centroid);
- lamps out (open lighting faults);
- public-transport stops;
- the venue and its ring (an event's perimeter).

Every count shown in a tooltip goes through :func:`pipelines.reports.publish.suppress_value`;
in a zone whose count is suppressed, the figures that would rebuild it (expected, excess, ratio)
read "c" and the zone is not coloured by them.

Text from data (zone, stop, event and lamp names and ids) is escaped: folium writes a
``Tooltip`` into a JavaScript template literal that Leaflet then sets as HTML, and
``GeoJsonTooltip`` builds ``innerHTML`` from the zones' properties, so :func:`tooltip_text`
HTML-escapes the text and escapes the template literal's own backtick, dollar and backslash.
In a report the map is an ``<iframe srcdoc>`` sandboxed to scripts only (no access to the
report page, no dialogs, no navigation of the page).

References
----------
Leaflet: https://leafletjs.com (Agafonkin 2010–2023). folium: https://python-visualization.github.io/folium.
Colour classes: ColorBrewer diverging schemes (Brewer, Hatchard & Harrower 2003, *Cartography and
Geographic Information Science* 30(1)).
"""

from __future__ import annotations

import base64
import html as _html
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
from branca.element import Element, Figure, MacroElement
from jinja2 import Template

from pipelines.reports.basemap import add_overlay, add_underlay, provider_tiles
from pipelines.reports.export import external_resources, sandbox_iframes
from pipelines.reports.labels import class_words, fmt_count, formatter, label, zone_with_name
from pipelines.reports.publish import (
    SECONDARY_LABEL,
    is_count_name,
    is_derived_name,
    secondary_rows,
    suppress_value,
)

ASSETS = Path(__file__).resolve().parent / "assets"

#: ColorBrewer RdBu (7 classes), blue = below reference, red = above
DIVERGING = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"]
MISSING_COLOR = "#bdbdbd"

#: class breaks of the presence ratio (present / reference): log-symmetric around 1
RATIO_BREAKS = (0.5, 0.7, 0.9, 1.1, 1.4, 2.0)


@lru_cache(maxsize=1)
def _leaflet_assets() -> tuple[str, str]:
    """Leaflet's JS and CSS, the CSS's ``images/*.png`` inlined as data URIs."""
    js = (ASSETS / "leaflet.js").read_text(encoding="utf-8")
    js = re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)
    css = (ASSETS / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match[str]) -> str:
        png = ASSETS / m.group(1)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        return f"url(data:image/png;base64,{data})"

    css = re.sub(r"url\(images/([\w.-]+\.png)\)", inline, css)
    return js, css


class OfflineMap(folium.Map):
    """A ``folium.Map`` whose page carries Leaflet inline and loads nothing from a CDN.

    Same arguments as ``folium.Map``; ``tiles`` defaults to None (no base map).
    """

    default_js: list[tuple[str, str]] = []
    default_css: list[tuple[str, str]] = []

    def __init__(
        self, *args: Any, tiles: str | None = None, frame_height: int = 480, **kwargs: Any
    ) -> None:
        kwargs.setdefault("control_scale", True)
        # folium types tiles as a parameter that *args could also fill; here it is keyword-only
        super().__init__(*args, tiles=tiles, **kwargs)  # type: ignore[misc]
        # a fixed-height frame: in a notebook the map is an iframe of this height (no blank band)
        Figure(width="100%", height=f"{int(frame_height)}px").add_child(self)

    def _repr_html_(self, **kwargs: Any) -> str:
        """The map as a notebook shows it: an ``<iframe srcdoc>``, sandboxed."""
        return sandbox_iframes(super()._repr_html_(**kwargs))

    # folium's Map.render returns None; branca's Element.render is typed as returning str
    def render(self, **kwargs: Any) -> None:  # type: ignore[override]
        fig = self.get_root()
        # __init__ adds the map to a Figure, so its root is one (folium's render asserts it too)
        assert isinstance(fig, Figure)
        if "vigie_leaflet_js" not in fig.header._children:
            js, css = _leaflet_assets()
            fig.header.add_child(Element(f"<style>{css}</style>"), name="vigie_leaflet_css")
            fig.header.add_child(Element(f"<script>{js}</script>"), name="vigie_leaflet_js")
        super().render(**kwargs)


def tooltip_text(value: Any) -> str:
    """Text from data made safe for a folium tooltip: HTML-escaped (Leaflet sets it as HTML)
    and with the characters of a JavaScript template literal (backtick, dollar, backslash) as HTML
    character references (folium writes ``Tooltip`` text inside one)."""
    text = _html.escape(str(value), quote=True)
    return text.replace("`", "&#96;").replace("$", "&#36;").replace("\\", "&#92;")


def to_html(m: folium.Map) -> str:
    """The map as one standalone HTML page (what a browser opens from a file).

    Raises
    ------
    ValueError
        If the page would still load a script or style from the network (a folium element
        with CDN dependencies was added).
    """
    page = m.get_root().render()
    ext = external_resources(page)
    if ext:
        raise ValueError(f"map would load resources from the network: {ext[:3]}")
    return page


# -- colours ----------------------------------------------------------------------------------
def ratio_class(value: float | None) -> int | None:
    """Class 0–6 of a presence ratio on :data:`RATIO_BREAKS` (None when missing)."""
    if value is None or not np.isfinite(value):
        return None
    return int(np.searchsorted(RATIO_BREAKS, value, side="right"))


def excess_breaks(values: Sequence[float]) -> tuple[float, ...]:
    """Symmetric class breaks for excess incidents: ±{0.5, 1.5, 2.5}·s, s = max(1, P90(|x|)/2.5)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    s = max(1.0, float(np.quantile(np.abs(arr), 0.9)) / 2.5) if arr.size else 1.0
    return tuple(round(b * s, 2) for b in (-2.5, -1.5, -0.5, 0.5, 1.5, 2.5))


def class_color(cls: int | None) -> str:
    """Fill colour of a class (grey when missing)."""
    return MISSING_COLOR if cls is None else DIVERGING[cls]


class Legend(MacroElement):
    """A legend drawn as a Leaflet control inside the map (bottom right), plain HTML."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.control({position: "bottomright"});
        {{ this.get_name() }}.onAdd = function () {
            var div = L.DomUtil.create("div", "vigie-legend");
            div.innerHTML = {{ this.content|tojson }};
            return div;
        };
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, title: str, labels: list[str]) -> None:
        super().__init__()
        self._name = "Legend"
        rows = "".join(
            f'<div><span style="display:inline-block;width:14px;height:10px;background:{c};'
            f'border:1px solid #999;margin-right:4px"></span>{_html.escape(t)}</div>'
            for c, t in zip([*DIVERGING, MISSING_COLOR], labels, strict=False)
        )
        self.content = (
            '<div style="background:rgba(255,255,255,.9);padding:6px 8px;font:12px sans-serif;'
            f'border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.3)"><b>{_html.escape(title)}</b>'
            f"{rows}</div>"
        )


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:,.{digits}f}"
    return str(v)


# -- the map's steps ----------------------------------------------------------------------------
def _zone_frame(zones: Any) -> gpd.GeoDataFrame:
    """zone_id (text), geometry (WGS 84) and the optional name of the zones."""
    if not isinstance(zones, gpd.GeoDataFrame):
        raise TypeError(f"zones should be a GeoDataFrame, got {type(zones).__name__}")
    gz = zones[["zone_id", "geometry", *(["name"] if "name" in zones.columns else [])]].copy()
    gz["zone_id"] = gz["zone_id"].astype(str)
    return gz.to_crs(4326) if gz.crs is not None and gz.crs.to_epsg() != 4326 else gz


def _framed_map(
    gz: gpd.GeoDataFrame, *, focus: Sequence[str] | None, tiles: str | None, height: int
) -> OfflineMap:
    """An empty map framing every zone, or the ``focus`` zones when there are any."""
    minx, miny, maxx, maxy = gz.total_bounds
    if focus:
        sel = gz[gz["zone_id"].isin([str(z) for z in focus])]
        if len(sel):
            minx, miny, maxx, maxy = sel.total_bounds
    m = OfflineMap(
        location=[(miny + maxy) / 2, (minx + maxx) / 2],
        zoom_start=12,
        tiles=tiles,
        frame_height=height,
    )
    m.fit_bounds([[miny, minx], [maxy, maxx]])
    return m


def _value_frame(values: pd.DataFrame | None) -> pd.DataFrame:
    """The per-zone figures indexed by zone_id (text); empty without values."""
    if values is None:
        return pd.DataFrame(index=pd.Index([], name="zone_id"))
    vals = values.set_index("zone_id") if "zone_id" in values.columns else values.copy()
    vals.index = vals.index.astype(str)
    return vals


def _class_labels(b: Sequence[float]) -> list[str]:
    """Legend labels of the classes cut at breaks ``b``, then the missing class."""
    return (
        [f"< {b[0]:g}"]
        + [f"{b[i]:g} – {b[i + 1]:g}" for i in range(len(b) - 1)]
        + [f"≥ {b[-1]:g}", "no data"]
    )


def zone_classes(
    vals: pd.DataFrame, color_by: str, *, k: int = 10
) -> tuple[pd.Series, str, tuple[float, ...]]:
    """Colour class (0–6, NaN when missing) per zone of column ``color_by``, with the legend's
    title and the class breaks: :data:`RATIO_BREAKS` for the presence ratio, symmetric
    :func:`excess_breaks` otherwise. Empty classes when the column is absent. A derived figure
    (excess, expected, ratio) is missing in zones whose count is below ``k``."""
    if color_by not in vals.columns:
        return pd.Series(dtype=object), "", ()
    col = pd.to_numeric(vals[color_by], errors="coerce")
    if is_derived_name(color_by):  # not coloured where it would rebuild a suppressed count
        col = col.where(~secondary_rows(vals, k))
    if color_by == "present_ratio":
        return col.map(ratio_class), "people present against the usual", RATIO_BREAKS
    b = excess_breaks(col.tolist())
    classes = col.map(
        lambda v: None if not np.isfinite(v) else int(np.searchsorted(b, v, side="right"))
    )
    title = "incidents against the usual" if color_by == "excess" else label(color_by)
    return classes, title, b


def zone_tooltips(
    gz: gpd.GeoDataFrame, vals: pd.DataFrame, classes: pd.Series, *, k: int
) -> gpd.GeoDataFrame:
    """The zones with their tooltip fields (counts suppressed below ``k``, others formatted) and
    their fill colour ``_fill``."""
    shown = [c for c in vals.columns if c != "geometry"]
    # rows by position, as vals.loc[zid] gives them (one common dtype), without a lookup per zone
    rows = vals.to_numpy()
    at = {zid: i for i, zid in enumerate(vals.index)}
    col_at = [vals.columns.get_loc(c) for c in shown]
    names = gz["name"] if "name" in gz.columns else [None] * len(gz)
    hidden = secondary_rows(vals, k, columns=[c for c in shown if is_count_name(c)]).to_numpy()
    props = []
    for zid, name in zip(gz["zone_id"], names, strict=True):
        row = rows[at[zid]] if zid in at else None
        hide = row is not None and bool(hidden[at[zid]])
        # GeoJsonTooltip sets these as innerHTML: escaped
        p = {"zone": tooltip_text(zid if name is None else f"{name} ({zid})")}
        for c, j in zip(shown, col_at, strict=True):
            v = None if row is None else row[j]
            v = None if v is None or (isinstance(v, float) and np.isnan(v)) else v
            if is_count_name(c):
                shown_v = suppress_value(v, k)
                p[c] = tooltip_text(fmt_count(shown_v) if shown_v is not None else "–")
            elif hide and is_derived_name(c) and v is not None:
                p[c] = SECONDARY_LABEL
            else:
                by_kind = formatter(c)
                p[c] = tooltip_text(by_kind(v) if by_kind and v is not None else _fmt(v))
        cls = classes.get(zid) if zid in classes.index else None
        p["_fill"] = class_color(None if cls is None or pd.isna(cls) else int(cls))
        props.append(p)
    return gz.assign(**{key: [p[key] for p in props] for key in props[0]}) if props else gz


def _zones_layer(gz: gpd.GeoDataFrame, shown: list[str], color_by: str) -> folium.GeoJson:
    layer_name = {"present_ratio": "zones: presence ratio", "excess": "zones: excess incidents"}
    return folium.GeoJson(
        gz.drop(columns=[c for c in ("name",) if c in gz.columns]).__geo_interface__,
        name=layer_name.get(color_by, f"zones: {color_by}"),
        style_function=lambda f: {
            "fillColor": f["properties"]["_fill"],
            "color": "#555555",
            "weight": 1,
            "fillOpacity": 0.65,
        },
        highlight_function=lambda f: {"weight": 3, "color": "#000000"},
        tooltip=folium.GeoJsonTooltip(
            fields=["zone", *shown],
            aliases=["zone", *[tooltip_text(label(c)) for c in shown]],
        ),
    )


def _signals_layer(gz: gpd.GeoDataFrame, signals: Sequence[str]) -> folium.FeatureGroup:
    """Red rings at the representative point of each flagged zone, named in their tooltip."""
    centroids = gz.set_index("zone_id").geometry.representative_point()
    names = dict(zip(gz["zone_id"], gz["name"], strict=True)) if "name" in gz else {}
    fg = folium.FeatureGroup(name="weak signals")
    for zid in dict.fromkeys(str(z) for z in signals):
        if zid in centroids.index:
            pt = centroids[zid]
            folium.CircleMarker(
                [pt.y, pt.x],
                radius=11,
                color="#d7301f",
                weight=3,
                fill=False,
                tooltip=tooltip_text(f"signal: {zone_with_name(zid, names)}"),
            ).add_to(fg)
    return fg


def _lamps_layer(lamps_out: pd.DataFrame) -> folium.FeatureGroup:
    fg = folium.FeatureGroup(name=f"lamps out ({len(lamps_out)})")
    for r in lamps_out.itertuples(index=False):
        folium.CircleMarker(
            [r.latitude, r.longitude],
            radius=3,
            color="#b8860b",
            fill=True,
            fill_color="#ffd700",
            fill_opacity=0.9,
            weight=1,
            tooltip=tooltip_text(f"lamp out {getattr(r, 'lamp_id', '')}".strip()),
        ).add_to(fg)
    return fg


def _stops_layer(stops: pd.DataFrame) -> folium.FeatureGroup:
    s = stops.rename(columns={"stop_lat": "latitude", "stop_lon": "longitude"})
    fg = folium.FeatureGroup(name=f"transit stops ({len(s)})")
    for r in s.itertuples(index=False):
        folium.CircleMarker(
            [r.latitude, r.longitude],
            radius=3,
            color="#08519c",
            fill=True,
            fill_opacity=0.8,
            weight=1,
            tooltip=tooltip_text(getattr(r, "stop_name", "stop")),
        ).add_to(fg)
    return fg


def _venue_layer(venue: dict[str, Any]) -> folium.FeatureGroup:
    fg = folium.FeatureGroup(name="venue and ring")
    loc = [float(venue["latitude"]), float(venue["longitude"])]
    folium.Circle(
        loc,
        radius=float(venue.get("radius_m", 500)),
        color="#6a3d9a",
        weight=2,
        fill=True,
        fill_opacity=0.05,
        tooltip=tooltip_text(f"ring {float(venue.get('radius_m', 500)):g} m"),
    ).add_to(fg)
    folium.CircleMarker(
        loc,
        radius=7,
        color="#6a3d9a",
        fill=True,
        fill_opacity=1,
        tooltip=tooltip_text(venue.get("name", "venue")),
    ).add_to(fg)
    return fg


# -- the map ----------------------------------------------------------------------------------
def zones_map(
    zones: Any,
    values: pd.DataFrame | None = None,
    *,
    color_by: str = "present_ratio",
    k: int = 10,
    title: str | None = None,
    signals: Sequence[str] | None = None,
    lamps_out: pd.DataFrame | None = None,
    stops: pd.DataFrame | None = None,
    venue: dict[str, Any] | None = None,
    tiles: str | None = None,
    height: int = 480,
    focus: Sequence[str] | None = None,
) -> OfflineMap:
    """A self-contained map of the zones with the report's layers and a layer control.

    Parameters
    ----------
    zones
        GeoDataFrame of the store's zones (``zone_id``, ``geometry``, optional ``name``).
    values
        Per-zone figures indexed by ``zone_id`` (or with a ``zone_id`` column): the colouring
        column and any others to show in the tooltip (counts are suppressed below ``k``).
    color_by
        ``"present_ratio"`` (classes on :data:`RATIO_BREAKS`) or ``"excess"`` (observed −
        expected incidents, symmetric classes from :func:`excess_breaks`); any other column is
        coloured on symmetric classes too.
    k
        Suppression threshold for counts in tooltips.
    signals
        Zone ids flagged by weak-signal detectors (red rings at their centroid).
    lamps_out
        Lamps with an open fault: ``latitude``, ``longitude`` (optional ``lamp_id``).
    stops
        Transit stops: ``stop_lat``, ``stop_lon``, ``stop_name`` (or latitude/longitude).
    venue
        ``{"latitude", "longitude", "radius_m", "name"}``: the venue and its ring.
    tiles
        Base of the map (:mod:`pipelines.reports.basemap`): None, the offline base (the area's
        outline and the zones' names on a light background); a local vector file (the study's
        streets or districts, drawn under the zones, offline too); or a tile provider, e.g.
        ``OpenStreetMap`` (fetched from the network when the page opens).
    height
        Pixel height of the map in the report.
    focus
        Zone ids to frame (e.g. the venue and its ring); default all zones.

    Returns
    -------
    OfflineMap
        Render with ``display(m)`` in a notebook or :func:`to_html`.
    """
    gz = _zone_frame(zones)
    m = _framed_map(gz, focus=focus, tiles=provider_tiles(tiles), height=height)
    add_underlay(m, tiles=tiles)
    vals = _value_frame(values)
    classes, legend_title, breaks = zone_classes(vals, color_by, k=k)
    if color_by in vals.columns:
        words = class_words(color_by, breaks) or _class_labels(breaks)
        Legend(title or legend_title, words).add_to(m)
    gz = zone_tooltips(gz, vals, classes, k=k)
    shown = [c for c in vals.columns if c != "geometry"]
    _zones_layer(gz, shown, color_by).add_to(m)
    add_overlay(m, gz, tiles=tiles)
    if signals:
        _signals_layer(gz, signals).add_to(m)
    if lamps_out is not None and len(lamps_out):
        _lamps_layer(lamps_out).add_to(m)
    if stops is not None and len(stops):
        _stops_layer(stops).add_to(m)
    if venue is not None:
        _venue_layer(venue).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    return m
