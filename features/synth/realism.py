"""Realism: an incident process the models do not assume (settings and their draws).

With :class:`Realism` on a :class:`~features.synth.scales.ScaleSpec`, the city departs from the
models' own assumptions in seven ways, each with its truth in ``truth.json`` ("realism"):

* **zone effects beyond presence**: a per-zone multiplier ``m_z``, log-normal with log-SD
  ``zone_log_sd`` (logs centred on 0 over the zones);
* **day-level shocks and over-dispersion**: a city-wide daily multiplier ``G_d`` ~ Gamma(shape
  ``day_shape``, mean 1) and a zone-day multiplier ``W_zd`` ~ Gamma(shape ``zone_day_shape``,
  mean 1) (a gamma-Poisson mixture: zone-day counts are negative binomial given the rest);
* **trend and annual seasonality**: ``exp(trend_per_year * years + season_amplitude *
  cos(2 pi (doy - season_peak_doy) / 365.25))``;
* **presence measured as a proxy**: the presence files deliver ``true * b_type * b_z *
  exp(e_zd + e_zh)`` (``proxy_bias`` per zone type, ``b_z`` log-normal with log-SD
  ``proxy_zone_sd``, normal noises of SD ``proxy_day_sd`` per zone-day and ``proxy_hour_sd`` per
  zone-hour), while the incidents follow the true presence;
* **recurring gatherings missing from the event file**: a ballpark in a residential zone with
  games on about ``games_per_week`` days a week in the ``season_months``, each raising the zone's
  mean presence of the day by a factor drawn in ``game_uplift`` (:mod:`features.synth.ballpark`);
  the games are not written to ``evenements.csv``;
* **crowds that do not raise incidents in proportion**: where a crowd ``A`` joins the ``P0``
  people otherwise present, the incident exposure is ``P0 * ((P0 + A) / P0) ** e`` with ``e`` the
  zone's crowd elasticity (``crowd_elasticity`` per zone type, ``ballpark_elasticity`` at the
  ballpark; 1 elsewhere); the planted ``event_k`` effect is not applied where ``e < 1`` (the
  crowd's whole effect there is its elasticity);
* **sparse categories at real-data rates**: :data:`SPARSE_CATEGORIES` (about 0.1 to 1 per zone
  and day) join the incident categories.

References
----------
Cameron, A. C., & Trivedi, P. K. (2013). *Regression Analysis of Count Data*, 2nd ed., ch. 4
(the gamma-Poisson mixture and its over-dispersion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: sparse categories (realism only): base rate per person-hour at the reference levels, hour-of-day
#: profile (hod[12] == 1), services, the rain effect group they join.
SPARSE_CATEGORIES: dict[str, dict[str, Any]] = {
    "vol_transports": {
        "base_rate": 4.0e-6,
        "hod": [0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.4, 1.8, 1.2, 0.9, 0.9,
                1.0, 1.0, 1.0, 1.1, 1.4, 1.8, 1.9, 1.4, 1.0, 0.8, 0.6, 0.4],
        "services": {"police": 1.0},
        "rain": "rain_street",
    },
    "stupefiants": {
        "base_rate": 1.5e-6,
        "hod": [1.8, 1.6, 1.2, 0.8, 0.4, 0.2, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9,
                1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.3, 2.2, 2.0],
        "services": {"police": 1.0},
        "rain": "rain_street",
    },
}  # fmt: skip

#: presence proxy bias per zone type (delivered / true, before the per-zone bias)
PROXY_BIAS = {"centre": 1.15, "business": 1.25, "residential": 0.85, "nightlife": 1.10,
              "park": 0.70, "stadium": 1.0, "venue": 1.0}  # fmt: skip


@dataclass(frozen=True)
class Realism:
    """Settings of the realistic incident process (see the module docstring for each term).

    The defaults are the realistic city of ``city`` and ``metropolis``; every one is written to
    ``truth.json`` ("realism" -> "settings").
    """

    zone_log_sd: float = 0.4
    day_shape: float = 25.0  # city-wide daily gamma: CV 0.2
    zone_day_shape: float = 4.0  # zone-day gamma: CV 0.5
    trend_per_year: float = 0.08  # log change per year (+8.3 %/year)
    season_amplitude: float = 0.15
    season_peak_doy: int = 196  # mid July
    proxy_bias: dict[str, float] = field(default_factory=lambda: dict(PROXY_BIAS))
    proxy_zone_sd: float = 0.10
    proxy_day_sd: float = 0.08
    proxy_hour_sd: float = 0.05
    games_per_week: float = 2.0
    season_months: tuple[int, ...] = (4, 5, 6, 7, 8, 9, 10)
    game_uplift: tuple[float, float] = (1.3, 1.5)
    ballpark_elasticity: float = 0.3
    crowd_elasticity: dict[str, float] = field(default_factory=lambda: {"stadium": 0.3})
    sparse: bool = True

    def settings(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class RealismDraws:
    """The realism's random multipliers (all mean-one or centred as documented).

    Attributes
    ----------
    zone_mult
        (Z,) zone multipliers ``m_z``.
    city_day, zone_day
        (D,) ``G_d`` and (D, Z) ``W_zd``.
    trend_season
        (D,) trend times seasonality of each local day.
    proxy_zone, proxy_day
        (Z,) delivered / true bias of each zone (type x zone) and (D, Z) its day-level noise.
    elasticity
        (Z,) crowd elasticity of each zone.
    """

    zone_mult: np.ndarray
    city_day: np.ndarray
    zone_day: np.ndarray
    trend_season: np.ndarray
    proxy_zone: np.ndarray
    proxy_day: np.ndarray
    elasticity: np.ndarray

    def day_factor(self, day_index: np.ndarray) -> np.ndarray:
        """(h, Z) incident multiplier of the days (city shock, zone-day shock, trend, season)."""
        d = np.clip(day_index, 0, len(self.city_day) - 1)
        return (self.city_day[d] * self.trend_season[d])[:, None] * self.zone_day[d]


def trend_season(r: Realism, *, day_index: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Trend times annual seasonality of local days counted from the start (``doy`` their day
    of the year)."""
    years = day_index / 365.25
    phase = 2 * np.pi * (doy - r.season_peak_doy) / 365.25
    return np.exp(r.trend_per_year * years + r.season_amplitude * np.cos(phase))


