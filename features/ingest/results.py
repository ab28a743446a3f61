"""What ingest reports: per-source results, the run's result and the CLI's summary lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.store import Store


@dataclass
class SourceResult:
    """What ingest did with one source."""

    source: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    files: list[dict[str, Any]]
    ignored_columns: list[str]
    columns_mapped: dict[str, str]
    dst: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: str = "ingested"
    fingerprint: str = ""

    def as_dict(self) -> dict[str, Any]:
        # the report describes the store, not the run: a re-run on unchanged inputs writes the
        # same bytes (whether a source was re-read is `status`, printed by the CLI)
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "reconciled": self.rows_read == self.rows_kept + self.rows_quarantined,
            "reasons": dict(sorted(self.reasons.items())),
            "ignored_columns": self.ignored_columns,
            "columns_mapped": self.columns_mapped,
            "dst": self.dst,
            "warnings": self.warnings,
            "files": self.files,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_report(cls, source: str, entry: dict[str, Any], *, status: str = "unchanged"):
        """A source's result as a previous ingest report recorded it (:meth:`as_dict`)."""
        prev = dict(entry)
        return cls(
            source,
            prev["rows_read"],
            prev["rows_kept"],
            prev["rows_quarantined"],
            prev["reasons"],
            prev["files"],
            prev["ignored_columns"],
            prev["columns_mapped"],
            prev.get("dst", {}),
            prev.get("warnings", []),
            status,
            prev["fingerprint"],
        )


@dataclass(frozen=True)
class IngestResult:
    """The outcome of :func:`ingest`: the store and the per-source results."""

    store: Store
    sources: dict[str, SourceResult]
    report_path: Path

    @property
    def reconciled(self) -> bool:
        return all(r.rows_read == r.rows_kept + r.rows_quarantined for r in self.sources.values())


def summary_lines(result: IngestResult) -> list[str]:
    """Human-readable lines for the CLI."""
    lines = []
    for name, r in result.sources.items():
        extra = f", {r.rows_quarantined} quarantined" if r.rows_quarantined else ""
        status = " (unchanged)" if r.status == "unchanged" else ""
        lines.append(
            f"{name:16s} {r.rows_read:>10,d} read, {r.rows_kept:>10,d} kept{extra}{status}"
        )
        for code, n in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"{'':16s}   {n:>8,d} × {code}")
        if r.ignored_columns:
            lines.append(
                f"{'':16s}   left out: {', '.join(r.ignored_columns[:8])}{'…' if len(r.ignored_columns) > 8 else ''}"
            )
    return lines
