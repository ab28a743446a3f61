"""Weak signals: what is rising, where, and what goes with it, with false alarms under control.

Modules
-------
panel
    The daily zone panel (:class:`Panel`), the test records every detector returns
    (:data:`SIGNAL_COLUMNS`) and the pivot of cube rows to daily arrays.
pvalues
    Count tail probabilities (Poisson/NB), Monte Carlo p values with a Gumbel tail,
    Benjamini-Hochberg, null count simulation.
excess, drift, ears, presence, correlation, conflicts
    One detector family each: excess incidents, CUSUM/EWMA drift, EARS C1/C2/C3, presence
    anomalies, lagged correlations with drivers, event conflicts.
scan
    Expectation-based Poisson space-time scan statistic with Monte Carlo p values.
period, expectation, drivers
    The runner's inputs: the period under review, expected incidents (fitted model or
    per-capita fallback) and the candidate drivers built from the cube.
result
    :class:`SignalRun`, the typed result of a run (``to_json`` is ``store/signals/<period>.json``)
    and the pandera schema of the signals and tests tables.
run
    The store-level runner behind ``vigie signals``: load -> detectors -> consolidate -> save.
evaluate, evaluation
    The evaluation harness (injected outbreaks and null replicates, POD, FPR, PPV and delay per
    detector against EARS C1/C2/C3) and its typed result :class:`Evaluation`.
"""

from __future__ import annotations

from pipelines.signals.conflicts import event_conflicts
from pipelines.signals.correlation import Driver, lagged_correlations
from pipelines.signals.drift import cusum_path, drift_tests, ewma_path
from pipelines.signals.ears import ears_statistic
from pipelines.signals.excess import excess_tests
from pipelines.signals.panel import SIGNAL_COLUMNS, Panel
from pipelines.signals.presence import presence_anomalies
from pipelines.signals.pvalues import benjamini_hochberg, count_upper_p
from pipelines.signals.scan import ScanResult, knn_neighbours, space_time_scan

__all__ = [
    "SIGNAL_COLUMNS",
    "Driver",
    "Panel",
    "ScanResult",
    "benjamini_hochberg",
    "count_upper_p",
    "cusum_path",
    "drift_tests",
    "ears_statistic",
    "event_conflicts",
    "ewma_path",
    "excess_tests",
    "knn_neighbours",
    "lagged_correlations",
    "presence_anomalies",
    "space_time_scan",
]
