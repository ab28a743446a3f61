"""When a source must be read again: a fingerprint of its files, its sources.yaml entry, the
study's area and the sources it depends on (zones for every located source, lamps for lighting
faults, stops for ridership). A source whose fingerprint matches the previous report's is left
as the store has it."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future
from typing import Any

from features.config import SourceSpec, Study
from features.ingest.writing import _rel

#: bumped when ingest's output for the same inputs changes: every source is read again
#: 2: a placeholder row at a non-existent local time no longer displaces the real slot
INGEST_VERSION = "2"


def _fingerprint(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fingerprints(
    study: Study,
    specs: dict[str, SourceSpec],
    files_of: dict[str, list[str]],
    digests: dict[str, Future],
    *,
    zone_kind: str,
) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """Each source's fingerprint (own files + spec + area; plus what it depends on), and each
    source's input files with their SHA-256 (waits for the hashes)."""
    base = study.base_dir
    file_hashes: dict[str, list[dict[str, str]]] = {}
    own: dict[str, str] = {}
    for name, spec in specs.items():
        file_hashes[name] = [
            {"path": _rel(p, base), "sha256": digests[p].result()} for p in files_of[name]
        ]
        own[name] = _fingerprint(
            [
                INGEST_VERSION,
                name,
                spec.model_dump(),
                file_hashes[name],
                study.area.model_dump(),
            ]
        )
    zones_fp = _fingerprint(sorted(own.items())) if zone_kind == "h3" else own["zones"]
    deps: dict[str, list[Any]] = {
        "zones": [zones_fp],
        "presence": [own.get("presence"), zones_fp],
        "presence_origin": [own.get("presence_origin"), zones_fp],
        "incidents": [own.get("incidents"), zones_fp],
        "lamps": [own.get("lamps"), zones_fp],
        "lighting_faults": [own.get("lighting_faults"), own.get("lamps"), zones_fp],
        "stops": [own.get("stops"), zones_fp],
        "ridership": [own.get("ridership"), own.get("stops"), zones_fp],
        "events": [own.get("events"), zones_fp],
        "weather": [own.get("weather")],
    }
    out = {name: _fingerprint(deps[name]) for name in specs}
    if zone_kind == "h3":
        out["zones"] = zones_fp
    return out, file_hashes
