"""Sums taken during the simulation for the planted truth: expected-weighted multipliers.

An incidence-rate ratio fitted on data estimates, for a multiplier ``m`` that varies over the
rows it acts on, its expected-weighted mean ``sum(mu) / sum(mu / m)`` (``mu`` the expected
incidents with the multiplier): the ratio of the incidents expected with the effect to those
expected without it. :class:`Tally` accumulates these sums chunk by chunk for the planted effects,
the planted outage and the crowds at inelastic venues, and the day sums of presence at the
ballpark (the realised uplift of its games).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.synth.scales import FEATURES, TIMEZONE


@dataclass
class Tally:
    """Running sums over the chunks (see the module docstring).

    Attributes
    ----------
    effects
        The planted effects (as :class:`~features.synth.incidents.RateModel` holds them).
    names
        The incident categories, in the columns' order.
    eff
        (E, 4) per effect: rows with the feature non-zero, ``sum(mu)``, ``sum(mu / m)``,
        ``sum(mu / m * x)``.
    outage
        ``[dark: sum(mu), sum(mu / m), all hours: sum(mu), sum(mu / m)]`` of the planted outage's
        zone over its window, ``m`` the ``dark_lamps_out`` multiplier.
    crowd
        Zone -> ``[hours, sum(mu), sum(mu * P0 / E), sum(mu * P / E), sum(A), sum(P0)]`` over the
        hours with a crowd ``A``, ``P = P0 + A`` the people present, ``E`` the incident exposure.
    days
        (D, 3) at the ballpark: day sums of people, of people without the games, of delivered
        presence; with ``day_hours`` (D,).
    event_rows
        Per chunk, the zone-hours with events in the event file: ``(k, mu, mu0)``, the
        attendees / 1 000, the expected incidents, and those expected without the event (the
        people present without its crowd, no ``event_k`` term, transit entries without the
        crowd's): what :meth:`event_estimand` reads.
    """

    effects: list[dict[str, Any]]
    names: tuple[str, ...]
    n_days: int
    eff: np.ndarray = field(init=False)
    outage: np.ndarray = field(default_factory=lambda: np.zeros(4))
    crowd: dict[int, np.ndarray] = field(default_factory=dict)
    days: np.ndarray = field(init=False)
    day_hours: np.ndarray = field(init=False)
    event_rows: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.eff = np.zeros((len(self.effects), 4))
        self.days = np.zeros((self.n_days, 3))
        self.day_hours = np.zeros(self.n_days)

    def add_effects(self, x: np.ndarray, mu: np.ndarray) -> None:
        """Add a chunk: ``x`` (h, Z, F) the features as the means used them, ``mu`` (h, Z, C)."""
        cat_idx = {c: i for i, c in enumerate(self.names)}
        for k, eff in enumerate(self.effects):
            xf = x[..., FEATURES.index(eff["feature"])]
            nz = xf != 0
            if not nz.any():
                continue
            s = mu[..., [cat_idx[c] for c in eff["categories"]]].sum(axis=-1)[nz]
            base = s / np.exp(np.log(eff["irr"]) * xf[nz])
            self.eff[k] += (nz.sum(), s.sum(), base.sum(), (base * xf[nz]).sum())

    def add_outage(
        self, *, zone: int, inside: np.ndarray, dark: np.ndarray, x: np.ndarray, mu: np.ndarray
    ) -> None:
        """Add the outage zone's hours ``inside`` its window (``dark`` (h,), ``x`` the features)."""
        if not inside.any():
            return
        k = next(i for i, e in enumerate(self.effects) if e["feature"] == "dark_lamps_out")
        eff = self.effects[k]
        ci = [self.names.index(c) for c in eff["categories"]]
        s = mu[inside, zone][:, ci].sum(axis=1)
        base = s / np.exp(np.log(eff["irr"]) * x[inside, zone, FEATURES.index("dark_lamps_out")])
        d = dark[inside]
        self.outage += (s[d].sum(), base[d].sum(), s.sum(), base.sum())

    def add_crowd(
        self,
        zones: list[int],
        *,
        mu: np.ndarray,
        people: np.ndarray,
        crowd: np.ndarray,
        exposure: np.ndarray,
    ) -> None:
        """Add the hours with a crowd at each of ``zones`` (all (h, Z) but ``mu`` (h, Z, C))."""
        for z in zones:
            hrs = crowd[:, z] > 0
            if not hrs.any():
                continue
            s = mu[hrs, z].sum(axis=1)
            p, a, e = people[hrs, z], crowd[hrs, z], exposure[hrs, z]
            p0 = np.maximum(p - a, 1.0)
            row = (hrs.sum(), s.sum(), (s * p0 / e).sum(), (s * p / e).sum(), a.sum(), p0.sum())
            self.crowd[z] = self.crowd.get(z, np.zeros(6)) + row

    def add_days(
        self, zone: int, *, day_index: np.ndarray, people: np.ndarray, crowd: np.ndarray,
        delivered: np.ndarray,
    ) -> None:  # fmt: skip
        """Add the ballpark's hours to its day sums (``delivered`` the presence the files give)."""
        d = np.clip(day_index, 0, self.n_days - 1)
        np.add.at(self.day_hours, d, 1)
        cols = np.stack([people[:, zone], people[:, zone] - crowd[:, zone], delivered[:, zone]], 1)
        np.add.at(self.days, d, cols)

    def add_events(self, k: np.ndarray, *, mu: np.ndarray, mu0: np.ndarray) -> None:
        """Add the zone-hours with an event (``k`` (h, Z) attendees / 1 000; ``mu``, ``mu0``
        (h, Z) expected incidents with and without the event)."""
        on = k > 0
        if on.any():
            self.event_rows.append(np.stack([k[on], mu[on], mu0[on]]))

    def event_estimand(self) -> dict[str, Any] | None:
        """The event IRR per 1 000 attendees that a log-linear rate model fitted against the
        slots without the event estimates: the pseudo-true value (White 1982) ``b`` solving
        ``sum k (mu - mu0 exp(b k)) = 0`` over the event zone-hours (the Poisson score of
        ``event_k`` with the other terms at their truth). It holds the whole event: its crowd,
        as the crowd raises incidents (in proportion, or with the zone's crowd elasticity), the
        transit entries it brings, and the planted ``event_k``."""
        if not self.event_rows:
            return None
        k, mu, mu0 = np.concatenate(self.event_rows, axis=1)
        lo, hi = -5.0, 5.0
        for _ in range(100):  # bisection: the score decreases in b
            b = (lo + hi) / 2
            lo, hi = (b, hi) if float((k * (mu - mu0 * np.exp(b * k))).sum()) > 0 else (lo, b)
        return {
            "irr": float(np.exp((lo + hi) / 2)),
            "rows": int(len(k)),
            "mean_feature": float(k.mean()),
            "incidents_ratio": float(mu.sum() / mu0.sum()),
            "definition": "IRR per 1 000 attendees of the whole event (crowd, its transit "
            "entries and event_k) against the same zone-hours without it: the pseudo-true "
            "log-linear coefficient, sum k (mu - mu0 exp(b k)) = 0 over the event zone-hours",
        }

    def effects_truth(self) -> list[dict[str, Any]]:
        """The planted effects with their expected-weighted multiplier over the rows they act on."""
        out = []
        for eff, (rows, num, den, xw) in zip(self.effects, self.eff, strict=True):
            ew = {"rows": int(rows), "mean_feature": float(xw / den) if den else None,
                  "multiplier": float(num / den) if den else None}  # fmt: skip
            extra = {}
            if eff["feature"] == "event_k":
                extra["whole_event"] = self.event_estimand()
            out.append(dict(eff, expected_weighted=ew, **extra))
        return out

    def outage_truth(self) -> dict[str, Any]:
        """The planted outage zone's ``dark_lamps_out`` multiplier, expected-weighted."""
        n_d, d_d, n_a, d_a = self.outage
        return {
            "dark_lamps_out_multiplier_dark_hours": float(n_d / d_d) if d_d else None,
            "dark_lamps_out_multiplier_all_hours": float(n_a / d_a) if d_a else None,
            "note": "expected-weighted mean over the zone's hours from report to repair",
        }

    def crowd_truth(self, ids: np.ndarray, elasticity: np.ndarray) -> list[dict[str, Any]]:
        """Per inelastic crowd zone: its elasticity and the crowd's expected-weighted IRRs."""
        out = []
        for z, (hours, num, den0, denp, a, p0) in sorted(self.crowd.items()):
            out.append({
                "zone_id": str(ids[z]), "elasticity": float(elasticity[z]),
                "crowd_hours": int(hours), "mean_crowd_ratio": float((a + p0) / p0),
                "irr_vs_no_crowd": float(num / den0),
                "irr_vs_proportional": float(num / denp),
                "note": "irr_vs_proportional is what presence as an offset reads as the crowd's "
                        "own effect (< 1 when the elasticity is < 1)",
            })  # fmt: skip
        return out

    def game_days(self, games: list[Any], uplifts: list[float], day_of: pd.Series) -> list[dict]:
        """Each withheld game with its planted and realised uplift of the day's mean presence."""
        out = []
        for g, u in zip(games, uplifts, strict=True):
            d = int(day_of[g.event_id])
            with_, without, delivered = self.days[d]
            out.append({
                "game_id": g.event_id, "local_date": str(g.start.tz_convert(TIMEZONE).date()),
                "start": g.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": g.end.strftime("%Y-%m-%dT%H:%M:%SZ"), "attendance": g.actual,
                "uplift_planted": round(u, 4), "uplift_true": float(with_ / without),
                "delivered_day_mean": float(delivered / self.day_hours[d]),
            })  # fmt: skip
        return out
