"""Ranking a run's tests: significant ones kept, duplicates folded into the strongest signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: detector families: a signal is folded into a stronger one of the same family.
FAMILIES = {
    "excess": "incidents",
    "drift": "incidents",
    "cluster": "incidents",
    "gathering": "gathering",
    "emptied": "emptied",
    "correlation": "correlation",
    "event_conflict": "event_conflict",
    "visitor_share": "presence_mix",
    "resident_ratio": "presence_mix",
    "origin_shift": "origins",
}


def _overlap(
    a_start: pd.Timestamp, a_end: pd.Timestamp, b_start: pd.Timestamp, b_end: pd.Timestamp
) -> bool:
    """Whether two ``[start, end)`` windows overlap."""
    return a_start < b_end and b_start < a_end


def consolidate(tests: pd.DataFrame, *, fdr: float) -> pd.DataFrame:
    """Significant tests, duplicates folded into the strongest signal of their family, ranked.

    A significant test is folded into an already kept signal (listed in its ``related``) when
    both belong to the same family (:data:`FAMILIES`), their windows overlap, and its zones
    are a subset of the kept signal's zones, or, for the same type, they share a zone.
    Order: unexplained signals by score, then explained ones, then event conflicts.
    """
    sig = tests[(tests["q_value"] < fdr) | (tests["type"] == "event_conflict")].copy()
    sig["_conflict"] = sig["type"] == "event_conflict"
    sig = sig.sort_values(
        ["_conflict", "explained", "score", "ratio"], ascending=[True, True, False, False]
    )
    kept: list[int] = []
    related: dict[int, list[str]] = {}
    rows = sig.to_dict("index")  # plain dicts: row access by label is slow in a double loop
    for i, row in rows.items():
        fam = FAMILIES.get(row["type"], row["type"])
        zs = set(row["zones"])
        host = None
        if fam != "event_conflict":
            for k in kept:
                r = rows[k]
                if FAMILIES.get(r["type"], r["type"]) != fam:
                    continue
                if not _overlap(row["start"], row["end"], r["start"], r["end"]):
                    continue
                rz = set(r["zones"])
                if zs <= rz or (row["type"] == r["type"] and zs & rz):
                    host = k
                    break
        if host is None:
            kept.append(i)
            related[i] = []
        else:
            related[host].append(row["id"])
    out = sig.loc[kept].drop(columns="_conflict")
    out["related"] = [related[i] for i in kept]
    out["rank"] = np.arange(1, len(out) + 1)
    return out.reset_index(drop=True)
