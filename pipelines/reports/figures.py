"""The figures the report notebooks show, read from the store (notebooks hold no logic).

Each function reads what an analysis step wrote (the cube, ``store/signals/``,
``store/models/``, ``store/briefs/``) and shapes it into the tables the notebooks display and
hand to ``summary.json``. Where a step has not been run, :func:`read_store_json` returns None
and :func:`missing_step` gives the sentence the report prints instead, naming the command to run.

Reference periods: a week is compared with the mean of the ``reference_weeks`` (default 8)
weeks before it — the seasonal-naive reference of the backtests (Hyndman & Athanasopoulos
2021, *Forecasting: Principles and Practice*, 3rd ed., §5.2), robust enough for a weekly
bulletin and independent of any model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store import Store
from pipelines.models.results import BacktestEvaluation, Effects

#: which command produces which store file, for "not run yet" messages
STEPS = {
    "cube_meta.json": "vigie cube --store {store}",
    "models/evaluation.json": "vigie fit --store {store}",
    "models/effects.json": "vigie fit --store {store}",
    "signals": "vigie signals --store {store} --week {period}",
    "briefs": "vigie brief {event_id} --store {store}",
}


def open_store(store: str | Path | Store) -> Store:
    """A :class:`features.store.Store` (study.json must exist)."""
    st = store if isinstance(store, Store) else Store(store)
    st.study()
    return st


def read_store_json(store: str | Path | Store, relpath: str) -> dict[str, Any] | None:
    """A JSON file of the store, or None when that analysis has not been run."""
    st = store if isinstance(store, Store) else Store(store)
    path = st.root / relpath
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def missing_step(store: str | Path | Store, relpath: str, **fmt: Any) -> str:
    """The sentence a report prints where an analysis has not been run."""
    st = store if isinstance(store, Store) else Store(store)
    key = relpath.split("/")[0] if relpath.split("/")[0] in ("signals", "briefs") else relpath
    cmd = STEPS.get(key, "").format(store=st.root, **fmt)
    return f"Not available: {relpath} is not in the store, so this analysis has not been run" + (
        f" (run `{cmd}`)." if cmd else "."
    )


def week_bounds(store: str | Path | Store, week: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC bounds [start, end) of ISO week ``week`` in the study's local time."""
    from features.timeutil import parse_iso_week

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
            add(f"incidents: {cats.get(c[4:], c[4:])}", g[c].sum())
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
    from pipelines.reports.publish import suppress_value

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
        lines.append(
            f"Transit entries: {suppress_value(t['this_week'], k)} against a reference of "
            f"{suppress_value(round(t['reference_mean']), k)} (×{t['ratio']:.2f})."
        )
    return lines


def signals_table(payload: dict[str, Any] | None, *, top: int = 15) -> pd.DataFrame | None:
    """The ranked weak signals of a ``store/signals/<period>.json`` as a display table."""
    if payload is None:
        return None
    sig = pd.DataFrame(payload.get("signals", []))
    if sig.empty:
        return sig
    if "rank" in sig:
        sig = sig.sort_values("rank")
    sig = sig.head(top)
    out = pd.DataFrame(
        {
            "rank": sig.get("rank", pd.Series(range(1, len(sig) + 1), index=sig.index)),
            "type": sig["type"],
            "zones": sig["zones"].map(
                lambda z: ", ".join(map(str, z)) if isinstance(z, list) else z
            ),
            "from": sig.get("start_local", sig.get("start"))
            .astype(str)
            .str[:16]
            .str.replace("T", " "),
            "to": sig.get("end_local", sig.get("end")).astype(str).str[:16].str.replace("T", " "),
            "observed": sig.get("observed"),
            "expected": sig.get("expected"),
            "ratio": sig.get("ratio"),
            "q_value": sig.get("q_value"),
            "explanation": sig.get("explanation"),
        }
    )
    return out.reset_index(drop=True)


def signal_zones(payload: dict[str, Any] | None, *, top: int | None = None) -> list[str]:
    """Zones of the ``top`` strongest statistical signals (event conflicts left out), in rank order."""
    if not payload:
        return []
    zs: list[str] = []
    sig = sorted(payload.get("signals", []), key=lambda s: s.get("rank", 0))
    for s in sig[:top] if top else sig:
        if s.get("type") != "event_conflict":
            zs += [str(z) for z in s.get("zones", [])]
    return list(dict.fromkeys(zs))


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
            "zone_id": ev["zone_id"],
            "start (local)": ev["start"].dt.tz_convert(tz).dt.strftime("%a %d %b %H:%M"),
            "end (local)": ev["end"].dt.tz_convert(tz).dt.strftime("%a %d %b %H:%M"),
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


