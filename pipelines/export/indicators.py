"""Per-zone indicators of a period and the period itself, checked against the store's data.

The figures are those of the weekly report's map (:func:`pipelines.reports.weekly.zone_period_figures`),
with the presence reference and the residents/visitors split beside them:

* ``present``: mean people present per slot; ``reference``: mean of the cube's robust reference
  (``present_baseline``: median of the same zone and hour of week over the 8 weeks before);
  ``ratio``: Σ present / Σ reference over the slots where both are known;
* ``residents``, ``visitors`` (and ``tourists``, ``excursionists``, ``foreign``): mean per slot,
  where the presence source gives them;
* ``visitor_share``: Σ visitors / Σ present; ``peak_vs_population``: the period's highest
  ``present / population`` (the cube's ``resident_ratio``) and ``present_peak`` the people
  present at that slot;
* ``incidents``: incidents in the period; ``expected``: the zone's mean over the
  ``reference_weeks`` whole periods of the same length just before (the seasonal-naive baseline
  of the backtests, Brown & Chen's naive forecast); ``excess = incidents - expected``.

These are raw figures (from the store, unsuppressed). What is published goes through
:mod:`pipelines.reports.publish` (:mod:`pipelines.export.frames` and :mod:`pipelines.api`).
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from features.cube.indicators import SPLIT_COLUMNS, VISITOR_KINDS
from features.errors import InputError
from features.store import Store
from features.timeutil import WEEK_RE, last_full_week
from pipelines.signals.period import Period, parse_period

#: the presence figures (one family: ``ratio`` rebuilds ``present`` with ``reference``)
PRESENCE_FIGURES = ("present", "reference", "ratio")
#: who is present: residents and visitors (and the visitors' kinds, where the source gives them)
SPLIT_FIGURES = (*SPLIT_COLUMNS, *VISITOR_KINDS)
#: who is present: the visitor share (Σ visitors / Σ present, withheld beside a suppressed
#: visitors or present) and the week's peak of people present against the resident population
#: with the people present at that slot (``peak_vs_population`` x population rebuilds it)
WHO_FIGURES = ("visitor_share", "present_peak", "peak_vs_population")
#: the incident figures (one family: ``expected`` and ``excess`` rebuild ``incidents``)
INCIDENT_FIGURES = ("incidents", "expected", "excess")
#: a period given as two local dates: ``2026-11-01_2026-11-07`` or ``2026-11-01..2026-11-07``
_RANGE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:_|\.\.)(\d{4}-\d{2}-\d{2})$")


def data_dates(store: Store) -> tuple[dt.date, dt.date]:
    """First and last local dates of the cube (``cube_meta.json``)."""
    meta = store.cube_meta()
    tz = meta.get("timezone") or store.timezone
    if meta.get("first_date") and meta.get("last_date"):
        return dt.date.fromisoformat(meta["first_date"]), dt.date.fromisoformat(meta["last_date"])
    start = pd.Timestamp(meta["start"]).tz_convert(tz)
    end = pd.Timestamp(meta["end"]).tz_convert(tz) - pd.Timedelta(seconds=1)
    return start.date(), end.date()


def resolve_period(store: Store, text: str | None) -> Period:
    """The period named by ``text``, inside the store's data.

    Parameters
    ----------
    store
        A store with a cube.
    text
        An ISO week (``2026-W46``), two local dates (``2026-11-01_2026-11-07`` or
        ``2026-11-01..2026-11-07``, inclusive), or None for the cube's last complete week.

    Raises
    ------
    InputError
        When the text is not a period, or the period is not wholly inside the data.
    """
    meta = store.cube_meta()
    tz = meta.get("timezone") or store.timezone
    if text is None or not str(text).strip():
        period = parse_period(last_full_week(meta["end"], tz))
    elif WEEK_RE.match(str(text).strip()):
        period = parse_period(str(text).strip())
    elif m := _RANGE_RE.match(str(text).strip()):
        period = parse_period(start=m.group(1), end=m.group(2))
    else:
        raise InputError(
            f"period {text!r}: expected an ISO week such as 2026-W46, or two local dates such "
            "as 2026-11-01_2026-11-07."
        )
    first, last = data_dates(store)
    if period.first < first or period.last > last:
        raise InputError(
            f"period {period.label} ({period.first} to {period.last}) is outside the data of "
            f"{store.root} ({first} to {last}); choose a period inside it."
        )
    return period


def _expected(
    store: Store, start: pd.Timestamp, length: pd.Timedelta, reference_weeks: int, zones
) -> pd.Series | None:
    """Mean incidents per zone over the whole periods of the same length before ``start``."""
    data_start = pd.Timestamp(store.cube_meta().get("start") or start)
    whole = max(0, min(reference_weeks, int((start - data_start) / length)))
    if not whole:
        return None
    ref = store.cube(["incidents"], start - whole * length, start, zones)
    if not len(ref):
        return None
    return ref.groupby("zone_id")["incidents"].sum() / whole


def _who(out: pd.DataFrame, cur: pd.DataFrame, g) -> None:
    """The :data:`WHO_FIGURES` the cube can give, into ``out`` (indexed by zone)."""
    if {"visitors", "present"} <= set(cur.columns) and cur["visitors"].notna().any():
        ok = cur["visitors"].notna() & cur["present"].notna()
        both = cur[ok].groupby("zone_id")
        out["visitor_share"] = both["visitors"].sum() / both["present"].sum().replace(0, np.nan)
    if "resident_ratio" in cur.columns and cur["resident_ratio"].notna().any():
        at = cur["resident_ratio"].fillna(-1.0).groupby(cur["zone_id"]).idxmax()
        peak = cur.loc[at].set_index("zone_id")
        out["present_peak"] = peak["present"]
        out["peak_vs_population"] = peak["resident_ratio"]


def zone_indicators(
    store: Store,
    period: Period,
    *,
    zones: list[str] | None = None,
    reference_weeks: int = 8,
) -> pd.DataFrame:
    """Per-zone indicators of a period (raw, unsuppressed; see the module docstring).

    Parameters
    ----------
    store
        A store with a cube.
    period
        The period (local dates).
    zones
        Only these zones (default all).
    reference_weeks
        How many periods of the same length before it make the incidents' expectation.

    Returns
    -------
    pandas.DataFrame
        One row per zone (``zone_id`` column, sorted), the columns of :data:`PRESENCE_FIGURES`
        and :data:`INCIDENT_FIGURES` the cube can give, and ``slots`` (zone-slots in the period).

    References
    ----------
    Brown, R. G. (1959). *Statistical forecasting for inventory control* (the naive
    seasonal baseline); the weekly report's zone figures
    (:func:`pipelines.reports.weekly.zone_period_figures`) for the same definitions.
    """
    meta_cols = set(store.cube_meta().get("columns", []))
    wanted = ("present", "present_baseline", *SPLIT_COLUMNS, *VISITOR_KINDS, "resident_ratio",
              "incidents")  # fmt: skip
    cols = [c for c in wanted if c in meta_cols]
    start, end = period.bounds(store.cube_meta().get("timezone") or store.timezone)
    cur = store.cube(cols, start, end, zones)
    g = cur.groupby("zone_id")
    out = pd.DataFrame(index=pd.Index(sorted(cur["zone_id"].unique()), name="zone_id"))
    out["slots"] = g.size()
    if "present" in cur:
        out["present"] = g["present"].mean()
        if "present_baseline" in cur:
            out["reference"] = g["present_baseline"].mean()
            ok = cur["present"].notna() & cur["present_baseline"].notna()
            both = cur[ok].groupby("zone_id")
            # no ratio where the reference is zero (never an infinite ratio)
            out["ratio"] = both["present"].sum() / both["present_baseline"].sum().replace(0, np.nan)
    for col in (*SPLIT_COLUMNS, *VISITOR_KINDS):
        if col in cur and cur[col].notna().any():
            out[col] = g[col].mean()
    _who(out, cur, g)
    if "incidents" in cur:
        out["incidents"] = g["incidents"].sum()
        exp = _expected(store, start, end - start, reference_weeks, zones)
        if exp is not None:
            out["expected"] = exp.reindex(out.index).fillna(0.0)
            out["excess"] = out["incidents"] - out["expected"]
    return out.reset_index()
