"""What the steps of :func:`features.synth.generate.generate` hand to each other.

Each is a frozen dataclass built by one step: the run's :class:`SynthContext`, the drawn
:class:`World`, the model's :class:`Drivers` per hour and zone, the planted presence
:class:`Gap` and the :class:`Simulated` output of the chunked simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.synth.events import Event
from features.synth.lighting import Lighting
from features.synth.realism import Realism, RealismDraws
from features.synth.scales import ScaleSpec
from features.synth.signals import Signal, find_signal
from features.synth.tally import Tally
from features.synth.timeline import Calendar
from features.synth.zones import Zones


@dataclass(frozen=True)
class SynthContext:
    """One run: its scale, seed, output folder and study period (local start and end, UTC hours
    and their calendar)."""

    scale: str
    seed: int
    spec: ScaleSpec
    out: Path
    start: pd.Timestamp
    end: pd.Timestamp
    hours: pd.DatetimeIndex
    cal: Calendar

    @property
    def fmt(self) -> str:
        """File format of the big tables (csv or parquet)."""
        return self.spec.fmt

    @property
    def ext(self) -> str:
        """File extension of the big tables."""
        return "csv" if self.spec.fmt == "csv" else "parquet"

    @property
    def realism(self) -> Realism | None:
        """The realism settings of the run (None: incidents follow the models' own process)."""
        return self.spec.realism


@dataclass(frozen=True)
class World:
    """Everything drawn before the hourly simulation: zones, planted signals, events, lighting,
    weather (one row per study hour) and stops; with realism, the ballpark zone, its games (not
    in the event file) and the uplift planted for each."""

    zones: Zones
    signals: list[Signal]
    events: list[Event]
    light: Lighting
    weather: pd.DataFrame
    stops: pd.DataFrame
    ballpark: int | None = None
    games: list[Event] = field(default_factory=list)
    game_uplift: list[float] = field(default_factory=list)

    @property
    def spill(self) -> Signal:
        """The planted outage with spillover (its outage is in :attr:`light`)."""
        return find_signal(self.signals, "outage_spillover")

    @property
    def past(self) -> list[Event]:
        """Events inside the study (not upcoming)."""
        return [e for e in self.events if not e.upcoming]


@dataclass(frozen=True)
class Drivers:
    """The model's features per (hour, zone) of the whole study, and the day-level noise.

    Attributes
    ----------
    dark, lamps_out, dark_lamps_out, rain, event_k
        As ``pipelines.models.design`` defines them (``rain`` per hour only).
    event_added
        People brought by past events (venue zone and ring).
    day_noise
        Multiplicative presence noise per (local day, zone).
    game_added
        People brought by the ballpark's games (venue zone and ring), zeros without realism.
    realism
        The realism's multipliers (None without realism).
    """

    dark: np.ndarray
    lamps_out: np.ndarray
    dark_lamps_out: np.ndarray
    rain: np.ndarray
    event_k: np.ndarray
    event_added: np.ndarray
    day_noise: np.ndarray
    game_added: np.ndarray | None = None
    realism: RealismDraws | None = None


@dataclass(frozen=True)
class Gap:
    """The planted gap in the presence export: one zone, ``mask`` over the study hours."""

    zone: int
    start: pd.Timestamp
    end: pd.Timestamp
    mask: np.ndarray


@dataclass(frozen=True)
class Simulated:
    """What the chunked simulation wrote and counted.

    Attributes
    ----------
    files, rows
        Source -> files written (relative to the output folder) and rows written.
    totals
        Incidents drawn per category (bad rows excluded).
    bad
        Bad rows inserted, per kind.
    extra_people
        People the planted gathering added.
    transit
        (H, Z) entries at each zone's stops.
    venue_presence
        Event id -> {UTC hour: presence of the venue zone as delivered}, for past events.
    names
        The incident categories of ``totals``.
    tally
        The sums for the expected-weighted truth (:class:`~features.synth.tally.Tally`).
    origin_inflows
        The planted origin inflows (:func:`~features.synth.origins.inflows_truth`).
    """

    files: dict[str, list[str]]
    rows: dict[str, int]
    totals: np.ndarray
    bad: dict[str, int]
    extra_people: float
    transit: np.ndarray
    venue_presence: dict[str, dict[str, float]] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    tally: Tally | None = None
    origin_inflows: list[dict[str, Any]] = field(default_factory=list)
