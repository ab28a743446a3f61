"""The incident side of a signals run: expected incidents, the daily panel and its tests.

Excess, drift and scan are calibrated on the study's own past weeks
(:mod:`pipelines.signals.calibration`) when the cube holds enough history; otherwise their p
values come from the expectation's model (tail probabilities and Monte Carlo), and the run says
so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.store import Store
from pipelines.signals.calibration import calibrated_tests
from pipelines.signals.correlation import lagged_correlations
from pipelines.signals.drift import drift_tests
from pipelines.signals.drivers import build_drivers
from pipelines.signals.ears import EARS_THRESHOLDS, ears_statistic
from pipelines.signals.excess import excess_tests
from pipelines.signals.expectation import (
    FALLBACK_COLUMNS,
    estimate_dispersion,
    fallback_expected,
    fallback_fit,
    model_expected,
    model_unavailable,
)
from pipelines.signals.inputs import build_panel, read_cube_rows
from pipelines.signals.panel import Panel
from pipelines.signals.period import Period
from pipelines.signals.result import EarsFlags, Expectation
from pipelines.signals.scan import space_time_scan
from pipelines.signals.settings import RunInputs, RunSettings

MODEL_NOTE = "expected incidents from the fitted rate model (group all)"


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
    long_panel, expectation, note = _long_panel(st, inp, period, cfg)
    panel = recent_panel(long_panel, cfg.history_days)
    p0 = panel.period[0]
    alpha = estimate_dispersion(panel.observed[:, :p0], panel.expected[:, :p0])
    notes = [note] if note else []
    calibrated, info = _calibrated(long_panel, neighbours, alpha, cfg)
    replicates = {"drift": 0, "scan": 0}
    model_based = info["weeks_without_reference"] == info["weeks"]
    if model_based:
        replicates = monte_carlo_replicates(
            panel, neighbours, n_sim=cfg.n_sim, max_window=cfg.max_window, mc_budget=cfg.mc_budget
        )
        if cfg.calibration_weeks > 0:
            notes.append(
                "too little history to calibrate the incident detectors on past weeks (fewer "
                f"than {cfg.calibration.min_weeks}): excess, drift and scan p values come from "
                "the expectation's model, which real data often over-dispersed."
            )
    elif info["weeks_without_reference"]:
        notes.append(
            f"the first {info['weeks_without_reference']} week(s) of the period have fewer than "
            f"{cfg.calibration.min_weeks} weeks of history before them: their incidents are not "
            "tested (excess, drift and scan need a calibration history)."
        )
    drivers = build_drivers(
        recent(inp, period, cfg.history_days).frame, panel, neighbours, grain=inp.grain,
        outage_share=cfg.outage_share, surge_ratio=cfg.surge_ratio,
    )  # fmt: skip
    if calibrated is None or model_based:
        parts = incident_tests(
            panel, neighbours, alpha=alpha, replicates=replicates, seed=cfg.seed,
            max_window=cfg.max_window, lags=cfg.lags, drivers=drivers, cfg=cfg,
        )  # fmt: skip
    else:
        parts = {
            "incidents": calibrated,
            "correlation": lagged_correlations(panel, drivers, lags=cfg.lags),
        }
        expectation = replace(
            expectation,
            note=f"{expectation.note}; p values calibrated on the "
            f"{info['reference_zone_weeks']} zone-weeks of the {cfg.calibration_weeks} weeks "
            "before each week (conformal, min-p over excess, drift and scan)",
        )
    if cfg.address is not None:
        notes.extend(_cluster_note(st, cfg, expectation, model_based, neighbours is not None))
    return IncidentPart(
        parts=parts,
        expectation=replace(expectation, dispersion=alpha),
        replicates=replicates,
        ears=ears_flags(panel),
        notes=tuple(notes),
    )


def history_in_blocks(cfg: RunSettings, n_zones: int, grain: str, period_days: int) -> bool:
    """Whether the run reads its calibration history per zone block: on Dask (a scheduler
    address), or in this process when the history is larger than ``cfg.block_rows`` rows
    (:meth:`~pipelines.signals.settings.RunSettings.history_blocks`). The run then reads
    whole only the recent weeks the other detectors look back on."""
    return cfg.address is not None or cfg.history_blocks(n_zones, grain, period_days) > 1


def _long_panel(
    st: Store, inp: RunInputs, period: Period, cfg: RunSettings
) -> tuple[Panel, Expectation, str | None]:
    """The daily panel over the period and its calibration history, and its expectation: per
    zone block (:func:`_panel_in_blocks`) when the history is not read whole, else from rows."""
    if history_in_blocks(cfg, len(inp.zones), inp.grain, period.days):
        return _panel_in_blocks(st, inp, period, cfg)
    frame = inp.frame
    exp, expectation, note = expected_incidents(st, frame, inp.start, use_model=cfg.use_model)
    frame["expected"] = exp
    panel = build_panel(frame, zones=inp.zones, period=period, timezone=inp.timezone,
                        history_days=cfg.read_days)  # fmt: skip
    return panel, expectation, note


def _panel_in_blocks(
    st: Store, inp: RunInputs, period: Period, cfg: RunSettings
) -> tuple[Panel, Expectation, str | None]:
    """The long panel per zone block (:func:`~pipelines.signals.blocks.panel_on_blocks`): on
    Dask with an address, else one block after the other in this process. The expectation is
    the fitted model's when it gives one, else the per-capita fallback's, whose factors are
    fitted on the recent rows the run holds (the weeks before the period), as
    :func:`expected_incidents` would on the whole history."""
    from pipelines.signals.blocks import panel_on_blocks

    kw = dict(
        timezone=inp.timezone, history_days=cfg.read_days, address=cfg.address,
        blocks=cfg.history_blocks(len(inp.zones), inp.grain, period.days), in_process=cfg.address is None,
    )  # fmt: skip
    how = "no model in the store"
    if cfg.use_model:
        how = model_unavailable(st) or "model"
        if how == "model":
            panel, how = panel_on_blocks(st, inp.zones, period, **kw)  # type: ignore[arg-type]
            if panel is not None:
                return panel, Expectation("model", MODEL_NOTE), None
    fit = fallback_fit(inp.frame, fit_end=inp.start)
    if fit.whole:  # no incidents in the window: the fallback fits every row before the period
        hist = read_cube_rows(st, period, timezone=inp.timezone, history_days=cfg.read_days,
                              columns=_fallback_columns(st))  # fmt: skip
        fit = fallback_fit(hist, fit_end=inp.start)
        del hist
    panel, _ = panel_on_blocks(st, inp.zones, period, fallback=fit, columns=_fallback_columns(st),
                               **kw)  # type: ignore[arg-type]  # fmt: skip
    assert panel is not None  # the fallback's expectation is known wherever presence is
    expectation, note = _fallback_expectation(how)
    return panel, expectation, note


def _fallback_columns(st: Store) -> list[str]:
    """The cube columns the fallback's blocks read (those the cube has)."""
    have = st.cube_meta().get("columns", FALLBACK_COLUMNS)
    return [c for c in FALLBACK_COLUMNS if c in have] + ["local_date"]