def draw_realism(
    r: Realism,
    *,
    rng: np.random.Generator,
    types: np.ndarray,
    day_doy: np.ndarray,
    ballpark: int | None,
) -> RealismDraws:
    """The realism's multipliers for zones of ``types`` over the days of ``day_doy`` (drawn from
    ``rng`` in a fixed order: zones, city days, zone-days, proxy zones, proxy days)."""
    Z, D = len(types), len(day_doy)
    logm = rng.normal(0.0, r.zone_log_sd, Z)
    zone_mult = np.exp(logm - logm.mean())
    city_day = rng.gamma(r.day_shape, 1.0 / r.day_shape, D)
    zone_day = rng.gamma(r.zone_day_shape, 1.0 / r.zone_day_shape, (D, Z))
    bias_type = np.array([r.proxy_bias.get(str(t), 1.0) for t in types])
    proxy_zone = bias_type * np.exp(rng.normal(0.0, r.proxy_zone_sd, Z))
    proxy_day = np.exp(rng.normal(0.0, r.proxy_day_sd, (D, Z)))
    elasticity = np.array([r.crowd_elasticity.get(str(t), 1.0) for t in types])
    if ballpark is not None:
        elasticity[ballpark] = r.ballpark_elasticity
    ts = trend_season(r, day_index=np.arange(D), doy=day_doy)
    return RealismDraws(zone_mult, city_day, zone_day, ts, proxy_zone, proxy_day, elasticity)


def proxy_factor(
    draws: RealismDraws, *, day_index: np.ndarray, sd_hour: float, rng: np.random.Generator
) -> np.ndarray:
    """(h, Z) delivered / true presence of the hours (``rng`` draws the hour-level noise)."""
    d = np.clip(day_index, 0, len(draws.proxy_day) - 1)
    hour = np.exp(rng.normal(0.0, sd_hour, (len(day_index), len(draws.proxy_zone))))
    return draws.proxy_zone[None, :] * draws.proxy_day[d] * hour


def crowd_exposure(people: np.ndarray, crowd: np.ndarray, elasticity: np.ndarray) -> np.ndarray:
    """Incident exposure ``P0 * ((P0 + A) / P0) ** e`` of ``people = P0 + A`` (``crowd`` = A)."""
    p0 = np.maximum(people - crowd, 1.0)
    ratio = np.maximum(people, 1.0) / p0
    return p0 * ratio ** elasticity[None, :]
