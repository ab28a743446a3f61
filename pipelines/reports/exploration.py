"""The exploration's figures: the cube's last weeks, profiles by hour, the zones with the most
incidents, and correlations between zone-days (the notebook holds no logic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from features.store import Store
from pipelines.reports.figures import open_store


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


def last_weeks(store: str | Path | Store, weeks: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC bounds [start, end) of the cube's last ``weeks`` weeks (end: the cube's end)."""
    end = pd.Timestamp(open_store(store).cube_meta()["end"])  # exclusive
    return end - pd.Timedelta(weeks=weeks), end


def cube_description(meta: dict[str, Any], weeks: int) -> str:
    """One sentence on the cube (``cube_meta.json``): rows, zones, grain, period, time zone."""
    return (
        f"Cube: {meta['rows']:,} rows, {meta['zones']} zones, grain {meta['grain']}, "
        f"{meta['start'][:10]} → {meta['end'][:10]} ({meta['timezone']}). Loading the last "
        f"{weeks} week(s)."
    )


def cube_columns(meta: dict[str, Any]) -> str:
    """The cube's columns, as code, in one line."""
    return "Columns: " + ", ".join(f"`{c}`" for c in meta["columns"])


def hourly_profile(cube: pd.DataFrame) -> pd.DataFrame:
    """Mean presence and incidents per zone-slot by local hour (the columns the cube has)."""
    return cube.groupby("local_hour")[[c for c in ("present", "incidents") if c in cube]].mean()


def plot_hourly(by_hour: pd.DataFrame) -> Figure:
    """One panel per column of :func:`hourly_profile`."""
    fig, ax = plt.subplots(1, by_hour.shape[1], figsize=(11, 3), squeeze=False)
    for a, col in zip(ax[0], by_hour.columns, strict=True):
        by_hour[col].plot(ax=a, marker="o")
        a.set_title(f"mean {col} per zone, by local hour")
    fig.tight_layout()
    return fig


def top_zones(cube: pd.DataFrame, *, n: int = 10) -> pd.DataFrame:
    """The ``n`` zones with the most incidents over the cube rows given."""
    by_zone = cube.groupby("zone_id")[["incidents"]].sum()
    return by_zone.sort_values("incidents", ascending=False).head(n).reset_index()


def spearman_matrix(days: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlations between the columns of :func:`zone_days`."""
    return days.corr(method="spearman")


def plot_correlation(corr: pd.DataFrame) -> Figure:
    """A correlation matrix as a heat map on [−1, 1]."""
    cols = list(corr.columns)
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(cols)), cols)
    fig.colorbar(im)
    ax.set_title("Spearman correlation, zone-days")
    fig.tight_layout()
    return fig
