"""The weekly report's figures: key figures against the weeks before, lighting, transit, events,
the daily series, and the sentences around them (the notebook holds no logic).

Reference periods: a week is compared with the mean of the ``reference_weeks`` (default 8)
weeks before it — the seasonal-naive reference of the backtests (Hyndman & Athanasopoulos
2021, *Forecasting: Principles and Practice*, 3rd ed., §5.2), robust enough for a weekly
bulletin and independent of any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.store import Store
from features.timeutil import parse_iso_week
from pipelines.reports.figures import missing_step, open_store
from pipelines.reports.publish import md_text, suppress_value
from pipelines.signals.result import SignalRun


def week_bounds(store: str | Path | Store, week: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC bounds [start, end) of ISO week ``week`` in the study's local time."""
    st = open_store(store)
    monday, next_monday = parse_iso_week(week)
    tz = st.timezone
    return (
        pd.Timestamp(monday).tz_localize(tz).tz_convert("UTC"),
        pd.Timestamp(next_monday).tz_localize(tz).tz_convert("UTC"),
    )


def key_figures(
    store: str | Path | Store, *, start: Any, end: Any, reference_weeks: int = 8
) -> pd.DataFrame:
    """Key figures of a period against the mean of the ``reference_weeks`` periods before it.

    Returns
    -------
    pandas.DataFrame
        One row per figure: ``figure``, ``this_week``, ``reference_mean``, ``ratio``,
        ``reference_periods`` (how many whole earlier periods the data had). Figures: incidents
        (all and per category), mean people present (sum over zones), transit entries — all
        counts of people or incidents, suppressed below k when published.
    """
    st = open_store(store)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    length = end - start
    meta = st.cube_meta()
    cols = meta.get("columns", [])
    wanted = [
        c
        for c in cols
        if c in ("incidents", "present", "ridership_entries") or c.startswith("inc_")
    ]
    cube = st.cube(wanted, start - reference_weeks * length, end)
    cube["period"] = np.floor((cube["hour"] - start) / length).astype(int)
    # only whole reference periods: the first one may be cut by the start of the data
    data_start = pd.Timestamp(meta["start"]) if meta.get("start") else cube["hour"].min()
    first_whole = int(np.ceil((data_start - start) / length)) if len(cube) else 0
    cube = cube[cube["period"] >= first_whole]
    first = int(cube["period"].min()) if len(cube) else 0
    n_ref = max(0, -first)
    cats = meta.get("categories", {})
    rows = []

    def add(name: str, per_period: pd.Series) -> None:
        this = per_period.get(0, np.nan)
        ref = per_period[(per_period.index < 0)]
        ref_mean = float(ref.mean()) if len(ref) else np.nan
        rows.append(
            {
                "figure": name,
                "this_week": float(this) if pd.notna(this) else np.nan,
                "reference_mean": ref_mean,
                "ratio": float(this) / ref_mean if ref_mean and np.isfinite(ref_mean) else np.nan,
                "reference_periods": int(len(ref)),
            }
        )

    g = cube.groupby("period")
    if "incidents" in cube:
        add("incidents (all)", g["incidents"].sum())
        for c in [c for c in wanted if c.startswith("inc_")]:
            # the source's own category name, in words when it is itself a code
            add(f"incidents: {str(cats.get(c[4:], c[4:])).replace('_', ' ')}", g[c].sum())
    if "present" in cube:
        per_hour = cube.groupby(["period", "hour"])["present"].sum(min_count=1)
        add("people present (mean per hour, all zones)", per_hour.groupby("period").mean())
    if "ridership_entries" in cube:
        add("transit entries", g["ridership_entries"].sum())
    out = pd.DataFrame(rows)
    out.attrs["reference_periods"] = n_ref
    return out


