"""What a signal run produces: :class:`SignalRun`, its JSON and its tables' pandera contract.

``SignalRun.to_json()`` is exactly ``store/signals/<period>.json``: the run's metadata then the
ranked signals. The signals and the tests are also written as Parquet tables
(``<period>.parquet`` and ``<period>.tests.parquet``), checked against :data:`TESTS_SCHEMA` /
:data:`SIGNALS_SCHEMA` before writing.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.store import Store, atomic_file, clean_stale
from pipelines.signals.panel import SIGNAL_COLUMNS
from pipelines.signals.period import Period

#: signal types a run produces.
SIGNAL_TYPES = (
    "excess",
    "drift",
    "cluster",
    "gathering",
    "emptied",
    "correlation",
    "event_conflict",
    "visitor_share",
    "resident_ratio",
    "origin_shift",
)


# ------------------------------------------------------------------------------------------------
# the tables' contract
# ------------------------------------------------------------------------------------------------
def _utc(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dtype.tz) == "UTC"


def _str_lists(s: pd.Series) -> bool:
    return bool(s.map(lambda v: all(isinstance(x, str) for x in v)).all())


_TEST_COLUMNS: dict[str, pa.Column] = {
    "id": pa.Column(str, pa.Check.str_matches(r"^T\d{5,}$"), unique=True),
    "type": pa.Column(str, pa.Check.isin(SIGNAL_TYPES)),
    "detector": pa.Column(str),
    "zones": pa.Column(object, pa.Check(_str_lists, error="zones: lists of zone ids")),
    "start": pa.Column(checks=pa.Check(_utc, error="start: UTC instants")),
    "end": pa.Column(checks=pa.Check(_utc, error="end: UTC instants")),
    "observed": pa.Column(float),
    "expected": pa.Column(float, nullable=True),
    "ratio": pa.Column(float, nullable=True),
    "statistic": pa.Column(float, nullable=True),
    "p_value": pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=True),
    "q_value": pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=True),
    "score": pa.Column(float, pa.Check.ge(0.0)),
    "explained": pa.Column(bool),
    "explanation": pa.Column(str),
    "details": pa.Column(str),  # JSON text
}
_WINDOW = pa.Check(lambda d: (d["start"] <= d["end"]).all(), error="start <= end")

#: every test of a run (``signals/<period>.tests.parquet``), as written.
TESTS_SCHEMA = pa.DataFrameSchema(_TEST_COLUMNS, checks=[_WINDOW], strict=True, ordered=True)

#: the ranked signals (``signals/<period>.parquet``), as written: the tests' columns plus
#: ``related`` (ids of the tests folded into the signal) and ``rank`` (1, 2, ...).
SIGNALS_SCHEMA = pa.DataFrameSchema(
    {
        **_TEST_COLUMNS,
        "related": pa.Column(object, pa.Check(_str_lists, error="related: lists of test ids")),
        "rank": pa.Column(
            checks=pa.Check(
                lambda s: bool((s.to_numpy() == np.arange(1, len(s) + 1)).all()),
                error="rank: 1, 2, ... in row order",
            )
        ),
    },
    checks=[_WINDOW],
    strict=True,
    ordered=True,
)


def parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A tests or signals table as written to Parquet: UTC windows, lists of str, JSON details."""
    out = df.copy()
    for col in ("start", "end"):
        out[col] = pd.to_datetime(out[col], utc=True)
    out["zones"] = out["zones"].apply(lambda z: [str(x) for x in z])
    out["details"] = out["details"].apply(lambda d: json.dumps(d, default=str))
    if "related" in out:
        out["related"] = out["related"].apply(lambda z: [str(x) for x in z])
    return out


# ------------------------------------------------------------------------------------------------
# the JSON's parts
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """Where the run's expected incidents came from.

    Attributes
    ----------
    source
        ``"model"`` (the fitted rate model), ``"fallback"`` (the per-capita fallback) or None
        (no incidents in the cube).
    note
        The words the report shows about it.
    dispersion
        NB2 dispersion of the counts around the expectation (moment estimate on the look-back).
    """

    source: str | None = None
    note: str | None = None
    dispersion: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.note is not None:
            out["note"] = self.note
        if self.dispersion is not None:
            out["dispersion"] = self.dispersion
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Expectation:
        return cls(source=d.get("source"), note=d.get("note"), dispersion=d.get("dispersion"))


