"""The ledger of the files processed (``store/live/ledger.jsonl``): each file exactly once.

One JSON line per file, appended (and flushed to disk) only once its rows are in the store and
its slots tested. A run killed before the line leaves the file unrecorded: the next run
processes it again and, since the partition is named by the ledger's sequence number and the
file's SHA-256, rewrites the same partition. A line cut by a kill is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Ledger:
    """The files processed, by SHA-256."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run
                    continue
                if isinstance(entry, dict) and "sha256" in entry:
                    self.entries.append(entry)
        self._shas: dict[str, dict[str, Any]] = {}
        for e in self.entries:
            self._shas.setdefault(e["sha256"], e)
        self._pairs = {(e["file"], e["sha256"]) for e in self.entries}

    def done(self, name: str, sha: str) -> bool:
        """Whether this file (name and content) was already recorded."""
        return (name, sha) in self._pairs

    def seen(self, sha: str) -> dict[str, Any] | None:
        """The entry of a file with this content, or None."""
        return self._shas.get(sha)

    @property
    def next_seq(self) -> int:
        return len(self.entries) + 1

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        with open(self.path, "ab") as fh:
            if data and not data.endswith(b"\n"):  # a line cut by a kill: closed, then ignored
                fh.write(b"\n")
            fh.write((json.dumps(entry, ensure_ascii=False) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.entries.append(entry)
        self._shas.setdefault(entry["sha256"], entry)
        self._pairs.add((entry["file"], entry["sha256"]))