def lighting_figures(
    store: str | Path | Store, *, start: Any, end: Any, reference_weeks: int = 8
) -> dict[str, Any] | None:
    """Street lighting over a period: share of lamps out at night, against the weeks before.

    Returns
    -------
    dict or None
        ``lamps``, ``night_share_out`` (Σ lamps_out / Σ lamps over dark zone-hours of the
        period), ``night_share_out_reference`` (same over the ``reference_weeks`` before),
        ``faults_open_at_end`` (lamps still out at the end); None without lighting data.
    """
    st = open_store(store)
    cols = st.cube_meta().get("columns", [])
    if not {"lamps", "lamps_out", "dark"} <= set(cols):
        return None
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    cube = st.cube(["lamps", "lamps_out", "dark"], start - pd.Timedelta(weeks=reference_weeks), end)
    night = cube[cube["dark"].astype(bool)]
    cur, ref = night[night["hour"] >= start], night[night["hour"] < start]

    def share(df: pd.DataFrame) -> float | None:
        tot = float(df["lamps"].sum())
        return float(df["lamps_out"].sum()) / tot if tot > 0 else None

    faults = open_faults(st, at=end)
    lamps_total = cube.groupby("zone_id")["lamps"].max().sum()
    return {
        "lamps": int(lamps_total),
        "night_share_out": share(cur),
        "night_share_out_reference": share(ref),
        "faults_open_at_end": None if faults is None else int(len(faults)),
    }


def lighting_transit_text(
    lighting: dict[str, Any] | None, figures: pd.DataFrame, *, k: int
) -> list[str]:
    """The weekly report's sentences on street lighting (:func:`lighting_figures`) and transit
    entries (the ``transit entries`` row of :func:`key_figures`, counts suppressed below ``k``)."""

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f} %"

    if lighting is None:
        lines = ["No lighting data in this study."]
    else:
        lines = [
            f"Lamps out at night: {pct(lighting['night_share_out'])} of {lighting['lamps']} lamps "
            f"(reference {pct(lighting['night_share_out_reference'])}); "
            f"{lighting['faults_open_at_end']} lamp(s) still out at the end of the week."
        ]
    transit = figures[figures["figure"] == "transit entries"]
    if transit.empty:
        lines.append("No transit data in this study.")
    else:
        t = transit.iloc[0]
        this, ref = suppress_value(t["this_week"], k), suppress_value(t["reference_mean"], k)
        ref = round(ref) if isinstance(ref, float) else ref
        hidden = isinstance(this, str) or isinstance(ref, str)  # a ratio would rebuild it
        ratio = "c" if hidden else ("–" if not np.isfinite(t["ratio"]) else f"{t['ratio']:.2f}")
        lines.append(
            f"Transit entries: {'–' if this is None else this} against a reference of "
            f"{'–' if ref is None else ref} (×{ratio})."
        )
    return lines


def area_name(store: str | Path | Store) -> str:
    """The name of the study's area (``study.json``)."""
    return str(open_store(store).study()["area"]["name"])


def week_heading(
    store: str | Path | Store, week: str, *, start: Any, end: Any, reference_weeks: int
) -> str:
    """The weekly report's first line: area, week with its local dates and time zone, the
    reference and the suppression threshold."""
    st = open_store(store)
    tz = st.timezone
    first_day = pd.Timestamp(start).tz_convert(tz)
    last_day = (pd.Timestamp(end) - pd.Timedelta(hours=1)).tz_convert(tz)
    local = f"{first_day:%a %d %b %Y} – {last_day:%a %d %b %Y}"
    n_ref = reference_weeks_available(st, start=start, reference_weeks=reference_weeks)
    ref = (
        f"the mean of the {n_ref} whole week(s) before"
        + (
            f" (of the {reference_weeks} asked: the data start later)"
            if n_ref < reference_weeks
            else ""
        )
        if n_ref
        else "none (no whole week of data before this one)"
    )
    return (
        f"**{md_text(area_name(st))}**, week **{week}** ({local}, {tz}). Reference: {ref}. "
        f"Suppression threshold k = {st.suppression_k}."
    )


def reference_weeks_available(
    store: str | Path | Store, *, start: Any, reference_weeks: int
) -> int:
    """How many whole weeks of data lie before ``start``, at most ``reference_weeks``: the
    reference :func:`key_figures` averages (one rule for the heading and the table)."""
    st = open_store(store)
    meta = st.cube_meta()
    start = pd.Timestamp(start)
    if not meta.get("start"):
        return reference_weeks
    data_start = pd.Timestamp(meta["start"])
    whole = int(np.floor((start - data_start) / pd.Timedelta(days=7)))
    return max(0, min(reference_weeks, whole))


