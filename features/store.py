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

Crash safety: every file is written beside its target under a temporary name and renamed into
place (:func:`atomic_file`); a folder (the cube, the fitted models, a report) is built beside its
target and swapped in by two renames (:func:`staged_folder`). Temporary names carry their
writer's process id and host (``.<name>.tmp-<pid>x<host>-<random>``), so the next run removes
what a killed run left (:func:`clean_stale`) and never what a live run is writing; a swap cut
between its two renames is finished by the next reader (:func:`recover_swap`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import StoreError
from features.jsonio import json_default
from features.timeutil import as_utc

log = logging.getLogger(__name__)

#: this machine, as it appears in temporary names (CRC-32 of the host name)
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
#: a temporary name written by this module: .<target>.<role>-<pid>x<host>-<random>
_OWNED = re.compile(
    r"^\.(?P<target>.+)\.(?P<role>tmp|old|work)-(?P<pid>\d+)x(?P<host>[0-9a-f]{8})-[0-9a-f]{8}$"
)
#: names left by earlier versions (no owner): stale once older than LEGACY_GRACE_S
_LEGACY = re.compile(
    r"^(\.cube-(building|work|old)-[0-9a-f]{8}|\..+\.(tmp|old)-[0-9a-f]{8}|.+\.(parquet|csv|json)\.tmp)$"
)
LEGACY_GRACE_S = 60.0
#: a temporary name of another machine is stale after a day (its process cannot be asked)
FOREIGN_GRACE_S = 86_400.0


def new_tag() -> str:
    """An owner tag for temporary names: this process, this host, and a random part."""
    return f"{os.getpid()}x{_HOST}-{uuid.uuid4().hex[:8]}"


def temp_sibling(path: Path, role: str = "tmp", tag: str | None = None) -> Path:
    """The temporary name beside ``path`` (``.<name>.<role>-<tag>``), for ``role`` in tmp, old
    and work."""
    return path.with_name(f".{path.name}.{role}-{tag or new_tag()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale(path: Path, *, now: float | None = None) -> bool:
    """Whether a temporary file or folder was left by a run that is gone.

    Owned names (:func:`temp_sibling`) are stale when their process is dead on this host, or
    after :data:`FOREIGN_GRACE_S` when written from another host; names of earlier versions after
    :data:`LEGACY_GRACE_S`. Any other name is never stale.
    """
    m = _OWNED.match(path.name)
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if m is None:
        return bool(_LEGACY.match(path.name)) and age > LEGACY_GRACE_S
    if m["host"] != _HOST:
        return age > FOREIGN_GRACE_S
    pid = int(m["pid"])
    return pid != os.getpid() and not _alive(pid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover_swap(final: Path) -> bool:
    """Finish a swap cut between its two renames: ``final`` is missing, its old version was put
    aside (``.<name>.old-<tag>``) by a run that is gone. The new version (``.<name>.tmp-<tag>``),
    complete since the swap starts only when it is, goes in; without it the old one comes back.
    Returns whether ``final`` was restored."""
    if final.exists() or not final.parent.is_dir():
        return False
    for old in sorted(final.parent.glob(f".{final.name}.old-*")):
        m = _OWNED.match(old.name)
        if m is None or m["target"] != final.name or not is_stale(old):
            continue
        tag = old.name.rsplit(".old-", 1)[1]
        new = temp_sibling(final, "tmp", tag)
        try:
            (new if new.exists() else old).rename(final)
        except OSError:  # another reader finished it first
            return final.exists()
        log.warning("%s: finished a swap interrupted by a killed run", final)
        return True
    return False


def clean_stale(*folders: Path) -> list[Path]:
    """Remove the temporary files and folders that killed runs left in ``folders`` (after
    finishing their interrupted swaps); returns what was removed."""
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        entries = sorted(folder.iterdir())
        for p in entries:  # first put back whatever a cut swap left out
            m = _OWNED.match(p.name)
            if m is not None and m["role"] == "old":
                recover_swap(folder / m["target"])
        for p in entries:
            if (p.name.startswith(".") or p.name.endswith(".tmp")) and is_stale(p):
                _remove(p)
                removed.append(p)
    if removed:
        log.info("removed %d leftover(s) of killed runs: %s", len(removed), removed[:5])
    return removed


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` (flushed to disk first)
    when the block ends without error, removed otherwise. A reader sees the old file or the
    new one, never part of one. A writer that removes the temporary file (nothing new to
    write) leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            return
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def swap_in(new: Path, final: Path, *, tag: str) -> None:
    """Put the folder ``new`` at ``final``: the old one aside (``.<name>.old-<tag>``), the new
    one renamed in, the old one removed. Cut between the renames, :func:`recover_swap` finishes
    it, so a reader sees either version whole."""
    old = None
    if final.exists():
        old = temp_sibling(final, "old", tag)
        final.rename(old)
    try:
        new.rename(final)
    except OSError:
        if old is not None:
            old.rename(final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(final: str | Path, *, copy_existing: bool = False) -> Iterator[Path]:
    """A fresh folder beside ``final`` to fill (a copy of ``final`` with ``copy_existing``);
    swapped in (:func:`swap_in`) when the block ends without error, removed otherwise."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = new_tag()
    tmp = temp_sibling(final, "tmp", tag)
    if copy_existing and final.is_dir():
        shutil.copytree(final, tmp)
    else:
        tmp.mkdir()
    try:
        yield tmp
        swap_in(tmp, final, tag=tag)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
        return self._settled(self.root / "cube")

    @property
    def models_dir(self) -> Path:
        return self._settled(self.root / "models")

    @staticmethod
    def _settled(folder: Path) -> Path:
        """``folder``, after finishing a swap of it that a killed run left half done."""
        if not folder.exists():
            recover_swap(folder)
        return folder

    #: the cube's metadata inside the cube folder (swapped in with it: the authoritative copy)
    CUBE_META_INSIDE = "_meta.json"

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
        """The cube's metadata. The copy inside ``cube/`` is swapped in with the cube, so it
        always describes it; ``cube_meta.json`` beside it is rewritten from it when a killed
        build left it describing another build (it says which with ``build_id``)."""
        path = self.root / "cube_meta.json"
        inside = self.cube_dir / self.CUBE_META_INSIDE
        if inside.exists():
            meta = json.loads(inside.read_text())
            top = self.read_json("cube_meta.json") if path.exists() else None
            if top is None or top.get("build_id") != meta.get("build_id"):
                log.warning(
                    "%s describes another cube build than %s (a `vigie cube` was killed after "
                    "its swap): rewritten from the cube's own copy.",
                    path,
                    self.cube_dir,
                )
                try:
                    self.write_json("cube_meta.json", meta)
                except OSError as exc:  # a read-only store: the inside copy is still right
                    log.warning("%s could not be rewritten: %s", path, exc)
            return meta
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
            if zones and all(isinstance(z, str) for z in zones):  # lets row-group stats prune
                filters += [("zone_id", ">=", min(zones)), ("zone_id", "<=", max(zones))]
        cols = None if columns is None else list(dict.fromkeys(["zone_id", "hour", *columns]))
        df = pd.read_parquet(self.cube_dir, columns=cols, filters=filters or None)
        if "month" in df.columns and (columns is None or "month" not in columns):
            df = df.drop(columns="month")
        df["zone_id"] = df["zone_id"].astype(str)
        return df.sort_values(["zone_id", "hour"], kind="stable").reset_index(drop=True)

    # -- writing -------------------------------------------------------------------------------
    def write_json(self, relpath: str, payload: Any) -> Path:
        """Write JSON atomically (temp file + rename) under the store."""
        return write_text_atomic(self.root / relpath, self.json_text(payload))

    @staticmethod
    def json_text(payload: Any) -> str:
        """The text of a JSON product (as :meth:`write_json` writes it)."""
        return json.dumps(payload, indent=2, ensure_ascii=False, default=json_default)

    def clean_stale(self) -> list[Path]:
        """Remove what killed runs left in the store (temporary files and folders of runs that
        are gone; never those of a live run), after finishing their interrupted swaps."""
        folders = [self.root, self.root / "validated", self.root / "quarantine"]
        folders += [self.root / n for n in ("models", "signals", "briefs", "schedule")]
        return clean_stale(*folders)
