"""Presence anomalies: zones far above (gathering) or below (emptied) their usual presence.

For each slot, ``r = log(present / present_baseline)``. Its centre and scale come from the
same zone and local hour over the ``reference_weeks`` before the period, event slots left
out: median and 1.4826 x MAD (floored at ``scale_floor``), giving a robust z score. Each
zone and local day of the period is tested both ways with the extreme hour's z, Sidak-
corrected for the number of slots that day: ``p = 1 - (1 - F(-|z|max))^n``, where F is a
Student t with ``0.37 n_ref - 1`` degrees of freedom (the MAD's 37 % Gaussian efficiency
makes n_ref reference values worth that many for the scale), not the normal, so that a
scale underestimated from few weeks does not turn noise into signals. The reported
window is the run of consecutive slots with z beyond ``z_threshold`` around that hour; the
signal is *explained* when an event is active in the zone during the window or within
``event_margin_hours`` of it (crowds arrive before and leave after), when an emptied zone
falls on a public or school holiday, when a gathering on a holiday stays within
``holiday_factor`` times the reference (a crowd beyond that is not the holiday), or when
events took place in the zone at the same time of week in the reference weeks (the
reference itself is then inflated: a stadium looks "emptied" on a match-free Saturday). Explained signals are kept but ranked after unexplained ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.signals.panel import fmt_number, record, records_frame


def presence_anomalies(
    frame: pd.DataFrame,
    *,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    reference_weeks: int = 8,
    z_threshold: float = 2.0,
    scale_floor: float = 0.05,
    events: pd.DataFrame | None = None,
    event_margin_hours: float = 6.0,
    holiday_factor: float = 2.5,
) -> pd.DataFrame:
    """Presence far above (gathering) or far below (emptied) its reference value.

    The method is in the module's docstring (robust z score, Sidak-corrected Student t tail,
    explanations by events and holidays).

    Parameters
    ----------
    frame
        Cube rows with zone_id, hour (UTC), local_date, local_hour, present, present_baseline
        and, when events are known, events_active.
    period_start, period_end
        The period (UTC instants, end exclusive).
    reference_weeks
        Length of the reference window before the period.
    z_threshold
        |z| that delimits the reported window.
    scale_floor
        Minimum robust SD of the log ratio (0.05: a 5 % change is never more than 1 SD).
    events
        Optional validated events (event_id, name, zone_id, start, end) to name in explanations.
    event_margin_hours
        Hours before and after an event during which an anomaly counts as explained by it.
    holiday_factor
        Largest present / reference ratio of a gathering that a holiday explains.

    Returns
    -------
    pandas.DataFrame
        Tests with ``type`` ``"gathering"`` or ``"emptied"``.

    References
    ----------
    Rousseeuw, P. J. & Croux, C. (1993). Alternatives to the median absolute deviation. JASA 88,
    1273-1283 (MAD consistency factor 1.4826).
    Sidak, Z. (1967). Rectangular confidence regions for the means of multivariate normal
    distributions. JASA 62, 626-633.
    """
    ps, pe = pd.Timestamp(period_start), pd.Timestamp(period_end)
    cur = robust_z(
        _log_ratio(frame), ps, pe, reference_weeks=reference_weeks, scale_floor=scale_floor
    )
    if cur is None:
        return records_frame([])
    rules = _Rules(
        z_threshold=z_threshold,
        reference_weeks=reference_weeks,
        margin=pd.Timedelta(hours=event_margin_hours),
        holiday_factor=holiday_factor,
        events=_events_by_zone(events),
    )
    records = []
    for zone, g in cur.groupby("zone_id", sort=True):
        ends = _slot_ends(g["hour"])
        for sign in (1.0, -1.0):
            for _, d in g.groupby("local_date", sort=True):
                rec = _day_test(str(zone), g, ends, d, sign, rules)
                if rec is not None:
                    records.append(rec)
    return records_frame(records)


_NEED = {"zone_id", "hour", "local_date", "local_hour", "present", "present_baseline"}
_EXTRA = {"events_active", "holiday", "school_holiday"}


@dataclass(frozen=True)
class _Rules:
    """What delimits a window and what explains it (see :func:`presence_anomalies`)."""

    z_threshold: float
    reference_weeks: int
    margin: pd.Timedelta
    holiday_factor: float
    events: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]]


def _log_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    """The needed columns, event and holiday flags as floats (0 when absent), and
    ``r = log(present / present_baseline)`` (NaN where not finite)."""
    missing = _NEED - set(frame.columns)
    if missing:
        raise ValueError(
            f"presence_anomalies needs columns {sorted(_NEED)}, missing {sorted(missing)}"
        )
    df = frame[[c for c in frame.columns if c in _NEED | _EXTRA]].copy()
    for col in _EXTRA:
        if col not in df:
            df[col] = 0
        df[col] = df[col].fillna(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["r"] = np.log(df["present"].astype(float) / df["present_baseline"].astype(float))
    df.loc[~np.isfinite(df["r"]), "r"] = np.nan
    return df


def _centre_scale(ref: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Median, 1.4826 x MAD and count of the reference log ratios per ``keys``."""
    g = ref.groupby(keys)
    med = g["r"].median()
    out = pd.DataFrame({"med": med})
    dev = ref.join(med.rename("m"), on=med.index.names)
    dev["ad"] = (dev["r"] - dev["m"]).abs()
    out["scale"] = dev.groupby(med.index.names)["ad"].median() * 1.4826
    out["n"] = g["r"].size()
    return out


