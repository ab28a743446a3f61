"""The hash of a row's key, the same in every file of a source: the prefilter of the search for
keys repeated across the files of a streamed source (:mod:`features.ingest.stream`,
:mod:`features.ingest.across`). Rows whose hashes meet are compared exactly afterwards."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.ingest.rows import _Rows


def _zone_hashes(rows: _Rows, zones) -> np.ndarray | None:
    """Each row's hash of its zone id, from its place in the zones table (the ids hashed once
    each, not once a row); None when the rows were not placed."""
    if rows.zone_pos is None or len(rows.zone_pos) != len(rows.frame):
        return None
    ids = zones["zone_id"].astype(str).to_numpy(dtype=object)
    per_zone = np.r_[pd.util.hash_array(ids), np.uint64(0)]  # -1 (no zone): the last
    return per_zone[rows.zone_pos]


def _hash_keys(f: pd.DataFrame, key: list[str], zone_hash: np.ndarray | None) -> np.ndarray:
    """The key's hash of each row of ``f`` (times by their integer, the zone by ``zone_hash``
    when given, other columns by pandas' hash), combined column by column: the same in every
    file of a run."""
    out = None
    for k in key:
        s = f[k]
        if k == "zone_id" and zone_hash is not None:
            h = zone_hash
        elif isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s):
            h = pd.util.hash_array(pd.DatetimeIndex(s).asi8)
        else:
            h = pd.util.hash_pandas_object(s, index=False).to_numpy()
        out = h if out is None else _combine(out, h)
    assert out is not None
    return out


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two columns' hashes made one (boost's hash_combine, in 64 bits)."""
    with np.errstate(over="ignore"):
        return a ^ (b + np.uint64(0x9E3779B97F4A7C15) + (a << np.uint64(6)) + (a >> np.uint64(2)))
