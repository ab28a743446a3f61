"""Recent-rate features known at a weekly origin: each zone's recent rate against the city's.

A row of local week ``w`` (weeks start on local Mondays 00:00) sees only the weeks before
``w``: its features are those a forecaster has at the Monday that starts its week, which is
exactly what a weekly backtest origin knows. For each window ``K`` of :data:`WINDOWS` weeks:

``recent_<K>w``
    ``log(r_z / r_c)``, the zone's empirical-Bayes rate over the ``K`` weeks before ``w``,
    ``r_z = (y_z + m r_c) / (n_z + m)`` (``m``: :data:`PRIOR_WEEKS` weeks of slots at the city
    rate), against the city's mean rate per zone-slot ``r_c`` over the same weeks (Clayton &
    Kaldor 1987's shrinkage of small-area rates towards the mean).
``city_4w``
    ``log(r_c(4) / r_c(52))``: the city's recent level against its last year.

A week after the history's last week is given the features of the week after the last (the
state at the end of the data: persistence).

References
----------
Clayton, D. & Kaldor, J. (1987). Empirical Bayes estimates of age-standardized relative risks
for use in disease mapping. *Biometrics* 43(3), 671-681.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.timeutil import utc_ns

#: windows (weeks) of the zone recent-rate features
WINDOWS = (4, 13, 52)
#: prior strength of the zones' empirical-Bayes rates, in weeks of slots at the city rate
PRIOR_WEEKS = 2.0
_DAY_NS = 86_400 * 10**9
_WEEK_NS = 7 * _DAY_NS
_REF_MONDAY_NS = pd.Timestamp("1970-01-05", tz="UTC").value  # a Monday
# local Monday 00:00 lies between Sunday 10:00 and Monday 12:00 UTC
_SHIFT_NS = 14 * 3600 * 10**9

FEATURE_NAMES = (*(f"recent_{k}w" for k in WINDOWS), "city_4w")


@dataclass(frozen=True)
class RowKeys:
    """Keys of design rows, computed once and shared by every fit on the same design.

    Attributes
    ----------
    hours
        UTC slot starts (int64 ns).
    week, day
        Local week (as :func:`week_index`) and local day (days since 1970-01-01).
    zones, zi
        Sorted zone ids and each row's index into them.
    """

    hours: np.ndarray
    week: np.ndarray
    day: np.ndarray
    zones: tuple[str, ...]
    zi: np.ndarray

    @classmethod
    def of(cls, dz: pd.DataFrame) -> RowKeys:
        h = utc_ns(dz["hour"]).astype(np.int64)
        local = h - dz["local_hour"].to_numpy(np.int64) * 3600 * 10**9
        start = local - dz["dow"].to_numpy(np.int64) * _DAY_NS
        zones, zi = _sorted_codes(dz["zone_id"])
        return cls(
            hours=h,
            week=(start - _REF_MONDAY_NS + _SHIFT_NS) // _WEEK_NS,
            day=local // _DAY_NS,
            zones=tuple(str(z) for z in zones),
            zi=zi.astype(np.int64),
        )


def _sorted_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values.astype(str), return_inverse=True)``, by factorising first (the
    strings of a few hundred zones are sorted, not those of millions of rows)."""
    codes, uniq = pd.factorize(values)
    if (codes < 0).any():  # missing ids: as the strings say
        return np.unique(values.astype(str).to_numpy(), return_inverse=True)
    names = np.asarray([str(u) for u in np.asarray(uniq, dtype=object)])
    names, inverse = np.unique(names, return_inverse=True)
    return names, inverse[codes]


def week_index(dz: pd.DataFrame) -> np.ndarray:
    """The local week of each design row (int64 weeks since 1970-01-05), from its UTC slot
    start, day of week and local hour."""
    h = utc_ns(dz["hour"]).astype(np.int64)
    start = (
        h
        - dz["dow"].to_numpy(np.int64) * _DAY_NS
        - dz["local_hour"].to_numpy(np.int64) * 3600 * 10**9
    )
    return (start - _REF_MONDAY_NS + _SHIFT_NS) // _WEEK_NS