@dataclass(frozen=True)
class EarsFlags:
    """EARS zone-days of the period above the method's threshold (the classic baseline).

    Attributes
    ----------
    threshold
        The alarm threshold (:data:`~pipelines.signals.ears.EARS_THRESHOLDS`).
    flags
        How many zone-days are above it.
    zone_days
        The first 50 of them: ``{"zone", "day", "statistic"}``.
    """

    threshold: float
    flags: int
    zone_days: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "flags": self.flags,
            "zone_days": [dict(z) for z in self.zone_days],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EarsFlags:
        return cls(d["threshold"], d["flags"], tuple(d.get("zone_days", [])))


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalRun:
    """A completed signal run (``store/signals/<period>.json`` is :meth:`to_json`).

    Attributes
    ----------
    period
        The period reviewed.
    signals
        Ranked signals (q below the FDR level, duplicates folded into ``related``), then
        event conflicts; columns :data:`~pipelines.signals.panel.SIGNAL_COLUMNS` plus
        ``id``, ``rank``, ``related``.
    tests
        Every test of the run with its p and q value (``id`` referenced by ``related``); empty
        when read back with :meth:`from_json` (the JSON holds the signals only).
    start, end
        UTC instants of the period's local start and (exclusive) end.
    timezone, grain
        The study's time zone and the cube's grain.
    fdr
        Benjamini-Hochberg level across all tests of the run.
    expectation
        Where the expected incidents came from.
    test_counts
        Tests per detector family (``tests`` in the JSON).
    n_tests
        Tests with a p value (event conflicts have none).
    replicates, seed
        Monte Carlo replicates used (``drift``, ``scan``) and their seed.
    ears_baseline
        EARS C1/C2/C3 flags of the period, by method.
    zones
        Zones reviewed.
    notes
        What the reader should know (thin history, fallback expectation, missing sources).
    generated_at
        When the run was made (ISO, UTC).
    paths
        Files written (empty when not written).
    """

    period: Period
    signals: pd.DataFrame
    tests: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    timezone: str
    grain: str
    fdr: float
    expectation: Expectation
    test_counts: dict[str, int]
    n_tests: int
    replicates: dict[str, int]
    seed: int
    ears_baseline: dict[str, EarsFlags]
    zones: int
    notes: tuple[str, ...]
    generated_at: str
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def n_signals(self) -> int:
        """Statistical signals (event conflicts left out)."""
        return int((self.signals["type"] != "event_conflict").sum()) if len(self.signals) else 0

    @property
    def n_event_conflicts(self) -> int:
        return int((self.signals["type"] == "event_conflict").sum()) if len(self.signals) else 0

    def to_json(self) -> dict[str, Any]:
        """The payload of ``store/signals/<period>.json``: metadata, then ``signals``."""
        sig = self.signals.copy()
        for col in ("start", "end"):
            if col in sig:
                sig[col] = pd.to_datetime(sig[col], utc=True)
        return {
            "period": self.period.label,
            "first_day": self.period.first.isoformat(),
            "last_day": self.period.last.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "timezone": self.timezone,
            "grain": self.grain,
            "fdr": self.fdr,
            "expectation": self.expectation.to_json(),
            "tests": dict(self.test_counts),
            "n_tests": self.n_tests,
            "n_signals": self.n_signals,
            "n_event_conflicts": self.n_event_conflicts,
            "monte_carlo": {"replicates": dict(self.replicates), "seed": self.seed},
            "ears_baseline": {m: e.to_json() for m, e in self.ears_baseline.items()},
            "zones": self.zones,
            "notes": list(self.notes),
            "generated_at": self.generated_at,
            "signals": signal_records(sig, self.timezone),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SignalRun:
        """A run read back from its JSON (``tests`` empty: the JSON holds the signals only)."""
        period = Period(
            d["period"], dt.date.fromisoformat(d["first_day"]), dt.date.fromisoformat(d["last_day"])
        )
        mc = d.get("monte_carlo", {})
        return cls(
            period=period,
            signals=_signals_frame(d.get("signals", [])),
            tests=pd.DataFrame(columns=["id", *SIGNAL_COLUMNS]),
            start=pd.Timestamp(d["start"]),
            end=pd.Timestamp(d["end"]),
            timezone=d["timezone"],
            grain=d["grain"],
            fdr=d["fdr"],
            expectation=Expectation.from_json(d.get("expectation", {})),
            test_counts=dict(d.get("tests", {})),
            n_tests=d["n_tests"],
            replicates=dict(mc.get("replicates", {})),
            seed=mc.get("seed", 0),
            ears_baseline={
                m: EarsFlags.from_json(e) for m, e in d.get("ears_baseline", {}).items()
            },
            zones=d["zones"],
            notes=tuple(d.get("notes", [])),
            generated_at=d.get("generated_at", ""),
        )

    def summary(self, *, top: int = 10) -> str:
        """What ``vigie signals`` prints: counts, the ``top`` signals, the notes, the file."""
        sig = self.signals
        lines = [
            f"{self.period.label}: {self.n_signals} signals (q < {self.fdr:g}) from "
            f"{self.n_tests} tests, {len(sig) - self.n_signals} event conflicts; expected "
            f"incidents: {self.expectation.source or 'none'}."
        ]
        for row in sig.head(top).itertuples(index=False):
            q = "" if row.q_value != row.q_value else f" q={row.q_value:.2g}"
            lines.append(f"{row.rank:>3}. [{row.type}{q}] {row.explanation}")
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"signals: {self.paths.get('json')}")
        return "\n".join(lines)

    def save(self, store: Store) -> SignalRun:
        """Write the JSON and both Parquet tables (validated first); the run with its paths."""
        sig = SIGNALS_SCHEMA.validate(parquet_frame(self.signals))
        tests = TESTS_SCHEMA.validate(parquet_frame(self.tests))
        label = self.period.label
        # what a killed run left beside these files goes first (never a live run's)
        clean_stale(store.root / "signals")
        pq = store.signals_path(label, ".parquet")
        tq = store.signals_path(label, ".tests.parquet")
        for frame, path in ((sig, pq), (tests, tq)):
            with atomic_file(path) as tmp:  # a killed run leaves the old file or the new one
                frame.to_parquet(tmp, index=False)
        # the JSON last: its presence says the period's signals are complete (the schedule's test)
        json_path = store.write_json(store.signals_relpath(label), self.to_json())
        return replace(self, paths={"json": json_path, "parquet": pq, "tests": tq})


