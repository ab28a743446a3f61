"""`vigie ingest` from start to end: load the study and the previous report, read what changed,
place it in zones, then write the store.

Crash safety: the sources about to be rewritten are marked ``pending`` in the ingest report
first, and a source is kept only when its fingerprint matches AND its files still have the
SHA-256 the report recorded (``outputs``); leftovers of killed runs are removed first
(:meth:`Store.clean_stale`). A report without ``outputs`` (written before this rule) has every
source read once more.

Speed: the main thread reads and parses; helper threads hash the input files (first ingest),
place each file's points in zones while its other columns are parsed, and search a loaded source
for repeated keys (DuckDB) while the next one is read.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.config import SOURCE_NAMES, SourceSpec, Study, load_study
from features.errors import InputError
from features.ingest.fingerprint import _fingerprints
from features.ingest.load import _load_source
from features.ingest.location import _h3_zones_from, _locate, _polygon_zones
from features.ingest.results import IngestResult, SourceResult
from features.ingest.rows import _Rows
from features.ingest.stream import _stream_source, streamable
from features.ingest.validation import _duplicates, _duplicates_early
from features.ingest.writing import (
    _mark_pending,
    _outputs,
    _write,
    _write_h3_zones,
    _write_report,
    _write_study,
)
from features.readers import expand, sha256
from features.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Run:
    """What one ingest works from: the study, the store, the sources and their files (being
    hashed in a helper thread)."""

    study: Study
    st: Store
    specs: dict[str, SourceSpec]
    files_of: dict[str, list[str]]
    digests: dict[str, Future]

    @property
    def zone_kind(self) -> str:
        return "polygons" if "zones" in self.specs else "h3"

    @property
    def h3_res(self) -> int:
        return self.study.area.h3_resolution

    def fingerprints(self) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
        return _fingerprints(
            self.study, self.specs, self.files_of, self.digests, zone_kind=self.zone_kind
        )


def ingest(
    sources_yaml: str | Path, store: str | Path | Store, *, force: bool = False
) -> IngestResult:
    """Validate and load every source of a study into a store.

    Parameters
    ----------
    sources_yaml
        The study's sources.yaml.
    store
        The store folder (created when missing).
    force
        Re-read every source even when its files, mapping and dependencies are unchanged.

    Returns
    -------
    IngestResult

    Raises
    ------
    ConfigError, InputError
        When a file or the sources.yaml cannot be used at all.
    """
    study = load_study(sources_yaml)
    st = store if isinstance(store, Store) else Store(store)
    st.root.mkdir(parents=True, exist_ok=True)
    st.clean_stale()
    specs = study.sources()
    if not specs:
        raise InputError(
            f"{sources_yaml}: the study lists no source; expected at least one of {', '.join(SOURCE_NAMES)}.",
            file=str(sources_yaml),
        )
    previous = {} if force else _previous_report(st)
    # every input file is hashed in a background thread (hashlib runs without the GIL): the
    # hashes are waited for at once only to compare with a previous ingest; on a first ingest,
    # or with force, the files are read and parsed meanwhile
    files_of = {name: expand(spec.paths(study.base_dir), name) for name, spec in specs.items()}
    hasher = ThreadPoolExecutor(max_workers=1)
    digests: dict[str, Future] = {}
    for files in files_of.values():
        for path in files:
            if path not in digests:
                digests[path] = hasher.submit(sha256, path)
    try:
        return _ingest(_Run(study, st, specs, files_of, digests), previous)
    finally:
        hasher.shutdown(wait=False, cancel_futures=True)


def _previous_report(st: Store) -> dict[str, Any]:
    """The store's ingest report ({} when there is none or it is unreadable)."""
    rp = st.root / Store.INGEST_REPORT
    if not rp.exists():
        return {}
    try:
        report = json.loads(rp.read_text())
    except json.JSONDecodeError:
        return {}
    return report if isinstance(report, dict) else {}


def _ingest(run: _Run, report: dict[str, Any]) -> IngestResult:
    """Read what changed, locate it, write it; the unchanged sources keep their report."""
    previous: dict[str, Any] = report.get("sources", {})
    fps, file_hashes = run.fingerprints() if previous else (None, {})
    todo = _todo(run, report, fps)
    # marked before any source is written (the large ones are written while they are read)
    _mark_pending(run.st, _previous_report(run.st), todo)
    parsed, zones, streamed = _read_and_locate(run, todo)
    if fps is None:
        fps, file_hashes = run.fingerprints()
    results = _write_sources(run, parsed, zones, todo, fps)
    for name, res in streamed.items():
        res.fingerprint = fps[name]
        results[name] = res
    results = {n: results[n] for n in SOURCE_NAMES if n in results}
    outputs = {n: _outputs(run.st, n) for n in results}
    for name in list(run.specs) + (["zones"] if run.zone_kind == "h3" else []):
        if name not in results:
            results[name] = SourceResult.from_report(name, previous[name])
            outputs[name] = report["outputs"][name]
    _drop_removed(run.st, results)
    _write_study(
        run.st,
        run.study,
        zone_kind=run.zone_kind,
        file_hashes=file_hashes,
        sources=list(results),
    )
    ordered = {n: results[n] for n in SOURCE_NAMES if n in results}
    path = _write_report(run.st, run.study, ordered, outputs)
    return IngestResult(store=run.st, sources=ordered, report_path=path)


