"""The store-level runner behind ``vigie signals``: load -> detectors -> consolidate -> save.

One run reviews one period (an ISO week or a date range, in the study's local dates):

1. reads the cube over the period and ``history_days`` before it (:func:`load_inputs`);
2. gets expected incidents per zone and slot from the fitted model
   (:func:`~pipelines.signals.expectation.model_expected`), or, when the store has no model,
   from a per-capita fallback fitted on the weeks before the period
   (:func:`~pipelines.signals.expectation.fallback_expected`), and says which;
3. runs every detector (excess, drift, space-time scan, presence anomalies both ways, lagged
   correlations, event conflicts; EARS C1/C2/C3 as the classic baseline). Excess, drift and
   scan are one test per zone and week, calibrated on the zone-weeks of the year before
   (:mod:`~pipelines.signals.calibration`); a cube with fewer than ``min_weeks`` weeks of
   history falls back on model-based tail probabilities and Monte Carlo, and says so;
4. adjusts the tests of each week of the period together with Benjamini-Hochberg (a longer
   period is reviewed as its weekly runs would be), keeps those with q below the FDR level,
   folds duplicates into the strongest signal (``related``), ranks them (:func:`consolidate`);
5. writes ``store/signals/<period>.json`` (:meth:`SignalRun.to_json`), ``<period>.parquet``
   (the same signals) and ``<period>.tests.parquet`` (every test with its p and q value).

Ranking: unexplained statistical signals first by score (-log10 p), then presence anomalies
explained by a known event, then event conflicts (planning signals without a p value).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError, StoreError
from features.store import Store
from features.timeutil import as_utc
from pipelines.signals.conflicts import event_conflicts
from pipelines.signals.excess import week_blocks
from pipelines.signals.incidents import history_in_blocks, incident_part, recent
from pipelines.signals.inputs import (
    CUBE_COLUMNS,
    build_panel,
    read_cube_rows,
    read_cube_rows_by_block,
    zone_neighbours,
)
from pipelines.signals.origins import who_parts
from pipelines.signals.panel import records_frame
from pipelines.signals.period import Period, local_days, parse_period
from pipelines.signals.presence import presence_review
from pipelines.signals.pvalues import benjamini_hochberg
from pipelines.signals.ranking import FAMILIES, consolidate
from pipelines.signals.result import SignalRun
from pipelines.signals.settings import RunInputs, RunSettings

__all__ = [
    "FAMILIES",
    "Period",
    "SignalRun",
    "build_panel",
    "consolidate",
    "RunInputs",
    "RunSettings",
    "load_inputs",
    "parse_period",
    "run_signals",
    "zone_neighbours",
]

log = logging.getLogger(__name__)


def run_signals(
    store: str | Path | Store,
    period: Period,
    *,
    fdr: float = 0.05,
    history_days: int = 56,
    n_sim: int = 999,
    seed: int = 0,
    k_neighbours: int = 8,
    max_window: int = 14,
    lags: Sequence[int] = (0, 1, 2, 3),
    outage_share: float = 0.10,
    surge_ratio: float = 1.5,
    use_model: bool = True,
    write: bool = True,
    mc_budget: float = 2e8,
    calibration_weeks: int = 52,
    address: str | None = None,
    zone_blocks: int = 8,
    block_rows: int = 4_000_000,
) -> SignalRun:
    """Run every detector on a period of a store and write the ranked signals.

    Parameters
    ----------
    store
        The store (or its folder).
    period
        From :func:`~pipelines.signals.period.parse_period`.
    fdr, history_days, n_sim, seed, k_neighbours, max_window, lags, outage_share, surge_ratio, use_model, mc_budget, calibration_weeks, address, zone_blocks, block_rows
        The run's settings: see :class:`RunSettings` (``address``: per zone block on Dask;
        ``block_rows``: a longer history is read per zone block in this process).
    write
        Write the JSON and Parquet files (:meth:`SignalRun.save`).

    Returns
    -------
    SignalRun

    Raises
    ------
    StoreError
        When the store has no cube.
    InputError
        When the period is outside the cube or has no presence nor incidents.

    References
    ----------
    Benjamini, Y. & Hochberg, Y. (1995). JRSS B 57(1), 289-300; and the detectors' references.
    """
    cfg = RunSettings(
        fdr=fdr, history_days=history_days, n_sim=n_sim, seed=seed, k_neighbours=k_neighbours,
        max_window=max_window, lags=tuple(lags), outage_share=outage_share,
        surge_ratio=surge_ratio, use_model=use_model, mc_budget=mc_budget,
        calibration_weeks=calibration_weeks, address=address, zone_blocks=zone_blocks,
        block_rows=block_rows,
    )  # fmt: skip
    st = store if isinstance(store, Store) else Store(store)
    meta = st.cube_meta()
    grain = meta.get("grain", "1h")  # a long history is read per zone block (bounded memory)
    blocks = history_in_blocks(cfg, int(meta.get("zones") or 0), grain, period.days)
    look = cfg.presence_days(grain)  # what the presence tests look back on
    inp = load_inputs(st, period, history_days=look if blocks else max(cfg.read_days, look),
                      use_model=use_model and not blocks,
                      block_rows=cfg.block_rows if blocks else None)  # fmt: skip
    neighbours, notes = _neighbours(st, inp.zones, k=k_neighbours)
    inc = incident_part(st, inp, period, neighbours, cfg)
    parts, more = other_tests(st, recent(inp, period, look))
    tests = adjust(list({**inc.parts, **parts}.values()), period=period, timezone=inp.timezone)
    signals = consolidate(tests, fdr=fdr) if len(tests) else tests.assign(related=[], rank=[])
    run = SignalRun(
        period=period, signals=signals, tests=tests, start=inp.start, end=inp.end,
        timezone=inp.timezone, grain=inp.grain, fdr=fdr, expectation=inc.expectation,
        test_counts={name: len(part) for name, part in {**inc.parts, **parts}.items()},
        n_tests=int(np.isfinite(tests["p_value"]).sum()), replicates=inc.replicates, seed=seed,
        ears_baseline=inc.ears, zones=len(inp.zones),
        notes=(*inp.notes, *notes, *inc.notes, *more),
        generated_at=pd.Timestamp.now(tz="UTC").isoformat(),
    )  # fmt: skip
    return run.save(st) if write else run


def _neighbours(st: Store, zones: list[str], *, k: int) -> tuple[np.ndarray | None, list[str]]:
    """The zones' nearest neighbours, or None and a note when the store has no geometry."""
    try:
        return zone_neighbours(st, zones, k=k), []
    except (StoreError, ImportError, OSError, ValueError) as exc:
        return None, [
            f"no zone geometry ({exc}): no space-time scan or neighbour-ring correlations."
        ]


