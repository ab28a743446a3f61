"""The figures the report notebooks show, read from the store (notebooks hold no logic).

Each function reads what an analysis step wrote (``store/signals/``, ``store/models/``,
``store/briefs/``) and shapes it into the tables the notebooks display and hand to
``summary.json``. Where a step has not been run, :func:`read_store_json` returns None and
:func:`missing_step` gives the sentence the report prints instead, naming the command to run.

The weekly report's figures from the cube are in :mod:`pipelines.reports.weekly`, the
exploration's in :mod:`pipelines.reports.exploration`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store import Store
from pipelines.events.result import PUBLISHED_HOUR_COLUMNS, Brief
from pipelines.models.results import FEATURE_WORDS, BacktestEvaluation, Effects
from pipelines.reports.labels import MODEL_WORDS, fmt_rate, name_zones_in_text, zone_with_name
from pipelines.reports.publish import md_text, suppress_text

#: which command produces which store file, for "not run yet" messages (signals and briefs:
#: any file of their folder)
STEPS = {
    "cube_meta.json": "vigie cube --store {store}",
    Store.EVALUATION_JSON: "vigie fit --store {store}",
    Store.EFFECTS_JSON: "vigie fit --store {store}",
    "signals": "vigie signals --store {store} --week {period}",
    "briefs": "vigie brief {event_id} --store {store}",
}


def open_store(store: str | Path | Store) -> Store:
    """A :class:`features.store.Store` (study.json must exist)."""
    st = store if isinstance(store, Store) else Store(store)
    st.study()
    return st


def read_store_json(store: str | Path | Store, relpath: str) -> dict[str, Any] | None:
    """A JSON file of the store (``relpath``, one of :class:`~features.store.Store`'s places),
    or None when that analysis has not been run."""
    st = store if isinstance(store, Store) else Store(store)
    return st.read_json(relpath)


def missing_step(store: str | Path | Store, relpath: str, **fmt: Any) -> str:
    """The sentence a report prints where an analysis has not been run."""
    st = store if isinstance(store, Store) else Store(store)
    key = relpath.split("/")[0] if relpath.split("/")[0] in ("signals", "briefs") else relpath
    cmd = STEPS.get(key, "").format(store=st.root, **fmt)
    return f"Not available: {relpath} is not in the store, so this analysis has not been run" + (
        f" (run `{cmd}`)." if cmd else "."
    )


def default_week(store: str | Path | Store, week: str | None = None) -> str:
    """``week``, or when None (a notebook opened in `make lab`) the latest week whose signals
    the store holds, else the cube's last whole week."""
    from features.timeutil import last_full_week

    if week:
        return week
    st = open_store(store)
    weekly = sorted(p.stem for p in st.signals_dir.glob("*-W[0-9][0-9].json"))
    if weekly:
        return weekly[-1]
    meta = st.cube_meta()
    return last_full_week(meta["end"], meta.get("timezone") or st.timezone)


def default_event(store: str | Path | Store, event_id: str | None = None) -> str:
    """``event_id``, or when None (a notebook opened in `make lab`) the key of the most recent
    brief the store holds (`vigie brief` or `make demo` made it)."""
    if event_id:
        return event_id
    st = open_store(store)
    briefs = sorted((st.root / "briefs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not briefs:
        raise FileNotFoundError(
            f"{st.root}: no event brief yet; run `vigie brief EVENT_ID --store {st.root}` or set "
            "event_id."
        )
    return briefs[-1].stem


def zone_names(store: str | Path | Store) -> dict[str, str]:
    """Zone names by code (``zones.name``; the code itself where a zone has no name)."""
    z = open_store(store).zones()
    names = z["name"] if "name" in z else z["zone_id"]
    return {
        str(c): str(n) if pd.notna(n) and str(n).strip() else str(c)
        for c, n in zip(z["zone_id"], names, strict=True)
    }


def local_span(start: Any, end: Any) -> str:
    """A local time window with an inclusive end: whole days read ``2026-11-09 to 2026-11-15``
    (the end is exclusive in the data: 11-16 00:00), one day ``2026-11-10``, hours
    ``2026-11-10 14:00 to 15:59`` (to 2026-11-11 01:59 across midnight)."""
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return "–"
    a = pd.Timestamp(str(start)[:19])
    b = pd.Timestamp(str(end)[:19])
    if a == a.normalize() and b == b.normalize():
        last = b - pd.Timedelta(days=1)
        return f"{a:%Y-%m-%d}" if last <= a else f"{a:%Y-%m-%d} to {last:%Y-%m-%d}"
    last = b - pd.Timedelta(minutes=1)
    same_day = last.normalize() == a.normalize()
    return (
        f"{a:%Y-%m-%d %H:%M} to {last:%H:%M}"
        if same_day
        else f"{a:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"
    )


def signals_table(
    payload: Any,
    *,
    top: int = 15,
    k: int | None = None,
    zones: Mapping[str, str] | None = None,
) -> pd.DataFrame | None:
    """The ranked weak signals of a run as a display table.

    ``payload`` is a :class:`~pipelines.signals.result.SignalRun` or the dict of
    ``store/signals/<period>.json`` (None when the signals have not run: None back). With
    ``k``, the counts inside the explanations are suppressed below ``k``
    (:func:`~pipelines.reports.publish.suppress_text`), and where the signal's observed count is
    below ``k`` its sentence withholds the ratio and the other counts too; the table's own
    columns are suppressed when published (:func:`~pipelines.reports.publish.table`). With
    ``zones`` (code -> name, :func:`zone_names`), the explanations name each zone they cite.
    The window is local with an inclusive end (:func:`local_span`).
    """
    if payload is None:
        return None
    if hasattr(payload, "to_json"):
        payload = payload.to_json()
    sig = pd.DataFrame(payload.get("signals", []))
    if sig.empty:
        return sig
    if "rank" in sig:
        sig = sig.sort_values("rank")
    sig = sig.head(top)
    starts = sig.get("start_local", sig.get("start"))
    ends = sig.get("end_local", sig.get("end"))
    out = pd.DataFrame(
        {
            "rank": sig.get("rank", pd.Series(range(1, len(sig) + 1), index=sig.index)),
            "type": sig["type"].astype(str).str.replace("_", " "),
            "zones": sig["zones"].map(
                lambda z: ", ".join(map(str, z)) if isinstance(z, list) else z
            ),
            "when": [local_span(a, b) for a, b in zip(starts, ends, strict=True)],
            "observed": sig.get("observed"),
            "expected": sig.get("expected"),
            "ratio": sig.get("ratio"),
            "q_value": sig.get("q_value"),
            "explanation": sig.get("explanation"),
        }
    )
    if k is not None:
        observed = pd.to_numeric(out["observed"], errors="coerce")
        out["explanation"] = [
            suppress_text(text, k, secondary=bool(obs < k))
            for text, obs in zip(out["explanation"], observed, strict=True)
        ]
    if zones:  # after suppression: a name is not a count
        out["explanation"] = out["explanation"].map(lambda t: name_zones_in_text(t, zones))
    return out.reset_index(drop=True)


def signal_zones(payload: Any, *, top: int | None = None) -> list[str]:
    """Zones of the ``top`` strongest statistical signals (event conflicts left out), in rank order.

    ``payload`` is a :class:`~pipelines.signals.result.SignalRun` or the dict of its JSON.
    """
    if hasattr(payload, "to_json"):
        payload = payload.to_json()
    if not payload:
        return []
    zs: list[str] = []
    sig = sorted(payload.get("signals", []), key=lambda s: s.get("rank", 0))
    for s in sig[:top] if top else sig:
        if s.get("type") != "event_conflict":
            zs += [str(z) for z in s.get("zones", [])]
    return list(dict.fromkeys(zs))


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
    eff = effects.frame(estimable_only=False)
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
        "label",
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
    return f"{fmt_rate(r['estimate'])} [{fmt_rate(r['ci_low'])}, {fmt_rate(r['ci_high'])}]{star}"


def irr_matrix(effects: Effects | None) -> pd.DataFrame | None:
    """The GLMs' incidence-rate ratios as one table: a row per feature (with its unit), a column
    per category group, each cell ``IRR [low, high]`` (95 %), starred when p < 0.05."""
    eff = effects_table(effects)
    if eff is None or "kind" not in eff:
        return None
    irr = eff[eff["kind"] == "irr"]
    if irr.empty:
        return None
    irr = irr.assign(
        cell=irr.apply(_irr_cell, axis=1),
        feature=irr["feature"].map(lambda f: FEATURE_WORDS.get(str(f), str(f))),
    )
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
    eff = eff.assign(name=eff["label"]) if "label" in eff else eff
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


def forest_plot(shown: pd.DataFrame) -> Any:
    """The forest plot of :func:`ratio_effects`: each effect in words with its 95 % interval on
    a log scale, ticks at 1, 2, 5 × powers of ten, the no-effect line at 1."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    shown = shown.iloc[::-1]
    names = shown["label"] if "label" in shown else shown["name"]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    ax.errorbar(
        shown["estimate"],
        range(len(shown)),
        xerr=[shown["err_low"], shown["err_high"]],
        fmt="o",
        color="C0",
        ecolor="0.6",
    )
    ax.axvline(1, color="C3", lw=1, ls="--")
    ax.set_yticks(range(len(shown)), list(names))
    ax.set_xscale("log")
    lo = float(min(shown["ci_low"].min(), shown["estimate"].min(), 1.0))
    hi = float(max(shown["ci_high"].max(), shown["estimate"].max(), 1.0))
    ax.set_xlim(lo / 1.15, hi * 1.15)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: fmt_rate(v)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("ratio (log scale) with its 95 % interval; 1 = no effect")
    ax.set_title("effects on incidents")
    fig.tight_layout()
    return fig


def deviance_by_origin(
    evaluation: BacktestEvaluation | None, *, timezone: str
) -> pd.DataFrame | None:
    """Mean Poisson deviance per backtest origin (rows: the origin's local date) and model
    (columns: the models in words, as the chart's legend shows them)."""
    if evaluation is None or not evaluation.by_origin:
        return None
    bo = pd.DataFrame([o.to_json() for o in evaluation.by_origin])
    when = pd.to_datetime(bo["origin"], utc=True).dt.tz_convert(timezone)
    bo["origin"] = when.dt.strftime("%Y-%m-%d")
    table = bo.pivot_table(index="origin", columns="model", values="poisson_deviance")
    return table.rename(columns=lambda m: MODEL_WORDS.get(m, m))


def model_words(models: pd.Series) -> pd.Series:
    """Model codes in words (``seasonal_naive_8w`` -> ``seasonal naive (8 weeks)``), for charts'
    axes; unknown codes kept."""
    return models.map(lambda m: MODEL_WORDS.get(m, m))


# -- event brief ---------------------------------------------------------------------------------
def brief_heading(brief: Brief, names: Mapping[str, str] | None = None) -> str:
    """The brief's first paragraph (Markdown): event, category, local times, expected
    attendance, venue zone and ring, how presence is forecast; names from data escaped."""
    ev = brief.event
    when = f"{ev.start_local[:16].replace('T', ' ')} – {ev.end_local[11:16]}"
    return (
        f"**{md_text(ev.name)}** ({md_text(ev.category)}), {md_text(when)} "
        f"({md_text(ev.timezone)}); expected attendance **{ev.expected_attendance:,.0f}**; "
        f"venue zone {md_text(zone_with_name(ev.zone_id, names or {}))}, ring "
        f"{md_text(zone_with_name(list(ev.ring), names or {}) or 'none')}.\n\n"
        f"Presence forecast: {md_text(brief.presence_method_text)}. "
        f"Brief made {brief.generated_at.isoformat()[:16]} UTC."
    )


def brief_notes(brief: Brief) -> str:
    """The brief's notes, then its limitations, as a Markdown list with each text escaped
    ("None." without any)."""
    items = [f"- {md_text(n)}" for n in brief.notes]
    items += [f"- **limitation:** {md_text(x)}" for x in brief.limitations]
    return "\n".join(items) or "None."


def brief_hours(brief: Brief) -> pd.DataFrame:
    """The brief's hour-by-hour table: local hour, phase, presence, incidents and staffing."""
    h = brief.hours_table()
    cols = PUBLISHED_HOUR_COLUMNS
    h = h[[c for c in cols if c in h.columns]].copy()
    h["local"] = h["local"].astype(str).str[11:16]
    return h.rename(columns={"local": "hour (local)"})


def brief_arithmetic(brief: Brief) -> pd.DataFrame:
    """The staffing arithmetic of the peak, one line per quantity, with its source."""
    s = brief.staffing
    parts = {"dps": s.dps, "lanes": s.lanes, "barrier": s.barrier, "egress": s.egress}
    words = {"dps": "rescuers (DPS grid)", "lanes": "entry lanes", "barrier": "barrier"}
    words["egress"] = "egress time"
    rows = [
        {
            "quantity": words[key],
            "arithmetic": part.arithmetic,
            "source": getattr(part, "source", ""),
        }
        for key, part in parts.items()
        if part is not None and part.arithmetic
    ]
    for row in rows:  # the headline rounds the barrier up to the whole metre: say so
        if row["quantity"] == "barrier" and s.peak.barrier_m:
            row["arithmetic"] += f", rounded up: {s.peak.barrier_m} m"
    return pd.DataFrame(rows)


def brief_figures_sources(brief: Brief, *, k: int) -> str:
    """Where the headline's staffing comes from (Markdown): rescuers from the declared
    attendance against the hour-by-hour peak from the forecast crowd, the larger kept."""
    s, ev = brief.staffing, brief.event
    hourly = [int(r.get("rescuers") or 0) for r in s.hours] if s.hours else []
    peak_hour = max(hourly, default=0)
    crowd = brief.hours_table()
    crowd_peak = float(crowd["event_crowd"].max()) if "event_crowd" in crowd and len(crowd) else 0
    return suppress_text(
        f"Where these figures come from: **{s.dps.rescuers} rescuers** from the DPS grid applied "
        f"to the **declared attendance** ({ev.expected_attendance:,.0f} people); the hour-by-hour "
        f"table applies the same grid to the **forecast crowd** of each hour (largest hour: "
        f"{peak_hour} rescuers, for a forecast crowd of {crowd_peak:,.0f} people). The plan keeps "
        f"the larger: **{s.peak.rescuers}**. Agents and entry lanes are the largest of the hours; "
        "the barrier is sized for the peak arrivals (arithmetic below).",
        k,
    )


def brief_zone_values(brief: Brief) -> pd.DataFrame:
    """Per zone of the venue and ring: forecast over reference at the venue's peak hour."""
    pres = brief.presence_table()
    if pres.empty:
        return pd.DataFrame(columns=["zone_id", "present_ratio"])
    venue = pres[pres["role"] == "venue"]
    peak_hour = (
        venue.loc[venue["forecast"].idxmax(), "hour"] if len(venue) else pres["hour"].iloc[0]
    )
    at = pres[pres["hour"] == peak_hour].copy()
    at["present_ratio"] = at["forecast"] / at["reference"].replace(0, np.nan)
    return at[["zone_id", "role", "present_ratio"]].reset_index(drop=True)


def brief_stops(store: str | Path | Store, brief: Brief) -> pd.DataFrame | None:
    """The stops near the venue (from the brief) with their coordinates (validated stops)."""
    st = open_store(store)
    near = pd.DataFrame(brief.context.stops)
    stops = st.validated("stops")
    if near.empty or stops is None:
        return None
    return near.merge(stops[["stop_id", "stop_lat", "stop_lon"]], on="stop_id", how="left")
