"""Where the crowd of comparable past events came from, and what follows for the event briefed.

For each comparable past event (:mod:`pipelines.events.comparables`) the venue zone's people
present by origin on the event's local day (the ``presence_origin`` source, daily for Flux
Vision) are compared with the same weekday of the ``reference_weeks`` weeks before without an
event in the zone (median per origin): the *uplift by origin*, floored at 0. Summed over the
comparables it gives the crowd's mix:

* the share from outside the study area's département and from abroad, and the top origins;
* the **visitor share of the uplift**, from the cube over the event's hours: Σ (visitors -
  reference) / Σ (present - reference), references the median of the same hour of the same
  weekday over the reference weeks: how much of the extra crowd does not live in the area;
* what follows, each with its arithmetic: the **transit share** (extra entries at the venue
  zone's stops from the start to two hours after the end, against the peak uplift of people
  present; a lower bound when stops outside the zone serve the venue), the **multilingual
  signage** need (foreign share at or above :data:`SIGNAGE_FOREIGN_SHARE`, naming the countries),
  and the **travel time** of the arriving crowd (crowd-weighted mean of :data:`TRAVEL_MINUTES`
  by origin class, an assumption stated in the brief).

Every count is published through :func:`features.cube.origins.publish_mix` (origins below ``k``
merged into ``other`` with complementary suppression).

References
----------
Orange Business, *Flux Vision* (origins of present people by département and country, used by
event organisers for catchment studies). Still, G. K. (2014). *Introduction to Crowd Science*.
CRC Press, ch. 5 (ingress and egress planning).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.cube.origins import OTHER, origin_class, publish_mix
from features.store import Store

#: foreign share of the crowd from which the brief advises multilingual signage
SIGNAGE_FOREIGN_SHARE = 0.05
#: typical door-to-door travel time (minutes) by origin class: an assumption the brief states
TRAVEL_MINUTES = {"resident": 25.0, "france": 75.0, "abroad": 180.0}
REFERENCE_WEEKS = 4


@dataclass(frozen=True)
class CrowdOrigins:
    """The origins of comparable events' crowds (published: cells below k merged)."""

    events: tuple[str, ...]
    uplift_per_day: float
    share_outside: float | None
    share_abroad: float | None
    top: list[dict[str, Any]]
    visitor_share_of_uplift: float | None
    transit_share: float | None
    signage: str
    travel_minutes: float | None
    arithmetic: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def top_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.top)


def _ref_dates(day: pd.Timestamp, weeks: int, busy: set) -> list:
    return [
        (day - pd.Timedelta(weeks=w)).date()
        for w in range(1, weeks + 1)
        if (day - pd.Timedelta(weeks=w)).date() not in busy
    ]


def origin_uplift(
    origins: pd.DataFrame, comparables: pd.DataFrame, *, timezone: str, weeks: int
) -> pd.DataFrame:
    """Per comparable event and origin: the event day's mean present minus the reference."""
    o = origins.assign(
        day=pd.to_datetime(origins["start"], utc=True).dt.tz_convert(timezone).dt.date,
        zone_id=origins["zone_id"].astype(str),
    )
    busy_days = {
        (str(r.zone_id), pd.Timestamp(r.start_local).date()) for r in comparables.itertuples()
    }
    rows = []
    for r in comparables.itertuples():
        day = pd.Timestamp(r.start_local).tz_localize(None).normalize()
        z = str(r.zone_id)
        busy = {d for zz, d in busy_days if zz == z}
        zo = o[o["zone_id"] == z]
        now = zo[zo["day"] == day.date()].groupby("origin")["count"].sum()
        ref = zo[zo["day"].isin(_ref_dates(day, weeks, busy))]
        if now.empty or ref.empty:
            continue
        base = ref.groupby(["day", "origin"])["count"].sum().unstack("origin").median()
        up = (now - base.reindex(now.index).fillna(0)).clip(lower=0)
        rows += [{"event_id": r.event_id, "origin": o_, "uplift": float(v)} for o_, v in up.items()]
    return pd.DataFrame(rows, columns=["event_id", "origin", "uplift"])


