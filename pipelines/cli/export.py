"""`vigie export`: zones with indicators, signals or briefs as GeoJSON, GeoPackage, GeoParquet
or CSV, for a GIS."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import user_errors
from pipelines.cli.lazy import lazy

# geopandas, pyogrio and the store's readers load only when the command runs
export = lazy("pipelines.export.exporters", "export")


@user_errors
def export_cmd(
    store: Path = typer.Option(..., "--store", help="Store folder with a cube."),
    what: str = typer.Option(
        ...,
        "--what",
        help="zones (with their indicators of the period), signals (with their zones' "
        "geometry), briefs (hour-by-hour staffing and lamps to repair) or origins (visitors' "
        "origins per zone and ISO week, below k merged into 'other').",
    ),
    out: Path = typer.Option(..., "--out", help="File to write (e.g. zones.gpkg)."),
    fmt: str = typer.Option(
        None,
        "--format",
        help="geojson, gpkg, parquet (GeoParquet) or csv (WKT geometry); default: from the "
        "suffix of --out.",
    ),
    period: str = typer.Option(
        None,
        "--period",
        help="ISO week (2026-W46) or local dates (2026-11-01_2026-11-07); default: the cube's "
        "last complete week (zones, signals), every brief (briefs).",
    ),
    crs: str = typer.Option(
        None, "--crs", help="CRS of the file, e.g. EPSG:2154 (Lambert-93); default EPSG:4326."
    ),
) -> None:
    """Export zones with indicators, signals or briefs for a GIS, small counts suppressed."""
    result = export(store, what=what, out=out, fmt=fmt, period=period, crs=crs)
    typer.echo(result.summary())