def robust_z(
    df: pd.DataFrame,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    *,
    reference_weeks: int = 8,
    scale_floor: float = 0.05,
) -> pd.DataFrame | None:
    """The period's slots with the robust z score of their log ratio (columns z and n_ref).

    Centre and scale come from the same zone and local hour over the ``reference_weeks`` before
    the period, event slots left out; a zone-hour with fewer than 5 reference values uses the
    zone's values over all hours. Rows sorted by zone and hour, index reset. None when the
    reference or the period is empty.
    """
    ps, pe = period_start, period_end
    ref_start = ps - pd.Timedelta(weeks=reference_weeks)
    ref = df[(df["hour"] >= ref_start) & (df["hour"] < ps) & (df["events_active"] <= 0)]
    ref = ref.dropna(subset=["r"])
    cur = df[(df["hour"] >= ps) & (df["hour"] < pe)].sort_values(["zone_id", "hour"])
    if ref.empty or cur.empty:
        return None
    cur = cur.join(_centre_scale(ref, ["zone_id", "local_hour"]), on=["zone_id", "local_hour"])
    fill = cur[["zone_id"]].join(_centre_scale(ref, ["zone_id"]), on="zone_id")
    thin = cur["n"].fillna(0) < 5
    cur["n_ref"] = np.where(thin, fill["n"], cur["n"].fillna(0))
    for col in ("med", "scale"):
        cur[col] = np.where(thin, fill[col], cur[col])
    cur["z"] = (cur["r"] - cur["med"]) / np.maximum(cur["scale"].fillna(0), scale_floor)
    return cur.reset_index(drop=True)


def _events_by_zone(
    events: pd.DataFrame | None,
) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]]:
    """``zone -> [(start, end, name)]`` of the known events."""
    out: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]] = {}
    if events is not None and len(events):
        for ev in events.itertuples(index=False):
            out.setdefault(str(ev.zone_id), []).append(
                (
                    pd.Timestamp(ev.start),
                    pd.Timestamp(ev.end),
                    str(getattr(ev, "name", ev.event_id)),
                )
            )
    return out


