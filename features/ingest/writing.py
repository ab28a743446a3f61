"""Writing the store: validated Parquet (atomic, dictionary-encoded where values repeat),
quarantine CSVs, study.json and the ingest report.

Crash safety: each file goes through a temporary file renamed into place. Before any source is
rewritten, the ingest report marks it ``pending`` (its fingerprint is dropped), and the final
report records, per source, the SHA-256 of the files it wrote (``outputs``): a run killed
between a source's files and the report leaves a source the next run reads again, never one it
trusts on the old report's word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import schemas
from features.config import default_country
from features.ingest.results import SourceResult
from features.ingest.rows import _Rows
from features.readers import FILE, ROW, sha256
from features.store import Store, atomic_file

#: the fingerprint of a source being rewritten (matches no real fingerprint)
PENDING = "pending"

#: text columns stored as strings whatever type they were read as (besides the *_id columns)
_TEXT_COLUMNS = {"category", "name", "origin", "source", "priority", "stop_name"}


def _rel(path: str, base: Path) -> str:
    """``path`` relative to the study's folder (as given when it lies elsewhere)."""
    try:
        return str(Path(path).resolve().relative_to(base))
    except ValueError:
        return str(path)


def _write_h3_zones(st: Store, zones) -> None:
    """The H3 cells made over the data, as the store's zones (and an empty quarantine)."""
    g = zones.copy()
    g["name"] = None
    g["population"] = np.nan
    g = g[["zone_id", "name", "population", "geometry"]]
    _atomic_parquet(g, st.validated_path("zones"))
    q = st.quarantine_dir / "zones.csv"
    if not q.exists():
        with atomic_file(q) as tmp:
            pd.DataFrame(columns=["file", "row", "reason"]).to_csv(tmp, index=False)


def _dictionary_columns(table, unique: str | None, *, sample: int = 10_000) -> list[str]:
    """The columns worth dictionary-encoding in Parquet: all but the near-unique ones (more than
    nine values in ten all different in an evenly spread sample: ids, times of incidents,
    coordinates). On those Arrow's writer builds a dictionary until it outgrows its page and then
    gives up, which costs a third of the writing time for nothing; counts and slot times, which
    repeat over millions of rows, keep their dictionary (it halves their size)."""
    n = table.num_rows
    if n <= sample:
        return [c for c in table.column_names if c != unique]
    at = np.linspace(0, n - 1, sample).astype(np.int64)
    out = []
    for c in table.column_names:
        if c == unique:
            continue
        if pc.count_distinct(table.column(c).take(at)).as_py() <= 0.9 * sample:
            out.append(c)
    return out


def _atomic_parquet(df: pd.DataFrame, path: Path, *, unique: str | None = None) -> None:
    """Write ``df`` to ``path`` through a temporary file (a reader never sees half a file); the
    file is left untouched when the bytes are the same. ``unique`` names a column whose values
    are all different (the source's key): it is not dictionary-encoded, which could only fail."""
    with atomic_file(path) as tmp:
        if hasattr(df, "geometry"):
            df.to_parquet(tmp, index=False)  # GeoParquet
        else:
            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(table, tmp, use_dictionary=_dictionary_columns(table, unique))
        if path.exists() and path.read_bytes() == tmp.read_bytes():
            tmp.unlink()
            return


def _write(st: Store, rows: _Rows, base: Path, fp: str) -> SourceResult:
    """Write a parsed source (its quarantine CSV and validated Parquet) and say what was done."""
    name = rows.source
    f = rows.frame
    bad = rows.bad
    _write_quarantine(st, rows, bad)
    kept = f.loc[~bad] if bad.any() else f
    _write_validated(st, name, kept)
    counts: dict[str, int] = {code: int(m.sum()) for code, m in rows.codes.items()}
    files = _file_entries(rows.files, base)
    return SourceResult(
        name,
        len(f),
        int((~bad).sum()),
        int(bad.sum()),
        counts,
        files,
        rows.ignored,
        rows.mapped,
        rows.dst if any(rows.dst.values()) else {},
        rows.warnings,
        "ingested",
        fp,
    )


def _file_entries(infos, base: Path) -> list[dict[str, Any]]:
    """The report's entry of each input file of a source."""
    return [
        {
            "path": _rel(i.path, base),
            "sha256": i.sha256,
            "rows": i.rows,
            "encoding": i.encoding,
            "delimiter": i.delimiter,
        }
        for i in infos
    ]


def _write_quarantine(st: Store, rows: _Rows, bad: np.ndarray) -> None:
    """``quarantine/<source>.csv``: the mapped columns as read, with the file, row and reason."""
    _write_quarantine_frame(st, rows.source, _quarantine_frame(rows, bad))


def _write_quarantine_frame(st: Store, name: str, q: pd.DataFrame) -> None:
    with atomic_file(st.quarantine_dir / f"{name}.csv") as tmpq:
        q.to_csv(tmpq, index=False)


