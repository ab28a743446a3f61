"""Compare two runs of the demo, file by file: ``python -m bench.compare_outputs BEFORE AFTER``.

The restructuring promise ("outputs stay the same") is checked with this: every Parquet table,
JSON file and report summary of ``BEFORE`` is compared with the same file of ``AFTER``. Tables
compare by value (floats to a relative 1e-9), JSON by value with run-dependent keys left out
(timings, paths, hashes of the code, creation times). HTML pages are not compared byte for byte
(they embed a fresh map id per run); their summary.json, which carries every figure shown, is.

Exit code 0 when every file matches, 1 otherwise; each difference is printed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

#: keys whose values change from run to run by design
VOLATILE = {
    "seconds",
    "elapsed_s",
    "duration_s",
    "created",
    "created_at",
    "generated_at",
    "written_at",
    "path",
    "paths",
    "html",
    "report",
    "store",
    "code_version",
    "git_commit",
    "vigie",
    "run_at",
    "fit_seconds",
    "timings",
    "started",
    "finished",
    "ran_at",
    "notebook",
    "json",
    "parquet",
    "models_dir",
    "out",
    "root",
    "executed_at",
    "built_at",
    "fitted_at",
    "build_id",
}
#: a report's provenance fingerprints the store files it read; those files carry build times
#: and the store's path, so their hash and size differ between two runs (the files themselves
#: are compared one by one above)
PROVENANCE_FINGERPRINTS = {"sha256", "bytes"}


def _same(a: Any, b: Any, where: str, diffs: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k in VOLATILE or (k in PROVENANCE_FINGERPRINTS and ".provenance.inputs" in where):
                continue
            if k not in a or k not in b:
                diffs.append(f"{where}.{k}: only in {'after' if k in b else 'before'}")
                continue
            _same(a[k], b[k], f"{where}.{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{where}: {len(a)} items before, {len(b)} after")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _same(x, y, f"{where}[{i}]", diffs)
    elif (
        isinstance(a, float)
        and isinstance(b, (int, float))
        or isinstance(b, float)
        and isinstance(a, (int, float))
    ):
        if not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (a != a and b != b)):
            diffs.append(f"{where}: {a!r} before, {b!r} after")
    elif a != b:
        if (
            isinstance(a, str)
            and isinstance(b, str)
            and ("/" in a or "\\" in a)
            and Path(a).name == Path(b).name
        ):
            return  # the same file under another root
        diffs.append(f"{where}: {str(a)[:120]!r} before, {str(b)[:120]!r} after")


def compare_tables(a: Path, b: Path, diffs: list[str], where: str) -> None:
    x, y = pd.read_parquet(a), pd.read_parquet(b)
    if list(x.columns) != list(y.columns):
        diffs.append(f"{where}: columns {list(x.columns)} before, {list(y.columns)} after")
        return
    try:
        pd.testing.assert_frame_equal(
            x.reset_index(drop=True),
            y.reset_index(drop=True),
            check_exact=False,
            rtol=1e-9,
            check_dtype=False,
            check_categorical=False,
        )
    except AssertionError as exc:
        diffs.append(f"{where}: {str(exc).splitlines()[0][:200]} ...")


def compare(before: Path, after: Path) -> list[str]:
    diffs: list[str] = []
    files = sorted(p.relative_to(before) for p in before.rglob("*") if p.is_file())
    for rel in files:
        a, b = before / rel, after / rel
        if rel.suffix not in (".parquet", ".json", ".csv") or ".ipynb" in rel.name:
            continue
        if not b.exists():
            diffs.append(f"{rel}: missing after")
            continue
        if rel.suffix == ".parquet":
            compare_tables(a, b, diffs, str(rel))
        elif rel.suffix == ".json":
            _same(json.loads(a.read_text()), json.loads(b.read_text()), str(rel), diffs)
        elif a.read_bytes() != b.read_bytes():
            x, y = pd.read_csv(a), pd.read_csv(b)
            if not x.equals(y):
                diffs.append(f"{rel}: differs")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    diffs = compare(Path(argv[0]), Path(argv[1]))
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