def _cluster_note(
    st: Store, cfg: RunSettings, expectation: Expectation, model_based: bool, scan: bool
) -> list[str]:
    """What ran per zone block on Dask (``vigie signals --scheduler``)."""
    what = []
    what.append("the daily panel (each block's cube rows and their expectation)")
    if scan or not model_based:
        what.append("the space-time scan" if model_based else "the calibrated tests' statistics")
    if not what:
        return []
    return [f"{' and '.join(what)} ran as zone-block tasks ({cfg.zone_blocks} at most) on a Dask "
            "cluster, with the same results as in one process."]  # fmt: skip


def _calibrated(
    long_panel: Panel, neighbours: np.ndarray | None, alpha: float, cfg: RunSettings
) -> tuple[pd.DataFrame | None, dict[str, int]]:
    """The history-calibrated tests, their statistics per zone block on Dask with an address."""
    if cfg.calibration_weeks <= 0:
        return None, {"weeks_without_reference": 1, "weeks": 1}
    stats = None
    if cfg.address is not None:
        from pipelines.signals.blocks import block_statistics_on_blocks

        stats = block_statistics_on_blocks(
            long_panel, neighbours, dispersion=alpha, cfg=cfg.calibration,
            address=cfg.address, blocks=cfg.zone_blocks,
        )  # fmt: skip
    return calibrated_tests(
        long_panel, neighbours, dispersion=alpha, cfg=cfg.calibration, stats=stats
    )


def recent(inp: RunInputs, period: Period, history_days: int) -> RunInputs:
    """The inputs restricted to ``history_days`` before the period (what the detectors other
    than the calibrated incident tests look back on)."""
    first = period.first - dt.timedelta(days=history_days)
    if inp.frame.empty or inp.frame["local_date"].min() >= first:
        return inp
    frame = inp.frame[inp.frame["local_date"] >= first].reset_index(drop=True)
    return replace(inp, frame=frame)


def recent_panel(panel: Panel, history_days: int) -> Panel:
    """The panel's last ``history_days`` days before the period, and the period."""
    p0, p1 = panel.period
    t0 = max(0, p0 - history_days)
    if t0 == 0:
        return panel
    return Panel(
        zones=panel.zones, days=panel.days[t0:], observed=panel.observed[:, t0:],
        expected=panel.expected[:, t0:], period=(p0 - t0, p1 - t0), day_ends=panel.day_ends[t0:],
    )  # fmt: skip


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
        return exp, Expectation("model", MODEL_NOTE), None
    exp = fallback_expected(frame, fit_end=period_start)
    expectation, note = _fallback_expectation(how)
    return exp, expectation, note


def _fallback_expectation(how: str) -> tuple[Expectation, str]:
    """The expectation's description and the run's note when the fallback is used (``how``:
    why no model was)."""
    note = (
        f"no fitted model used ({how}); expected incidents = present x the zone's "
        "past per-capita rate x an hour-of-week profile, fitted on the 8 weeks "
        "before the period"
    )
    return (
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
    cfg: RunSettings | None = None,
) -> dict[str, pd.DataFrame]:
    """The tests on incidents: excess, drift, the scan's clusters (with neighbours), correlations.

    With a scheduler address in ``cfg``, the scan runs per zone block on Dask
    (:func:`~pipelines.signals.blocks.scan_on_blocks`).
    """
    parts = {
        "excess": excess_tests(panel, dispersion=alpha),
        "drift": drift_tests(panel, dispersion=alpha, n_sim=replicates["drift"], seed=seed),
    }
    if neighbours is not None and cfg is not None and cfg.address is not None:
        from pipelines.signals.blocks import scan_on_blocks

        parts["cluster"] = scan_on_blocks(
            panel, neighbours, address=cfg.address, blocks=cfg.zone_blocks,
            max_window=max_window, n_sim=replicates["scan"], seed=seed + 1, dispersion=alpha,
        ).clusters  # fmt: skip
    elif neighbours is not None:
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