def signal_records(df: pd.DataFrame, tz: str) -> list[dict[str, Any]]:
    """Rows of a signals table as JSON records: UTC instants plus ``start_local``/``end_local``
    in the study's time zone, None for non-finite numbers."""
    rows = []
    for rec in df.to_dict(orient="records"):
        r: dict[str, Any] = {}
        for k, v in rec.items():
            if isinstance(v, pd.Timestamp):
                r[k] = v.tz_convert("UTC").isoformat() if v.tzinfo else v.isoformat()
                if k in ("start", "end") and v.tzinfo:
                    r[f"{k}_local"] = v.tz_convert(tz).isoformat()
            elif isinstance(v, float) and not np.isfinite(v):
                r[k] = None
            elif isinstance(v, np.ndarray):
                r[k] = v.tolist()
            else:
                r[k] = v
        rows.append(r)
    return rows


def _signals_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The signals table of JSON records (inverse of :func:`signal_records`)."""
    if not records:
        return pd.DataFrame(columns=["id", *SIGNAL_COLUMNS, "related", "rank"])
    df = pd.DataFrame.from_records(records)
    df = df.drop(columns=[c for c in ("start_local", "end_local") if c in df])
    for col in ("start", "end"):
        df[col] = pd.to_datetime(df[col], utc=True)
    for col in ("observed", "expected", "ratio", "statistic", "p_value", "q_value", "score"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df
