"""`vigie ingest`: read every source of a study, validate it, and load the store.

Contract (DESIGN.md, "Canonical sources"): every row read is either kept in
``store/validated/<source>.parquet`` (canonical columns only, times in UTC) or written to
``store/quarantine/<source>.csv`` with its reason; ``store/ingest_report.json`` reconciles
``rows_read == rows_kept + rows_quarantined`` per source, lists the ignored columns, the reasons
with counts, the DST resolutions and each input file's SHA-256.

Rules decided here (also in the README):

* Times without an offset are local times of the study's time zone (``area.timezone``, or the
  source's ``timezone``). Offset-aware times (``Z``, ``+01:00``) are taken as they are.
  Without ``time_format`` only ISO 8601 is accepted (a date alone means midnight).
* A local time that does not exist (the skipped hour of a spring-forward day) is moved forward by
  one hour, the usual DST gap (02:30 -> 03:30 in Europe/Paris: the writer's clock had not
  changed yet) and counted as ``nonexistent_shifted``. When a real row of the same series (the
  series keys and the other key columns: zone_id, stop_id, incident_id...; the timestamp alone
  for weather) already holds the shifted instant, the nonexistent row is the exporter's
  placeholder for the skipped hour: it is quarantined as ``nonexistent local time
  (placeholder)``, counted as ``nonexistent_placeholder``, and the real row is kept.
* A local time that exists twice (the repeated hour of a fall-back day) is read as the first
  (summer-time) instant; when the same series key (zone, stop, zone+origin...) or, for
  sources without series, the same timestamp appears again, the second occurrence in file order
  is the second (winter-time) instant. Both are counted (``ambiguous_first``/``ambiguous_second``);
  a third occurrence is a duplicate and is quarantined. A single row at a repeated hour is the
  first instant; the second hour stays missing.
* Rows with the same key (incident_id, zone_id+start...) after the first are quarantined as
  duplicates; the first is kept.
* A point outside every zone is quarantined (``outside every zone``).
* Numbers may use a decimal comma; booleans accept true/false, 1/0, yes/no, oui/non, vrai/faux.
* A time whose year a nanosecond timestamp cannot hold (before 1678 or after 2261: typos such as
  0225 or 9999) is quarantined as out of range.

Speed (``make bench``: a million incident rows within 2x of a plain ``read_csv`` +
``to_parquet``): the main thread reads and parses; helper threads hash the input files (first
ingest), place each file's points in zones while its other columns are parsed, and search a
loaded source for repeated keys (DuckDB) while the next one is read. Rows quarantined after
that search began are accounted for in :func:`features.ingest.validation._duplicates`.

Modules, in the order of a run: :mod:`~features.ingest.run` (the orchestration),
:mod:`~features.ingest.fingerprint` (what changed), :mod:`~features.ingest.load` (a source's
files read and stacked) with :mod:`~features.ingest.mapping` (columns),
:mod:`~features.ingest.values` and :mod:`~features.ingest.times` (parsing),
:mod:`~features.ingest.validation` (checks, duplicates), :mod:`~features.ingest.location`
(zones), :mod:`~features.ingest.writing` (the store) and :mod:`~features.ingest.results`.
"""

from features.ingest.fingerprint import INGEST_VERSION
from features.ingest.results import IngestResult, SourceResult, summary_lines
from features.ingest.run import ingest

__all__ = ["INGEST_VERSION", "IngestResult", "SourceResult", "ingest", "summary_lines"]
