"""Writing the raw files: tables appended chunk by chunk, the zones, ``sources.yaml``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.synth.scales import TIMEZONE
from features.synth.zones import Zones

if TYPE_CHECKING:  # annotations only: pyarrow is imported where Parquet is written
    import pyarrow.parquet as pq


class Table:
    """Appends chunks to one CSV or Parquet file, deterministically."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._first = True
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()

    def write(self, df: pd.DataFrame) -> None:
        self.rows += len(df)
        if self.fmt == "csv":
            df.to_csv(
                self.path,
                mode="w" if self._first else "a",
                header=self._first,
                index=False,
                lineterminator="\n",
            )
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._writer.write_table(table)
        self._first = False

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self._first and self.fmt == "csv":
            self.path.write_text("", encoding="utf-8")


class ChunkFiles:
    """The per-chunk files of the hourly sources (incidents, presence, ridership) under ``out``.

    Each chunk of a source gets its own file; :attr:`files` and :attr:`rows` keep what was
    written, per source, in writing order.
    """

    def __init__(self, out: Path, fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.files: dict[str, list[str]] = {"presence": [], "incidents": [], "ridership": []}
        self.rows = {"presence": 0, "incidents": 0, "ridership": 0}

    def write(self, source: str, relpath: str, df: pd.DataFrame) -> None:
        """Write ``df`` as the file ``relpath`` (under ``out``) of ``source``."""
        path = self.out / relpath
        t = Table(path, self.fmt)
        t.write(df)
        t.close()
        self.files[source].append(str(path.relative_to(self.out)))
        self.rows[source] += len(df)


def write_zones(zones: Zones, path: Path) -> None:
    """``zones_iris.geojson``: the zones as GeoJSON polygons with French column names."""
    feats = []
    for z in range(len(zones.ids)):
        ring = [[float(x), float(y)] for x, y in zones.quads[z]]
        ring.append(ring[0])
        feats.append(
            {
                "type": "Feature",
                "properties": {
                    "code_iris": zones.ids[z],
                    "nom": zones.names[z],
                    "population": int(zones.population[z]),
                    "type_zone": zones.types[z],
                },
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": feats,
    }
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def sources_yaml(fmt: str) -> str:
    """``sources.yaml``: the raw files (tables in ``fmt``) mapped onto vigie's canonical names."""
    ext = "csv" if fmt == "csv" else "parquet"
    return f"""# Synthetic city written by `vigie synth`: raw exports mapped onto vigie's canonical names.
area: {{name: Vigie-sur-Seine (synthetique), timezone: {TIMEZONE}, grain: 1h, country: FR, school_zone: C}}
suppression_k: 10
zones:
  path: zones_iris.geojson
  columns: {{zone_id: code_iris, name: nom, population: population}}
presence:
  # hourly exports by 4-week chunk, plus one file of 2-hour slots (duree_min: 120)
  path: [presence/flux_vision_horaire_*.{ext}, presence/flux_vision_2h_secteur_est.{ext}]
  columns: {{zone_id: id_zone, start: date_heure, slot_minutes: duree_min, present: volume_present,
            residents: residents, visitors: visiteurs}}
presence_origin:
  path: presence/flux_vision_origines.{ext}
  columns: {{zone_id: id_zone, start: jour, origin: origine, count: volume}}
  slot_minutes: 1440
incidents:
  path: incidents/main_courante_*.{ext}
  columns: {{incident_id: numero, occurred_at: date_heure, x: x_l93, y: y_l93, category: nature,
            source: service, priority: priorite}}
  crs: EPSG:2154
  time_format: "%d/%m/%Y %H:%M:%S%z"
lamps:
  path: eclairage/lampadaires.csv
  columns: {{lamp_id: id_lampadaire, latitude: lat, longitude: lon, wattage: puissance_w}}
lighting_faults:
  path: eclairage/pannes.csv
  columns: {{fault_id: id_panne, lamp_id: id_lampadaire, reported_at: date_signalement,
            repaired_at: date_reparation}}
stops:
  path: transport/gtfs.zip
  format: gtfs
ridership:
  path: transport/validations_*.{ext}
  columns: {{stop_id: id_arret, start: date_heure, entries: nb_validations}}
  slot_minutes: 60
events:
  path: evenements.csv
  columns: {{event_id: id_evenement, name: intitule, start: debut, end: fin, latitude: latitude,
            longitude: longitude, expected_attendance: jauge, category: type, indoor: interieur,
            dps_activity: dps_activite, dps_environment: dps_environnement, dps_delay: dps_delai}}
weather:
  path: meteo_horaire.csv
  columns: {{start: date, temperature_c: t, precipitation_mm: rr1}}
  slot_minutes: 60
"""