def _visitor_share_of_uplift(
    st: Store, comparables: pd.DataFrame, *, weeks: int
) -> tuple[float | None, float | None, float]:
    """(visitor share of the uplift, transit share, peak uplift) over the comparables."""
    cols = set(st.cube_meta().get("columns", []))
    if not {"present", "visitors"} <= cols:
        return None, None, np.nan
    extra_vis = extra_pres = extra_entries = peak = 0.0
    for r in comparables.itertuples():
        s = pd.Timestamp(r.start_local).tz_convert("UTC")
        e = pd.Timestamp(r.end_local).tz_convert("UTC") + pd.Timedelta(hours=2)
        want = [c for c in ("present", "visitors", "ridership_entries") if c in cols]
        hrs = [st.cube(["zone_id", "hour", *want], s - pd.Timedelta(weeks=w), e - pd.Timedelta(weeks=w),
                       zones=[str(r.zone_id)]) for w in range(0, weeks + 1)]  # fmt: skip
        hrs = [h[h["zone_id"].astype(str) == str(r.zone_id)].reset_index(drop=True) for h in hrs]
        if any(len(h) != len(hrs[0]) for h in hrs) or hrs[0].empty:
            continue
        ref = {c: np.nanmedian(np.stack([h[c].to_numpy(float) for h in hrs[1:]]), axis=0)
               for c in want}  # fmt: skip
        d = {c: hrs[0][c].to_numpy(float) - ref[c] for c in want}
        extra_vis += float(np.nansum(d["visitors"]))
        extra_pres += float(np.nansum(d["present"]))
        peak += float(np.nanmax(d["present"]))
        if "ridership_entries" in d:
            extra_entries += float(np.nansum(np.clip(d["ridership_entries"], 0, None)))
    share = extra_vis / extra_pres if extra_pres > 0 else None
    transit = min(1.0, extra_entries / peak) if peak > 0 and "ridership_entries" in cols else None
    return share, transit, peak


def origins_near(st: Store, comparables: pd.DataFrame, *, weeks: int) -> pd.DataFrame | None:
    """The ``presence_origin`` rows :func:`origin_uplift` reads for ``comparables``: their zones,
    from ``weeks`` weeks (and two days) before the first one to two days after the last (a
    filtered read: a region's tens of millions of origin rows are never loaded whole). None
    without the source."""
    path = st.validated_path("presence_origin")
    if not path.exists():
        return None
    days = pd.to_datetime(comparables["start_local"].map(lambda t: pd.Timestamp(t).isoformat()),
                          utc=True)  # fmt: skip
    lo = days.min() - pd.Timedelta(weeks=weeks) - pd.Timedelta(days=2)
    hi = days.max() + pd.Timedelta(days=2)
    zones = sorted(comparables["zone_id"].astype(str).unique())
    return pd.read_parquet(
        path, filters=[("start", ">=", lo), ("start", "<", hi), ("zone_id", "in", zones)]
    )


