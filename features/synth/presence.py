"""People present per zone and hour: residents, movers, commuters and tourists.

The hourly profiles below (home share on workdays and days off, destination profiles per zone
type, commuting, tourism, transit use) drive :func:`base_presence`; :func:`chunk_presence` adds
the events' attendees and the planted gathering and derives what the Flux Vision files deliver
(hourly counts, 2-hour slot averages) and the exposure the incident model uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.synth.scales import ZONE_TYPES, profile
from features.synth.timeline import Calendar
from features.synth.zones import Zones

_HOME_WORK = profile([(0, 0.95), (6, 0.95), (7, 0.85), (8, 0.6), (9, 0.45), (17, 0.45),
                       (18, 0.6), (20, 0.8), (22, 0.9), (23, 0.95)])  # fmt: skip
_HOME_OFF = profile([(0, 0.92), (8, 0.93), (10, 0.8), (12, 0.7), (16, 0.65), (19, 0.75),
                      (21, 0.82), (23, 0.9)])  # fmt: skip
# destination profiles per zone type: (workday, day off)
_DEST: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "centre": (profile([(0, 0.2), (6, 0.2), (9, 0.9), (11, 1.0), (19, 1.0), (21, 0.6), (23, 0.3)]),
               profile([(0, 0.3), (7, 0.2), (10, 0.9), (12, 1.2), (19, 1.1), (21, 0.8), (23, 0.4)])),
    "business": (profile([(0, 0.03), (6, 0.05), (8, 0.7), (9, 1.0), (17, 1.0), (19, 0.3), (21, 0.08), (23, 0.04)]),
                 profile([(0, 0.03), (8, 0.05), (11, 0.15), (17, 0.15), (20, 0.05), (23, 0.03)])),
    "residential": (profile([(0, 0.02), (8, 0.05), (12, 0.08), (18, 0.1), (21, 0.06), (23, 0.03)]),
                    profile([(0, 0.03), (10, 0.1), (14, 0.15), (19, 0.12), (23, 0.05)])),
    "nightlife": (profile([(0, 0.8), (2, 0.5), (4, 0.1), (7, 0.1), (12, 0.4), (18, 0.5), (20, 0.9), (22, 1.0)]),
                  profile([(0, 1.3), (2, 1.1), (4, 0.3), (7, 0.1), (12, 0.5), (18, 0.7), (20, 1.2), (22, 1.5)])),
    "park": (profile([(0, 0.01), (6, 0.02), (9, 0.2), (12, 0.4), (17, 0.4), (20, 0.1), (23, 0.02)]),
             profile([(0, 0.01), (7, 0.05), (10, 0.6), (13, 1.0), (17, 1.0), (20, 0.2), (23, 0.02)])),
    "stadium": (profile([(0, 0.02), (9, 0.1), (17, 0.1), (23, 0.02)]),
                profile([(0, 0.02), (10, 0.15), (17, 0.15), (23, 0.02)])),
    "venue": (profile([(0, 0.05), (9, 0.3), (17, 0.3), (20, 0.4), (23, 0.1)]),
              profile([(0, 0.05), (10, 0.4), (17, 0.4), (20, 0.5), (23, 0.1)])),
}  # fmt: skip
_COMMUTE = profile(
    [(0, 0.02), (6, 0.1), (8, 0.8), (9, 1.0), (16, 1.0), (18, 0.5), (20, 0.1), (23, 0.03)]
)
_TOURIST = profile([(0, 0.15), (5, 0.05), (9, 0.5), (11, 0.9), (15, 1.0), (19, 0.9), (22, 0.5)])
TRANSIT = profile([(0, 0.1), (1, 0.0), (5, 0.0), (6, 0.3), (8, 1.0), (9, 0.7), (12, 0.5),
                     (17, 0.9), (18, 1.0), (20, 0.5), (23, 0.2)])  # fmt: skip


def season(doy: np.ndarray) -> np.ndarray:
    """Tourist season: summer peak and Christmas markets."""
    return (
        1.0
        + 0.6 * np.exp(-(((doy - 200) / 35.0) ** 2))
        + 0.3 * np.exp(-(((doy - 355) / 10.0) ** 2))
    )


def _away(doy: np.ndarray, school: np.ndarray) -> np.ndarray:
    """Share of residents out of town: August exodus, school holidays."""
    return np.maximum(0.25 * np.exp(-(((doy - 218) / 14.0) ** 2)), np.where(school, 0.08, 0.0))


@dataclass
class Presence:
    """Residents and visitors present, (H, Z) floats."""

    residents: np.ndarray
    visitors: np.ndarray


def _destination_weights(
    off: np.ndarray, h: np.ndarray, types: np.ndarray, attract: np.ndarray
) -> np.ndarray:
    """(H, Z) share of the people on the move that each zone draws in each hour."""
    w = np.empty((len(h), len(types)))
    for t in ZONE_TYPES:
        m = types == t
        if m.any():
            prof = np.where(off, _DEST[t][1][h], _DEST[t][0][h])
            w[:, m] = prof[:, None] * attract[m][None, :]
    w /= w.sum(axis=1, keepdims=True)
    return w


def base_presence(
    cal: Calendar, *, zones: Zones, day_noise: np.ndarray, rng: np.random.Generator
) -> Presence:
    """People present per zone and hour, without events: residents at home, movers, visitors.

    ``day_noise[day_index, z]`` is a multiplicative noise per local day and zone (drawn once for
    the whole study, so chunking does not change it); ``rng`` draws the hour-level noise.
    """
    off = (cal.dow >= 5) | cal.holiday
    h = cal.local_hour
    home = np.where(off, _HOME_OFF[h], _HOME_WORK[h])  # (H,)
    away = _away(cal.doy, cal.school)
    pop = zones.population.astype(float)  # (Z,)
    in_town = pop[None, :] * (1 - away[:, None])
    at_home = in_town * home[:, None]
    movers = (in_town * (1 - home[:, None])).sum(axis=1) * 0.85  # the rest leave the area
    w = _destination_weights(off, h, zones.types, zones.attract)
    residents = at_home + movers[:, None] * w
    total = pop.sum()
    commuters = 0.3 * total * np.where(off, 0.1, 1.0) * _COMMUTE[h]
    tourists = 0.06 * total * season(cal.doy) * _TOURIST[h] * np.where(off, 1.4, 1.0)
    wv = _destination_weights(off, h, zones.types, zones.attract_vis)
    visitors = (commuters + tourists)[:, None] * wv
    noise = day_noise[np.clip(cal.day_index, 0, len(day_noise) - 1)] * rng.lognormal(
        0, 0.04, residents.shape
    )
    return Presence(residents * noise, visitors * noise)


@dataclass(frozen=True)
class ChunkPresence:
    """Presence of a chunk of hours as delivered, and the exposure of the incident model.

    Attributes
    ----------
    res_i, present
        (h, Z) integer residents and people present (present >= 1), as in the hourly files.
    p2, r2
        (slots, 2-hour zones) slot averages of present and residents, as in the 2-hour file.
    pairs, cnt
        Slot index of each hour, and hours per slot.
    exposure
        (h, Z) presence the incident model multiplies: ``present``, or the slot average in
        2-hour zones (as the cube applies it to both hours).
    extra_people
        Gatherers added in this chunk (None if the gathering is not in it).
    people
        (h, Z) true people present (floats); the delivered counts are these times ``proxy``.
    """

    res_i: np.ndarray
    present: np.ndarray
    p2: np.ndarray
    r2: np.ndarray
    pairs: np.ndarray
    cnt: np.ndarray
    exposure: np.ndarray
    extra_people: float | None
    people: np.ndarray


def chunk_presence(
    cal: Calendar,
    zones: Zones,
    *,
    day_noise: np.ndarray,
    ev_add: np.ndarray,
    gathering: tuple[np.ndarray, int],
    rng: np.random.Generator,
    proxy: np.ndarray | None = None,
) -> ChunkPresence:
    """Presence of the hours of ``cal``: base presence, event attendees (``ev_add``, 30 %
    residents, 70 % visitors) and the gathering (``gathering``: chunk hours and zone).

    ``proxy`` (h, Z), when given, multiplies the true residents and visitors into what the files
    deliver (the realism's measurement bias and noise)."""
    pres = base_presence(cal, zones=zones, day_noise=day_noise, rng=rng)
    res = pres.residents + 0.3 * ev_add
    vis = pres.visitors + 0.7 * ev_add
    gi, gz = gathering
    extra_people = None
    if len(gi):
        extra_people = float(round(max(1500.0, 4 * (res[gi, gz] + vis[gi, gz]).mean()), -2))
        vis[gi, gz] += extra_people
    people = res + vis
    if proxy is not None:
        res, vis = res * proxy, vis * proxy
    res_i = np.maximum(np.round(res), 0).astype(np.int64)
    vis_i = np.maximum(np.round(vis), 0).astype(np.int64)
    present = np.maximum(res_i + vis_i, 1)
    # 2-hour zones: average over the slot, applied to both hours
    twoh_z = np.flatnonzero(zones.is_2h)
    pairs = np.arange(len(cal.hours)) // 2
    n_s = pairs[-1] + 1
    cnt = np.bincount(pairs, minlength=n_s).astype(float)
    p2 = np.maximum(np.round(slot_mean(present[:, twoh_z], pairs=pairs, cnt=cnt)), 1).astype(
        np.int64
    )
    r2 = np.minimum(
        np.round(slot_mean(res_i[:, twoh_z], pairs=pairs, cnt=cnt)).astype(np.int64), p2
    )
    exposure = present.astype(float)
    exposure[:, twoh_z] = p2[pairs]
    return ChunkPresence(res_i, present, p2, r2, pairs, cnt, exposure, extra_people, people)


def slot_mean(x: np.ndarray, *, pairs: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Mean of hourly rows ``x`` over the 2-hour slots ``pairs`` (slot index of each hour)."""
    s = np.zeros((len(cnt), x.shape[1]))
    np.add.at(s, pairs, x)
    return s / cnt[:, None]


def hourly_rows(
    zones: Zones, cp: ChunkPresence, *, times: np.ndarray, missing: np.ndarray
) -> pd.DataFrame:
    """The hourly Flux Vision rows of a chunk (hourly zones; ``times[h]`` the local text of
    hour h; ``missing[h, z]`` True for the rows absent from the export)."""
    hourly_z = np.flatnonzero(~zones.is_2h)
    n_h = len(times)
    hh = np.repeat(np.arange(n_h), len(hourly_z))
    zh = np.tile(hourly_z, n_h)
    delivered = ~missing[hh, zh]
    hh, zh = hh[delivered], zh[delivered]
    return pd.DataFrame(
        {
            "id_zone": zones.ids[zh],
            "date_heure": times[hh],
            "duree_min": np.full(len(hh), 60, dtype=np.int64),
            "volume_present": cp.present[hh, zh],
            "residents": cp.res_i[hh, zh],
            "visiteurs": cp.present[hh, zh] - cp.res_i[hh, zh],
        }
    )


def slot_rows(zones: Zones, cp: ChunkPresence, *, times: np.ndarray) -> pd.DataFrame:
    """The 2-hour Flux Vision rows of a chunk (one row per slot and 2-hour zone)."""
    twoh_z = np.flatnonzero(zones.is_2h)
    n_s = len(cp.cnt)
    first_h = np.flatnonzero(np.diff(np.r_[-1, cp.pairs]) > 0)
    ss = np.repeat(np.arange(n_s), len(twoh_z))
    zs = np.tile(np.arange(len(twoh_z)), n_s)
    return pd.DataFrame(
        {
            "id_zone": zones.ids[twoh_z[zs]],
            "date_heure": times[first_h[ss]],
            "duree_min": (60 * cp.cnt[ss]).astype(np.int64),
            "volume_present": cp.p2[ss, zs],
            "residents": cp.r2[ss, zs],
            "visiteurs": cp.p2[ss, zs] - cp.r2[ss, zs],
        }
    )
