"""What ``vigie fit`` reads of the cube (compact dtypes), and its stopwatch."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pandas as pd


def cube_columns_needed(meta_columns: Iterable[str]) -> list[str]:
    """The cube columns the models, backtest and effects read."""
    wanted = {
        "local_hour",
        "dow",
        "present",
        "present_baseline",
        "dark",
        "lamps",
        "lamps_out",
        "event_attendance",
        "precipitation_mm",
        "ridership_entries",
        "holiday",
        "school_holiday",
        "incidents",
    }
    return [c for c in meta_columns if c in wanted or c.startswith("inc_")]


def _compact(cube: pd.DataFrame) -> pd.DataFrame:
    """Downcast a cube to compact dtypes (float32 numbers, int32 counts)."""
    for c in cube.columns:
        s = cube[c]
        if c in ("zone_id", "hour", "local_date"):
            continue
        if pd.api.types.is_bool_dtype(s):
            cube[c] = s.astype(np.int8)
        elif c == "incidents" or c.startswith("inc_"):
            cube[c] = pd.to_numeric(s, errors="coerce").fillna(0).astype(np.int32)
        elif pd.api.types.is_float_dtype(s) and c not in ("present",):
            cube[c] = s.astype(np.float32)
    return cube


class Stopwatch:
    """Wall time per step."""

    def __init__(self) -> None:
        self.t0 = self.t = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = now - self.t
        self.t = now

    def rounded(self) -> dict[str, float]:
        self.seconds["total"] = time.perf_counter() - self.t0
        return {k: round(v, 2) for k, v in self.seconds.items()}
