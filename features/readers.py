"""Reading a city's files as they come: CSV of any delimiter and common encodings, Parquet,
JSON Lines, GeoJSON / GeoPackage / Shapefile for zones, GTFS (zip or stops.txt) for stops.

Every reader returns the raw table with *all* values as read (strings for text formats) and a
1-based ``__row`` (the data row number in the file: the first row under the header is 1) and
``__file`` so that quarantined rows can be traced back. Column mapping happens after reading.
"""

from __future__ import annotations

import csv
import functools
import glob
import hashlib
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError

ROW = "__row"
FILE = "__file"

_DELIMS = [",", ";", "\t", "|"]


@dataclass
class FileInfo:
    """What was read from one input file."""

    path: str
    rows: int
    sha256: str = ""  # filled by ingest, which hashes the files in a background thread
    encoding: str | None = None
    delimiter: str | None = None
    columns: list[str] = field(default_factory=list)


def sha256(path: str | Path) -> str:
    """SHA-256 of a file (cached by path, size and modification time within a process)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expand(patterns: list[str], source: str) -> list[str]:
    """Expand globs (sorted, so the same files always come in the same order)."""
    files: list[str] = []
    for pat in patterns:
        if any(ch in pat for ch in "*?["):
            hits = sorted(glob.glob(pat))
            if not hits:
                raise InputError(f"{source}: no file matches {pat!r}.", file=pat)
            files.extend(hits)
        else:
            if not Path(pat).exists():
                raise InputError(f"{source}: file {pat} does not exist.", file=pat)
            files.append(pat)
    return list(dict.fromkeys(files))


def detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    p = path.lower()
    for suffix, name in (
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".geojson", "geojson"),
        (".gpkg", "gpkg"),
        (".shp", "geojson"),
        (".zip", "gtfs"),
        (".json", "geojson"),
        (".txt", "csv"),
        (".csv", "csv"),
        (".tsv", "csv"),
        (".gz", "csv"),
    ):
        if p.endswith(suffix):
            return name
    return "csv"


def detect_encoding(head: bytes, declared: str | None) -> str:
    """UTF-8 (with or without BOM) when it decodes; else charset-normalizer's guess; else Latin-1."""
    if declared:
        return declared
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the sample is not an error
        if exc.start >= len(head) - 3:
            return "utf-8"
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(head).best()
        if best is not None and best.encoding.lower().replace("_", "-") in {
            "cp1252",
            "latin-1",
            "iso8859-1",
            "iso-8859-1",
            "iso8859-15",
            "windows-1252",
        }:
            return "cp1252" if best.encoding.lower() in {"cp1252", "windows-1252"} else "latin-1"
    except Exception:  # pragma: no cover - detection is best effort
        pass
    return "latin-1"


def sniff_delimiter(text: str, declared: str | None) -> str:
    if declared:
        return "\t" if declared in {"\\t", "tab"} else declared
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(_DELIMS)).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _DELIMS}
        return max(counts, key=counts.__getitem__) if max(counts.values()) > 0 else ","


def _read_bytes_head(path: str, n: int = 1 << 16) -> bytes:
    if path.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as fh:
            return fh.read(n)
    with open(path, "rb") as fh:
        return fh.read(n)