def _todo(run: _Run, report: dict[str, Any], fps: dict[str, str] | None) -> list[str]:
    """The sources to read, in canonical order: those whose fingerprint changed (all on a first
    ingest) or whose files in the store are not the ones the report recorded, and the H3 zones
    when there is no zones file."""
    previous = report.get("sources", {})
    written = report.get("outputs", {})

    def unchanged(name: str) -> bool:
        prev = previous.get(name)
        if not prev:
            return False
        assert fps is not None  # fingerprints are computed whenever there is a previous ingest
        if prev.get("fingerprint") != fps[name] or not run.st.validated_path(name).exists():
            return False
        if written.get(name) and written[name] == _outputs(run.st, name):
            return True
        log.warning(
            "%s: its files in the store are not those its ingest report recorded (a killed "
            "run, or a report of an earlier version): read again",
            name,
        )
        return False

    return [
        n
        for n in SOURCE_NAMES
        if (n in run.specs or (n == "zones" and run.zone_kind == "h3")) and not unchanged(n)
    ]


def _read_and_locate(
    run: _Run, todo: list[str]
) -> tuple[dict[str, _Rows], Any, dict[str, SourceResult]]:
    """Every source to read, parsed, placed in zones, its repeated keys quarantined; and the zones.
    The large sources (:data:`features.ingest.stream.STREAMED`, with a zones file) are read,
    checked and written file by file here (their results are returned).

    Read + parse file by file (memory: one file's text at a time). Two helper threads: with
    polygon zones, one places a file's points in zones while its other columns are parsed (one
    file at a time: the zones' prepared geometries are used by one thread only); the other
    searches a loaded source for repeated keys while the next is read (lighting faults may get
    generated ids in _locate: they are checked after)."""
    parsed: dict[str, _Rows] = {}
    streamed: dict[str, SourceResult] = {}
    zones = None
    early: dict[str, Any] = {}
    tz = run.study.area.timezone
    with ThreadPoolExecutor(max_workers=1) as pool, ThreadPoolExecutor(max_workers=1) as zoner:
        for name in SOURCE_NAMES:
            if name not in run.specs or name not in todo:
                continue
            if zones is None and run.zone_kind == "polygons" and name != "zones":
                zones = _polygon_zones(parsed, run.st)
            log.info("reading %s", name)
            if streamable(name, run.zone_kind):
                streamed[name] = _stream_source(
                    name, run.specs[name], run.files_of[name], tz, st=run.st, zones=zones,
                    pool=zoner, base=run.study.base_dir, digests=run.digests,
                )  # fmt: skip
                continue
            parsed[name] = _load_source(
                name, run.specs[name], run.files_of[name], tz, pool=zoner, zones=zones
            )
            if name not in ("zones", "lighting_faults"):
                early[name] = _duplicates_early(parsed[name], pool)
        if zones is None:
            zones = _zones(run, parsed, todo)
        _locate(parsed, zones, run.zone_kind, run.h3_res, run.st)
        for name, rows in parsed.items():
            if name != "zones":
                _duplicates(rows, early.get(name))
    return parsed, zones, streamed


def _zones(run: _Run, parsed: dict[str, _Rows], todo: list[str]):
    """The zones file's polygons, H3 cells over the data, or the store's zones."""
    if run.zone_kind == "polygons":
        return _polygon_zones(parsed, run.st)
    if "zones" in todo or any(n in todo for n in run.specs):
        return _h3_zones_from(parsed, run.h3_res, run.st)
    return run.st.zones()


def _write_sources(
    run: _Run, parsed: dict[str, _Rows], zones, todo: list[str], fps: dict[str, str]
) -> dict[str, SourceResult]:
    """Write every source read (and the H3 zones made over the data); their results."""
    st = run.st
    for rows in parsed.values():
        for info in rows.files:
            info.sha256 = run.digests[info.path].result()
    st.validated_dir.mkdir(parents=True, exist_ok=True)
    st.quarantine_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, SourceResult] = {}
    for name, rows in parsed.items():
        results[name] = _write(st, rows, run.study.base_dir, fps[name])
    if run.zone_kind == "h3" and "zones" in todo:
        _write_h3_zones(st, zones)
        results["zones"] = SourceResult(
            "zones",
            len(zones),
            len(zones),
            0,
            {},
            [],
            [],
            {},
            warnings=[
                f"no zones file: {len(zones)} H3 cells at resolution {run.h3_res} over the data"
            ],
            fingerprint=fps["zones"],
        )
    return results


def _drop_removed(st: Store, results: dict[str, SourceResult]) -> None:
    """Sources dropped from the study leave the store."""
    for name in SOURCE_NAMES:
        if name not in results:
            for p in (st.validated_path(name), st.quarantine_dir / f"{name}.csv"):
                if p.exists():
                    p.unlink()
