"""Who is present: residents against present, the visitor mix and the top origins of a week.

The weekly report's section on the Flux Vision indicators (:mod:`features.cube.indicators`) and
origins (:mod:`features.cube.origins`), each figure against the mean of the ``reference_weeks``
weeks before:

* :func:`split_figures`: study-wide mean people present per hour, residents, visitors (and
  tourists, excursionists, foreigners where the source gives them), the visitor share;
* :func:`zone_split`: per zone, the same split and the peak of people present against the
  zone's resident population (hour of the peak), zones ranked by that peak;
* :func:`top_origins`: the week's top origins, study-wide (sums of the zones' published cells)
  or for one zone, against the reference weeks.

Everything returned is ready to publish: origins below ``k`` are merged into ``other`` with
complementary suppression (:func:`features.cube.origins.publish_mix`), and a share or ratio
beside a count below ``k`` is withheld (it would give the count back with the published
present or population).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.cube.indicators import VISITOR_KINDS
from features.cube.origins import OTHER, origin_class, publish_mix, weekly_mix
from features.store import Store

#: the split of the people present, in the order shown
SPLIT = ("present", "residents", "visitors", *VISITOR_KINDS)


def _cube(st: Store, start: pd.Timestamp, end: pd.Timestamp, weeks: int) -> pd.DataFrame:
    cols = set(st.cube_meta().get("columns", []))
    want = [c for c in (*SPLIT, "resident_ratio", "local_hour") if c in cols]
    cube = st.cube(["zone_id", "hour", *want], start - pd.Timedelta(weeks=weeks), end)
    cube["period"] = np.floor((cube["hour"] - start) / pd.Timedelta(weeks=1)).astype(int)
    return cube


def split_figures(
    st: Store, *, start: pd.Timestamp, end: pd.Timestamp, reference_weeks: int = 8
) -> pd.DataFrame:
    """Study-wide who is present: mean per hour summed over zones, this week and reference.

    Returns
    -------
    pandas.DataFrame
        ``figure`` (present, residents, visitors, tourists...), ``this_week``,
        ``reference_mean``, ``ratio``; a last row ``visitor share (%)`` with the shares in
        percent (withheld where visitors or present are below k in the caller's publication).
    """
    cube = _cube(st, start, end, reference_weeks)
    cols = [c for c in SPLIT if c in cube.columns]
    if not cols or cube.empty:
        return pd.DataFrame(columns=["figure", "this_week", "reference_mean", "ratio"])
    per_hour = cube.groupby(["period", "hour"])[cols].sum(min_count=1)
    per_period = per_hour.groupby("period").mean()
    this = per_period.loc[0] if 0 in per_period.index else pd.Series(np.nan, index=cols)
    ref = per_period[per_period.index < 0].mean()
    out = pd.DataFrame({"figure": cols, "this_week": this[cols].to_numpy(float),
                        "reference_mean": ref[cols].to_numpy(float)})  # fmt: skip
    out["ratio"] = out["this_week"] / out["reference_mean"].replace(0, np.nan)
    return out


def visitor_share(split: pd.DataFrame, *, k: int) -> dict[str, float | None]:
    """The visitor share this week and in the reference (None where visitors or present is
    below ``k``: the share would give the count back)."""
    fig = split.set_index("figure")
    if not {"visitors", "present"} <= set(fig.index):
        return {"share_this_week": None, "share_reference": None}
    out: dict[str, float | None] = {}
    for col, key in (("this_week", "share_this_week"), ("reference_mean", "share_reference")):
        v, p = fig.loc["visitors", col], fig.loc["present", col]
        ok = np.isfinite(v) and np.isfinite(p) and v >= k and p >= k and p > 0
        out[key] = round(float(v / p), 4) if ok else None
    return out


def zone_split(
    st: Store,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    k: int,
    top: int = 10,
    timezone: str | None = None,
) -> pd.DataFrame:
    """Zones ranked by their peak of people present against residents this week.

    Returns
    -------
    pandas.DataFrame
        zone_id, present, residents, visitors (mean per hour), visitor_share (%),
        peak_vs_population (the week's highest ``present / population``), peak_at (local
        time); shares and ratios withheld (NaN) where a count beside them is below ``k``.
    """
    cube = _cube(st, start, end, 0)
    cube = cube[cube["period"] == 0]
    if "resident_ratio" not in cube.columns or cube.empty:
        return pd.DataFrame()
    g = cube.groupby("zone_id")
    cols = [c for c in ("present", "residents", "visitors") if c in cube.columns]
    out = g[cols].mean()
    if "visitors" in out:
        out["visitor_share"] = 100 * out["visitors"] / out["present"].replace(0, np.nan)
        small = (out["visitors"] < k) | (out["present"] < k)
        out.loc[small, "visitor_share"] = np.nan
    peak = cube.loc[cube["resident_ratio"].fillna(-1).groupby(cube["zone_id"]).idxmax()]
    peak = peak.set_index("zone_id")
    out["peak_vs_population"] = peak["resident_ratio"]
    tz = timezone or st.timezone
    out["peak_at"] = peak["hour"].dt.tz_convert(tz).dt.strftime("%a %H:%M")
    out.loc[peak["present"].reindex(out.index) < k, "peak_vs_population"] = np.nan
    out = out.sort_values("peak_vs_population", ascending=False).head(top)
    return out.reset_index()


def week_mix(st: Store, *, week: str, reference_weeks: int = 8) -> pd.DataFrame | None:
    """The weekly origin mixes of the week and its reference weeks (None without origins)."""
    src = st.validated("presence_origin")
    if src is None or src.empty:
        return None
    monday = pd.Timestamp.fromisocalendar(int(week[:4]), int(week[-2:]), 1)
    lo = (monday - pd.Timedelta(weeks=reference_weeks + 1)).tz_localize(st.timezone)
    hi = (monday + pd.Timedelta(weeks=2)).tz_localize(st.timezone)
    at = pd.to_datetime(src["start"], utc=True)
    mix = weekly_mix(src[(at >= lo) & (at < hi)], timezone=st.timezone)
    weeks = sorted(mix["week"].unique())
    if week not in weeks:
        return None
    keep = weeks[max(0, weeks.index(week) - reference_weeks) : weeks.index(week) + 1]
    return mix[mix["week"].isin(keep)]


def top_origins(
    mix: pd.DataFrame, *, week: str, k: int, top: int = 10, zone: str | None = None
) -> pd.DataFrame:
    """The week's top visitor origins against the reference weeks, published at ``k``.

    Zone cells below ``k`` are merged into ``other`` (complementary suppression) in every week;
    the study's figures are sums of the zones' published cells. ``reference_mean`` is the mean
    over the reference weeks of the same published figure (0 where the origin was in ``other``).

    Returns
    -------
    pandas.DataFrame
        origin, class (France outside the area / abroad), this_week (mean present a day),
        share (% of the week's visitors), reference_mean, ratio; ``other`` last.
    """
    vis = mix[mix["class"] != "resident"]
    if zone is not None:
        vis = vis[vis["zone_id"] == str(zone)]
    pub = publish_mix(vis, k=k)
    per_week = pub.groupby(["week", "origin"])["mean"].sum().unstack("origin", fill_value=0.0)
    if week not in per_week.index:
        return pd.DataFrame(columns=["origin", "class", "this_week", "share", "reference_mean"])
    this = per_week.loc[week]
    refs = per_week[per_week.index < week]
    ref = refs.mean() if len(refs) else pd.Series(np.nan, index=per_week.columns)
    out = pd.DataFrame({"origin": this.index, "this_week": this.to_numpy(float),
                        "reference_mean": ref.reindex(this.index).to_numpy(float)})  # fmt: skip
    out = out[out["this_week"] > 0]
    out["share"] = 100 * out["this_week"] / out["this_week"].sum()
    out["ratio"] = out["this_week"] / out["reference_mean"].replace(0, np.nan)
    out["class"] = [("mixed" if o == OTHER else _class_word(o)) for o in out["origin"]]
    named = out[out["origin"] != OTHER].sort_values("this_week", ascending=False)
    rest = pd.concat([named.iloc[top:], out[out["origin"] == OTHER]])
    if len(rest):
        other = {"origin": OTHER, "class": "mixed", "this_week": rest["this_week"].sum(),
                 "share": rest["share"].sum(), "reference_mean": rest["reference_mean"].sum(),
                 "ratio": np.nan}  # fmt: skip
        named = pd.concat([named.iloc[:top], pd.DataFrame([other])], ignore_index=True)
    cols = ["origin", "class", "this_week", "share", "reference_mean", "ratio"]
    return named[cols].reset_index(drop=True)


def _class_word(origin: str) -> str:
    return {"france": "France, outside the area", "abroad": "abroad"}.get(
        origin_class(origin), "residents"
    )


def origin_classes(mix: pd.DataFrame, *, week: str, k: int) -> dict[str, float]:
    """Study-wide shares (%) of the week's people present: residents, France outside the area,
    abroad. The class totals are sums over all zones (no zone's class is published apart, so
    none can be subtracted back), each published at ``k`` (below: ``other``)."""
    cls = mix[mix["week"] == week].groupby(["week", "class"], as_index=False)["mean"].sum()
    pub = publish_mix(cls.rename(columns={"class": "origin"}), k=k, by=("week",))
    tot = pub.groupby("origin")["mean"].sum()
    return {str(c): round(float(100 * v / tot.sum()), 1) for c, v in tot.items()}


def who_text(split: pd.DataFrame, share: dict[str, float | None], classes: dict | None) -> str:
    """One paragraph on who was present this week."""
    parts = []
    now, ref = share.get("share_this_week"), share.get("share_reference")
    if now is not None:
        parts.append(
            f"Visitors made {100 * now:.1f} % of the people present this week"
            + (f" (reference weeks: {100 * ref:.1f} %)." if ref is not None else ".")
        )
    if classes:
        parts.append(
            "By origin, the people present were "
            + ", ".join(f"{v:.1f} % {_CLASS_WORDS.get(c, c)}" for c, v in classes.items())
            + " (origins below k merged into 'other')."
        )
    return " ".join(parts) or "The presence source gives no residents/visitors split."


_CLASS_WORDS = {"resident": "residents of the area", "france": "from elsewhere in France",
                "abroad": "from abroad", "other": "in 'other'"}  # fmt: skip


def origin_zones(mix: pd.DataFrame, *, week: str, run: Any = None, n: int = 3) -> list[str]:
    """Zones whose origins the report details: those with an origin signal this week, else
    the ``n`` zones with the most visitors."""
    if run is not None and len(getattr(run, "signals", [])):
        sig = run.signals[run.signals["type"] == "origin_shift"]
        zones = [str(z) for zs in sig["zones"] for z in zs]
        if zones:
            return list(dict.fromkeys(zones))[:n]
    vis = mix[(mix["week"] == week) & (mix["class"] != "resident")]
    return [str(z) for z in vis.groupby("zone_id")["mean"].sum().nlargest(n).index]


def zone_origin_tables(
    mix: pd.DataFrame, *, week: str, k: int, zones: list[str], top: int = 5
) -> pd.DataFrame:
    """:func:`top_origins` of each of ``zones``, one table with a ``zone_id`` column."""
    parts = [top_origins(mix, week=week, k=k, top=top, zone=z).assign(zone_id=z) for z in zones]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["zone_id", *[c for c in out.columns if c != "zone_id"]]]