def reference_note(figures: pd.DataFrame) -> str:
    """What the reference of :func:`key_figures` is: how many whole weeks before it."""
    return (
        f"Reference = mean of the {int(figures['reference_periods'].min())} whole week(s) of "
        "data before this one; ratio = this week / reference. People present: mean per hour "
        "over all zones; incidents and transit entries: totals of the week."
    )


def plot_daily(daily: pd.DataFrame, *, start: Any, week: str, timezone: str) -> Figure:
    """One panel per column of :func:`daily_series`: the weeks before in grey, the week from
    ``start`` (its first local day) in red."""
    fig, axes = plt.subplots(1, len(daily.columns), figsize=(11, 3), squeeze=False)
    first_day = pd.Timestamp(pd.Timestamp(start).tz_convert(timezone).date())
    this_week = daily.index >= first_day
    for ax, col in zip(axes[0], daily.columns, strict=True):
        ax.plot(daily.index, daily[col], color="0.5", lw=1, label="weeks before")
        ax.plot(daily.index[this_week], daily[col][this_week], color="C3", lw=2, label=week)
        ax.set_title(f"{col} per day" if col == "incidents" else "people present (mean per hour)")
        ax.tick_params(axis="x", labelrotation=30)
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def signal_run(store: str | Path | Store, week: str) -> SignalRun | None:
    """The week's signal run (``vigie signals``), typed, or None when it has not run."""
    st = open_store(store)
    payload = st.read_json(st.signals_relpath(week))
    return None if payload is None else SignalRun.from_json(payload)


def signals_note(
    store: str | Path | Store,
    week: str,
    run: SignalRun | None,
    signals: pd.DataFrame | None,
) -> str:
    """The sentence above the week's signals: not run (with the command), none, or how many out
    of how many tests with the expectation's source (``signals`` is :func:`signals_table` of
    the run)."""
    if signals is None or run is None:
        return missing_step(store, open_store(store).signals_relpath(week), period=week)
    if signals.empty:
        return f"No signal passed the false-discovery threshold this week ({run.n_tests} tests)."
    source = run.expectation.source or "?"
    return (
        f"{run.n_signals} signal(s) out of {run.n_tests} "
        f"tests; expectation: {source}. Top {len(signals)}:"
    )


def open_faults(store: str | Path | Store, *, at: Any) -> pd.DataFrame | None:
    """Lamps out at instant ``at`` (reported before, not repaired yet), with their location."""
    st = open_store(store)
    faults = st.validated("lighting_faults")
    if faults is None:
        return None
    at = pd.Timestamp(at)
    f = faults[
        (faults["reported_at"] <= at)
        & (faults["repaired_at"].isna() | (faults["repaired_at"] > at))
    ]
    if "latitude" not in f.columns or f["latitude"].isna().any():
        lamps = st.validated("lamps")
        if lamps is not None:
            f = f.drop(columns=[c for c in ("latitude", "longitude") if c in f.columns]).merge(
                lamps[["lamp_id", "latitude", "longitude"]], on="lamp_id", how="left"
            )
    return f.dropna(subset=["latitude", "longitude"]).reset_index(drop=True)


def events_between(store: str | Path | Store, *, start: Any, end: Any) -> pd.DataFrame | None:
    """Events of the store that run during [start, end), with local times."""
    st = open_store(store)
    ev = st.validated("events")
    if ev is None:
        return None
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ev = ev[(ev["start"] < end) & (ev["end"] > start)].sort_values("start")
    tz = st.timezone
    return pd.DataFrame(
        {
            "event": ev["name"],
            "category": ev["category"],
            "zone_id": ev["zone_id"].astype(str),
            "start (local time)": ev["start"].dt.tz_convert(tz).dt.strftime("%a %d %b %H:%M"),
            "end (local time)": ev["end"].dt.tz_convert(tz).dt.strftime("%a %d %b %H:%M"),
            "expected_attendance": ev["expected_attendance"],
        }
    ).reset_index(drop=True)


