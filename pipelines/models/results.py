"""Typed results of ``vigie fit``: the backtest evaluation and the effects.

:class:`BacktestEvaluation` is ``store/models/evaluation.json`` and :class:`Effects` is
``store/models/effects.json``. ``to_json()`` gives the file's content exactly as it is written
(NaN and infinities as null), ``from_json()`` reads it back, ``summary()`` prints a few lines.
Keys a file leaves out (e.g. ``origins`` when no origin ran) are ``None`` attributes here and
are left out again by ``to_json()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from features.jsonio import json_safe


# --------------------------------------------------------------------------------------------
# the backtest evaluation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelScore:
    """Metrics of one model over every origin of the backtest.

    Attributes
    ----------
    n
        Zone-slots scored.
    poisson_deviance, mae
        Mean unit Poisson deviance and mean absolute error per zone-slot.
    coverage80, coverage95
        Share of zone-slots inside the 80 % and 95 % predictive intervals.
    hit_rate, pai
        Flag level (``"5%"``) -> share of incidents captured when that share of area x time
        is flagged, and the predictive accuracy index (hit rate / area share).
    pit_coverage80, pit_coverage95
        Expected coverage of the randomised central 80 % and 95 % predictive intervals (the
        randomised PIT of Czado, Gneiting & Held 2009): the calibration of a count forecast,
        which the discrete intervals above overstate when counts are small.
    expected_deviance
        Mean deviance the forecast would score if its predictive distribution were the truth
        (the noise floor no forecast of these counts gets far below).
    """

    n: int
    poisson_deviance: float | None
    mae: float | None
    coverage80: float | None
    coverage95: float | None
    hit_rate: Mapping[str, float | None] = field(default_factory=dict)
    pai: Mapping[str, float | None] = field(default_factory=dict)
    pit_coverage80: float | None = None
    pit_coverage95: float | None = None
    expected_deviance: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The model's entry of ``evaluation.json``."""
        return {
            "n": self.n,
            "poisson_deviance": self.poisson_deviance,
            "mae": self.mae,
            "coverage80": self.coverage80,
            "coverage95": self.coverage95,
            "hit_rate": dict(self.hit_rate),
            "pai": dict(self.pai),
            "pit_coverage80": self.pit_coverage80,
            "pit_coverage95": self.pit_coverage95,
            "expected_deviance": self.expected_deviance,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelScore:
        """Read an entry of ``evaluation.json``'s ``models``."""
        return cls(
            n=int(d.get("n") or 0),
            poisson_deviance=d.get("poisson_deviance"),
            mae=d.get("mae"),
            coverage80=d.get("coverage80"),
            coverage95=d.get("coverage95"),
            hit_rate=dict(d.get("hit_rate") or {}),
            pai=dict(d.get("pai") or {}),
            pit_coverage80=d.get("pit_coverage80"),
            pit_coverage95=d.get("pit_coverage95"),
            expected_deviance=d.get("expected_deviance"),
        )


@dataclass(frozen=True)
class OriginScore:
    """Metrics of one model at one weekly origin (``pai``: flag level -> PAI, 5 % only)."""

    origin: str
    model: str
    poisson_deviance: float | None
    mae: float | None
    pai: Mapping[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry of ``evaluation.json``'s ``by_origin`` (PAI as ``pai_5%``)."""
        out: dict[str, Any] = {
            "origin": self.origin,
            "model": self.model,
            "poisson_deviance": self.poisson_deviance,
            "mae": self.mae,
        }
        out.update({f"pai_{lv}": v for lv, v in self.pai.items()})
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OriginScore:
        """Read an entry of ``by_origin``."""
        pai = {k[len("pai_") :]: v for k, v in d.items() if k.startswith("pai_")}
        return cls(
            origin=str(d["origin"]),
            model=str(d["model"]),
            poisson_deviance=d.get("poisson_deviance"),
            mae=d.get("mae"),
            pai=pai,
        )


_EVAL_META = (
    "group",
    "grain",
    "weeks",
    "covariates",
    "flag_levels",
    "deviance",
    "intervals",
    "notes",
    "skill_vs_seasonal_naive_4w",
    "absent",
    "versus_baselines",
    "downstream",
    "downstream_why",
    "area",
)


@dataclass(frozen=True)
class BacktestEvaluation:
    """The rolling-origin backtest's evaluation (``store/models/evaluation.json``).

    Attributes
    ----------
    models
        Model name -> :class:`ModelScore` (in the order the models ran).
    by_origin
        One :class:`OriginScore` per model and origin (None: not computed).
    n_rows, n_incidents
        Zone-slots every model forecast, and the incidents in them.
    origins
        Weekly origins (UTC timestamps as text).
    group, grain, weeks, covariates
        Incident group backtested (``all``), grain, origins that ran, covariate mode.
    flag_levels, deviance, intervals
        Labels of the flag levels, and what the deviance and intervals are.
    notes
        Why fewer origins ran, what was left out.
    skill_vs_seasonal_naive_4w
        Model -> 1 - deviance / deviance of the 4-week seasonal naive.
    absent
        Model -> why it is not scored (it could not forecast every origin).
    versus_baselines
        Fitted model -> ``deviance_ratio`` (to the better of ``seasonal_naive_8w`` and
        ``recent_rate_8w``), ``pai5_ratio`` (to ``recent_hotspot``) and ``beats`` (baseline ->
        whether its deviance is lower); see :mod:`pipelines.models.selection`.
    downstream, downstream_why
        The model the Predictor uses by default (best deviance of the fitted models), and why.
    area
        How PAI weighs zones (``true areas (km2, EPSG:6933)`` or ``equal areas``).
    """

    models: Mapping[str, ModelScore] = field(default_factory=dict)
    by_origin: tuple[OriginScore, ...] | None = None
    n_rows: int = 0
    n_incidents: int | None = None
    origins: tuple[str, ...] | None = None
    group: str | None = None
    grain: str | None = None
    weeks: int | None = None
    covariates: str | None = None
    flag_levels: tuple[str, ...] | None = None
    deviance: str | None = None
    intervals: str | None = None
    notes: tuple[str, ...] | None = None
    skill_vs_seasonal_naive_4w: Mapping[str, float | None] | None = None
    absent: Mapping[str, str] | None = None
    versus_baselines: Mapping[str, Any] | None = None
    downstream: str | None = None
    downstream_why: str | None = None
    area: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The content of ``evaluation.json`` (keys that are None are left out)."""
        out: dict[str, Any] = {"models": {m: s.to_json() for m, s in self.models.items()}}
        if self.by_origin is not None:
            out["by_origin"] = [o.to_json() for o in self.by_origin]
        out["n_rows"] = self.n_rows
        if self.n_incidents is not None:
            out["n_incidents"] = self.n_incidents
        if self.origins is not None:
            out["origins"] = list(self.origins)
        for key in _EVAL_META:
            v = getattr(self, key)
            if v is not None:
                out[key] = dict(v) if isinstance(v, Mapping) else (
                    list(v) if isinstance(v, tuple) else v
                )  # fmt: skip
        return json_safe(out)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> BacktestEvaluation | None:
        """Read ``evaluation.json`` (None stays None: the backtest has not run)."""
        if d is None:
            return None
        bo = d.get("by_origin")
        meta: dict[str, Any] = {k: d.get(k) for k in _EVAL_META}
        for k in ("flag_levels", "notes"):
            meta[k] = None if meta[k] is None else tuple(meta[k])
        return cls(
            models={m: ModelScore.from_json(s) for m, s in (d.get("models") or {}).items()},
            by_origin=None if bo is None else tuple(OriginScore.from_json(o) for o in bo),
            n_rows=int(d.get("n_rows") or 0),
            n_incidents=d.get("n_incidents"),
            origins=None if d.get("origins") is None else tuple(d["origins"]),
            **meta,
        )

    @property
    def n_origins(self) -> int:
        """Weekly origins scored."""
        return len(self.origins or ())

    def summary(self) -> str:
        """A few lines: origins, then deviance, MAE, PAI at 5 % and coverage per model."""
        lines = [f"backtest: {self.n_origins} origin(s), {self.n_rows:,} zone-slots per model"]
        if self.models:
            lines.append(
                "  model                deviance  MAE     PAI@5%  cov80  cov95  pit80  pit95"
            )
        for name, m in self.models.items():
            lines.append(
                f"  {name:<20} {_fmt(m.poisson_deviance, '.4f')}  {_fmt(m.mae, '.4f')}  "
                f"{_fmt(m.pai.get('5%'), '.2f')}  {_fmt(m.coverage80, '.3f')}  "
                f"{_fmt(m.coverage95, '.3f')}  {_fmt(m.pit_coverage80, '.3f')}  "
                f"{_fmt(m.pit_coverage95, '.3f')}"
            )
        lines += [f"  absent {a}: {why}" for a, why in (self.absent or {}).items()]
        for fm, v in (self.versus_baselines or {}).items():
            lines.append(
                f"  {fm}: deviance {_fmt(v.get('deviance_ratio'), '.3f')}x the better of "
                f"seasonal-naive 8w and recent-rate 8w; PAI@5% {_fmt(v.get('pai5_ratio'), '.2f')}x "
                f"the recent-hotspot map's; beats {', '.join(k for k, b in v.get('beats', {}).items() if b) or 'no baseline'}"
            )
        if self.downstream:
            lines.append(f"  downstream forecast: {self.downstream} ({self.downstream_why})")
        lines += [f"  note: {n}" for n in self.notes or ()]
        return "\n".join(lines)


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None or x != x else format(x, spec)


# --------------------------------------------------------------------------------------------
# effects
# --------------------------------------------------------------------------------------------
#: descriptive fields of an effect, in the order effects.json lists them
_DESCRIPTORS = ("group", "feature", "family", "category", "role", "light", "comparison")
_STATS = ("estimate", "ci_low", "ci_high", "p_value", "n")
_COMMON = frozenset({"name", "kind", "estimable", "why", "incidents", "unit"}).union(
    _DESCRIPTORS, _STATS
)

FEATURE_WORDS = {
    "dark": "Night (vs day)",
    "dark_lamps_out": "Lamps out at night (per 10 % of lamps)",
    "event_k": "Event attendees (per 1 000, beyond their presence)",
    "rain": "Rain (>= 1 mm)",
    "transit_k": "Transit entries (per 1 000)",
    "holiday": "Public holiday",
    "school_holiday": "School holiday",
}
_ROLE_WORDS = {"zone": "zone", "ring": "neighbouring zones", "venue": "venue"}
_LIGHT_WORDS = {"night": "at night", "day": "in daylight", "all": "day and night"}
_COMPARISON_WORDS = {"start": "episode start", "repair": "repair"}


@dataclass(frozen=True)
class Effect:
    """One effect of ``effects.json`` (see :mod:`pipelines.models.effects` for the kinds).

    Attributes
    ----------
    name, kind, estimable
        Dotted name (``irr.all.dark``), kind (``irr``, ``outage_event_study``,
        ``event_uplift``) and whether it could be estimated.
    why
        Why it could not be estimated (None when it was).
    group, feature, family, category, role, light, comparison
        What the effect is about, where the kind has it.
    estimate, ci_low, ci_high, p_value, n
        The estimate, its 95 % interval, p value and the rows or events behind it.
    incidents
        Incidents behind the estimate (where the kind counts them).
    unit
        What the estimate measures.
    details
        The kind's other figures (observed and expected counts, windows...), as written.
    """

    name: str
    kind: str
    estimable: bool
    why: str | None = None
    group: str | None = None
    feature: str | None = None
    family: str | None = None
    category: str | None = None
    role: str | None = None
    light: str | None = None
    comparison: str | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n: int | None = None
    incidents: int | None = None
    unit: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The effect's entry of ``effects.json``."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "estimable": self.estimable}
        if not self.estimable:
            out["why"] = self.why
        out.update({k: getattr(self, k) for k in _DESCRIPTORS if getattr(self, k) is not None})
        if self.estimable:
            out.update({k: getattr(self, k) for k in _STATS})
        if self.incidents is not None:
            out["incidents"] = self.incidents
        out.update(self.details)
        if self.unit is not None:
            out["unit"] = self.unit
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Effect:
        """Read an entry of ``effects.json``."""
        known = {k: d[k] for k in _COMMON if k in d}
        return cls(**known, details={k: v for k, v in d.items() if k not in _COMMON})

    @property
    def label(self) -> str:
        """The effect in words, e.g. "Lamps out at night (per 10 % of lamps), all incidents"."""
        parts = self.name.split(".")
        if self.kind == "irr" and len(parts) == 3:
            return f"{FEATURE_WORDS.get(parts[2], parts[2])}, {parts[1]} incidents"
        if self.kind == "outage_event_study" and len(parts) == 4:
            _, role, light, comp = parts
            return (
                f"Lighting outage, {_ROLE_WORDS.get(role, role)}, "
                f"{_LIGHT_WORDS.get(light, light)}, {_COMPARISON_WORDS.get(comp, comp)}"
            )
        if self.kind == "event_uplift" and len(parts) == 4:
            _, cat, role, what = parts
            what = "people present" if what == "presence" else what
            events = "events" if cat == "all" else f"{self.category or cat} events"
            return f"Extra {what} per 1 000 attendees, {events}, {_ROLE_WORDS.get(role, role)}"
        return self.name


@dataclass(frozen=True)
class Effects:
    """Every effect of a fit (``store/models/effects.json``).

    Attributes
    ----------
    grain
        Grain of the cube the effects were estimated on.
    effects
        The effects, IRRs first, then the outage event study and the event uplift.
    generated_at
        When they were written (ISO text; None before writing).
    """

    grain: str
    effects: tuple[Effect, ...] = ()
    generated_at: str | None = None

    def __iter__(self) -> Iterator[Effect]:
        return iter(self.effects)

    def __len__(self) -> int:
        return len(self.effects)

    def to_json(self) -> dict[str, Any]:
        """The content of ``effects.json``."""
        return json_safe(
            {
                "grain": self.grain,
                "generated_at": self.generated_at,
                "effects": [e.to_json() for e in self.effects],
            }
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Effects | None:
        """Read ``effects.json`` (None stays None: the effects have not been estimated)."""
        if d is None:
            return None
        return cls(
            grain=str(d.get("grain") or ""),
            effects=tuple(Effect.from_json(e) for e in d.get("effects") or ()),
            generated_at=d.get("generated_at"),
        )

    @property
    def estimable(self) -> tuple[Effect, ...]:
        """The effects that could be estimated."""
        return tuple(e for e in self.effects if e.estimable)

    @property
    def n_estimable(self) -> int:
        """How many effects could be estimated."""
        return len(self.estimable)

    def get(self, name: str) -> Effect | None:
        """The effect of that name (None when absent)."""
        return next((e for e in self.effects if e.name == name), None)

    def frame(self, *, estimable_only: bool = True) -> pd.DataFrame:
        """One row per effect (their JSON fields as columns) with its ``label``."""
        chosen = self.estimable if estimable_only else self.effects
        return pd.DataFrame([{**e.to_json(), "label": e.label} for e in chosen])

    def summary(self) -> str:
        """A few lines: counts, then the estimable effects with their intervals."""
        lines = [f"effects: {self.n_estimable} estimated of {len(self.effects)} ({self.grain})"]
        for e in self.estimable:
            lines.append(
                f"  {e.label}: {_fmt(e.estimate, '.3f')} "
                f"[{_fmt(e.ci_low, '.3f')}, {_fmt(e.ci_high, '.3f')}]"
            )
        return "\n".join(lines)
