"""Weak signals: what is rising, where, and what goes with it, with false alarms under control.

Modules
-------
detectors
    Pure numpy/pandas detectors on a daily zone panel and on the hourly cube: excess incidents
    (Poisson/NB tails), CUSUM/EWMA drift, presence anomalies, lagged correlations, event
    conflicts, EARS C1/C2/C3, Benjamini-Hochberg.
scan
    Expectation-based Poisson space-time scan statistic with Monte Carlo p-values.
run
    The store-level runner behind ``vigie signals``: reads the cube, gets expected incidents
    from the fitted model (or a per-capita fallback), runs every detector, writes
    ``store/signals/<period>.json`` and ``.parquet``.
evaluate
    The evaluation harness: injected outbreaks and null replicates, POD, FPR, PPV and delay per
    detector against EARS C1/C2/C3.
"""

from __future__ import annotations

from pipelines.signals.detectors import (
    SIGNAL_COLUMNS,
    Panel,
    benjamini_hochberg,
    count_upper_p,
    cusum_path,
    drift_tests,
    ears_statistic,
    event_conflicts,
    ewma_path,
    excess_tests,
    lagged_correlations,
    presence_anomalies,
)
from pipelines.signals.scan import ScanResult, knn_neighbours, space_time_scan

__all__ = [
    "SIGNAL_COLUMNS",
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