def read_csv(
    path: str,
    *,
    encoding: str | None,
    delimiter: str | None,
    source: str,
    numeric: set[str] | None = None,
    keep: Callable[[list[str]], set[str]] | None = None,
) -> tuple[pd.DataFrame, FileInfo]:
    """Read a CSV: every column as text, except those in ``numeric``, read as numbers in C (one
    with a value that is not a number comes as text and ingest reports the bad rows). ``keep``,
    given the header, names the columns to read; the others are skipped (``FileInfo.columns``
    still lists every column)."""
    head = _read_bytes_head(path)
    if not head.strip():
        raise InputError(f"{source}: {path} is empty (no header, no rows).", file=path)
    enc = detect_encoding(head, encoding)
    try:
        text = head.decode(enc, errors="ignore" if enc.startswith("utf-8") else "strict")
    except (LookupError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{source}: {path} cannot be decoded as {enc}: {exc}.", file=path
        ) from None
    delim = sniff_delimiter(text, delimiter)
    header = next(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delim), [])
    names = [str(c).strip().lstrip("\ufeff") for c in header]
    # repeated header names: every column is read (pandas renames them a, a.1) and mapped after
    distinct = len(set(header)) == len(header)
    wanted = keep(names) if keep is not None and distinct else set(names)
    usecols = [h for h, c in zip(header, names) if c in wanted] if header and distinct else None
    df = _read_csv_arrow(path, enc, delim, header, numeric or set(), usecols) if distinct else None
    if df is None:
        df, enc = _read_csv_python(path, enc, delim, usecols, source)
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    info = FileInfo(
        path=path,
        rows=len(df),
        encoding=enc,
        delimiter=delim,
        columns=names if distinct else [str(c) for c in df.columns],
    )
    return df, info


def _read_csv_python(
    path: str, enc: str, delim: str, usecols: list[str] | None, source: str
) -> tuple[pd.DataFrame, str]:
    """pandas' python parser, every column as text, for what pyarrow's reader refuses (ragged
    rows, odd quoting, a delimiter of several characters, repeated header names); Latin-1 when
    the detected encoding fails further down the file. Returns the frame and its encoding."""
    for e in dict.fromkeys([enc, "latin-1"]):
        try:
            df = pd.read_csv(
                path,
                sep=delim,
                dtype=str,
                encoding=e,
                engine="python",
                on_bad_lines="error",
                keep_default_na=False,
                na_values=[""],
                usecols=usecols,
            )
            return df, e
        except UnicodeDecodeError:
            continue
        except Exception as exc:
            raise InputError(
                f"{source}: {path} is not a readable CSV ({exc}).", file=path
            ) from None
    raise InputError(f"{source}: {path} cannot be decoded as {enc}.", file=path)


