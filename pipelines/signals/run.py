"""The store-level runner behind ``vigie signals``: load -> detectors -> consolidate -> save.

One run reviews one period (an ISO week or a date range, in the study's local dates):

1. reads the cube over the period and ``history_days`` before it (:func:`load_inputs`);
2. gets expected incidents per zone and slot from the fitted model
   (:func:`~pipelines.signals.expectation.model_expected`), or, when the store has no model,
   from a per-capita fallback fitted on the weeks before the period
   (:func:`~pipelines.signals.expectation.fallback_expected`), and says which;
3. runs every detector (excess, drift, space-time scan, presence anomalies both ways, lagged
   correlations, event conflicts; EARS C1/C2/C3 as the classic baseline);
4. adjusts all tests of the run together with Benjamini-Hochberg, keeps those with q below the
   FDR level, folds duplicates into the strongest signal (``related``), ranks them
   (:func:`consolidate`);
5. writes ``store/signals/<period>.json`` (:meth:`SignalRun.to_json`), ``<period>.parquet``
   (the same signals) and ``<period>.tests.parquet`` (every test with its p and q value).

Ranking: unexplained statistical signals first by score (-log10 p), then presence anomalies
explained by a known event, then event conflicts (planning signals without a p value).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError, StoreError
from features.store import Store
from features.timeutil import as_utc
from pipelines.signals.conflicts import event_conflicts
from pipelines.signals.correlation import lagged_correlations
from pipelines.signals.drift import drift_tests
from pipelines.signals.drivers import build_drivers
from pipelines.signals.ears import EARS_THRESHOLDS, ears_statistic
from pipelines.signals.excess import excess_tests
from pipelines.signals.expectation import estimate_dispersion, fallback_expected, model_expected
from pipelines.signals.inputs import CUBE_COLUMNS, build_panel, zone_neighbours
from pipelines.signals.panel import Panel, records_frame
from pipelines.signals.period import Period, parse_period
from pipelines.signals.presence import presence_anomalies
from pipelines.signals.pvalues import benjamini_hochberg
from pipelines.signals.ranking import FAMILIES, consolidate
from pipelines.signals.result import EarsFlags, Expectation, SignalRun
from pipelines.signals.scan import space_time_scan

__all__ = [
    "FAMILIES",
    "Period",
    "SignalRun",
    "build_panel",
    "consolidate",
    "load_inputs",
    "parse_period",
    "run_signals",
    "zone_neighbours",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """The settings of a run (the keyword arguments of :func:`run_signals`).

    Attributes
    ----------
    fdr
        Benjamini-Hochberg level across all tests of the run.
    history_days
        Days before the period read as look-back (drift charts, EARS, correlations, the
        fallback expectation and the presence reference).
    n_sim, seed
        Monte Carlo replicates of the drift charts and the scan, and their seed.
    k_neighbours, max_window
        Largest scan neighbourhood (zones) and window (days).
    lags
        Lags (days) of the correlation tests.
    outage_share, surge_ratio
        A day is an outage day when at least this share of a zone's lamps is out at night; a
        presence surge day when the hourly present / reference reaches this ratio.
    use_model
        Use the fitted model when there is one (otherwise always the fallback).
    mc_budget
        Largest number of cylinder (scan) or 10 x zone-day (drift) evaluations spent on Monte
        Carlo replicates: a large city gets fewer than ``n_sim`` (at least 199) and relies on
        the Gumbel tail for small p values (Abrams et al. 2010). The replicates used are in
        the JSON's ``monte_carlo``.
    """

    fdr: float = 0.05
    history_days: int = 56
    n_sim: int = 999
    seed: int = 0
    k_neighbours: int = 8
    max_window: int = 14
    lags: tuple[int, ...] = (0, 1, 2, 3)
    outage_share: float = 0.10
    surge_ratio: float = 1.5
    use_model: bool = True
    mc_budget: float = 2e8


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
) -> SignalRun:
    """Run every detector on a period of a store and write the ranked signals.

    Parameters
    ----------
    store
        The store (or its folder).
    period
        From :func:`~pipelines.signals.period.parse_period`.
    fdr, history_days, n_sim, seed, k_neighbours, max_window, lags, outage_share, surge_ratio, use_model, mc_budget
        The run's settings: see :class:`RunSettings`.
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
    )  # fmt: skip
    st = store if isinstance(store, Store) else Store(store)
    inp = load_inputs(st, period, history_days=history_days, use_model=use_model)
    neighbours, notes = _neighbours(st, inp.zones, k=k_neighbours)
    inc = incident_part(st, inp, period, neighbours, cfg)
    parts, more = other_tests(st, inp)
    tests = adjust(list({**inc.parts, **parts}.values()))
    signals = consolidate(tests, fdr=fdr) if len(tests) else tests.assign(related=[], rank=[])
    run = SignalRun(
        period=period,
        signals=signals,
        tests=tests,
        start=inp.start,
        end=inp.end,
        timezone=inp.timezone,
        grain=inp.grain,
        fdr=fdr,
        expectation=inc.expectation,
        test_counts={name: len(part) for name, part in {**inc.parts, **parts}.items()},
        n_tests=int(np.isfinite(tests["p_value"]).sum()),
        replicates=inc.replicates,
        seed=seed,
        ears_baseline=inc.ears,
        zones=len(inp.zones),
        notes=(*inp.notes, *notes, *inc.notes, *more),
        generated_at=pd.Timestamp.now(tz="UTC").isoformat(),
    )
    return run.save(st) if write else run


