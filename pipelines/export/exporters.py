"""`vigie export`: a store's zones, signals or briefs as a file a GIS opens.

Formats (GDAL drivers through pyogrio, GeoParquet through geopandas):

* ``geojson``: one FeatureCollection (RFC 7946 in EPSG:4326; another ``--crs`` is written as
  GDAL's legacy ``crs`` member, which QGIS reads);
* ``gpkg``: an OGC GeoPackage with one layer named after what is exported;
* ``parquet``: GeoParquet (the CRS in the file's ``geo`` metadata, as PROJJSON);
* ``csv``: the geometry as WKT in a first ``WKT`` column (GDAL's CSV convention), with the
  GeoCSV side files ``.prj`` (the CRS) and ``.csvt`` (the column types) beside it.

Every file is written in a working folder beside the target and renamed into place, so a killed
export leaves the old file or the new one. What is published and how counts are suppressed is
:mod:`pipelines.export.frames`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from pyproj import CRS
from pyproj.exceptions import CRSError

from features.errors import InputError
from features.store import Store, temp_sibling
from pipelines.export.frames import briefs_layer, signal_run, signals_layer, zones_layer
from pipelines.export.indicators import resolve_period
from pipelines.export.origins import origins_layer
from pipelines.signals.period import Period

#: what can be exported
WHATS = ("zones", "signals", "briefs", "origins")
#: formats and their file suffix
FORMATS = {"geojson": ".geojson", "gpkg": ".gpkg", "parquet": ".parquet", "csv": ".csv"}
#: suffixes that name a format when --format is not given
_SUFFIXES = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".parquet": "parquet"}
_SUFFIXES |= {".geoparquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class ExportResult:
    """What `vigie export` wrote.

    Attributes
    ----------
    what, format
        The layer (``zones``, ``signals``, ``briefs``) and the file format.
    path
        The file written; ``files`` adds its side files (``.prj``, ``.csvt`` of a CSV).
    rows
        Features written.
    crs
        The CRS of the file (``EPSG:4326`` unless asked otherwise).
    period
        The period's label, or None (all briefs).
    k
        The suppression threshold applied.
    withheld
        Cells withheld (below k, or rebuilding a count below k).
    """

    what: str
    format: str
    path: Path
    rows: int
    crs: str
    period: str | None
    k: int
    withheld: int
    files: tuple[Path, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "format": self.format,
            "path": str(self.path),
            "files": [str(p) for p in self.files],
            "rows": self.rows,
            "crs": self.crs,
            "period": self.period,
            "k": self.k,
            "withheld": self.withheld,
        }

    def summary(self) -> str:
        """What the command prints."""
        period = f" for {self.period}" if self.period else ""
        return (
            f"{self.what}{period}: {self.rows} features written to {self.path} ({self.format}, "
            f"{self.crs}); {self.withheld} cells withheld (counts below k={self.k} and the "
            "figures that would rebuild them: see the `suppressed` column)."
        )


def parse_crs(text: str | None) -> CRS:
    """The CRS named by ``text`` (``EPSG:2154``, ``2154``, a PROJ or WKT string); EPSG:4326 when
    None. InputError when PROJ does not know it."""
    if text is None or not str(text).strip():
        return CRS.from_epsg(4326)
    value: Any = str(text).strip()
    if value.isdigit():
        value = int(value)
    try:
        return CRS.from_user_input(value)
    except CRSError:
        raise InputError(
            f"--crs {text!r}: not a coordinate reference system PROJ knows; give an EPSG code "
            "such as EPSG:4326 (WGS 84, the default) or EPSG:2154 (Lambert-93)."
        ) from None


def crs_label(crs: CRS) -> str:
    """``EPSG:<code>`` when the CRS has one, else its name."""
    code = crs.to_epsg()
    return f"EPSG:{code}" if code is not None else crs.name


def choose_format(fmt: str | None, out: Path) -> str:
    """The format: ``fmt`` checked, or the one the suffix of ``out`` names."""
    if fmt is None:
        found = _SUFFIXES.get(out.suffix.lower())
        if found is None:
            raise InputError(
                f"--out {out}: cannot tell the format from the suffix {out.suffix!r}; give "
                f"--format ({', '.join(FORMATS)})."
            )
        return found
    key = str(fmt).strip().lower()
    if key not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    return key


def _layer(store: Store, what: str, period_text: str | None, k: int):
    """The published layer and its period."""
    if what == "briefs":
        period = resolve_period(store, period_text) if period_text else None
        return briefs_layer(store, k=k, period=period), period
    period = resolve_period(store, period_text)
    if what == "signals":
        return signals_layer(store, signal_run(store, period), k=k), period
    if what == "origins":
        return origins_layer(store, period, k=k), period
    run = None
    if store.signals_path(period.label).exists():
        run = signal_run(store, period)
    return zones_layer(store, period, k=k, run=run), period


def _for_file(gdf: gpd.GeoDataFrame, fmt: str) -> gpd.GeoDataFrame:
    """Columns a driver can hold: times as UTC datetimes (CSV: ISO text)."""
    out = gdf.copy()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        if isinstance(out[col].dtype, pd.DatetimeTZDtype) and fmt == "csv":
            out[col] = out[col].map(lambda t: None if pd.isna(t) else t.isoformat())
    return out


def write_layer(gdf: gpd.GeoDataFrame, out: Path, fmt: str, *, layer: str) -> list[Path]:
    """Write ``gdf`` to ``out`` in ``fmt`` (through a working folder, renamed into place);
    the files written."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name.")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = temp_sibling(out, "work")
    work.mkdir()
    try:
        target = work / out.name
        data = _for_file(gdf, fmt)
        if fmt == "parquet":
            data.to_parquet(target, index=False)
        elif fmt == "gpkg":
            data.to_file(target, driver="GPKG", layer=layer, engine="pyogrio")
        elif fmt == "geojson":
            data.to_file(target, driver="GeoJSON", engine="pyogrio")
        else:
            data.to_file(
                target,
                driver="CSV",
                engine="pyogrio",
                layer_options={"GEOMETRY": "AS_WKT", "CREATE_CSVT": "YES"},
            )
        written = []
        for f in sorted(work.iterdir()):
            final = out.parent / f.name
            os.replace(f, final)
            written.append(final)
        return sorted(written, key=lambda p: p != out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export(
    store: str | Path | Store,
    *,
    what: str,
    out: str | Path,
    fmt: str | None = None,
    period: str | None = None,
    crs: str | None = None,
) -> ExportResult:
    """Export a store's zones (with their indicators of a period), signals or briefs.

    Parameters
    ----------
    store
        The store.
    what
        ``zones``, ``signals`` or ``briefs``.
    out
        The file to write.
    fmt
        ``geojson``, ``gpkg``, ``parquet`` or ``csv`` (default: from the suffix of ``out``).
    period
        An ISO week or two local dates (``2026-11-01_2026-11-07``); default the cube's last
        complete week (zones, signals) or every brief (briefs).
    crs
        The file's CRS (default EPSG:4326).

    Raises
    ------
    InputError
        A bad ``what``, format, period or CRS, or a period outside the data.
    StoreError
        The store lacks what is asked (no cube, no signals of the period, no briefs).
    """
    st = store if isinstance(store, Store) else Store(store)
    key = str(what).strip().lower()
    if key not in WHATS:
        raise InputError(f"--what {what!r}: expected one of {', '.join(WHATS)}.")
    out = Path(out)
    fmt = choose_format(fmt, out)
    target_crs = parse_crs(crs)
    k = st.suppression_k
    gdf, per = _layer(st, key, period, k)
    gdf = gdf.to_crs(target_crs)
    files = write_layer(gdf, out, fmt, layer=key)
    return ExportResult(
        what=key,
        format=fmt,
        path=out,
        rows=len(gdf),
        crs=crs_label(target_crs),
        period=per.label if isinstance(per, Period) else None,
        k=k,
        withheld=int(gdf["suppressed"].map(lambda s: s.count(";") + 1 if s else 0).sum()),
        files=tuple(files),
    )