@dataclass(frozen=True)
class WeeklyHistory:
    """Counts and slots per zone and local week (the history the recent-rate features read).

    Attributes
    ----------
    zones
        Zone ids (row order of ``counts`` and ``slots``).
    first_week
        Week index of the first column.
    counts, slots
        Incidents and zone-slots per zone and week.
    slots_per_week
        Slots of a zone-week (168 hourly, 7 daily).
    """

    zones: tuple[str, ...]
    first_week: int
    counts: np.ndarray
    slots: np.ndarray
    slots_per_week: int

    @classmethod
    def of(
        cls,
        dz: pd.DataFrame,
        y: np.ndarray,
        mask: np.ndarray,
        *,
        slots_per_week: int,
        keys: RowKeys | None = None,
    ) -> WeeklyHistory:
        """The history of the rows in ``mask`` (``keys``: the rows' keys, when computed)."""
        keys = RowKeys.of(dz) if keys is None else keys
        w = keys.week[mask]
        present, zi = np.unique(keys.zi[mask], return_inverse=True)
        zones = np.asarray(keys.zones, dtype=object)[present]
        w0 = int(w.min()) if len(w) else 0
        nw = int(w.max()) - w0 + 1 if len(w) else 0
        shape = (len(zones), nw)
        flat = zi * nw + (w - w0)
        counts = np.bincount(flat, weights=np.asarray(y, float)[mask], minlength=shape[0] * nw)
        slots = np.bincount(flat, minlength=shape[0] * nw).astype(np.float64)
        return cls(
            zones=tuple(str(v) for v in zones),
            first_week=w0,
            counts=counts.reshape(shape),
            slots=slots.reshape(shape),
            slots_per_week=int(slots_per_week),
        )

    @property
    def last_week(self) -> int:
        return self.first_week + self.counts.shape[1] - 1

    def _window(self, cum: np.ndarray, w: np.ndarray, k: int, zi=None) -> np.ndarray:
        """Sums over the weeks [w - k, w) from cumulated columns (``cum[..., j]``: weeks < j),
        of the row's zone ``zi`` when ``cum`` is per zone."""
        hi = np.clip(w - self.first_week, 0, cum.shape[-1] - 1)
        lo = np.clip(w - k - self.first_week, 0, cum.shape[-1] - 1)
        if zi is None:
            return cum[..., hi] - cum[..., lo]
        return cum[zi, hi] - cum[zi, lo]

    def features(self, dz: pd.DataFrame, *, keys: RowKeys | None = None) -> pd.DataFrame:
        """The recent-rate features of design rows (module docstring), and ``history_weeks``
        (weeks of history before the row's week); ``keys``: the rows' keys, when computed."""
        if keys is None:
            w = week_index(dz)
            zmap = {z: i for i, z in enumerate(self.zones)}
            zi = dz["zone_id"].astype(str).map(zmap).fillna(-1).to_numpy(np.int64)
        else:
            zmap = {z: i for i, z in enumerate(self.zones)}
            lookup = np.array([zmap.get(z, -1) for z in keys.zones], dtype=np.int64)
            w, zi = keys.week, lookup[keys.zi]
        w = np.minimum(w, self.last_week + 1)
        pad = np.zeros((len(self.zones), 1))
        cy = np.concatenate([pad, np.cumsum(self.counts, axis=1)], axis=1)
        cn = np.concatenate([pad, np.cumsum(self.slots, axis=1)], axis=1)
        cyc, cnc = cy.sum(axis=0), cn.sum(axis=0)
        out: dict[str, Any] = {}
        rates: dict[int, np.ndarray] = {}
        m = PRIOR_WEEKS * self.slots_per_week
        known = zi >= 0
        zsafe = np.where(known, zi, 0)
        for k in sorted({*WINDOWS, 4, 52}):
            yc, nc = self._window(cyc, w, k), self._window(cnc, w, k)
            rc = np.divide(yc, nc, out=np.full(len(w), np.nan), where=nc > 0)
            rates[k] = rc
            if k not in WINDOWS:
                continue
            yz = self._window(cy, w, k, zsafe)
            nz = self._window(cn, w, k, zsafe)
            with np.errstate(divide="ignore", invalid="ignore"):
                rz = (yz + m * rc) / (nz + m)
                f = np.log(rz / rc)
            out[f"recent_{k}w"] = np.where(known & np.isfinite(f), f, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            city = np.log(rates[4] / rates[52])
        out["city_4w"] = np.where(np.isfinite(city), city, 0.0)
        out["history_weeks"] = np.clip(w - self.first_week, 0, None).astype(np.float64)
        return pd.DataFrame(out, index=dz.index)

    def to_json(self) -> dict[str, Any]:
        return {
            "zones": list(self.zones),
            "first_week": self.first_week,
            "counts": self.counts.tolist(),
            "slots": self.slots.astype(np.int64).tolist(),
            "slots_per_week": self.slots_per_week,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WeeklyHistory:
        zones: Sequence[str] = d["zones"]
        return cls(
            zones=tuple(str(z) for z in zones),
            first_week=int(d["first_week"]),
            counts=np.asarray(d["counts"], dtype=np.float64).reshape(len(zones), -1),
            slots=np.asarray(d["slots"], dtype=np.float64).reshape(len(zones), -1),
            slots_per_week=int(d["slots_per_week"]),
        )


@dataclass(frozen=True)
class HistoryRows:
    """The keys and the recent-rate features of every row of a design, for counts ``y``,
    computed once for every fit on that design and those counts.

    The features come from the history of every row. A row's features read only the weeks
    before its own, and a fit's history holds every row up to its last training row, so for
    any training row they equal what the fit's own history gives: fits on any subset of rows
    (the origins of a backtest) share them.
    """

    keys: RowKeys
    recent: np.ndarray
    y: np.ndarray
    slots_per_week: int

    @classmethod
    def of(cls, dz: pd.DataFrame, y: np.ndarray, *, slots_per_week: int) -> HistoryRows:
        keys = RowKeys.of(dz)
        yv = np.nan_to_num(np.asarray(y, dtype=np.float64))
        everything = np.ones(len(dz), dtype=bool)
        hist = WeeklyHistory.of(dz, yv, everything, slots_per_week=slots_per_week, keys=keys)
        rec = hist.features(dz, keys=keys)[list(FEATURE_NAMES)].to_numpy(np.float64)
        return cls(keys=keys, recent=rec, y=yv, slots_per_week=int(slots_per_week))

    def matches(self, dz: pd.DataFrame, y: np.ndarray) -> bool:
        """Whether these rows were computed for this design and these counts."""
        yv = np.nan_to_num(np.asarray(y, dtype=np.float64))
        return len(dz) == len(self.keys.hours) and np.array_equal(yv, self.y)