def crowd_origins(
    st: Store,
    comparables: list[dict[str, Any]],
    *,
    k: int,
    weeks: int = REFERENCE_WEEKS,
    top: int = 10,
) -> CrowdOrigins | None:
    """The origins of the comparable events' crowds (see the module docstring); None without
    comparables or a ``presence_origin`` source."""
    comp = pd.DataFrame(comparables)
    if comp.empty:
        return None
    src = origins_near(st, comp, weeks=weeks)
    if src is None or src.empty:
        return None
    up = origin_uplift(src, comp, timezone=st.timezone, weeks=weeks)
    if up.empty or up["uplift"].sum() <= 0:
        return None
    n_ev = up["event_id"].nunique()
    per = up.groupby("origin", as_index=False)["uplift"].sum()
    per["mean"] = per["uplift"] / n_ev  # mean extra present per event day
    per["class"] = per["origin"].map(origin_class)
    pub = publish_mix(per.assign(group="all"), k=k, by=("group",))
    if pub.empty:  # the whole crowd below k
        return None
    total = float(pub["mean"].sum())
    cls = per.groupby("class")["mean"].sum()
    raw_total = float(cls.sum())
    # a share gives its count back with the published uplift: withheld below k
    n_abroad = float(cls.get("abroad", 0.0))
    n_outside = float(cls.get("france", 0.0)) + n_abroad
    abroad = n_abroad / raw_total if raw_total and n_abroad >= k else None
    outside = n_outside / raw_total if raw_total and n_outside >= k else None
    table = pub.sort_values("mean", ascending=False)
    named = table[table["origin"] != OTHER].head(top)
    rest = float(total - named["mean"].sum())
    rows = [{"origin": o, "class": origin_class(o), "crowd": round(v), "share": round(100 * v / total, 1)}
            for o, v in zip(named["origin"], named["mean"], strict=True)]  # fmt: skip
    if rest > 0:
        rows.append({"origin": OTHER, "class": "mixed", "crowd": round(rest),
                     "share": round(100 * rest / total, 1)})  # fmt: skip
    vshare, transit, peak = _visitor_share_of_uplift(st, comp, weeks=weeks)
    foreign = [r["origin"] for r in rows if r["class"] == "abroad" and r["origin"] != OTHER]
    ab = abroad or 0.0
    pct = f"{100 * ab:.1f} %" if abroad is not None else f"fewer than {k} people"
    need = ab >= SIGNAGE_FOREIGN_SHARE
    signage = (
        f"advised: {pct} of the crowd from abroad (threshold {100 * SIGNAGE_FOREIGN_SHARE:.0f} %)"
        + (f", mostly {', '.join(foreign[:3])}" if foreign else "")
        if need
        else f"not needed: {pct} from abroad (threshold {100 * SIGNAGE_FOREIGN_SHARE:.0f} %)"
    )
    travel = sum(TRAVEL_MINUTES[c] * float(cls.get(c, 0.0)) for c in TRAVEL_MINUTES) / raw_total
    arithmetic = (
        f"{n_ev} comparable event(s): the venue zone's people present by origin on the event day "
        f"minus the median of the same weekday over the {weeks} weeks before (event days left out). "
        f"Travel time: crowd-weighted mean of {TRAVEL_MINUTES} minutes by origin class (assumed). "
        + (f"Transit share: extra entries at the zone's stops from the start to 2 h after the end "
           f"over the peak uplifts of people present ({peak:,.0f}, summed over the events)." if transit is not None else "")
    )  # fmt: skip
    return CrowdOrigins(
        events=tuple(sorted(up["event_id"].astype(str).unique())),
        uplift_per_day=round(total),
        share_outside=None if outside is None else round(outside, 4),
        share_abroad=None if abroad is None else round(abroad, 4),
        top=rows,
        visitor_share_of_uplift=None if vshare is None else round(vshare, 4),
        transit_share=None if transit is None else round(transit, 4),
        signage=signage,
        travel_minutes=round(travel, 1),
        arithmetic=arithmetic,
    )


def crowd_text(c: CrowdOrigins) -> str:
    """The crowd's origins and what follows, in words."""

    def pct(x: float | None, digits: int) -> str:
        return "fewer than k people" if x is None else f"{100 * x:.{digits}f} %"

    parts = [
        f"Comparable events ({', '.join(c.events)}): {pct(c.share_outside, 0)} of the extra "
        f"people came from outside the study area, {pct(c.share_abroad, 1)} from abroad."
    ]
    if c.visitor_share_of_uplift is not None:
        parts.append(
            f"Visitors made {100 * c.visitor_share_of_uplift:.0f} % of the uplift over the "
            "event's hours (residents the rest)."
        )
    if c.transit_share is not None:
        parts.append(
            f"Transit share: about {100 * c.transit_share:.0f} % of the peak crowd left by the "
            "venue zone's stops (a lower bound: stops outside the zone are not counted)."
        )
    parts.append(f"Multilingual signage: {c.signage}.")
    if c.travel_minutes is not None:
        parts.append(f"Mean travel time of the arriving crowd: about {c.travel_minutes:.0f} min.")
    return " ".join(parts)