def _day_test(
    zone: str, g: pd.DataFrame, ends: np.ndarray, d: pd.DataFrame, sign: float, rules: _Rules
) -> dict | None:
    """The test of one zone and local day, one way (``sign`` 1: gathering, -1: emptied).

    The day's extreme slot gives z; ``p = 1 - (1 - F(-|z|max))^n`` (Sidak over the day's
    slots, F a Student t with ``0.37 n_ref - 1`` degrees of freedom). None when no slot of the
    day has a z score.
    """
    hours = g["hour"].to_numpy()
    zs = sign * g["z"].to_numpy(dtype=float)
    idx = d.index.to_numpy() - g.index[0]
    zd = zs[idx]
    ok = np.isfinite(zd)
    if not ok.any():
        return None
    n = int(ok.sum())
    j = idx[np.nanargmax(np.where(ok, zd, -np.inf))]
    zmax = zs[j]
    df_t = max(3.0, 0.37 * float(g["n_ref"].to_numpy(dtype=float)[j]) - 1.0)
    p1 = stats.t.sf(zmax, df=df_t)
    p = -np.expm1(n * np.log1p(-min(p1, 1 - 1e-16)))
    a, b = _window(hours, zs, j, rules.z_threshold)
    w = g.iloc[a : b + 1]
    start, end = pd.Timestamp(hours[a]), pd.Timestamp(ends[b])
    obs = float(w["present"].mean())
    exp = float(w["present_baseline"].mean())
    names, why, explained = _explain(zone, w, start, end, sign, obs, exp, rules)
    word = "above" if sign > 0 else "below"
    return record(
        "gathering" if sign > 0 else "emptied",
        detector=f"presence_{'high' if sign > 0 else 'low'}",
        zones=[zone],
        start=start,
        end=end,
        observed=obs,
        expected=exp,
        p_value=p,
        explanation=f"Zone {zone} held {fmt_number(obs)} people against a reference of "
        f"{fmt_number(exp)} (x{obs / exp if exp else np.nan:.2f}, {word} normal by "
        f"{abs(zmax):.1f} robust SD) {why}.",
        statistic=zmax,
        explained=explained,
        events=names,
        slots=int(b - a + 1),
    )


def _window(hours: np.ndarray, zs: np.ndarray, j: int, z_threshold: float) -> tuple[int, int]:
    """First and last slot of the run of consecutive slots beyond ``z_threshold`` around j."""
    a = b = j
    if zs[j] > z_threshold:
        while a > 0 and zs[a - 1] > z_threshold and _consecutive(hours, a - 1):
            a -= 1
        while b + 1 < len(zs) and zs[b + 1] > z_threshold and _consecutive(hours, b):
            b += 1
    return a, b


def _explain(
    zone: str,
    w: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    sign: float,
    obs: float,
    exp: float,
    rules: _Rules,
) -> tuple[list[str], str, bool]:
    """The events named, the words of the explanation and whether the anomaly is explained."""
    zev = rules.events.get(zone, [])
    near = rules.margin
    names = [nm for s, e, nm in zev if s < end + near and e > start - near]
    past = [
        nm
        for s, e, nm in zev
        for kk in range(1, rules.reference_weeks + 1)
        if s < end + near - pd.Timedelta(weeks=kk) and e > start - near - pd.Timedelta(weeks=kk)
    ]
    holiday_ok = sign < 0 or (exp > 0 and obs / exp <= rules.holiday_factor)
    if bool((w["events_active"] > 0).any()) or names:
        what = (
            f"the event {', '.join(dict.fromkeys(names[:2]))}" if names else "an event in the zone"
        )
        return names, "explained by " + what, True
    if holiday_ok and bool((w["holiday"] > 0).any()):
        return names, "on a public holiday", True
    if holiday_ok and bool((w["school_holiday"] > 0).any()):
        return names, "during school holidays", True
    if past:
        return (
            names,
            "where the reference includes past events at this time of week "
            f"({', '.join(dict.fromkeys(past[:2]))})",
            True,
        )
    return names, "with no event known in the zone", False


def _slot_ends(hours: pd.Series) -> np.ndarray:
    """End of each slot: its start plus the smallest step between slots (at most a day)."""
    h = pd.DatetimeIndex(hours)
    if len(h) > 1:
        step = pd.Series(h[1:] - h[:-1]).min()
    else:
        step = pd.Timedelta(hours=1)
    step = min(step, pd.Timedelta(days=1))
    return (h + step).to_numpy()


def _consecutive(hours: np.ndarray, i: int) -> bool:
    """Whether slot i+1 directly follows slot i (at most one day apart, no gap)."""
    gap = pd.Timestamp(hours[i + 1]) - pd.Timestamp(hours[i])
    return gap <= pd.Timedelta(days=1, hours=1)
