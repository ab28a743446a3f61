"""Visitors' origins (the ``presence_origin`` source): weekly mixes and their publication.

The source gives, per zone and slot (a day for Flux Vision's *origines*), the people present
by place of residence. :func:`weekly_mix` sums it into zone x ISO-week x origin person-days
(and the mean present per day). :func:`origin_class` sorts an origin into residents of the
study area, France outside it, and abroad, from the labels Flux Vision and the synthetic city
use.

Publication (:func:`publish_mix`): an origin cell below the suppression threshold ``k`` is
merged into ``other`` (primary suppression); when ``other`` would then hold a single cell or a
total below ``k``, the smallest published origins join it until it holds at least two cells
and ``k`` (complementary suppression: the zone's total minus the published cells gives back
only ``other``, never one suppressed cell); a group whose whole total stays below ``k`` is
withheld. Study-wide mixes are sums of the *published* zone cells (:func:`study_mix`), so no
difference of published figures rebuilds a suppressed cell.

References
----------
Hundepool, A. et al. (2012). *Statistical Disclosure Control*. Wiley, ch. 4 (primary and
secondary cell suppression). Orange Business, *Flux Vision* documentation (origins by
département and country, threshold applied at source).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: the merged cell of the origins below k
OTHER = "other"
#: the origin classes
CLASSES = ("resident", "france", "abroad")
_RESIDENT = {"zone_etude", "resident", "residents", "residents_zone", "local"}
_ABROAD_PREFIX = ("pays_", "country_", "etranger", "foreign", "abroad", "autres_pays")


def origin_class(origin: str) -> str:
    """``resident``, ``france`` or ``abroad`` for an origin label.

    Residents of the study area: ``zone_etude``/``resident(s)``; abroad: ``pays_XX``,
    ``etranger``, ``autres_pays``, ``foreign...``; anything else (``dep_NN``, a département
    number, ``petite_couronne``, ``autres_departements``...) is France outside the area.
    """
    o = str(origin).strip().lower()
    if o in _RESIDENT:
        return "resident"
    if o.startswith(_ABROAD_PREFIX):
        return "abroad"
    return "france"


def iso_week_label(dates: pd.Series) -> pd.Series:
    """``YYYY-Www`` of local dates."""
    iso = pd.to_datetime(dates).dt.isocalendar()
    return iso["year"].astype(str) + "-W" + iso["week"].astype(int).map("{:02d}".format)


def weekly_mix(origins: pd.DataFrame, *, timezone: str) -> pd.DataFrame:
    """Zone x ISO week x origin: person-days and the mean present per day.

    Parameters
    ----------
    origins
        The validated ``presence_origin`` rows (zone_id, start, slot_minutes, origin, count).
    timezone
        The study's time zone (weeks are local).

    Returns
    -------
    pandas.DataFrame
        zone_id, week, origin, class, person_days (Σ count x slot days), balanced (visitors'
        person-days with each day rescaled to the week's mean day of visitors: the mix the
        origin tests compare), days (days of the week with data), mean (person_days / days).
    """
    df = origins[["zone_id", "start", "slot_minutes", "origin", "count"]]
    starts = pd.Series(pd.to_datetime(df["start"], utc=True).unique())
    local = starts.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    at = pd.Index(starts).get_indexer(pd.to_datetime(df["start"], utc=True))
    df = pd.DataFrame(
        {
            "zone_id": df["zone_id"].astype(str).astype("category"),
            "origin": df["origin"].astype(str).astype("category"),
            "week": pd.Categorical(iso_week_label(local).to_numpy()[at]),
            "date": local.to_numpy()[at],
            "person_days": df["count"].to_numpy(float) * df["slot_minutes"].to_numpy(float) / 1440,
        }
    )
    df["balanced"] = _balanced(df)
    g = df.groupby(["zone_id", "week", "origin"], sort=True, observed=True)
    out = g.agg(person_days=("person_days", "sum"), balanced=("balanced", "sum")).reset_index()
    days = df.groupby(["zone_id", "week"], observed=True)["date"].nunique().rename("days")
    out = out.merge(days.reset_index(), on=["zone_id", "week"])
    for c in ("zone_id", "week", "origin"):
        out[c] = out[c].astype(str)
    out["class"] = out["origin"].map(origin_class)
    out["mean"] = out["person_days"] / out["days"].clip(lower=1)
    return out


def _balanced(df: pd.DataFrame) -> np.ndarray:
    """Visitor person-days with each day of a zone-week weighted alike: the day's visitors
    rescaled to the week's mean day (one event day does not make the week's mix)."""
    cats = df["origin"].cat.categories
    is_vis = np.asarray([origin_class(o) != "resident" for o in cats])[df["origin"].cat.codes]
    vis = df["person_days"].where(is_vis, 0.0)
    day = vis.groupby([df["zone_id"], df["date"]], observed=True).transform("sum")
    week_mean = (
        vis.groupby([df["zone_id"], df["week"], df["date"]], observed=True)
        .sum()
        .groupby(level=["zone_id", "week"], observed=True)
        .mean()
    )
    wm = pd.MultiIndex.from_arrays([df["zone_id"], df["week"]]).map(week_mean.to_dict())
    factor = np.where(day > 0, np.asarray(wm, dtype=float) / np.where(day > 0, day, 1.0), 0.0)
    return np.where(is_vis, df["person_days"].to_numpy(float) * factor, df["person_days"])


def publish_mix(
    mix: pd.DataFrame, *, k: int, by: Sequence[str] = ("zone_id", "week"), value: str = "mean"
) -> pd.DataFrame:
    """The mix as it may be published: cells below ``k`` merged into :data:`OTHER`.

    Parameters
    ----------
    mix
        Rows with the ``by`` columns, ``origin`` and ``value``.
    k
        The suppression threshold.
    by
        The groups (a zone-week's mix): suppression works within each.
    value
        The published count column.

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, origin, the value rounded to whole people, ``merged`` (how many
        origins ``other`` holds); groups whose total is below ``k`` are left out.
    """
    keys = list(by)
    rows = []
    for key, grp in mix.groupby(keys, sort=True):
        kept, other = _suppress_group(
            grp["origin"].to_numpy(dtype=object), np.round(grp[value].to_numpy(float)), k=k
        )
        if kept is None:
            continue
        vals = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        rows += [{**vals, "origin": o, value: v, "merged": 0} for o, v in kept]
        if other[1]:
            rows.append({**vals, "origin": OTHER, value: other[0], "merged": other[1]})
    return pd.DataFrame(rows, columns=[*keys, "origin", value, "merged"])


def _suppress_group(
    origins: np.ndarray, values: np.ndarray, *, k: int
) -> tuple[list[tuple[str, float]] | None, tuple[float, int]]:
    """Kept (origin, value) cells, largest first, and (other's total, cells in it); None when
    the group's total is below k."""
    if values.sum() < k:
        return None, (0.0, 0)
    order = np.argsort(-values, kind="stable")
    origins, values = origins[order], values[order]
    small = values < k
    n_pub = int((~small).sum())
    # complementary: other holds >= 2 cells and >= k, or nothing
    while small.any() and (small.sum() < 2 or values[small].sum() < k) and n_pub > 0:
        n_pub -= 1
        small[n_pub] = True
    kept = [(str(o), float(v)) for o, v in zip(origins[~small], values[~small], strict=True)]
    return kept, (float(values[small].sum()), int(small.sum()))


def study_mix(published: pd.DataFrame, *, by: Sequence[str] = ("week",), value: str = "mean"):
    """Study-wide mix: the sums of the published zone cells (``other`` included)."""
    return published.groupby([*by, "origin"], sort=True, as_index=False)[value].sum()