def _neighbours(st: Store, zones: list[str], *, k: int) -> tuple[np.ndarray | None, list[str]]:
    """The zones' nearest neighbours, or None and a note when the store has no geometry."""
    try:
        return zone_neighbours(st, zones, k=k), []
    except (StoreError, ImportError, OSError, ValueError) as exc:
        return None, [
            f"no zone geometry ({exc}): no space-time scan or neighbour-ring correlations."
        ]


@dataclass(frozen=True)
class IncidentPart:
    """The incident side of a run: its tests, where the expectation came from, the replicates
    used, EARS flags and notes (all empty when the cube has no incidents)."""

    parts: dict[str, pd.DataFrame]
    expectation: Expectation
    replicates: dict[str, int]
    ears: dict[str, EarsFlags]
    notes: tuple[str, ...]


def incident_part(
    st: Store,
    inp: RunInputs,
    period: Period,
    neighbours: np.ndarray | None,
    cfg: RunSettings,
) -> IncidentPart:
    """Expected incidents, the daily panel, then excess, drift, scan and correlation tests."""
    if not inp.has_incidents:
        only = "no incidents in the cube: only presence anomalies (and event conflicts)."
        return IncidentPart({}, Expectation(), {}, {}, (only,))
    exp, expectation, note = expected_incidents(st, inp.frame, inp.start, use_model=cfg.use_model)
    inp.frame["expected"] = exp
    panel = build_panel(
        inp.frame, zones=inp.zones, period=period, timezone=inp.timezone,
        history_days=cfg.history_days,
    )  # fmt: skip
    p0 = panel.period[0]
    alpha = estimate_dispersion(panel.observed[:, :p0], panel.expected[:, :p0])
    replicates = monte_carlo_replicates(
        panel, neighbours, n_sim=cfg.n_sim, max_window=cfg.max_window, mc_budget=cfg.mc_budget
    )
    drivers = build_drivers(
        inp.frame, panel, neighbours, grain=inp.grain, outage_share=cfg.outage_share,
        surge_ratio=cfg.surge_ratio,
    )  # fmt: skip
    parts = incident_tests(
        panel, neighbours, alpha=alpha, replicates=replicates, seed=cfg.seed,
        max_window=cfg.max_window, lags=cfg.lags, drivers=drivers,
    )  # fmt: skip
    return IncidentPart(
        parts=parts,
        expectation=replace(expectation, dispersion=alpha),
        replicates=replicates,
        ears=ears_flags(panel),
        notes=(note,) if note else (),
    )


def other_tests(st: Store, inp: RunInputs) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Presence anomalies (with presence) and event conflicts (with events), and notes."""
    parts: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    events = st.validated("events")
    if inp.has_presence:
        parts["presence"] = presence_anomalies(
            inp.frame, period_start=inp.start, period_end=inp.end, events=events
        )
    else:
        notes.append("no presence in the cube: no gatherings or emptied zones.")
    if events is not None:
        parts["event_conflict"] = event_conflicts(
            events, period_start=inp.start, period_end=inp.end, stops=st.validated("stops")
        )
    return parts, notes


@dataclass(frozen=True)
class RunInputs:
    """What a run reads: the cube rows of the period and its look-back, and their context.

    Attributes
    ----------
    frame
        Cube rows of the local dates ``period.first - history_days`` .. ``period.last``.
    zones
        Sorted zone ids of the frame.
    timezone, grain
        The cube's time zone and grain.
    start, end
        UTC bounds of the period.
    has_incidents, has_presence
        Which sources the cube holds.
    notes
        Notes so far (thin history).
    """

    frame: pd.DataFrame
    zones: list[str]
    timezone: str
    grain: str
    start: pd.Timestamp
    end: pd.Timestamp
    has_incidents: bool
    has_presence: bool
    notes: tuple[str, ...]


def load_inputs(st: Store, period: Period, *, history_days: int, use_model: bool) -> RunInputs:
    """Read the cube over the period and ``history_days`` before it.

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
    frame = st.cube(
        columns=None if read_all else cols,
        start=ps - pd.Timedelta(days=history_days + 1),
        end=pe + pd.Timedelta(days=1),
    )
    frame["local_date"] = pd.to_datetime(frame["local_date"]).dt.date
    first_hist = period.first - dt.timedelta(days=history_days)
    frame = frame[(frame["local_date"] >= first_hist) & (frame["local_date"] <= period.last)]
    frame = frame.reset_index(drop=True)
    has_inc = "incidents" in frame.columns
    has_presence = {"present", "present_baseline"} <= set(frame.columns)
    if not has_inc and not has_presence:
        raise InputError(
            f"{st.root}: the cube has neither incidents nor presence, so there is nothing to "
            "watch; ingest an incidents or a presence source."
        )
    if has_inc:
        frame["incidents"] = pd.to_numeric(frame["incidents"], errors="coerce")
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


