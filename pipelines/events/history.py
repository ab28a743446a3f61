"""The store's observed history around an event: cube rows, the reference presence, the uplift.

The *reference* of a zone and hour is the median presence of the same zone and local hour of
week over the previous weeks, on hours untouched by events (:func:`reference`); the *uplift* is
the observed presence above it (:func:`observed_uplift`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.errors import StoreError
from features.store import Store
from pipelines.events.timeline import event_hours, local_parts


def read_cube(store: Store, zones: list[str], limitations: list[str]) -> pd.DataFrame | None:
    """The cube's rows of ``zones`` with local hour and day of week (None, and a limitation,
    without a readable cube)."""
    try:
        meta = store.cube_meta()
    except StoreError:
        limitations.append(
            "no cube in the store: no presence reference, no observed history (run `vigie cube`)"
        )
        return None
    cols = [c for c in meta.get("columns", []) if c not in ("zone_id", "hour", "month")] or None
    try:
        cube = store.cube(columns=cols, zones=sorted(set(zones)))
    except Exception as exc:  # noqa: BLE001 - an unreadable cube is a limitation, not a crash
        limitations.append(f"the cube could not be read ({exc.__class__.__name__}: {exc})")
        return None
    if "local_hour" not in cube.columns or "dow" not in cube.columns:
        loc = pd.DatetimeIndex(cube["hour"]).tz_convert(store.timezone)
        cube["local_hour"] = loc.hour
        cube["dow"] = loc.dayofweek
    return cube


class History:
    """The cube's rows of a few zones, split by zone and indexed by hour (cached lookups).

    Parameters
    ----------
    cube
        Cube rows (zone_id, hour, local_hour, dow, present, ...), or None.
    events
        The store's events: the hours from ``before`` hours before each event's start to
        ``after`` hours after its end are *affected* in its zone and never enter a reference
        (the cube's own baseline leaves out only ``[start, end)``, so arrivals and departures
        of a recurring event would leak into it).
    """

    def __init__(
        self,
        cube: pd.DataFrame | None,
        events: pd.DataFrame | None = None,
        *,
        before: int = 3,
        after: int = 2,
    ) -> None:
        self.cube = cube
        self._zones: dict[str, pd.DataFrame | None] = {}
        self._how: dict[str, tuple[dict, dict]] = {}
        self._affected: dict[str, pd.DatetimeIndex] = {}
        if events is not None and len(events):
            for e in events.itertuples():
                hrs = event_hours(
                    pd.Timestamp(e.start).tz_convert("UTC"),
                    pd.Timestamp(e.end).tz_convert("UTC"),
                    before=before,
                    after=after,
                )
                z = str(e.zone_id)
                self._affected[z] = self._affected[z].union(hrs) if z in self._affected else hrs

    def zone(self, zone_id: str) -> pd.DataFrame | None:
        if zone_id not in self._zones:
            c = self.cube
            if c is None or "present" not in c.columns:
                self._zones[zone_id] = None
            else:
                z = c[c["zone_id"] == zone_id]
                self._zones[zone_id] = None if z.empty else z.set_index("hour").sort_index()
        return self._zones[zone_id]

    def observed(self, zone_id: str, hours: pd.DatetimeIndex) -> np.ndarray:
        z = self.zone(zone_id)
        if z is None:
            return np.full(len(hours), np.nan)
        return z["present"].reindex(hours).to_numpy(dtype=float, copy=True)

    def quiet(self, zone_id: str) -> tuple[dict, dict]:
        """Presence of the zone's hours untouched by events, per (local_hour, dow) and per
        (local_hour, weekend)."""
        if zone_id not in self._how:
            z = self.zone(zone_id)
            by_how: dict = {}
            by_type: dict = {}
            if z is not None:
                keep = z["present"].notna().to_numpy(copy=True)
                if "events_active" in z.columns:
                    keep &= z["events_active"].fillna(0).to_numpy() == 0
                if zone_id in self._affected:
                    keep &= ~z.index.isin(self._affected[zone_id])
                q = z[keep]
                t = q.index.as_unit("ns").asi8
                v = q["present"].to_numpy(dtype=float)
                lh = q["local_hour"].to_numpy(dtype=int)
                dw = q["dow"].to_numpy(dtype=int)
                for key, sel in pd.Series(np.arange(len(q))).groupby([lh, dw]).groups.items():
                    by_how[key] = (t[sel], v[sel])
                for key, sel in pd.Series(np.arange(len(q))).groupby([lh, dw >= 5]).groups.items():
                    by_type[key] = (t[sel], v[sel])
            self._how[zone_id] = (by_how, by_type)
        return self._how[zone_id]


def as_history(h: History | pd.DataFrame | None) -> History:
    """``h`` as a :class:`History` (cube rows are wrapped)."""
    return h if isinstance(h, History) else History(h)


def _median_before(series: tuple[np.ndarray, np.ndarray] | None, h: pd.Timestamp, n: int) -> float:
    """Median of the last ``n`` values before ``h`` (of the last ``n`` overall when fewer than 2
    are before it); NaN with fewer than 2 values. ``series`` is (sorted UTC ns, values)."""
    if series is None or len(series[0]) == 0:
        return float("nan")
    t, v = series
    k = int(np.searchsorted(t, h.as_unit("ns").value, side="left"))
    use = v[max(0, k - n) : k] if k >= 2 else v[-n:]
    return float(np.median(use)) if len(use) >= 2 else float("nan")


def reference(
    history: History | pd.DataFrame | None,
    zone_id: str,
    hours: pd.DatetimeIndex,
    tz: str,
    *,
    weeks: int = 8,
) -> tuple[np.ndarray, list[str]]:
    """The reference presence of a zone at given hours, and how each was obtained.

    The cube's baseline definition (median of the same zone and local hour of week over the
    previous ``weeks`` weeks, past only), recomputed on hours untouched by events (see
    :class:`History`):

    1. median ``present`` of the same zone and local hour of week, the last ``weeks`` such
       hours without events before the hour (for hours past the cube, the last ones it has);
    2. else (an hour of week that always has an event, e.g. a weekly market) the median of
       the same local hour on days of the same type (weekday or weekend) without events, over
       the last ``weeks`` × 5 such hours;
    3. else the cube's ``present_baseline`` at that hour;
    4. else NaN.
    """
    hist = as_history(history)
    n = len(hours)
    out = np.full(n, np.nan)
    how = ["none"] * n
    z = hist.zone(zone_id)
    if z is None:
        return out, how
    by_how, by_type = hist.quiet(zone_id)
    parts = local_parts(hours, tz)
    base = (
        z["present_baseline"].reindex(hours).to_numpy(dtype=float)
        if "present_baseline" in z.columns
        else out.copy()
    )
    for i, h in enumerate(hours):
        lh, dw = int(parts["local_hour"].iat[i]), int(parts["dow"].iat[i])
        v = _median_before(by_how.get((lh, dw)), h, weeks)
        if np.isfinite(v):
            out[i], how[i] = v, "median of the same hour of week without events"
            continue
        v = _median_before(by_type.get((lh, dw >= 5)), h, weeks * 5)
        if np.isfinite(v):
            kind = "weekend" if dw >= 5 else "weekday"
            out[i], how[i] = v, f"median of the same hour on {kind}s without events"
            continue
        if np.isfinite(base[i]):
            out[i], how[i] = base[i], "cube baseline"
    return out, how


def observed_uplift(
    cube: History | pd.DataFrame, zone_ids: list[str], hours: pd.DatetimeIndex, tz: str, weeks: int
) -> np.ndarray:
    """Mean over ``zone_ids`` of observed present − reference at ``hours`` (NaN where unobserved)."""
    if not zone_ids:
        return np.full(len(hours), np.nan)
    hist = as_history(cube)
    vals = []
    for z in zone_ids:
        ref, _ = reference(hist, z, hours, tz, weeks=weeks)
        obs = hist.observed(z, hours)
        vals.append(obs - ref)
    arr = np.vstack(vals)
    with np.errstate(all="ignore"):
        ok = np.isfinite(arr).sum(axis=0)
        mean = np.where(ok > 0, np.nansum(arr, axis=0) / np.maximum(ok, 1), np.nan)
    return mean
