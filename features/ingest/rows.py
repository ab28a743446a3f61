"""A source being ingested: its canonical columns and the reason each flagged row is quarantined."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.readers import FileInfo


class _Rows:
    """A parsed source: canonical columns plus per-row quarantine reasons."""

    def __init__(
        self,
        source: str,
        frame: pd.DataFrame,
        files: list[FileInfo],
        ignored: list[str],
        mapped: dict[str, str],
        raw: pd.DataFrame,
    ):
        self.source = source
        self.frame = frame
        self.raw = raw  # the mapped columns as read (strings), for the quarantine file
        self.files = files
        self.ignored = ignored
        self.mapped = mapped
        self.codes: dict[str, np.ndarray] = {}
        self.details: dict[str, pd.Series] = {}
        self.dst: dict[str, int] = {
            "nonexistent_shifted": 0,
            "ambiguous_first": 0,
            "ambiguous_second": 0,
        }
        # per time column, the rows whose local time does not exist (shifted one hour forward
        # until times._placeholders finds that a real row holds that instant)
        self.nonexistent: dict[str, np.ndarray] = {}
        # per time column, the rows at a repeated local time of a fall-back day (see
        # times._localize): their series keys, local time (__t), rank within their file
        # (__rank), winter-time instant in UTC (__winter, int64 ns) and frame position (__at),
        # for the ranking across files (times._rerank_ambiguous, across._ambiguous_across)
        self.ambiguous: dict[str, pd.DataFrame] = {}
        self.warnings: list[str] = []
        # zone of each row's point, computed ahead in a thread (a Future, or an array once
        # several files are stacked); None when _assign must compute it
        self.zone_codes: Any = None
        # each row's position in the zones table once placed (-1: none), set by _assign
        self.zone_pos: np.ndarray | None = None

    def flag(self, mask, code: str, detail: pd.Series | None = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        prev = self.codes.get(code)
        self.codes[code] = mask if prev is None else (prev | mask)
        if detail is not None:
            self.details[code] = detail

    @property
    def bad(self) -> np.ndarray:
        out = np.zeros(len(self.frame), dtype=bool)
        for m in self.codes.values():
            out |= m
        return out

    def reasons(self) -> pd.Series:
        """One reason string per quarantined row (several joined by '; '), with the value that
        failed in brackets where it is known. Built on NumPy object arrays: the details may be
        Arrow-backed text, missing or of any type."""
        bad = self.bad
        idx = np.flatnonzero(bad)
        at = np.full(len(bad), -1, dtype=np.int64)
        at[idx] = np.arange(len(idx))
        out = np.full(len(idx), "", dtype=object)
        for code, mask in self.codes.items():
            sel = np.flatnonzero(mask)
            text = np.full(len(sel), code, dtype=object)
            det = self.details.get(code)
            if det is not None:
                values = det[~det.index.duplicated()].reindex(sel).tolist()
                text = np.array(
                    [t if _missing(v) else f"{t} ({v})" for t, v in zip(text, values)],
                    dtype=object,
                )
            cur = out[at[sel]]
            out[at[sel]] = np.where(cur == "", text, cur + "; " + text)
        return pd.Series(out, index=idx, dtype=object)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def _codes(z) -> np.ndarray:
    """Zone codes computed ahead: a Future's result, or the array itself."""
    return z.result() if hasattr(z, "result") else z