def other_tests(st: Store, inp: RunInputs) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Presence anomalies (with presence) and event conflicts (with events), and notes."""
    parts: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    events = st.validated("events")
    if inp.has_presence:
        area = (st.study() or {}).get("area", {})
        review = presence_review(
            inp.frame, period_start=inp.start, period_end=inp.end, events=events,
            country=st.cube_meta().get("country"), subdivision=area.get("subdivision"),
        )  # fmt: skip
        parts["presence"] = review.tests
        notes.extend(review.notes)
        who, who_notes = who_parts(st, inp)
        parts.update(who)
        notes.extend(who_notes)
    else:
        notes.append("no presence in the cube: no gatherings or emptied zones.")
    if events is not None:
        parts["event_conflict"] = event_conflicts(
            events, period_start=inp.start, period_end=inp.end, stops=st.validated("stops")
        )
    return parts, notes


def load_inputs(
    st: Store, period: Period, *, history_days: int, use_model: bool, block_rows: int | None = None
) -> RunInputs:
    """Read the cube over the period and ``history_days`` before it (one zone block of about
    ``block_rows`` rows after the other when given: :func:`read_cube_rows_by_block`).

    Raises
    ------
    InputError
        When the period is outside the cube or the cube has neither incidents nor presence.
    """
    meta = st.cube_meta()
    tz = meta.get("timezone") or st.timezone
    ps, pe = period.bounds(tz)
    cube_start, cube_end = as_utc(meta["start"]), as_utc(meta["end"])
    if ps >= cube_end or pe <= cube_start:
        raise InputError(
            f"the period {period.label} ({period.first} to {period.last}) is outside the cube, "
            f"which covers {cube_start:%Y-%m-%d} to {cube_end:%Y-%m-%d}; choose a period inside it."
        )
    cols = [c for c in CUBE_COLUMNS if c in meta.get("columns", CUBE_COLUMNS)]
    read_all = use_model and st.model_file("models.json").exists()
    if block_rows is not None and not read_all:
        frame = read_cube_rows_by_block(st, period, timezone=tz, history_days=history_days,
                                        columns=cols, block_rows=block_rows)  # fmt: skip
    else:
        frame = read_cube_rows(st, period, timezone=tz, history_days=history_days,
                               columns=None if read_all else cols)  # fmt: skip
    has_inc = "incidents" in frame.columns
    has_presence = {"present", "present_baseline"} <= set(frame.columns)
    if not has_inc and not has_presence:
        raise InputError(
            f"{st.root}: the cube has neither incidents nor presence, so there is nothing to "
            "watch; ingest an incidents or a presence source."
        )
    notes = []
    if ps < cube_start + pd.Timedelta(days=14):
        notes.append("less than two weeks of history before the period: baselines are thin.")
    return RunInputs(
        frame=frame,
        zones=sorted(frame["zone_id"].astype(str).unique()),
        timezone=tz,
        grain=meta.get("grain", "1h"),
        start=ps,
        end=pe,
        has_incidents=has_inc,
        has_presence=has_presence,
        notes=tuple(notes),
    )


def adjust(
    parts: list[pd.DataFrame], *, period: Period | None = None, timezone: str = "UTC"
) -> pd.DataFrame:
    """All tests of the run in one table, with Benjamini-Hochberg q values and ids T00001...

    The tests of each 7-day block of the period (ending at its last day; a test belongs to the
    block holding its last instant) are adjusted together, as the weekly runs would; a period
    of a week or less is one block.
    """
    tests = (
        pd.concat([t for t in parts if len(t)], ignore_index=True)
        if any(len(t) for t in parts)
        else records_frame([])
    )
    group = np.zeros(len(tests), dtype=int)
    if period is not None and period.days > 7 and len(tests):
        ends = [period.first + dt.timedelta(days=b) for _, b in week_blocks(0, period.days)]
        bounds = local_days(ends, timezone).tz_convert("UTC").as_unit("ns").asi8
        last = pd.DatetimeIndex(pd.to_datetime(tests["end"], utc=True)).as_unit("ns").asi8 - 1
        group = np.searchsorted(bounds, last, side="right")
    q = np.full(len(tests), np.nan)
    for g in np.unique(group):
        q[group == g] = benjamini_hochberg(tests["p_value"].to_numpy(float)[group == g])
    tests["q_value"] = q
    tests.insert(0, "id", [f"T{i + 1:05d}" for i in range(len(tests))])
    return tests
