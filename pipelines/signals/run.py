"""The store-level runner behind ``vigie signals``.

One run reviews one period (an ISO week or a date range, in the study's local dates):

1. reads the cube over the period and ``history_days`` before it;
2. gets expected incidents per zone and slot from the fitted model
   (``pipelines.models.load_predictor(store).predict(frame, groups=["all"])``), or, when the
   store has no model, from a per-capita fallback fitted on the weeks before the period
   (:func:`fallback_expected`), and says which;
3. runs every detector (excess, drift, space-time scan, presence anomalies both ways, lagged
   correlations, event conflicts; EARS C1/C2/C3 as the classic baseline);
4. adjusts all tests of the run together with Benjamini-Hochberg, keeps those with q below the
   FDR level, folds duplicates into the strongest signal (``related``), ranks them;
5. writes ``store/signals/<period>.json`` (ranked signals + run metadata), ``<period>.parquet``
   (the same signals) and ``<period>.tests.parquet`` (every test with its p and q value).

Ranking: unexplained statistical signals first by score (-log10 p), then presence anomalies
explained by a known event, then event conflicts (planning signals without a p value).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import InputError, StoreError
from features.store import Store
from features.timeutil import as_utc, iso_week, parse_iso_week
from pipelines.signals import detectors as D
from pipelines.signals.scan import knn_neighbours, space_time_scan

log = logging.getLogger(__name__)

#: detector families: a signal is folded into a stronger one of the same family.
FAMILIES = {
    "excess": "incidents",
    "drift": "incidents",
    "cluster": "incidents",
    "gathering": "gathering",
    "emptied": "emptied",
    "correlation": "correlation",
    "event_conflict": "event_conflict",
}


# ------------------------------------------------------------------------------------------------
# period
# ------------------------------------------------------------------------------------------------
def _local_day(day: dt.date, tz: str) -> pd.Timestamp:
    """Start of a local calendar day: its midnight, or the first valid instant after it where
    midnight falls in a DST gap (Santiago, Havana, Asuncion...), as the cube starts its days."""
    return pd.Timestamp(day).tz_localize(tz, ambiguous=False, nonexistent="shift_forward")


@dataclass(frozen=True)
class Period:
    """A period under review, in local calendar dates.

    Attributes
    ----------
    label
        ``2026-W46`` for an ISO week, ``2026-11-01_2026-11-07`` for a date range.
    first, last
        First and last local dates (inclusive).
    """

    label: str
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def bounds(self, timezone: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """UTC instants of the period's local start and (exclusive) end."""
        a = _local_day(self.first, timezone).tz_convert("UTC")
        b = _local_day(self.last + dt.timedelta(days=1), timezone).tz_convert("UTC")
        return a, b


def parse_period(
    week: str | None = None, *, start: str | dt.date | None = None, end: str | dt.date | None = None
) -> Period:
    """A :class:`Period` from an ISO week (``2026-W46``) or from first and last dates.

    Raises
    ------
    InputError
        When both or neither are given, or a value does not parse.
    """
    if week is not None and (start is not None or end is not None):
        raise InputError("give either --week or --from/--to, not both.")
    if week is not None:
        first, _ = parse_iso_week(week)
        return Period(iso_week(first), first, first + dt.timedelta(days=6))
    if start is None or end is None:
        raise InputError("give a period: --week 2026-W46, or --from 2026-11-01 --to 2026-11-07.")
    try:
        a = start if isinstance(start, dt.date) else dt.date.fromisoformat(str(start))
        b = end if isinstance(end, dt.date) else dt.date.fromisoformat(str(end))
    except ValueError:
        raise InputError(
            f"--from/--to should be dates like 2026-11-01, got {start!r} and {end!r}."
        ) from None
    if b < a:
        raise InputError(f"--to ({b}) is before --from ({a}).")
    return Period(f"{a.isoformat()}_{b.isoformat()}", a, b)


# ------------------------------------------------------------------------------------------------
# expected incidents
# ------------------------------------------------------------------------------------------------
def _exposure(frame: pd.DataFrame) -> np.ndarray:
    n = len(frame)
    e = np.full(n, np.nan)
    if "present" in frame:
        e = pd.to_numeric(frame["present"], errors="coerce").to_numpy(float)
    if "present_baseline" in frame:
        b = pd.to_numeric(frame["present_baseline"], errors="coerce").to_numpy(float)
        e = np.where(np.isfinite(e), e, b)
    if "present" not in frame and "present_baseline" not in frame:
        e = np.ones(n)
    return np.where(e > 0, e, np.nan)