def daily_series(
    store: str | Path | Store, *, start: Any, end: Any, reference_weeks: int = 8
) -> pd.DataFrame:
    """Incidents and presence per local day over [start − reference_weeks·7 days, end)."""
    st = open_store(store)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    cols = [
        c for c in ("incidents", "present", "local_date") if c in st.cube_meta().get("columns", [])
    ]
    cube = st.cube(cols, start - pd.Timedelta(weeks=reference_weeks), end)
    day = (
        cube["local_date"]
        if "local_date" in cube
        else cube["hour"].dt.tz_convert(st.timezone).dt.date
    )
    agg: dict[str, Any] = {}
    if "incidents" in cube:
        agg["incidents"] = cube.groupby(day)["incidents"].sum()
    if "present" in cube:
        agg["present"] = (
            cube.groupby([day, cube["hour"]])["present"].sum(min_count=1).groupby(level=0).mean()
        )
    out = pd.DataFrame(agg)
    out.index = pd.to_datetime(out.index)
    out.index.name = "day"
    return out


# -- per-zone figures for a period --------------------------------------------------------------
def zone_period_figures(
    store: Any,
    *,
    start: Any,
    end: Any,
    reference_weeks: int = 8,
    groups: pd.Series | None = None,
) -> pd.DataFrame:
    """Per-zone figures of a period from the cube, for colouring and tooltips.

    ``present_ratio`` is Σ present / Σ present_baseline over the slots where both are known
    (the reference is the cube's robust same-hour-of-week median). ``expected`` is a
    seasonal-naive expectation: the zone's mean incidents over the ``reference_weeks`` periods of
    the same length just before ``start`` (Brown & Chen's naive baseline, also the backtests'
    seasonal-naive baseline); ``excess = incidents − expected``.

    With ``groups`` (zone_id -> district, :mod:`pipelines.reports.districts`) the figures
    are those of the districts: present is the mean over hours of the district's sum, the
    ratio and the counts are taken over all its zone-hours.

    Returns
    -------
    pandas.DataFrame
        Indexed by zone_id (the district with ``groups``): present (mean), present_ratio,
        incidents, expected, excess.
    """
    st = store if isinstance(store, Store) else Store(store)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start.tzinfo is None:
        start = start.tz_localize(st.timezone).tz_convert("UTC")
        end = end.tz_localize(st.timezone).tz_convert("UTC")
    length = end - start
    meta = st.cube_meta()
    meta_cols = set(meta.get("columns", []))
    cols = [
        c for c in ("present", "present_baseline", "incidents") if c in meta_cols or not meta_cols
    ]
    cur = _grouped(st.cube(cols, start, end), groups)
    out = pd.DataFrame(index=pd.Index(sorted(cur["zone_id"].unique()), name="zone_id"))
    if "present" in cur.columns:
        per_hour = cur.groupby(["zone_id", "hour"])["present"].sum(min_count=1)
        out["present"] = per_hour.groupby(level=0).mean()
        if "present_baseline" in cur.columns:
            ok = cur["present"].notna() & cur["present_baseline"].notna()
            g = cur[ok].groupby("zone_id")
            # no ratio where the reference is zero (never an infinite ratio)
            out["present_ratio"] = g["present"].sum() / g["present_baseline"].sum().replace(
                0, np.nan
            )
    if "incidents" in cur.columns:
        out["incidents"] = cur.groupby("zone_id")["incidents"].sum()
        data_start = pd.Timestamp(meta.get("start") or start)
        whole = max(0, min(reference_weeks, int((start - data_start) / length)))
        ref = st.cube(["incidents"], start - whole * length, start) if whole else None
        ref = None if ref is None else _grouped(ref, groups)
        if ref is not None and len(ref):
            out["expected"] = (ref.groupby("zone_id")["incidents"].sum() / whole).fillna(0.0)
            out["excess"] = out["incidents"] - out["expected"]
    return out


def _grouped(cube: pd.DataFrame, groups: pd.Series | None) -> pd.DataFrame:
    """The cube with each zone_id replaced by its group (unchanged without groups)."""
    if groups is None:
        return cube
    return cube.assign(zone_id=cube["zone_id"].astype(str).map(groups))