def zone_days(cube: pd.DataFrame) -> pd.DataFrame:
    """Cube rows summed per zone and local day (presence and precipitation averaged) over the
    columns the exploration correlates: present, incidents, lamps_out, ridership_entries,
    precipitation_mm (those the cube has). Indexed by (zone_id, local_date)."""
    means = ("present", "precipitation_mm")
    cols = [
        c
        for c in ("present", "incidents", "lamps_out", "ridership_entries", "precipitation_mm")
        if c in cube
    ]
    how = {c: ("mean" if c in means else "sum") for c in cols}
    return cube.groupby(["zone_id", "local_date"])[cols].agg(how)


def lagged_spearman(
    days: pd.DataFrame, cause: str, effect: str = "incidents", *, lags: int = 4
) -> pd.DataFrame:
    """Spearman correlation of ``effect`` with ``cause`` ``lag`` days earlier in the same zone,
    for lag 0 … ``lags`` − 1, over the zone-days of :func:`zone_days`."""
    by_zone = days.groupby(level="zone_id")[cause]
    rho = [days[effect].corr(by_zone.shift(lag), method="spearman") for lag in range(lags)]
    return pd.DataFrame({"lag_days": range(lags), "spearman_rho": rho})


# -- model evaluation ------------------------------------------------------------------------------
def evaluation_table(
    evaluation: BacktestEvaluation | None, *, level: str = "5%"
) -> pd.DataFrame | None:
    """Backtest metrics per model (rows) of the evaluation, best deviance first."""
    if evaluation is None or not evaluation.models:
        return None
    rows = [
        {
            "model": name,
            "poisson_deviance": m.poisson_deviance,
            "mae": m.mae,
            f"hit_rate_{level}": m.hit_rate.get(level),
            f"pai_{level}": m.pai.get(level),
            "coverage80": m.coverage80,
            "coverage95": m.coverage95,
            "zone_slots": m.n,
        }
        for name, m in evaluation.models.items()
    ]
    return pd.DataFrame(rows).sort_values("poisson_deviance").reset_index(drop=True)


def _estimable_frame(effects: Effects | None) -> pd.DataFrame | None:
    """The estimable effects as rows of their ``effects.json`` fields (None when none)."""
    if effects is None or not len(effects):
        return None
    eff = pd.DataFrame([e.to_json() for e in effects])
    return eff[eff["estimable"].fillna(False).astype(bool)]


def effects_table(effects: Effects | None) -> pd.DataFrame | None:
    """The estimable effects: kind, group, feature, unit, estimate, 95 % interval (``ci_low``,
    ``ci_high``), p value and incidents behind it."""
    eff = _estimable_frame(effects)
    if eff is None:
        return None
    cols = [
        "kind",
        "group",
        "role",
        "light",
        "feature",
        "name",
        "unit",
        "estimate",
        "ci_low",
        "ci_high",
        "p_value",
        "incidents",
    ]
    return eff[[c for c in cols if c in eff.columns]].reset_index(drop=True)


def _irr_cell(r: pd.Series) -> str:
    star = "*" if pd.notna(r.get("p_value")) and r["p_value"] < 0.05 else ""
    return f"{r['estimate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]{star}"


def irr_matrix(effects: Effects | None) -> pd.DataFrame | None:
    """The GLMs' incidence-rate ratios as one table: a row per feature (with its unit), a column
    per category group, each cell ``IRR [low, high]`` (95 %), starred when p < 0.05."""
    eff = effects_table(effects)
    if eff is None or "kind" not in eff:
        return None
    irr = eff[eff["kind"] == "irr"]
    if irr.empty:
        return None
    irr = irr.assign(cell=irr.apply(_irr_cell, axis=1))
    order = list(dict.fromkeys(irr["group"]))
    table = irr.pivot_table(
        index=["feature", "unit"], columns="group", values="cell", aggfunc="first"
    )
    table = table[[g for g in order if g in table.columns]]
    feats = list(dict.fromkeys(irr["feature"]))
    table = table.reset_index()
    table["__o"] = table["feature"].map({f: i for i, f in enumerate(feats)})
    return table.sort_values("__o").drop(columns="__o").fillna("–").reset_index(drop=True)


