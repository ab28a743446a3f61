"""Data gaps in presence: a sensor outage is a data-quality note, not an emptied zone.

A run of zeros, or of one repeated value (a flat line), where the zone is never empty is not a
crowd that left: it is a counter that stopped. A slot is in a gap when it belongs to a run of
consecutive slots, within a zone, that are all 0 (at least ``min_zero_run`` slots) where the
zone's quiet reference (:mod:`pipelines.signals.reference`) expects at least ``min_level`` people
over the run (a count of 0 against an expected 20 has a Poisson probability of 2e-9), or all
equal to the same positive value (at least ``min_flat_run`` slots) where the reference is at
least ``min_level`` people at every slot of the run: where a zone usually holds that many people,
a run of exactly nobody, or the same count hour after hour, is an instrument failure; an outage
that runs through the night is one gap. Zeros where the reference is small (a footbridge for two
hours at 4 am) are real and stay. Gap slots are left out of the reference and of the tests, and each run
becomes one note of the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: a run of zeros this long (slots) where the zone is never empty is a gap.
MIN_ZERO_RUN = 1
#: a run of one repeated positive value this long (slots) is a flat line.
MIN_FLAT_RUN = 4
#: the reference (people) above which the zone is taken as never empty.
MIN_LEVEL = 20.0


@dataclass(frozen=True)
class Gap:
    """One run of slots that is a data gap: the zone, its first and last slot start, how many
    slots, and whether it is zeros or a flat line."""

    zone: str
    start: pd.Timestamp
    end: pd.Timestamp
    slots: int
    kind: str

    def note(self) -> str:
        """The run's note."""
        what = "zeros" if self.kind == "zeros" else "one repeated count (a flat line)"
        return (
            f"data gap in zone {self.zone}: {self.slots} slot(s) of {what} from "
            f"{self.start:%Y-%m-%d %H:%M} UTC where the zone is never empty (a sensor outage): "
            "left out of the reference and of the tests, not an emptied zone."
        )


def find_gaps(
    present: np.ndarray,
    level: np.ndarray,
    *,
    min_zero_run: int = MIN_ZERO_RUN,
    min_flat_run: int = MIN_FLAT_RUN,
    min_level: float = MIN_LEVEL,
) -> np.ndarray:
    """Which slots are in a data gap (rule in the module's docstring).

    Parameters
    ----------
    present
        ``(zones, slots)`` presence in time order (NaN where missing: it breaks runs).
    level
        Same shape: the zone's reference in people (NaN where unknown: not a gap).

    Returns
    -------
    numpy.ndarray
        Boolean ``(zones, slots)``.
    """
    zn, n = present.shape
    never_empty = np.nan_to_num(level, nan=0.0) >= min_level
    new = np.ones(present.shape, dtype=bool)
    new[:, 1:] = present[:, 1:] != present[:, :-1]  # NaN != NaN: missing slots break runs
    run = np.cumsum(new.ravel()) - 1
    length = np.bincount(run)
    starts = np.flatnonzero(new.ravel())
    value = present.ravel()[starts]
    full = np.bincount(run, weights=(~never_empty).ravel().astype(float)) == 0
    expected = np.bincount(run, weights=np.nan_to_num(level, nan=0.0).ravel())
    need = np.where(value == 0, min_zero_run, min_flat_run)
    busy = np.where(value == 0, expected >= min_level, full)
    gap = np.isfinite(value) & (length >= need) & busy
    return gap[run].reshape(zn, n)


def gap_runs(mask: np.ndarray, present: np.ndarray, hours: np.ndarray, zones) -> list[Gap]:
    """The gap runs of ``mask`` (``(zones, slots)``), each with its zone, start and length."""
    runs = []
    for z in np.flatnonzero(mask.any(axis=1)):
        m = mask[z].astype(np.int8)
        edges = np.diff(np.concatenate([[0], m, [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            runs.append(
                Gap(
                    zone=str(zones[z]),
                    start=pd.Timestamp(hours[z, a], tz="UTC"),
                    end=pd.Timestamp(hours[z, b - 1], tz="UTC"),
                    slots=int(b - a),
                    kind="zeros" if present[z, a] == 0 else "flat",
                )
            )
    return runs
