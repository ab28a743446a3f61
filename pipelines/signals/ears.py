"""EARS C1, C2 and C3: the classic aberration baseline the detectors are compared with."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: alarm thresholds of the EARS statistics (Hutwagner et al. 2003).
EARS_THRESHOLDS = {"C1": 3.0, "C2": 3.0, "C3": 2.0}


def ears_statistic(counts: np.ndarray, *, method: str = "C2", sd_floor: float = 0.5) -> np.ndarray:
    """EARS C1, C2 or C3 statistic along the last axis of a daily count series.

    C1: ``(y_t - mean) / sd`` over days t-7..t-1; C2: the same over days t-9..t-3 (a two-day
    guard band); C3: ``sum_{i=0..2} max(0, C2_{t-i} - 1)``. Thresholds: C1, C2 > 3; C3 > 2
    (:data:`EARS_THRESHOLDS`). The baseline SD is floored at ``sd_floor`` counts so that a
    constant baseline (often all zeros in a small zone) does not give an infinite statistic.
    NaN where the baseline is incomplete.

    References
    ----------
    Hutwagner, L., Thompson, W., Seeman, G. M. & Treadwell, T. (2003). The bioterrorism
    preparedness and response Early Aberration Reporting System (EARS). J. Urban Health 80
    (suppl. 1), i89-i96.
    Fricker, R. D., Hegler, B. L. & Dunfee, D. A. (2008). Comparing syndromic surveillance
    detection methods: EARS' versus a CUSUM-based methodology. Stat. Med. 27, 3407-3429.
    """
    method = method.upper()
    if method not in EARS_THRESHOLDS:
        raise ValueError(f"method should be 'C1', 'C2' or 'C3', got {method!r}")
    y = np.asarray(counts, dtype=float)
    if method == "C3":
        c2 = ears_statistic(y, method="C2", sd_floor=sd_floor)
        part = np.maximum(0.0, c2 - 1.0)
        out = np.full(y.shape, np.nan)
        out[..., 2:] = part[..., 2:] + part[..., 1:-1] + part[..., :-2]
        return out
    lag = 1 if method == "C1" else 3
    out = np.full(y.shape, np.nan)
    t_len = y.shape[-1]
    if t_len < 7 + lag:
        return out
    win = sliding_window_view(y, 7, axis=-1)  # win[..., j, :] = y[j:j+7]
    # baseline of day t is y[t-lag-6 : t-lag+1] = win[..., t-lag-6, :]
    base = win[..., : t_len - (6 + lag), :]
    mean = base.mean(axis=-1)
    sd = np.maximum(base.std(axis=-1, ddof=1), sd_floor)
    out[..., 6 + lag :] = (y[..., 6 + lag :] - mean) / sd
    return out
