"""The settings of `vigie live`, with their defaults and the reasons for them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from features.errors import ConfigError


@dataclass(frozen=True)
class LiveSettings:
    """What `vigie live` watches for and how it alerts.

    Parameters
    ----------
    persistence
        Consecutive slots out of band before an alert (2): a single noisy slot is not an alert.
    z_threshold
        Robust z (gap over 1.4826 x the median absolute deviation of the same past slots, or the
        Poisson scale sqrt(reference) when larger) a slot must reach (4.0).
    ratio_threshold
        present / reference a surge must reach, and its inverse a drop (1.5): a large zone's
        tiny relative move is not an alert however small its spread.
    corrections
        A file repeating stored slots replaces them (True) or is quarantined (False, default).
    webhook
        URL receiving each alert as JSON (POST); None: alerts only written.
    webhook_timeout, webhook_retries
        Seconds per attempt (5) and attempts per pass (3, with backoff); what is not delivered
        is retried on the next pass.
    settle_seconds
        A file is complete when its size and time have not changed for this long (2 s), or
        when its ``<name>.done`` marker exists; with ``require_done``, only the marker counts.
    gap_slots
        The page says "no data since HH:MM" once this many slot lengths pass without data (2).
    refresh_seconds
        The page reloads itself this often (60).
    """

    persistence: int = 2
    z_threshold: float = 4.0
    ratio_threshold: float = 1.5
    corrections: bool = False
    webhook: str | None = None
    webhook_timeout: float = 5.0
    webhook_retries: int = 3
    settle_seconds: float = 2.0
    require_done: bool = False
    gap_slots: float = 2.0
    refresh_seconds: int = 60

    def __post_init__(self) -> None:
        if self.persistence < 1:
            raise ConfigError(f"live: persistence must be >= 1 slot, got {self.persistence}.")
        if self.ratio_threshold <= 1:
            raise ConfigError(f"live: ratio_threshold must be > 1, got {self.ratio_threshold}.")
        if self.z_threshold <= 0:
            raise ConfigError(f"live: z_threshold must be > 0, got {self.z_threshold}.")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LiveSettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"live settings: unknown setting(s) {unknown}; expected some of {sorted(names)}."
            )
        return cls(**data)

    @classmethod
    def load(cls, path: Path | None, **overrides: Any) -> LiveSettings:
        """Settings from a JSON file (optional), then the command line's overrides (not None)."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read the live settings: {exc}.") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_json(data)