def fallback_expected(
    frame: pd.DataFrame,
    *,
    fit_end: pd.Timestamp,
    weeks: int = 8,
    prior_incidents: float = 1.0,
    iterations: int = 20,
) -> np.ndarray:
    """Expected incidents per row when no model is fitted: present x zone rate x hour-of-week.

    A log-linear Poisson model ``E = present x r_zone x f_how`` (how = local day of week x local
    hour) is fitted on the ``weeks`` weeks before ``fit_end`` by iterative proportional fitting,
    which gives the maximum-likelihood fit of this main-effects model (Bishop, Fienberg &
    Holland 1975). Each zone rate is shrunk towards the city rate by ``prior_incidents``
    pseudo-incidents, and each hour-of-week factor towards 1 by half a pseudo-incident, so that
    a zone or an hour without incidents in the window does not get an expectation of zero (the
    fit is then penalised, not exact ML). Missing presence falls back on present_baseline; a study without presence uses
    exposure 1 (a per-slot rate).

    Parameters
    ----------
    frame
        Cube rows: zone_id, hour, dow, local_hour, incidents, present and/or present_baseline.
    fit_end
        End (exclusive, UTC) of the fitting window: the period start, so the fit is past-only.

    Returns
    -------
    numpy.ndarray
        Expected incidents per row (NaN where the exposure is unknown).

    References
    ----------
    Bishop, Y. M. M., Fienberg, S. E. & Holland, P. W. (1975). Discrete Multivariate Analysis,
    MIT Press, ch. 3 (iterative proportional fitting of log-linear models).
    """
    from pipelines.models.backtest import hour_of_week

    expo = _exposure(frame)
    how = hour_of_week(frame)
    zone_codes, zone_idx = np.unique(frame["zone_id"].astype(str).to_numpy(), return_inverse=True)
    y = pd.to_numeric(frame["incidents"], errors="coerce").to_numpy(float)
    t = frame["hour"]
    fit = (
        (t < fit_end).to_numpy()
        & (t >= fit_end - pd.Timedelta(weeks=weeks)).to_numpy()
        & np.isfinite(expo)
        & np.isfinite(y)
    )
    if fit.sum() == 0 or np.nansum(y[fit]) == 0:
        fit = np.isfinite(expo) & np.isfinite(y) & (t < fit_end).to_numpy()
    if fit.sum() == 0:
        raise InputError(
            "cannot compute expected incidents: no slot with both incidents and presence before "
            "the period; fit a model with `vigie fit` or choose a later period."
        )
    nz = len(zone_codes)
    yz, ez, hz = y[fit], expo[fit], how[fit]
    iz = zone_idx[fit]
    city = max(yz.sum(), 0.5) / ez.sum()
    r = np.full(nz, city)
    f = np.ones(168)
    y_zone = np.bincount(iz, weights=yz, minlength=nz)
    y_how = np.bincount(hz, weights=yz, minlength=168)
    for _ in range(iterations):
        denom = np.bincount(iz, weights=ez * f[hz], minlength=nz)
        r = (y_zone + prior_incidents) / (denom + prior_incidents / city)
        d2 = np.bincount(hz, weights=ez * r[iz], minlength=168)
        f = (y_how + 0.5) / (d2 + 0.5)  # half a pseudo-incident at the average profile
    return expo * r[zone_idx] * f[how]


def estimate_dispersion(observed: np.ndarray, expected: np.ndarray) -> float:
    """Moment estimate of the NB2 dispersion of counts around their expectation.

    ``alpha = max(0, sum((O - E)^2 - O) / sum(E^2))`` (Cameron & Trivedi 1990, the auxiliary
    regression without intercept).

    References
    ----------
    Cameron, A. C. & Trivedi, P. K. (1990). Regression-based tests for overdispersion in the
    Poisson model. J. Econometrics 46(3), 347-364.
    """
    o = np.asarray(observed, float)
    e = np.asarray(expected, float)
    ok = np.isfinite(o) & np.isfinite(e) & (e > 0)
    if ok.sum() < 10:
        return 0.0
    num = ((o[ok] - e[ok]) ** 2 - o[ok]).sum()
    den = (e[ok] ** 2).sum()
    return float(max(0.0, num / den)) if den > 0 else 0.0


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalRun:
    """A completed signal run.

    Attributes
    ----------
    period
        The period reviewed.
    signals
        Ranked signals (q below the FDR level, duplicates folded into ``related``), then
        event conflicts; columns :data:`~pipelines.signals.detectors.SIGNAL_COLUMNS` plus
        ``id``, ``rank``, ``related``.
    tests
        Every test of the run with its p and q value (``id`` referenced by ``related``).
    meta
        What the JSON holds besides the signals (expectation source, dispersion, counts, notes).
    paths
        Files written (empty when ``write=False``).
    """

    period: Period
    signals: pd.DataFrame
    tests: pd.DataFrame
    meta: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)