def _read_csv_arrow(
    path: str, enc: str, delim: str, header: list[str], numeric: set[str], usecols: list[str] | None
) -> pd.DataFrame | None:
    """pyarrow's multithreaded CSV reader: text columns as text, the ``numeric`` ones as float64.
    A numeric column holding a value that is not a number (a decimal comma, "n/a") is read again
    as text, so that ingest can report the rows. None when pyarrow cannot read the file."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if len(delim) != 1:
        return None
    read = pcsv.ReadOptions(
        encoding="utf8" if enc.replace("-", "").lower() in {"utf8", "utf8sig"} else enc,
        block_size=1 << 24,
    )
    parse = pcsv.ParseOptions(delimiter=delim)
    as_text = {c for c in header if c.strip().lstrip("\ufeff") not in numeric}
    for _ in range(len(header) + 1):
        types = {c: (pa.string() if c in as_text else pa.float64()) for c in header}
        try:
            table = pcsv.read_csv(
                path,
                read_options=read,
                parse_options=parse,
                convert_options=pcsv.ConvertOptions(
                    column_types=types,
                    include_columns=usecols,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            m = re.search(r"In CSV column #(\d+): CSV conversion error", str(exc))
            if m and int(m.group(1)) < len(header) and header[int(m.group(1))] not in as_text:
                as_text.add(header[int(m.group(1))])
                continue
            return None
        except (UnicodeDecodeError, LookupError):
            return None
        if table.column_names != (usecols if usecols is not None else header):
            return None
        nan_text = _nan_columns(table, as_text)
        if nan_text:
            # "NaN" in a numeric column is text to report, not a missing value: read as text
            as_text |= nan_text
            continue
        return table.to_pandas()
    return None


def _nan_columns(table, as_text: set[str]) -> set[str]:
    """The numeric columns of a table read by pyarrow that hold a NaN (the text "NaN" or "nan":
    an empty cell is a null, not a NaN)."""
    import pyarrow.compute as pc

    out = set()
    for name in table.column_names:
        if name not in as_text and pc.any(pc.is_nan(table[name])).as_py():
            out.add(name)
    return out


def read_parquet(path: str, *, source: str) -> tuple[pd.DataFrame, FileInfo]:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise InputError(
            f"{source}: {path} is not a readable Parquet file ({exc}).", file=path
        ) from None
    return df, FileInfo(path=path, rows=len(df), columns=list(df.columns))


def read_jsonl(path: str, *, encoding: str | None, source: str) -> tuple[pd.DataFrame, FileInfo]:
    head = _read_bytes_head(path)
    if not head.strip():
        raise InputError(f"{source}: {path} is empty.", file=path)
    try:
        df = pd.read_json(path, lines=True, dtype=False, encoding=encoding or "utf-8")
    except ValueError as exc:
        raise InputError(f"{source}: {path} is not valid JSON Lines ({exc}).", file=path) from None
    return df, FileInfo(
        path=path,
        rows=len(df),
        encoding=encoding or "utf-8",
        columns=list(df.columns),
    )


def read_geo(path: str, *, layer: str | None, source: str):
    import geopandas as gpd

    if Path(path).stat().st_size == 0:
        raise InputError(f"{source}: {path} is empty.", file=path)
    try:
        gdf = gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as exc:
        raise InputError(
            f"{source}: {path} is not a readable vector file ({exc}).", file=path
        ) from None
    return gdf, FileInfo(
        path=path,
        rows=len(gdf),
        columns=[c for c in gdf.columns if c != "geometry"],
    )


def read_gtfs_stops(path: str, *, source: str) -> tuple[pd.DataFrame, FileInfo]:
    """stops.txt from a GTFS zip (at its root or in one sub-folder)."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(
            f"{source}: {path} is not a zip file (expected a GTFS feed).", file=path
        ) from None
    with zf:
        names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "stops.txt"]
        if not names:
            raise InputError(
                f"{source}: {path} has no stops.txt (not a GTFS feed?); it holds {', '.join(zf.namelist()[:10])}.",
                file=path,
            )
        data = zf.read(sorted(names, key=len)[0])
    enc = detect_encoding(data[: 1 << 16], None)
    try:
        df = pd.read_csv(
            io.BytesIO(data), dtype=str, encoding=enc, keep_default_na=False, na_values=[""]
        )
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        # ParserError and EmptyDataError are ValueErrors; the first line of pandas' message
        # says where
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{source}: the stops.txt of {path} is not a readable CSV ({first}).", file=path
        ) from None
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    return df, FileInfo(
        path=path,
        rows=len(df),
        encoding=enc,
        delimiter=",",
        columns=list(df.columns),
    )


def read_any(
    path: str,
    *,
    fmt: str | None,
    encoding: str | None,
    delimiter: str | None,
    layer: str | None,
    source: str,
    numeric: set[str] | None = None,
    keep: Callable[[list[str]], set[str]] | None = None,
):
    """Read one file; returns (frame, FileInfo). Zones come back as a GeoDataFrame. ``keep``
    selects the columns of a CSV to read (see :func:`read_csv`)."""
    kind = detect_format(path, fmt)
    if source == "zones" or kind in {"geojson", "gpkg"}:
        if kind in {"csv", "txt"}:
            raise InputError(
                f"zones: {path} must be GeoJSON, GeoPackage or Shapefile (polygons), got a text table.",
                file=path,
            )
        df, info = read_geo(path, layer=layer, source=source)
    elif kind == "gtfs":
        df, info = read_gtfs_stops(path, source=source)
    elif kind == "parquet":
        df, info = read_parquet(path, source=source)
    elif kind == "jsonl":
        df, info = read_jsonl(path, encoding=encoding, source=source)
    else:
        df, info = read_csv(
            path,
            encoding=encoding,
            delimiter=delimiter,
            source=source,
            numeric=numeric,
            keep=keep,
        )
    df = df.reset_index(drop=True)
    df[ROW] = pd.RangeIndex(1, len(df) + 1)
    df[FILE] = pd.Categorical.from_codes(np.zeros(len(df), dtype=np.int8), [Path(path).name])
    return df, info
