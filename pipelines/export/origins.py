"""The visitors' origins as published: `vigie export --what origins` and the API's /origins.

One row per zone, ISO week and origin: the mean people present a day from that origin
(``present``; residents of the study area are ``zone_etude``), its class (resident, france,
abroad) and, for ``other``, how many origins it merges. Cells below ``k`` are merged into
``other`` with complementary suppression (:func:`features.cube.origins.publish_mix`): no zone's
total minus its published origins gives back one suppressed cell; a zone-week whose whole total
is below ``k`` is left out.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from features.cube.origins import OTHER, origin_class, publish_mix, weekly_mix
from features.errors import StoreError
from features.store import Store
from pipelines.signals.period import Period

#: the columns of the published origins
ORIGIN_FIELDS = ("zone_id", "week", "origin", "class", "present", "merged")


def period_weeks(period: Period) -> list[str]:
    """The ISO weeks the period's days fall in."""
    days = pd.date_range(period.first, period.last, freq="D")
    iso = days.isocalendar()
    return sorted({f"{y}-W{w:02d}" for y, w in zip(iso["year"], iso["week"], strict=True)})


def origin_records(
    store: Store, period: Period, *, k: int, zones: list[str] | None = None
) -> pd.DataFrame:
    """The published origins of the period's ISO weeks (see the module docstring).

    Raises
    ------
    StoreError
        When the store has no ``presence_origin`` source.
    """
    src = store.validated("presence_origin")
    if src is None:
        raise StoreError(
            f"{store.root}: no presence_origin source (visitors' origins); add one to the "
            "sources.yaml and run `vigie ingest`."
        )
    weeks = period_weeks(period)
    monday = pd.Timestamp.fromisocalendar(int(weeks[0][:4]), int(weeks[0][-2:]), 1)
    lo = (monday - pd.Timedelta(days=1)).tz_localize(store.timezone)
    hi = (pd.Timestamp(period.last) + pd.Timedelta(days=8)).tz_localize(store.timezone)
    at = pd.to_datetime(src["start"], utc=True)
    src = src[(at >= lo) & (at < hi)]
    if zones is not None:
        src = src[src["zone_id"].astype(str).isin([str(z) for z in zones])]
    mix = weekly_mix(src, timezone=store.timezone)
    mix = mix[mix["week"].isin(weeks)]
    pub = publish_mix(mix, k=k).rename(columns={"mean": "present"})
    pub["class"] = [("mixed" if o == OTHER else origin_class(o)) for o in pub["origin"]]
    return pub.sort_values(["zone_id", "week", "present"], ascending=[True, True, False])[
        list(ORIGIN_FIELDS)
    ].reset_index(drop=True)


def origins_layer(store: Store, period: Period, *, k: int) -> gpd.GeoDataFrame:
    """The published origins with their zone's geometry (EPSG:4326)."""
    from pipelines.export.frames import zones_frame

    rec = origin_records(store, period, k=k)
    zones = zones_frame(store)
    keep = [c for c in ("zone_id", "name", "geometry") if c in zones.columns]
    out = rec.merge(zones[keep], on="zone_id", how="left")
    out.insert(1, "period", period.label)
    out["suppressed"] = [
        f"{m} origins below k={k} (or with them) merged" if m else ""
        for m in out["merged"].astype(int)
    ]
    return gpd.GeoDataFrame(out, geometry="geometry", crs=zones.crs)
