"""The settings of a signals run and the inputs it reads (shared by the runner's parts)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipelines.signals.calibration import CalibrationSettings
from pipelines.signals.reference import EXCESS_WEEKS, PROFILE_WEEKS


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
        the generalised Pareto tail for small p values. The replicates used are in the
        JSON's ``monte_carlo``; only runs without enough history use them.
    calibration_weeks
        Past weeks whose zone-weeks calibrate the incident tests (0: model-based tests only).
    address, zone_blocks
        A Dask scheduler address: the daily panel, the incident statistics and the space-time
        scan then run as ``zone_blocks`` tasks, one per block of zones
        (:mod:`pipelines.signals.blocks`), with the same results; None: in this process.
    block_rows
        Largest number of cube rows of the calibration history read at once in this process:
        a longer history (zones x slots of :attr:`read_days`) is read and turned into the
        daily panel one zone block after the other (:meth:`history_blocks`), with the same
        results, so that the memory is bounded by a block.
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
    calibration_weeks: int = 52
    address: str | None = None
    zone_blocks: int = 8
    block_rows: int = 4_000_000

    @property
    def calibration(self) -> CalibrationSettings:
        return CalibrationSettings(
            calibration_weeks=max(self.calibration_weeks, 1), max_window=self.max_window
        )

    @property
    def recent_days(self) -> int:
        """Days before the period the presence, origin and conflict tests look back on at
        hourly grain (:meth:`presence_days`)."""
        return max(self.history_days, 7 * PROFILE_WEEKS)

    def presence_days(self, grain: str) -> int:
        """Days before the period the presence, origin and conflict tests look back on:
        :attr:`recent_days`, and at daily grain a year and 4 weeks or :attr:`read_days` if longer
        (where the history is read whole), so that a venue's last season weighs its first
        gatherings (the 52-week memory of :func:`~pipelines.signals.reference.day_scale`) and a
        weekly run reads the history a study over the season reads (docs/evaluation.md: the
        withheld games run week by week). At hourly grain, where the slot tests find a venue's
        gatherings and a year of hours costs twice half a year, :attr:`recent_days`."""
        daily = str(grain).strip().lower() in {"1d", "d", "24h"}  # the cube's grains: 1h, 1d
        year = 7 * (EXCESS_WEEKS + 4)  # the year of errors behind the weights, and their start
        return max(self.recent_days, self.read_days, year) if daily else self.recent_days

    @property
    def read_days(self) -> int:
        """Days of cube read before the period (look-back and calibration history)."""
        cal = self.calibration.history_days if self.calibration_weeks > 0 else 0
        return max(self.history_days, cal)

    def history_blocks(self, n_zones: int, grain: str, period_days: int = 7) -> int:
        """Zone blocks the history is read in: ``zone_blocks`` on Dask; in this process, as
        many as keep each block's rows (its zones x slots of :attr:`read_days` and the
        period's days) within ``block_rows`` (1: the history is read whole)."""
        if self.address is not None:
            return self.zone_blocks
        try:
            slots = max(1, int(pd.Timedelta(days=1) // pd.Timedelta(grain)))
        except ValueError:
            slots = 24
        per_zone = slots * (self.read_days + period_days + 1)
        per_block = max(1, self.block_rows // per_zone)
        return max(1, min(n_zones, -(-n_zones // per_block)))


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