def expected_incidents(
    st: Store, frame: pd.DataFrame, period_start: pd.Timestamp, *, use_model: bool
) -> tuple[np.ndarray, Expectation, str | None]:
    """Expected incidents per row: the fitted model's, else the per-capita fallback.

    Returns
    -------
    tuple
        ``(expected, expectation, note)``; the note says when the fallback was used.
    """
    exp, how = (None, "no model in the store")
    if use_model:
        exp, how = model_expected(st, frame)
    if exp is not None and np.isfinite(exp).any():
        note = "expected incidents from the fitted rate model (group all)"
        return exp, Expectation("model", note), None
    exp = fallback_expected(frame, fit_end=period_start)
    note = (
        f"no fitted model used ({how}); expected incidents = present x the zone's "
        "past per-capita rate x an hour-of-week profile, fitted on the 8 weeks "
        "before the period"
    )
    return (
        exp,
        Expectation("fallback", note),
        "expected incidents come from the per-capita fallback, not a fitted model.",
    )


def monte_carlo_replicates(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    n_sim: int,
    max_window: int,
    mc_budget: float,
) -> dict[str, int]:
    """Replicates of the drift charts and the scan within the budget (at least 199 each).

    A metropolis gets fewer replicates; the Gumbel tail covers its small p values.
    """
    n_drift = int(min(n_sim, max(199, mc_budget // (10 * panel.observed.size))))
    if neighbours is None:
        return {"drift": n_drift, "scan": 0}
    n_days = panel.period[1] - panel.period[0]
    cyl = len(panel.zones) * neighbours.shape[1] * n_days * max_window
    return {"drift": n_drift, "scan": int(min(n_sim, max(199, mc_budget // cyl)))}


def incident_tests(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    alpha: float,
    replicates: dict[str, int],
    seed: int,
    max_window: int,
    lags: Sequence[int],
    drivers: list,
) -> dict[str, pd.DataFrame]:
    """The tests on incidents: excess, drift, the scan's clusters (with neighbours), correlations."""
    parts = {
        "excess": excess_tests(panel, dispersion=alpha),
        "drift": drift_tests(panel, dispersion=alpha, n_sim=replicates["drift"], seed=seed),
    }
    if neighbours is not None:
        parts["cluster"] = space_time_scan(
            panel,
            neighbours,
            max_window=max_window,
            n_sim=replicates["scan"],
            seed=seed + 1,
            dispersion=alpha,
        ).clusters
    parts["correlation"] = lagged_correlations(panel, drivers, lags=lags)
    return parts


def ears_flags(panel: Panel) -> dict[str, EarsFlags]:
    """EARS C1/C2/C3 zone-days of the period above their thresholds (the first 50 listed)."""
    obs = np.where(np.isfinite(panel.observed), panel.observed, 0.0)
    p0, p1 = panel.period
    out = {}
    for m in ("C1", "C2", "C3"):
        c = ears_statistic(obs, method=m)[:, p0:p1]
        flags = np.argwhere(np.nan_to_num(c) > EARS_THRESHOLDS[m])
        days = [
            {
                "zone": str(panel.zones[i]),
                "day": str(panel.days[p0 + t].date()),
                "statistic": float(c[i, t]),
            }
            for i, t in flags[:50]
        ]
        out[m] = EarsFlags(EARS_THRESHOLDS[m], int(len(flags)), tuple(days))
    return out


def adjust(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """All tests of the run in one table, with Benjamini-Hochberg q values and ids T00001..."""
    tests = (
        pd.concat([t for t in parts if len(t)], ignore_index=True)
        if any(len(t) for t in parts)
        else records_frame([])
    )
    tests["q_value"] = benjamini_hochberg(tests["p_value"].to_numpy(float))
    tests.insert(0, "id", [f"T{i + 1:05d}" for i in range(len(tests))])
    return tests