def _quarantine_frame(
    rows: _Rows, bad: np.ndarray, reasons: pd.Series | None = None
) -> pd.DataFrame:
    """The quarantined rows of ``rows``: file, row, reason (``reasons``, by position, or
    :meth:`_Rows.reasons`) and the mapped columns as read."""
    f = rows.frame
    reasons = rows.reasons() if reasons is None else reasons
    bad_idx = np.flatnonzero(bad)
    q = pd.DataFrame(
        {
            "file": f[FILE].iloc[bad_idx].to_numpy(),
            "row": f[ROW].iloc[bad_idx].to_numpy(),
            "reason": reasons.to_numpy(),
        }
    )
    # values as read for rows flagged while parsing; the parsed value for rows flagged later
    for c in rows.raw.columns:
        if len(bad_idx) == 0:
            q[c] = pd.Series([], dtype="string")  # the header still names the columns
            continue
        parsed = f[c].iloc[bad_idx] if c in f.columns else pd.Series(pd.NA, index=bad_idx)
        shown = parsed.astype("string").set_axis(bad_idx)
        as_read = rows.raw[c].reindex(bad_idx)
        q[c] = as_read.where(as_read.index.isin(rows.raw.index), shown).to_numpy()
    return q


def _write_validated(st: Store, name: str, kept: pd.DataFrame) -> None:
    """``validated/<source>.parquet``: the kept rows' stored columns, in file order."""
    kept = _stored_frame(name, kept)
    if name == "zones":
        _atomic_parquet(_zones_table(kept), st.validated_path(name))
        return
    # rows stay in file order (deterministic: files are read in sorted order)
    key = schemas.KEYS[name]
    _atomic_parquet(kept, st.validated_path(name), unique=key[0] if len(key) == 1 else None)


def _stored_frame(name: str, kept: pd.DataFrame) -> pd.DataFrame:
    """The kept rows' stored columns in the store's order, ids and labels as text."""
    cols = [c for c in schemas.STORED[name] if c in kept.columns]
    # required stored columns that the file did not give are added empty, so readers see one shape
    for c in ("zone_id",) if name in schemas.LOCATED or name in {"stops", "ridership"} else ():
        if c not in cols:
            kept[c] = None
            cols.append(c)
    kept = kept[cols].reset_index(drop=True)
    if name == "zones":
        return kept
    for c in kept.columns:
        if (c.endswith("_id") or c in _TEXT_COLUMNS) and not pd.api.types.is_string_dtype(kept[c]):
            kept[c] = kept[c].astype("string")
    return kept


def _zones_table(kept: pd.DataFrame):
    """The kept zones in the store's shape: zone_id, name, population, geometry (EPSG:4326)."""
    import geopandas as gpd

    kept["zone_id"] = kept["zone_id"].astype(str)
    if "name" not in kept.columns:
        kept["name"] = None
    if "population" not in kept.columns:
        kept["population"] = np.nan
    return gpd.GeoDataFrame(
        kept[["zone_id", "name", "population", "geometry"]], geometry="geometry", crs=4326
    )


def _write_study(
    st: Store,
    study,
    *,
    zone_kind: str,
    file_hashes: dict[str, list[dict[str, str]]],
    sources: list[str],
) -> None:
    """``study.json``: the area (country and school-holiday zone filled in), the suppression
    threshold, the kind of zones and each source's input files."""
    tz = study.area.timezone
    study_json: dict[str, Any] = {
        "area": study.area.model_dump(),
        "suppression_k": study.suppression_k,
        "zones_kind": zone_kind,
        "sources": {n: {"files": file_hashes.get(n, [])} for n in sources},
    }
    if study_json["area"].get("country") is None:
        study_json["area"]["country"] = default_country(tz)
    if study_json["area"].get("school_zone") is None and study_json["area"]["country"] == "FR":
        study_json["area"]["school_zone"] = "C" if tz == "Europe/Paris" else None
    st.write_json("study.json", study_json)


def _outputs(st: Store, name: str) -> dict[str, str]:
    """The files of a source in the store (validated Parquet, quarantine CSV) with their
    SHA-256, by path relative to the store."""
    paths = (st.validated_path(name), st.quarantine_dir / f"{name}.csv")
    return {p.relative_to(st.root).as_posix(): sha256(p) for p in paths if p.exists()}


def _mark_pending(st: Store, report: dict[str, Any], todo: list[str]) -> None:
    """Before the sources of ``todo`` are rewritten: the store's report with their fingerprints
    replaced by :data:`PENDING` and their outputs dropped, so a run killed before the final
    report reads them again."""
    sources = report.get("sources", {})
    hit = [n for n in todo if n in sources]
    if not hit:
        return
    marked = {
        **report,
        "sources": {
            n: {**e, "fingerprint": PENDING} if n in hit else e for n, e in sources.items()
        },
        "outputs": {n: o for n, o in report.get("outputs", {}).items() if n not in hit},
    }
    st.write_json(Store.INGEST_REPORT, marked)


def _write_report(
    st: Store, study, results: dict[str, SourceResult], outputs: dict[str, dict[str, str]]
) -> Path:
    """``ingest_report.json``: whether every source reconciles, each source's result, and the
    files each source wrote with their SHA-256 (``outputs``, checked before a source is kept)."""
    report = {
        "study": study.area.name,
        "timezone": study.area.timezone,
        "reconciled": all(
            r.rows_read == r.rows_kept + r.rows_quarantined for r in results.values()
        ),
        "sources": {n: r.as_dict() for n, r in results.items()},
        "outputs": {n: outputs[n] for n in results if n in outputs},
    }
    return st.write_json(Store.INGEST_REPORT, report)