def other_effects_table(effects: Effects | None) -> pd.DataFrame | None:
    """Effects that are not GLM coefficients (lighting-outage event study, event uplift): what
    is compared, the ratio or uplift with its 95 % interval, p value and incidents behind it."""
    eff = _estimable_frame(effects)
    if eff is None:
        return None
    eff = eff[eff.get("kind", pd.Series("", index=eff.index)) != "irr"]
    if eff.empty:
        return None
    cols = ["name", "comparison", "unit", "estimate", "ci_low", "ci_high", "p_value", "incidents"]
    return eff[[c for c in cols if c in eff.columns]].reset_index(drop=True)


def ratio_effects(eff: pd.DataFrame | None, *, top: int = 30) -> pd.DataFrame | None:
    """The effects a forest plot on a ratio scale shows: the IRRs of all incidents (group
    ``all``) and the lighting-outage event study, at most ``top``, from :func:`effects_table`,
    with the plot's error bars (``err_low``, ``err_high``: distance of each bound from the
    estimate)."""
    if eff is None or eff.empty or "kind" not in eff:
        return None
    group = eff["group"] if "group" in eff else pd.Series(None, index=eff.index, dtype=object)
    ratios = ((eff["kind"] == "irr") & (group == "all")) | (eff["kind"] == "outage_event_study")
    shown = eff[ratios].head(top)
    if shown.empty:
        return None
    if {"estimate", "ci_low", "ci_high"} <= set(shown.columns):
        shown = shown.assign(
            err_low=shown["estimate"] - shown["ci_low"],
            err_high=shown["ci_high"] - shown["estimate"],
        )
    return shown


def deviance_by_origin(
    evaluation: BacktestEvaluation | None, *, timezone: str
) -> pd.DataFrame | None:
    """Mean Poisson deviance per backtest origin (rows: the origin's local date) and model."""
    if evaluation is None or not evaluation.by_origin:
        return None
    bo = pd.DataFrame([o.to_json() for o in evaluation.by_origin])
    when = pd.to_datetime(bo["origin"], utc=True).dt.tz_convert(timezone)
    bo["origin"] = when.dt.strftime("%Y-%m-%d")
    return bo.pivot_table(index="origin", columns="model", values="poisson_deviance")


# -- event brief ---------------------------------------------------------------------------------
def brief_hours(brief: dict[str, Any]) -> pd.DataFrame:
    """The brief's hour-by-hour table: local hour, phase, presence, incidents and staffing."""
    h = pd.DataFrame(brief["hours"])
    cols = [
        "local",
        "phase",
        "venue_reference",
        "venue_present_forecast",
        "ring_present_forecast",
        "event_crowd",
        "incidents_per_hour",
        "rescuers",
        "dps_tier",
        "agents",
        "entry_lanes",
    ]
    h = h[[c for c in cols if c in h.columns]].copy()
    h["local"] = h["local"].astype(str).str[11:16]
    return h.rename(columns={"local": "hour (local)"})


def brief_arithmetic(brief: dict[str, Any]) -> pd.DataFrame:
    """The staffing arithmetic of the peak, one line per quantity, with its source."""
    s = brief["staffing"]
    rows = []
    for key in ("dps", "lanes", "barrier", "egress"):
        part = s.get(key)
        if isinstance(part, dict) and part.get("arithmetic"):
            rows.append(
                {
                    "quantity": key,
                    "arithmetic": part["arithmetic"],
                    "source": part.get("source", ""),
                }
            )
    return pd.DataFrame(rows)


def brief_zone_values(brief: dict[str, Any]) -> pd.DataFrame:
    """Per zone of the venue and ring: forecast over reference at the venue's peak hour."""
    pres = pd.DataFrame(brief.get("presence", []))
    if pres.empty:
        return pd.DataFrame(columns=["zone_id", "present_ratio"])
    venue = pres[pres["role"] == "venue"]
    peak_hour = (
        venue.loc[venue["forecast"].idxmax(), "hour"] if len(venue) else pres["hour"].iloc[0]
    )
    at = pres[pres["hour"] == peak_hour].copy()
    at["present_ratio"] = at["forecast"] / at["reference"].replace(0, np.nan)
    return at[["zone_id", "role", "present_ratio"]].reset_index(drop=True)


def brief_stops(store: str | Path | Store, brief: dict[str, Any]) -> pd.DataFrame | None:
    """The stops near the venue (from the brief) with their coordinates (validated stops)."""
    st = open_store(store)
    near = pd.DataFrame(brief.get("context", {}).get("stops", []))
    stops = st.validated("stops")
    if near.empty or stops is None:
        return None
    return near.merge(stops[["stop_id", "stop_lat", "stop_lon"]], on="stop_id", how="left")
