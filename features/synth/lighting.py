"""Street lighting: lamps grouped in cabinets, their faults, and the lamps out each hour."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.synth.scales import TIMEZONE, ScaleSpec, rng_stream
from features.synth.timeline import iso_offset
from features.synth.zones import Zones, points_in_zones

_MIN_NS = 60_000_000_000  # nanoseconds in a minute


@dataclass
class Lighting:
    """Lamps, faults and lamps per zone."""

    lamps: pd.DataFrame  # lamp_id, zone, lat, lon, wattage, cabinet
    faults: pd.DataFrame  # fault_id, lamp, reported (UTC ns, whole minutes), repaired (or NaT)
    per_zone: np.ndarray  # lamps per zone


#: a planted outage: (zone, reported, repaired, share of the zone's lamps)
Outage = tuple[int, pd.Timestamp, pd.Timestamp, float]


def make_lighting(
    zones: Zones,
    *,
    spec: ScaleSpec,
    start: pd.Timestamp,
    end: pd.Timestamp,
    seed: int,
    planted: list[Outage],
) -> Lighting:
    """Lamps grouped in cabinets; single-lamp faults, cabinet faults and sector outages.

    Faults are Poisson processes (single lamp: 1 per 500 lamp-days, repair log-normal with median
    4 days; cabinet: 1 per 150 cabinet-days, median 1.5 days; sector outage hitting 40-90 % of a
    zone's lamps: 1 per 250 zone-days, median 1 day). ``planted`` adds the signal outages
    (zone, reported, repaired, share). A lamp's later fault that overlaps an earlier open one is
    dropped (the lamp is already reported out), so a lamp is never counted out twice.
    Random stream 3.
    """
    rng = rng_stream(seed, 3)
    lamps, n_l = _make_lamps(zones, spec, rng)
    t_lo = (start - pd.Timedelta(days=30)).value // _MIN_NS  # minutes
    t_hi = end.value // _MIN_NS
    span = t_hi - t_lo
    parts = [
        _lamp_faults(len(lamps), t_lo, span, rng),
        _cabinet_faults(lamps["cabinet"].to_numpy(), t_lo, span, rng),
        *_sector_faults(n_l, t_lo, span, planted, rng),
    ]
    f = pd.DataFrame(
        {
            "lamp": np.concatenate([p[0] for p in parts]).astype(np.int64),
            "rep": np.concatenate([p[1] for p in parts]).astype(np.int64),
            "fix": np.concatenate([p[2] for p in parts]).astype(np.int64),
        }
    )
    return Lighting(lamps=lamps, faults=_fault_table(f, t_lo, t_hi), per_zone=n_l)


def _make_lamps(
    zones: Zones, spec: ScaleSpec, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Lamps (about ``spec.lamps_per_zone`` per zone, at least 20) and lamps per zone."""
    Z = len(zones.ids)
    n_l = rng.poisson(spec.lamps_per_zone, Z).clip(20)
    zone_of = np.repeat(np.arange(Z), n_l)
    lon, lat = points_in_zones(zone_of, quads=zones.quads, rng=rng)
    # cabinets: lamps of a zone ordered west->east, cut into groups of ~15
    order = np.lexsort((lon, zone_of))
    zone_of, lon, lat = zone_of[order], lon[order], lat[order]
    rank = np.concatenate([np.arange(n) for n in n_l])
    cabinet = zone_of * 1000 + rank // 15
    lamps = pd.DataFrame(
        {
            "lamp_id": [f"LP{i + 1:06d}" for i in range(len(zone_of))],
            "zone": zone_of,
            "lat": np.round(lat, 6),
            "lon": np.round(lon, 6),
            "wattage": rng.choice(
                [35, 50, 70, 100, 150], len(zone_of), p=[0.2, 0.3, 0.25, 0.15, 0.1]
            ),
            "cabinet": cabinet,
        }
    )
    return lamps, n_l


_Faults = tuple[np.ndarray, np.ndarray, np.ndarray]  # lamp, reported, repaired (minutes)


def _lamp_faults(n_lamps: int, t_lo: int, span: int, rng: np.random.Generator) -> _Faults:
    """Single-lamp faults: 1 per 500 lamp-days, repair median 4 days."""
    k = rng.poisson(span / 1440 / 500, n_lamps)
    lamp_idx = np.repeat(np.arange(n_lamps), k)
    rep = t_lo + rng.integers(0, span, len(lamp_idx))
    fix = rep + np.round(rng.lognormal(np.log(4 * 1440), 0.8, len(lamp_idx))).astype(np.int64)
    return lamp_idx, rep, fix


def _cabinet_faults(cabinet: np.ndarray, t_lo: int, span: int, rng: np.random.Generator) -> _Faults:
    """Cabinet faults (every lamp of the cabinet): 1 per 150 cabinet-days, median 1.5 days."""
    n_lamps = len(cabinet)
    cabs, cab_start = np.unique(cabinet, return_index=True)
    cab_count = np.diff(np.append(cab_start, n_lamps))
    k = rng.poisson(span / 1440 / 150, len(cabs))
    ci = np.repeat(np.arange(len(cabs)), k)
    rep_c = t_lo + rng.integers(0, span, len(ci))
    fix_c = rep_c + np.round(rng.lognormal(np.log(1.5 * 1440), 0.7, len(ci))).astype(np.int64)
    cnt = cab_count[ci]
    lamp = (
        np.repeat(cab_start[ci], cnt) + np.concatenate([np.arange(c) for c in cnt])
        if len(ci)
        else np.zeros(0, int)
    )
    return lamp, np.repeat(rep_c, cnt), np.repeat(fix_c, cnt)


def _sector_faults(
    n_l: np.ndarray, t_lo: int, span: int, planted: list[Outage], rng: np.random.Generator
) -> list[_Faults]:
    """Sector outages (40-90 % of a zone's lamps, 1 per 250 zone-days, median 1 day), then the
    planted outages."""
    Z = len(n_l)
    zone_first = np.concatenate([[0], np.cumsum(n_l)[:-1]])
    k = rng.poisson(span / 1440 / 250, Z)
    sectors = [(z, t_lo + int(rng.integers(0, span)), None, float(rng.uniform(0.4, 0.9)))
               for z in range(Z) for _ in range(k[z])]  # fmt: skip
    for z, rs, rp, share in planted:
        sectors.append((z, rs.value // _MIN_NS, rp.value // _MIN_NS, share))
    out = []
    for z, rs, rp, share in sectors:
        m = int(round(share * n_l[z]))
        first = int(rng.integers(0, n_l[z] - m + 1))
        fix = rp if rp is not None else rs + int(round(rng.lognormal(np.log(1440), 0.6)))
        out.append(
            (
                zone_first[z] + first + np.arange(m),
                np.full(m, rs, dtype=np.int64),
                np.full(m, fix, dtype=np.int64),
            )
        )
    return out


def _fault_table(f: pd.DataFrame, t_lo: int, t_hi: int) -> pd.DataFrame:
    """Faults of a lamp already out dropped, those outside the study dropped, numbered by time."""
    # planted outages first among equal report times so they are kept
    f = f.sort_values(["lamp", "rep"], kind="stable").reset_index(drop=True)
    prev_fix = f.groupby("lamp")["fix"].cummax().groupby(f["lamp"]).shift(1)
    keep = prev_fix.isna() | (f["rep"] >= prev_fix)
    f = f[keep.to_numpy()]
    f = f[f["rep"] < t_hi]  # nothing reported after the end
    f = f[f["fix"] > t_lo + 30 * 1440]  # faults repaired before the start are history
    f = f.sort_values(["rep", "lamp"], kind="stable").reset_index(drop=True)
    reported = pd.to_datetime(f["rep"].to_numpy() * _MIN_NS, utc=True)
    fixed = f["fix"].to_numpy()
    repaired = pd.to_datetime(np.where(fixed < t_hi, fixed, 0) * _MIN_NS, utc=True)
    repaired = repaired.where(fixed < t_hi)
    return pd.DataFrame(
        {
            "fault_id": [f"PAN{i + 1:07d}" for i in range(len(f))],
            "lamp": f["lamp"].to_numpy(),
            "reported": reported,
            "repaired": repaired,
            "rep_ns": f["rep"].to_numpy() * _MIN_NS,
            "fix_ns": np.where(fixed < t_hi, fixed * _MIN_NS, np.iinfo(np.int64).max),
        }
    )


def lamps_out_matrix(light: Lighting, *, hours: pd.DatetimeIndex, Z: int) -> np.ndarray:
    """lamps_out[t, z]: lamps with a fault open at the slot midpoint (reported <= mid < repaired)."""
    mids = (hours + pd.Timedelta(minutes=30)).as_unit("ns").asi8
    f = light.faults
    zone = light.lamps["zone"].to_numpy()[f["lamp"].to_numpy()]
    i0 = np.searchsorted(mids, f["rep_ns"].to_numpy(), side="left")
    i1 = np.searchsorted(mids, f["fix_ns"].to_numpy(), side="left")
    diff = np.zeros((len(hours) + 1, Z), dtype=np.int32)
    np.add.at(diff, (i0, zone), 1)
    np.add.at(diff, (i1, zone), -1)
    return np.cumsum(diff[:-1], axis=0)


def write_lighting(light: Lighting, folder: Path) -> None:
    """``lampadaires.csv`` (lat/lon) and ``pannes.csv`` (ISO local times with their offset;
    empty repair = still out) into ``folder``."""
    folder.mkdir(exist_ok=True)
    lamps = light.lamps
    pd.DataFrame(
        {
            "id_lampadaire": lamps["lamp_id"],
            "lat": lamps["lat"],
            "lon": lamps["lon"],
            "puissance_w": lamps["wattage"],
            "armoire": [f"ARM{c:07d}" for c in lamps["cabinet"]],
        }
    ).to_csv(folder / "lampadaires.csv", index=False, lineterminator="\n")
    fl = light.faults
    rep_local = fl["reported"].dt.tz_convert(TIMEZONE)
    fix_local = fl["repaired"].dt.tz_convert(TIMEZONE)
    pd.DataFrame(
        {
            "id_panne": fl["fault_id"],
            "id_lampadaire": lamps["lamp_id"].to_numpy()[fl["lamp"].to_numpy()],
            "date_signalement": iso_offset(rep_local),
            "date_reparation": iso_offset(fix_local),
        }
    ).to_csv(folder / "pannes.csv", index=False, lineterminator="\n")
