"""`vigie export`: a store's zones with their indicators, its signals and its briefs as GIS files.

Modules
-------
indicators
    The period (checked against the data) and the per-zone indicators of a period.
frames
    The published layers (zones, signals, briefs): counts suppressed as in the reports.
exporters
    The formats (GeoJSON, GeoPackage, GeoParquet, CSV with WKT) and :func:`export`.
"""

from __future__ import annotations

from pipelines.export.exporters import FORMATS, WHATS, ExportResult, export, parse_crs
from pipelines.export.frames import briefs_layer, signals_layer, zones_layer
from pipelines.export.indicators import resolve_period, zone_indicators

__all__ = [
    "FORMATS",
    "WHATS",
    "ExportResult",
    "briefs_layer",
    "export",
    "parse_crs",
    "resolve_period",
    "signals_layer",
    "zone_indicators",
    "zones_layer",
]
