"""The schedule's memory and its guard: ``store/schedule/ledger.jsonl`` and ``schedule/lock``.

The ledger holds one JSON line per period run (``ok``, ``failed`` or ``superseded``), appended
and fsynced; the lock is held with ``fcntl.flock`` for the whole run (released by the operating
system if the process dies, so a crash never leaves a stale lock).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from features.errors import VigieError

log = logging.getLogger(__name__)

LEDGER = "schedule/ledger.jsonl"
LOCK = "schedule/lock"


class ScheduleLocked(VigieError):
    """Another schedule run holds the store's lock."""


def read_ledger(store: str | Path) -> list[dict[str, Any]]:
    """Every record of ``store/schedule/ledger.jsonl`` (oldest first; bad lines skipped)."""
    path = Path(store) / LEDGER
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("ledger %s: skipping an unreadable line", path)
    return out


def append_ledger(store: str | Path, record: dict[str, Any]) -> None:
    """Append one record (a JSON line, flushed and fsynced)."""
    path = Path(store) / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class ScheduleLock:
    """An exclusive, non-blocking lock on ``store/schedule/lock`` (``fcntl.flock``).

    Raises
    ------
    ScheduleLocked
        On entry, when another process holds it (the message names its pid, host and start).
    """

    def __init__(self, store: str | Path) -> None:
        self.path = Path(store) / LOCK
        self._fh: Any = None

    def __enter__(self) -> ScheduleLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # held until __exit__
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown holder"
            fh.close()
            raise ScheduleLocked(
                f"{self.path}: another schedule run is in progress ({holder}); this run does "
                "nothing. Wait for it to finish (the lock goes with its process)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
        )
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
