"""What the steps of :func:`features.synth.generate.generate` hand to each other.

Each is a frozen dataclass built by one step: the run's :class:`SynthContext`, the drawn
:class:`World`, the model's :class:`Drivers` per hour and zone, the planted presence
:class:`Gap` and the :class:`Simulated` output of the chunked simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.synth.events import Event
from features.synth.lighting import Lighting
from features.synth.scales import ScaleSpec
from features.synth.signals import Signal, find_signal
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


@dataclass(frozen=True)
class World:
    """Everything drawn before the hourly simulation: zones, planted signals, events, lighting,
    weather (one row per study hour) and stops."""

    zones: Zones
    signals: list[Signal]
    events: list[Event]
    light: Lighting
    weather: pd.DataFrame
    stops: pd.DataFrame

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
    """

    dark: np.ndarray
    lamps_out: np.ndarray
    dark_lamps_out: np.ndarray
    rain: np.ndarray
    event_k: np.ndarray
    event_added: np.ndarray
    day_noise: np.ndarray


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
    """

    files: dict[str, list[str]]
    rows: dict[str, int]
    totals: np.ndarray
    bad: dict[str, int]
    extra_people: float
    transit: np.ndarray
    venue_presence: dict[str, dict[str, float]] = field(default_factory=dict)