CUBE_COLUMNS = [
    "local_hour", "dow", "local_date", "present", "present_baseline", "present_ratio",
    "incidents", "lamps", "lamps_out", "dark", "ridership_entries", "events_active",
    "event_attendance", "holiday", "school_holiday", "precipitation_mm", "temperature_c",
]  # fmt: skip


def _local_days(dates: Sequence[dt.date], tz: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([_local_day(d, tz) for d in dates])


def _model_expected(store: Store, frame: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    try:
        from pipelines.models import load_predictor

        pred = load_predictor(store)
        out = pred.predict(frame, groups=["all"])
    except (ImportError, StoreError, InputError, FileNotFoundError, KeyError) as exc:
        return None, str(exc).split("\n")[0]
    out = out[out["group"] == "all"]
    key = frame[["zone_id", "hour"]].copy()
    key["zone_id"] = key["zone_id"].astype(str)
    out = out.assign(zone_id=out["zone_id"].astype(str), hour=pd.to_datetime(out["hour"], utc=True))
    merged = key.merge(out[["zone_id", "hour", "mean"]], on=["zone_id", "hour"], how="left")
    return merged["mean"].to_numpy(float), "model"


def zone_neighbours(st: Store, zones: Sequence[str], *, k: int) -> np.ndarray:
    """The ``k`` nearest zones of each of ``zones`` (itself first), by representative point.

    Raises
    ------
    ValueError
        When some of ``zones`` are not in the store's zones file (no geometry to place them).
    StoreError
        When the store has no zones file.
    """
    zg = st.zones()
    pts = zg.to_crs(4326).geometry.representative_point()
    pos = {str(z): (p.x, p.y) for z, p in zip(zg["zone_id"].astype(str), pts, strict=True)}
    missing = [z for z in zones if z not in pos]
    if missing:
        raise ValueError(
            f"{len(missing)} zone(s) of the cube are not in the zones file, e.g. {missing[:3]}"
        )
    xy = np.array([pos[z] for z in zones])
    return knn_neighbours(xy[:, 0], xy[:, 1], k=k)


def build_panel(
    frame: pd.DataFrame, *, zones: Sequence[str], period: Period, timezone: str, history_days: int
) -> D.Panel:
    """Daily panel of incidents and expectation (columns ``incidents`` and ``expected``).

    Only slots whose expectation is known count on both sides.
    """
    dates = [period.first - dt.timedelta(days=history_days - i) for i in range(history_days)]
    dates += [period.first + dt.timedelta(days=i) for i in range(period.days)]
    f = frame.assign(
        _obs=np.where(np.isfinite(frame["expected"]), frame["incidents"].astype(float), np.nan)
    )
    days = _local_days(dates, timezone)
    arr = D.aggregate_days(f, {"o": "_obs", "e": "expected"}, zones=zones, days=days)
    return D.Panel(
        zones=np.asarray(zones, dtype=object),
        days=days,
        observed=arr["o"],
        expected=arr["e"],
        period=(history_days, history_days + period.days),
    )


def _drivers(
    frame: pd.DataFrame,
    panel: D.Panel,
    neighbours: np.ndarray | None,
    *,
    grain: str,
    outage_share: float,
    surge_ratio: float,
) -> list[D.Driver]:
    zones = list(panel.zones)
    out: list[D.Driver] = []
    p0 = panel.period[0]
    if {"lamps", "lamps_out"} <= set(frame.columns):
        from pipelines.models import lamps_out_share

        share = lamps_out_share(frame)
        if grain == "1h" and "dark" in frame:
            dark = frame["dark"].fillna(False).to_numpy(bool)
            share = np.where(dark, share, np.nan)
        arr = D.aggregate_days(
            frame.assign(_s=share, _n=np.isfinite(share).astype(float)),
            {"s": "_s", "n": "_n"},
            zones=zones,
            days=panel.days,
        )
        daily = arr["s"] / np.where(arr["n"] > 0, arr["n"], np.nan)
        on = np.nan_to_num(daily) >= outage_share
        if on.any():
            out.append(D.Driver("lighting_outage", "lighting outages in the zone", on))
            if neighbours is not None and neighbours.shape[1] > 1:
                ring = neighbours[:, 1:]
                on_ring = on[ring].any(axis=1)
                related = [
                    tuple(zones[j] for j in ring[i] if on[j, p0:].any()) for i in range(len(zones))
                ]
                out.append(
                    D.Driver(
                        "outage_nearby", "lighting outages in neighbouring zones", on_ring, related
                    )
                )
    if "ridership_entries" in frame:
        arr = D.aggregate_days(frame, {"r": "ridership_entries"}, zones=zones, days=panel.days)["r"]
        hist = arr[:, :p0]
        if np.isfinite(hist).any():
            q90 = np.nanpercentile(hist, 90, axis=1)
            on = np.nan_to_num(arr) > np.nan_to_num(q90)[:, None]
            on &= np.isfinite(arr) & (arr > 0)
            if on.any():
                out.append(D.Driver("transit_load", "days of high transit load (top 10 %)", on))
    if "present_ratio" in frame:
        mx = frame.groupby(["zone_id", "local_date"], sort=False)["present_ratio"].max()
        wide = mx.unstack("local_date")
        wide.columns = pd.Index([pd.Timestamp(c).date() for c in wide.columns])
        wide = wide.reindex(index=pd.Index(zones), columns=pd.Index([d.date() for d in panel.days]))
        on = np.nan_to_num(wide.to_numpy(float)) >= surge_ratio
        if on.any():
            out.append(
                D.Driver("presence_surge", f"presence surges (x{surge_ratio:g} the reference)", on)
            )
    return out


def _overlap(a_start, a_end, b_start, b_end) -> bool:
    return a_start < b_end and b_start < a_end


def consolidate(tests: pd.DataFrame, *, fdr: float) -> pd.DataFrame:
    """Significant tests, duplicates folded into the strongest signal of their family, ranked.

    A significant test is folded into an already kept signal (listed in its ``related``) when
    both belong to the same family (:data:`FAMILIES`), their windows overlap, and its zones
    are a subset of the kept signal's zones, or, for the same type, they share a zone.
    Order: unexplained signals by score, then explained ones, then event conflicts.
    """
    sig = tests[(tests["q_value"] < fdr) | (tests["type"] == "event_conflict")].copy()
    sig["_conflict"] = sig["type"] == "event_conflict"
    sig = sig.sort_values(
        ["_conflict", "explained", "score", "ratio"], ascending=[True, True, False, False]
    )
    kept: list[int] = []
    related: dict[int, list[str]] = {}
    for i, row in sig.iterrows():
        fam = FAMILIES.get(row["type"], row["type"])
        zs = set(row["zones"])
        host = None
        if fam != "event_conflict":
            for k in kept:
                r = sig.loc[k]
                if FAMILIES.get(r["type"], r["type"]) != fam:
                    continue
                if not _overlap(row["start"], row["end"], r["start"], r["end"]):
                    continue
                rz = set(r["zones"])
                if zs <= rz or (row["type"] == r["type"] and zs & rz):
                    host = k
                    break
        if host is None:
            kept.append(i)
            related[i] = []
        else:
            related[host].append(row["id"])
    out = sig.loc[kept].drop(columns="_conflict")
    out["related"] = [related[i] for i in kept]
    out["rank"] = np.arange(1, len(out) + 1)
    return out.reset_index(drop=True)


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
        From :func:`parse_period`.
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
    write
        Write the JSON and Parquet files.
    mc_budget
        Largest number of cylinder (scan) or 10 x zone-day (drift) evaluations spent on Monte
        Carlo replicates: a large city gets fewer than ``n_sim`` (at least 199) and relies on
        the Gumbel tail for small p values (Abrams et al. 2010). The replicates used are in
        the JSON's ``monte_carlo``.

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
    st = store if isinstance(store, Store) else Store(store)
    meta = st.cube_meta()
    tz = meta.get("timezone") or st.timezone
    grain = meta.get("grain", "1h")
    ps, pe = period.bounds(tz)
    cube_start, cube_end = as_utc(meta["start"]), as_utc(meta["end"])
    if ps >= cube_end or pe <= cube_start:
        raise InputError(
            f"the period {period.label} ({period.first} to {period.last}) is outside the cube, "
            f"which covers {cube_start:%Y-%m-%d} to {cube_end:%Y-%m-%d}; choose a period inside it."
        )
    cols = [c for c in CUBE_COLUMNS if c in meta.get("columns", CUBE_COLUMNS)]
    read_all = use_model and (st.models_dir / "models.json").exists()
    hist_start = ps - pd.Timedelta(days=history_days + 1)
    frame = st.cube(
        columns=None if read_all else cols, start=hist_start, end=pe + pd.Timedelta(days=1)
    )
    frame["local_date"] = pd.to_datetime(frame["local_date"]).dt.date
    first_hist = period.first - dt.timedelta(days=history_days)
    frame = frame[(frame["local_date"] >= first_hist) & (frame["local_date"] <= period.last)]
    frame = frame.reset_index(drop=True)
    zones = sorted(frame["zone_id"].astype(str).unique())
    notes: list[str] = []
    has_inc = "incidents" in frame.columns
    has_presence = {"present", "present_baseline"} <= set(frame.columns)
    if not has_inc and not has_presence:
        raise InputError(
            f"{st.root}: the cube has neither incidents nor presence, so there is nothing to "
            "watch; ingest an incidents or a presence source."
        )
    if ps < cube_start + pd.Timedelta(days=14):
        notes.append("less than two weeks of history before the period: baselines are thin.")

    tests: list[pd.DataFrame] = []
    mc_used: dict[str, int] = {}
    counts: dict[str, int] = {}
    expectation: dict[str, Any] = {"source": None}
    ears_summary: dict[str, Any] = {}
    neighbours = None
    try:
        neighbours = zone_neighbours(st, zones, k=k_neighbours)
    except (StoreError, ImportError, OSError, ValueError) as exc:
        notes.append(
            f"no zone geometry ({exc}): no space-time scan or neighbour-ring correlations."
        )

    panel = None
    if has_inc:
        frame["incidents"] = pd.to_numeric(frame["incidents"], errors="coerce")
        exp, how = (None, "no model in the store")
        if use_model:
            exp, how = _model_expected(st, frame)
        if exp is not None and np.isfinite(exp).any():
            expectation = {
                "source": "model",
                "note": "expected incidents from the fitted rate model (group all)",
            }
        else:
            exp = fallback_expected(frame, fit_end=ps)
            expectation = {
                "source": "fallback",
                "note": (
                    f"no fitted model used ({how}); expected incidents = present x the zone's "
                    "past per-capita rate x an hour-of-week profile, fitted on the 8 weeks "
                    "before the period"
                ),
            }
            notes.append(
                "expected incidents come from the per-capita fallback, not a fitted model."
            )
        frame["expected"] = exp
        panel = build_panel(
            frame, zones=zones, period=period, timezone=tz, history_days=history_days
        )
        alpha = estimate_dispersion(
            panel.observed[:, : panel.period[0]], panel.expected[:, : panel.period[0]]
        )
        expectation["dispersion"] = alpha
        # Monte Carlo budget: a metropolis gets fewer replicates, the Gumbel tail covers small p
        n_drift = int(min(n_sim, max(199, mc_budget // (10 * panel.observed.size))))
        n_scan = n_sim
        if neighbours is not None:
            cyl = len(zones) * neighbours.shape[1] * period.days * max_window
            n_scan = int(min(n_sim, max(199, mc_budget // cyl)))
        mc_used = {"drift": n_drift, "scan": n_scan if neighbours is not None else 0}
        parts = {
            "excess": D.excess_tests(panel, dispersion=alpha),
            "drift": D.drift_tests(panel, dispersion=alpha, n_sim=n_drift, seed=seed),
        }
        if neighbours is not None:
            scan = space_time_scan(
                panel,
                neighbours,
                max_window=max_window,
                n_sim=n_scan,
                seed=seed + 1,
                dispersion=alpha,
            )
            parts["cluster"] = scan.clusters
        drivers = _drivers(
            frame,
            panel,
            neighbours,
            grain=grain,
            outage_share=outage_share,
            surge_ratio=surge_ratio,
        )
        parts["correlation"] = D.lagged_correlations(panel, drivers, lags=lags)
        for name, part in parts.items():
            counts[name] = len(part)
            tests.append(part)
        obs_counts = np.where(np.isfinite(panel.observed), panel.observed, 0.0)
        p0, p1 = panel.period
        for m in ("C1", "C2", "C3"):
            c = D.ears_statistic(obs_counts, method=m)[:, p0:p1]
            flags = np.argwhere(np.nan_to_num(c) > D.EARS_THRESHOLDS[m])
            ears_summary[m] = {
                "threshold": D.EARS_THRESHOLDS[m],
                "flags": int(len(flags)),
                "zone_days": [
                    {
                        "zone": str(zones[i]),
                        "day": str(panel.days[p0 + t].date()),
                        "statistic": float(c[i, t]),
                    }
                    for i, t in flags[:50]
                ],
            }
    else:
        notes.append("no incidents in the cube: only presence anomalies (and event conflicts).")

    events = st.validated("events")
    if has_presence:
        part = D.presence_anomalies(frame, period_start=ps, period_end=pe, events=events)
        counts["presence"] = len(part)
        tests.append(part)
    else:
        notes.append("no presence in the cube: no gatherings or emptied zones.")
    if events is not None:
        part = D.event_conflicts(
            events, period_start=ps, period_end=pe, stops=st.validated("stops")
        )
        counts["event_conflict"] = len(part)
        tests.append(part)

    all_tests = (
        pd.concat([t for t in tests if len(t)], ignore_index=True)
        if any(len(t) for t in tests)
        else D._records_frame([])
    )
    all_tests["q_value"] = D.benjamini_hochberg(all_tests["p_value"].to_numpy(float))
    all_tests.insert(0, "id", [f"T{i + 1:05d}" for i in range(len(all_tests))])
    signals = (
        consolidate(all_tests, fdr=fdr) if len(all_tests) else all_tests.assign(related=[], rank=[])
    )

    out_meta = {
        "period": period.label,
        "first_day": period.first.isoformat(),
        "last_day": period.last.isoformat(),
        "start": ps.isoformat(),
        "end": pe.isoformat(),
        "timezone": tz,
        "grain": grain,
        "fdr": fdr,
        "expectation": expectation,
        "tests": counts,
        "n_tests": int(np.isfinite(all_tests["p_value"]).sum()),
        "n_signals": int((signals["type"] != "event_conflict").sum()),
        "n_event_conflicts": int((signals["type"] == "event_conflict").sum()),
        "monte_carlo": {"replicates": mc_used, "seed": seed},
        "ears_baseline": ears_summary,
        "zones": len(zones),
        "notes": notes,
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    paths: dict[str, Path] = {}
    if write:
        paths = _write(st, period, signals, all_tests, out_meta)
    return SignalRun(period=period, signals=signals, tests=all_tests, meta=out_meta, paths=paths)


def _jsonable(df: pd.DataFrame, tz: str) -> list[dict[str, Any]]:
    rows = []
    for rec in df.to_dict(orient="records"):
        r: dict[str, Any] = {}
        for k, v in rec.items():
            if isinstance(v, pd.Timestamp):
                r[k] = v.tz_convert("UTC").isoformat() if v.tzinfo else v.isoformat()
                if k in ("start", "end") and v.tzinfo:
                    r[f"{k}_local"] = v.tz_convert(tz).isoformat()
            elif isinstance(v, float) and not np.isfinite(v):
                r[k] = None
            elif isinstance(v, np.ndarray):
                r[k] = v.tolist()
            else:
                r[k] = v
        rows.append(r)
    return rows


def _to_parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in ("start", "end"):
        out[col] = pd.to_datetime(out[col], utc=True)
    out["zones"] = out["zones"].apply(lambda z: [str(x) for x in z])
    out["details"] = out["details"].apply(lambda d: json.dumps(d, default=str))
    if "related" in out:
        out["related"] = out["related"].apply(lambda z: [str(x) for x in z])
    return out


def _write(
    st: Store, period: Period, signals: pd.DataFrame, tests: pd.DataFrame, meta: dict
) -> dict[str, Path]:
    folder = st.signals_dir
    folder.mkdir(parents=True, exist_ok=True)
    sig = signals.copy()
    for col in ("start", "end"):
        sig[col] = pd.to_datetime(sig[col], utc=True)
    payload = dict(meta)
    payload["signals"] = _jsonable(sig, meta["timezone"])
    json_path = st.write_json(f"signals/{period.label}.json", payload)
    pq = folder / f"{period.label}.parquet"
    tq = folder / f"{period.label}.tests.parquet"
    _to_parquet_frame(signals).to_parquet(pq, index=False)
    _to_parquet_frame(tests).to_parquet(tq, index=False)
    return {"json": json_path, "parquet": pq, "tests": tq}
