"""Flux Vision indicators of the cube: who is present, against whom the zone is built for.

Mobile-network presence products give, beyond one count per zone, the residents and visitors
present and, for some, the visitors' kinds (tourists who stay the night, excursionists who do
not, foreigners). Two indicators follow, each a cube column of its own:

* ``visitor_share = visitors / present``: the share of the people present who do not live in the
  study area (NaN where nobody or nothing is known);
* ``resident_ratio = present / population``: the people present against the zone's resident
  population (the zones file's ``population``): a zone at 3 at 2 am holds three times the people
  who live there, the figure fire services size evacuations with. Absent when the zones file
  gives no population.

Tourists, excursionists and foreigners are carried as the source gives them
(:data:`VISITOR_KINDS`), as time-weighted means like ``residents`` and ``visitors``.

References
----------
Orange Business, *Flux Vision* product documentation: present, resident and visitor volumes,
tourists and excursionists, foreigners, origins (2023).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

#: the split of the people present the source may give (cube columns of the same names)
SPLIT_COLUMNS = ("residents", "visitors")
#: the visitors' kinds, where the source gives them
VISITOR_KINDS = ("tourists", "excursionists", "foreign")
#: the indicators' cube columns
INDICATORS = ("visitor_share", "resident_ratio")


def indicator_columns(presence_cols: Sequence[str], *, has_population: bool) -> list[str]:
    """The indicator columns a cube gets for its presence columns and zones."""
    cols = []
    if "visitors" in presence_cols:
        cols.append("visitor_share")
    if has_population:
        cols.append("resident_ratio")
    return cols


def indicator_values(
    present: np.ndarray, split: Mapping[str, np.ndarray], *, population: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The indicators for presence arrays ``(zones, ...)``.

    Parameters
    ----------
    present
        People present, shape (Z, ...); NaN where unknown.
    split
        The optional columns (``visitors``...) of the same shape.
    population
        The zones' resident population, shape (Z,), NaN where unknown; None when the zones
        file has none.

    Returns
    -------
    dict
        ``visitor_share`` (when ``visitors`` is given) and ``resident_ratio`` (with a
        population), flattened as the cube's columns.
    """
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "visitors" in split:
            vis = split["visitors"]
            share = np.where(present > 0, vis / np.where(present > 0, present, 1.0), np.nan)
            out["visitor_share"] = np.clip(share, 0.0, 1.0).ravel()
        if population is not None:
            pop = np.asarray(population, dtype=float).reshape((-1,) + (1,) * (present.ndim - 1))
            ratio = np.where(pop > 0, present / np.where(pop > 0, pop, 1.0), np.nan)
            out["resident_ratio"] = ratio.ravel()
    return out


def zone_population(zones: pd.DataFrame, zone_ids: np.ndarray) -> np.ndarray | None:
    """The zones' ``population`` in ``zone_ids`` order (NaN where unknown); None without any."""
    if "population" not in zones.columns:
        return None
    pop = pd.to_numeric(zones["population"], errors="coerce")
    pop.index = zones["zone_id"].astype(str)
    out = pop.reindex([str(z) for z in zone_ids]).to_numpy(dtype=float)
    return out if np.isfinite(out).any() else None
