"""Where a report's figures come from: the store files it read, the notebook, the code.

``summary.json`` carries this provenance: each store file the report read with its SHA-256 (or
``absent``), the study's raw input files with theirs (the ``sources`` that ingest recorded in
``study.json``), the notebook's hash, the kernel, the Python and papermill versions, and the
code version: the package version, the git commit (read from ``.git`` files, no git process
run) and the SHA-256 of the code itself (every ``.py`` file of ``features/`` and ``pipelines/``,
so uncommitted changes show too). Changing an input file or the code changes them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import papermill as pm

#: the project's root (the folder holding ``pipelines/`` and ``notebooks/``)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: small-count threshold when the store does not say
DEFAULT_K = 10


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


#: the packages whose source makes the code version
CODE_PACKAGES = ("features", "pipelines")


def source_sha256(root: str | Path, packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """SHA-256 of the code: every ``.py`` file of ``packages`` under ``root``, in path order,
    each as its relative path and its bytes."""
    h = hashlib.sha256()
    base = Path(root)
    for pkg in packages:
        for path in sorted((base / pkg).rglob("*.py")):
            h.update(path.relative_to(base).as_posix().encode("utf-8") + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=4)
def _source_sha256_cached(root: Path) -> str:
    return source_sha256(root)


def code_version(root: Path | None = None) -> dict[str, Any]:
    """The code's version: the package version, in a git checkout the commit (read-only), and
    the SHA-256 of the source (:func:`source_sha256`, once per process)."""
    try:
        pkg = version("vigie")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        pkg = None
    root = PROJECT_ROOT if root is None else Path(root)
    return {
        "vigie": pkg,
        "git_commit": git_commit(root),
        "source_sha256": _source_sha256_cached(root.resolve()),
    }


def _git_dir(root: Path) -> Path:
    gitdir = root / ".git"
    if gitdir.is_file():  # worktree: "gitdir: <path>"
        gitdir = (root / gitdir.read_text().split(":", 1)[1].strip()).resolve()
    return gitdir


def _packed_ref(common: Path, ref: str) -> str | None:
    packed = common / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    return None


def git_commit(root: Path) -> str | None:
    """The checked-out commit, read from ``.git`` files (no git process is run)."""
    try:
        gitdir = _git_dir(root)
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(None, 1)[1]
        common = gitdir
        if (gitdir / "commondir").exists():
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        for base in (gitdir, common):
            if (base / ref).exists():
                return (base / ref).read_text().strip()
        return _packed_ref(common, ref)
    except OSError:
        return None


def input_files(store: str | Path, relpaths: list[str]) -> list[dict[str, Any]]:
    """Provenance of the store files a report reads: path, SHA-256 (or ``absent``)."""
    root = Path(store)
    out = []
    for rel in relpaths:
        p = root / rel
        if p.is_file():
            out.append({"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size})
        else:
            out.append({"path": rel, "sha256": None, "absent": True})
    return out


def _study(store: str | Path | None) -> dict[str, Any] | None:
    """The store's ``study.json``, or None (no store, or not one yet)."""
    if store is None:
        return None
    path = Path(store) / "study.json"
    return json.loads(path.read_text()) if path.exists() else None


def suppression_threshold(store: str | Path | None, k: int | None = None) -> int:
    """``k`` when given, else the store's ``suppression_k``, else :data:`DEFAULT_K`."""
    if k is None:
        study = _study(store)
        if study is not None:
            k = int(study.get("suppression_k", DEFAULT_K))
    return DEFAULT_K if k is None else int(k)


def provenance(
    notebook: Path,
    *,
    parameters: dict[str, Any],
    kernel: str,
    store: str | Path | None = None,
    inputs: list[str] | None = None,
) -> dict[str, Any]:
    """The ``provenance`` block of ``summary.json``.

    Parameters
    ----------
    notebook
        The notebook that ran (its name and SHA-256 are recorded).
    parameters, kernel
        What it ran with.
    store, inputs
        The store and the files (relative to it) the notebook read; ``study.json`` is always
        hashed first, and the study's ``sources`` are copied.
    """
    out: dict[str, Any] = {
        "parameters": parameters,
        "notebook": {"path": notebook.name, "sha256": sha256_file(notebook)},
        "kernel": kernel,
        "python": sys.version.split()[0],
        "papermill": pm.__version__,
        "code_version": code_version(),
    }
    if store is not None:
        out["store"] = str(Path(store).resolve())
        out["inputs"] = input_files(store, ["study.json", *(inputs or [])])
        study = _study(store)
        if study is not None:
            out["sources"] = study.get("sources", {})
    return out
