"""The directory store: where every step reads and writes.

Layout::

    store/
      study.json                  the validated study (area, time zone, grain, k, source hashes)
      ingest_report.json          per source rows_read / rows_kept / rows_quarantined, reasons
      validated/<source>.parquet  canonical columns only, times in UTC (zones: GeoParquet)
      quarantine/<source>.csv     every rejected row with its reason
      cube/month=YYYY-MM/*.parquet the zone x grain table (hive partitioned by month)
      cube_meta.json              columns, incident categories, period, grain
      models/                     fitted models, backtest.parquet, evaluation.json, effects.json
      signals/<period>.json|.parquet
      briefs/<event_id>.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import StoreError
from features.jsonio import json_default
from features.timeutil import as_utc


class Store:
    """A vigie store on disk.

    Parameters
    ----------
    root
        The store's folder; created on first write.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def validated_dir(self) -> Path:
        return self.root / "validated"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def cube_dir(self) -> Path:
        return self.root / "cube"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def signals_dir(self) -> Path:
        return self.root / "signals"

    @property
    def briefs_dir(self) -> Path:
        return self.root / "briefs"

    def validated_path(self, source: str) -> Path:
        return self.validated_dir / f"{source}.parquet"

    # Named places of each stage's products: callers never spell a relative path themselves.
    #: relative paths of the products, by name (the store's layout in one place)
    MODELS_JSON = "models/models.json"
    EVALUATION_JSON = "models/evaluation.json"
    EFFECTS_JSON = "models/effects.json"
    IRR_PARQUET = "models/irr.parquet"
    BACKTEST_PARQUET = "models/backtest.parquet"
    DETECTORS_JSON = "signals/evaluation.json"
    INGEST_REPORT = "ingest_report.json"

    def model_file(self, name: str) -> Path:
        """A file of the fitted models (``models/<name>``)."""
        return self.models_dir / name

    def signals_path(self, period_label: str, suffix: str = ".json") -> Path:
        """The signals of a period (``signals/<label>.json`` or ``.parquet``)."""
        return self.signals_dir / f"{period_label}{suffix}"

    def signals_relpath(self, period_label: str, suffix: str = ".json") -> str:
        return f"signals/{period_label}{suffix}"

    def brief_relpath(self, key: str) -> str:
        """The brief of an event, by its file key (``briefs/<key>.json``)."""
        return f"briefs/{key}.json"

    def brief_path(self, key: str) -> Path:
        return self.root / self.brief_relpath(key)

    def read_json(self, relpath: str) -> dict[str, Any] | None:
        """A JSON product of the store, or None when that step has not run."""
        path = self.root / relpath
        if not path.exists():
            return None
        return json.loads(path.read_text())

    # -- reading -------------------------------------------------------------------------------
    def has(self, source: str) -> bool:
        """Whether a validated source exists in the store."""
        return self.validated_path(source).exists()

    def validated(self, source: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        """A validated source as a DataFrame, or None when the study has no such source."""
        path = self.validated_path(source)
        if not path.exists():
            return None
        if source == "zones":
            return self.zones()
        return pd.read_parquet(path, columns=columns)

    def zones(self):
        """The zones as a GeoDataFrame (EPSG:4326), with zone_id as a string column."""
        import geopandas as gpd

        path = self.validated_path("zones")
        if not path.exists():
            raise StoreError(f"{self.root}: no zones in the store; run `vigie ingest` first.")
        return gpd.read_parquet(path)

    def study(self) -> dict[str, Any]:
        """The study.json written at ingest (area, timezone, grain, suppression_k...)."""
        path = self.root / "study.json"
        if not path.exists():
            raise StoreError(
                f"{self.root}: not a vigie store (no study.json); run `vigie ingest SOURCES.yaml --store {self.root}` first."
            )
        return json.loads(path.read_text())

    @property
    def timezone(self) -> str:
        return self.study()["area"]["timezone"]

    @property
    def grain(self) -> str:
        return self.study()["area"].get("grain", "1h")

    @property
    def suppression_k(self) -> int:
        return int(self.study().get("suppression_k", 10))

    def cube_meta(self) -> dict[str, Any]:
        path = self.root / "cube_meta.json"
        if not path.exists():
            raise StoreError(
                f"{self.root}: no cube in the store; run `vigie cube --store {self.root}` first."
            )
        return json.loads(path.read_text())

    def cube(
        self,
        columns: list[str] | None = None,
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
        zones: list[str] | None = None,
    ) -> pd.DataFrame:
        """Read the cube (or a slice of it): rows with start <= hour < end (UTC)."""
        self.cube_meta()
        filters = []
        if start is not None:
            filters.append(("hour", ">=", as_utc(start)))
        if end is not None:
            filters.append(("hour", "<", as_utc(end)))
        if zones is not None:
            filters.append(("zone_id", "in", list(zones)))
        cols = None if columns is None else list(dict.fromkeys(["zone_id", "hour", *columns]))
        df = pd.read_parquet(self.cube_dir, columns=cols, filters=filters or None)
        if "month" in df.columns and (columns is None or "month" not in columns):
            df = df.drop(columns="month")
        df["zone_id"] = df["zone_id"].astype(str)
        return df.sort_values(["zone_id", "hour"], kind="stable").reset_index(drop=True)

    # -- writing -------------------------------------------------------------------------------
    def write_json(self, relpath: str, payload: Any) -> Path:
        """Write JSON atomically (temp file + rename) under the store."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=json_default))
        tmp.replace(path)
        return path
