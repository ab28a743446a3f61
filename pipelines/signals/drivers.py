"""Candidate drivers of incidents, built from the cube for the lagged correlations.

A driver is the set of (zone, day) when it was "on": lighting outages in the zone or in
neighbouring zones, days of high transit load, presence surges (see
:class:`~pipelines.signals.correlation.Driver`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.models.design import lamps_out_share
from pipelines.signals.correlation import Driver
from pipelines.signals.panel import Panel, aggregate_days


def build_drivers(
    frame: pd.DataFrame,
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    grain: str,
    outage_share: float,
    surge_ratio: float,
) -> list[Driver]:
    """The drivers the cube can tell, in the order lighting, neighbours' lighting, transit, surge.

    Parameters
    ----------
    frame
        Cube rows of the panel's days (zone_id, local_date and the drivers' columns).
    panel
        The daily panel (its zones and days are the drivers' axes).
    neighbours
        (Z, K) nearest zones, itself first; None without zone geometry (no ring driver).
    grain
        The cube's grain: at ``1h`` only dark slots count for lighting outages.
    outage_share, surge_ratio
        A day is an outage day when at least this share of the zone's lamps is out; a
        presence surge day when the hourly present / reference reaches this ratio.
    """
    out = _lighting(frame, panel, neighbours, grain=grain, outage_share=outage_share)
    out += _transit(frame, panel)
    out += _surge(frame, panel, surge_ratio=surge_ratio)
    return out


def _lighting(
    frame: pd.DataFrame,
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    grain: str,
    outage_share: float,
) -> list[Driver]:
    """Outage days in the zone and, with neighbours, in its ring of neighbouring zones."""
    if not {"lamps", "lamps_out"} <= set(frame.columns):
        return []
    zones = list(panel.zones)
    share = lamps_out_share(frame)
    if grain == "1h" and "dark" in frame:
        dark = frame["dark"].fillna(False).to_numpy(bool)
        share = np.where(dark, share, np.nan)
    arr = aggregate_days(
        frame.assign(_s=share, _n=np.isfinite(share).astype(float)),
        {"s": "_s", "n": "_n"},
        zones=zones,
        days=panel.days,
    )
    daily = arr["s"] / np.where(arr["n"] > 0, arr["n"], np.nan)
    on = np.nan_to_num(daily) >= outage_share
    if not on.any():
        return []
    out = [Driver("lighting_outage", "lighting outages in the zone", on)]
    if neighbours is not None and neighbours.shape[1] > 1:
        p0 = panel.period[0]
        ring = neighbours[:, 1:]
        related = [tuple(zones[j] for j in ring[i] if on[j, p0:].any()) for i in range(len(zones))]
        out.append(
            Driver(
                "outage_nearby",
                "lighting outages in neighbouring zones",
                on[ring].any(axis=1),
                related,
            )
        )
    return out


def _transit(frame: pd.DataFrame, panel: Panel) -> list[Driver]:
    """Days when a zone's transit entries exceed its 90th percentile of the look-back."""
    if "ridership_entries" not in frame:
        return []
    arr = aggregate_days(
        frame, {"r": "ridership_entries"}, zones=list(panel.zones), days=panel.days
    )["r"]
    hist = arr[:, : panel.period[0]]
    if not np.isfinite(hist).any():
        return []
    q90 = np.nanpercentile(hist, 90, axis=1)
    on = np.nan_to_num(arr) > np.nan_to_num(q90)[:, None]
    on &= np.isfinite(arr) & (arr > 0)
    if not on.any():
        return []
    return [Driver("transit_load", "days of high transit load (top 10 %)", on)]


def _surge(frame: pd.DataFrame, panel: Panel, *, surge_ratio: float) -> list[Driver]:
    """Days when some hour's present / reference reaches ``surge_ratio``."""
    if "present_ratio" not in frame:
        return []
    mx = frame.groupby(["zone_id", "local_date"], sort=False)["present_ratio"].max()
    wide = mx.unstack("local_date")
    wide.columns = pd.Index([pd.Timestamp(c).date() for c in wide.columns])
    wide = wide.reindex(
        index=pd.Index(list(panel.zones)), columns=pd.Index([d.date() for d in panel.days])
    )
    on = np.nan_to_num(wide.to_numpy(float)) >= surge_ratio
    if not on.any():
        return []
    return [Driver("presence_surge", f"presence surges (x{surge_ratio:g} the reference)", on)]
