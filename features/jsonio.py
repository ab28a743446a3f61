"""JSON for every file and page vigie writes: one encoder, strict by default."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)``: times as ISO text, numpy numbers as Python ones (NaN as
    null), paths as text, sets and tuples as lists, dataclasses as dicts.

    Raises
    ------
    TypeError
        For anything else, so that a new type is noticed rather than written as its repr.
    """
    if isinstance(obj, (pd.Timestamp, dt.datetime, dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if obj is pd.NaT or obj is pd.NA:
        return None
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def lenient_json_default(obj: Any) -> Any:
    """:func:`json_default`, with text for anything it does not know (a notebook's summary)."""
    try:
        return json_default(obj)
    except TypeError:
        return str(obj)


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats by None (strict JSON) in nested dicts and lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN), UTF-8 characters kept."""
    return json.dumps(
        json_safe(obj), indent=indent, ensure_ascii=False, default=json_default, allow_nan=False
    )
