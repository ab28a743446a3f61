"""The four planted weak signals and the incident multipliers they apply.

* ``emerging``: one zone whose incidents ramp linearly from x1 to x3 over the last two weeks;
* ``cluster``: a zone and two neighbours with street incidents x3 over four days;
* ``gathering``: a night gathering in a business zone (extra people present, 01:00-04:00);
* ``outage_spillover``: a planted lighting outage (90 % of a zone's lamps) whose neighbours see
  incidents x2.5 in their dark hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.synth.scales import CAT_NAMES, STREET, TIMEZONE, rng_stream
from features.synth.zones import Zones


@dataclass
class Signal:
    """A planted signal (zones as indices; times in UTC)."""

    type: str
    zones: list[int]
    start: pd.Timestamp  # UTC
    end: pd.Timestamp
    params: dict[str, Any]


def plan_signals(zones: Zones, *, end: pd.Timestamp, seed: int) -> list[Signal]:
    """The four planted weak signals, in the last three ISO weeks of the study.

    Zones are taken among hourly-delivered zones, far from each other, never a venue.
    """
    rng = rng_stream(seed, 6)
    Z = len(zones.ids)
    ok = ~zones.is_2h & np.isin(zones.types, ["residential", "centre", "nightlife", "business"])
    used: set[int] = set()  # zones a signal already acts on
    near: set[int] = set()  # those and their neighbours

    def pick(types: tuple[str, ...], need_nb: int = 0) -> int:
        """A zone of one of ``types``; best away from earlier signals, else just not on them."""
        order = [int(z) for z in rng.permutation(Z) if ok[z]]

        def free_nbs(z: int) -> int:
            return sum(bool(ok[m]) and m not in used for m in zones.neighbours[z])

        tiers = [
            [z for z in order if zones.types[z] in types and z not in near
             and not set(zones.neighbours[z]) & near and free_nbs(z) >= need_nb],
            [z for z in order if zones.types[z] in types and z not in near
             and not set(zones.neighbours[z]) & used and free_nbs(z) >= need_nb],
            [z for z in order if z not in used and not set(zones.neighbours[z]) & used],
            [z for z in order if z not in used],
        ]  # fmt: skip
        return next(t for t in tiers if t)[0]

    def mark(zs: list[int]) -> None:
        used.update(zs)
        near.update(zs)
        for z in zs:
            near.update(zones.neighbours[z])

    def local(s: str) -> pd.Timestamp:
        return pd.Timestamp(s).tz_localize(TIMEZONE).tz_convert("UTC")

    end_l = end.tz_localize(None)
    w44 = end_l - pd.Timedelta(weeks=3)  # Monday of the third-last week
    signals = []
    z = pick(("residential", "centre"))
    mark([z])
    signals.append(Signal("emerging", [z], local(str(w44 + pd.Timedelta(weeks=1))), end,
                           {"multiplier_start": 1.0, "multiplier_end": 3.0, "shape": "linear ramp",
                            "categories": list(CAT_NAMES)}))  # fmt: skip
    z = pick(("residential", "centre", "nightlife"), need_nb=2)
    nbs = [m for m in zones.neighbours[z] if ok[m] and m not in used][:2]
    mark([z, *nbs])
    signals.append(Signal("cluster", [z, *nbs], local(str(w44 + pd.Timedelta(days=8))),
                           local(str(w44 + pd.Timedelta(days=12))),
                           {"multiplier": 3.0, "categories": list(STREET)}))  # fmt: skip
    z = pick(("business",))
    mark([z])
    night = w44 + pd.Timedelta(days=6)  # Sunday of the third-last week, 01:00-04:00
    signals.append(Signal("gathering", [z], local(str(night + pd.Timedelta(hours=1))),
                           local(str(night + pd.Timedelta(hours=4))), {"extra_people": None}))  # fmt: skip
    z = pick(("residential", "centre"), need_nb=2)
    mark([z, *zones.neighbours[z]])
    rs = local(str(w44 + pd.Timedelta(weeks=2, hours=18, minutes=7)))
    rp = local(str(w44 + pd.Timedelta(weeks=2, days=4, hours=10, minutes=41)))
    signals.append(Signal("outage_spillover", [z], rs, rp,
                           {"outage_share": 0.9, "neighbours": [int(m) for m in zones.neighbours[z]],
                            "multiplier": 2.5, "applies_to": "dark hours of the neighbours",
                            "categories": list(CAT_NAMES)}))  # fmt: skip
    return signals


def signal_multipliers(
    signals: list[Signal],
    *,
    hours: pd.DatetimeIndex,
    dark: np.ndarray,
    Z: int,
    n_cats: int = len(CAT_NAMES),
) -> np.ndarray:
    """Multiplier (h, Z, C) of the planted signals over a chunk of hours (``n_cats`` categories,
    :data:`CAT_NAMES` first: the signals act on those)."""
    m = np.ones((len(hours), Z, n_cats))
    cat_idx = {c: i for i, c in enumerate(CAT_NAMES)}
    for s in signals:
        inside = (hours >= s.start) & (hours < s.end)
        if not inside.any():
            continue
        if s.type == "emerging":
            frac = (hours[inside] - s.start) / (s.end - s.start)
            lo, hi = s.params["multiplier_start"], s.params["multiplier_end"]
            ci = [cat_idx[c] for c in s.params["categories"]]
            for c in ci:
                m[inside, s.zones[0], c] *= lo + (hi - lo) * np.asarray(frac, dtype=float)
        elif s.type == "cluster":
            ci = [cat_idx[c] for c in s.params["categories"]]
            for z in s.zones:
                for c in ci:
                    m[inside, z, c] *= s.params["multiplier"]
        elif s.type == "outage_spillover":
            ci = [cat_idx[c] for c in s.params["categories"]]
            for z in s.params["neighbours"]:
                mult = np.where(dark[inside, z], s.params["multiplier"], 1.0)
                for c in ci:
                    m[inside, z, c] *= mult
    return m


def find_signal(signals: list[Signal], kind: str) -> Signal:
    """The planted signal of type ``kind``."""
    return next(s for s in signals if s.type == kind)


def gathering_hours(signals: list[Signal], hours: pd.DatetimeIndex) -> np.ndarray:
    """Indices in ``hours`` of the hours of the planted gathering."""
    g = find_signal(signals, "gathering")
    return np.flatnonzero((hours >= g.start) & (hours < g.end))
