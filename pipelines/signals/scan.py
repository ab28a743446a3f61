"""Expectation-based Poisson space-time scan statistic with Monte Carlo p values.

Cylinders are a spatial neighbourhood (a centre zone and its k-1 nearest zones, k = 1..K) times a
window of 1..W days ending on a day of the period. For a cylinder with C incidents against B
expected, the expectation-based Poisson log-likelihood ratio is

    LLR = C log(C / B) + B - C   if C > B, else 0

(Neill et al. 2005: the expectations are known, unlike Kulldorff's conditional version where the
total is fixed). The most likely cluster is the cylinder with the largest LLR; secondary
clusters are the next best cylinders that share no zone with a better one (Kulldorff 2001's
non-overlapping rule). Each cluster's p value compares its LLR with the distribution of the
*maximum* LLR over all cylinders in replicates drawn from Poisson(expected) (Dwass 1957), with a
Gumbel tail for very small values (Abrams et al. 2010).

Everything is vectorised over replicates, centres, sizes and windows (prefix sums in space and
time), in chunks of replicates to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.geo import local_xy_m
from pipelines.signals.panel import Panel, day_label, fmt_number, record, records_frame
from pipelines.signals.pvalues import mc_pvalue, simulate_counts


def knn_neighbours(x: np.ndarray, y: np.ndarray, *, k: int = 8) -> np.ndarray:
    """The k nearest zones of each zone (itself first), by centroid distance.

    A k-d tree (``scipy.spatial.cKDTree``) gives each zone's few nearest candidates; they are
    ranked by the squared distance computed as :func:`knn_neighbours_dense` does, ties by zone
    position, so the result is the dense one's exactly. A row whose k-th distance is not
    strictly below every zone left out by the tree (a tie there, or many zones at one place)
    is ranked over all zones. O(Z log Z) instead of the dense O(Z^2) memory and time.

    Parameters
    ----------
    x, y
        Centroid coordinates; longitude/latitude in degrees are fine for a city (they are
        scaled by cos(latitude) before the Euclidean distance).
    k
        Neighbourhood size (capped at the number of zones).

    Returns
    -------
    numpy.ndarray
        Integer array (Z, k): row i lists zone i then its nearest zones, nearest first, ties
        in zone order.

    References
    ----------
    Bentley, J. L. (1975). Multidimensional binary search trees used for associative
    searching. Communications of the ACM 18(9), 509-517.
    """
    x, y, k = _knn_inputs(x, y, k)
    n = len(x)
    if k == 0 or n <= 64 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return _knn_rows(x, y, np.arange(n), k)
    from scipy.spatial import cKDTree

    xy = np.column_stack([x, y])
    m = min(n, k + 4)
    far, cand = cKDTree(xy).query(xy, k=m)
    d = (x[:, None] - x[cand]) ** 2 + (y[:, None] - y[cand]) ** 2  # the dense formula
    rows = np.arange(n)
    d[cand == rows[:, None]] = -1.0
    order = np.lexsort((cand, d), axis=-1)  # by distance, ties by zone position
    out = np.take_along_axis(cand, order[:, :k], axis=1)
    if m < n:  # rows where a zone left out could tie with or beat the k-th: ranked over all
        dk = np.take_along_axis(d, order[:, k - 1 : k], axis=1)[:, 0]
        unsure = np.flatnonzero(~(dk < far[:, -1] ** 2 * (1 - 1e-9)))
        if len(unsure):
            out[unsure] = _knn_rows(x, y, unsure, k)
    return out


def knn_neighbours_dense(x: np.ndarray, y: np.ndarray, *, k: int = 8) -> np.ndarray:
    """:func:`knn_neighbours` from the full Z x Z distance matrix: the reference it is tested
    and timed against (bench/bench_zones.py)."""
    x, y, k = _knn_inputs(x, y, k)
    d = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    d[np.arange(len(x)), np.arange(len(x))] = -1.0
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _knn_inputs(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked coordinates (degrees projected to local metres) and k capped at the zones."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"x and y should be 1-D arrays of the same length, got {x.shape}, {y.shape}"
        )
    if len(x) and abs(y).max(initial=0) <= 90 and abs(x).max(initial=0) <= 180:
        x, y = local_xy_m(y, x)
    return x, y, int(min(k, len(x)))


def _knn_rows(x: np.ndarray, y: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The dense ranking of some rows, in blocks of rows (bounded memory)."""
    out = np.zeros((len(rows), k), dtype=np.intp)
    for lo in range(0, len(rows), 256):
        r = rows[lo : lo + 256]
        d = (x[r, None] - x[None, :]) ** 2 + (y[r, None] - y[None, :]) ** 2
        d[np.arange(len(r)), r] = -1.0
        out[lo : lo + 256] = np.argsort(d, axis=1, kind="stable")[:, :k]
    return out


@dataclass(frozen=True)
class ScanResult:
    """What a space-time scan found.

    Attributes
    ----------
    clusters
        Most likely and secondary clusters as test rows (:data:`SIGNAL_COLUMNS`), best first.
    null_max
        Maximum LLR of each Monte Carlo replicate, shape (R,).
    zone_day_llr
        For each zone and period day, the LLR of the cluster holding the zone among the most
        likely and non-overlapping secondary clusters of cylinders ending that day (0 when
        none, or below ``min_llr``), shape (Z, period days): a prospective per-zone statistic.
    """

    clusters: pd.DataFrame
    null_max: np.ndarray
    zone_day_llr: np.ndarray


def _llr(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        v = c * np.log(c / b) + b - c
    return np.where((c > b) & (b > 0), v, 0.0)


class _Cylinders:
    """Index arithmetic shared by the observed scan and the replicates."""

    def __init__(self, period: tuple[int, int], neighbours: np.ndarray, max_window: int) -> None:
        p0, p1 = period
        self.t_first = max(0, p0 - max_window + 1)
        self.p0, self.p1 = p0, p1
        self.nbr = np.asarray(neighbours, dtype=int)
        self.max_window = max_window
        n_end = p1 - p0
        ends = np.arange(p0, p1)[:, None] + 1  # exclusive end, absolute
        lengths = np.arange(1, max_window + 1)[None, :]
        starts = ends - lengths
        self.ok = starts >= self.t_first  # (n_end, L)
        self.starts = np.where(self.ok, starts, self.t_first) - self.t_first
        self.ends = np.broadcast_to(ends, starts.shape) - self.t_first
        self.shape = (n_end, max_window)

    def sums(self, x: np.ndarray) -> np.ndarray:
        """x (..., Z, T') daily values -> (..., Z, K, n_end, L) cylinder sums."""
        g = np.cumsum(x[..., self.nbr, :], axis=-2)  # (..., Z, K, T')
        pre = np.concatenate([np.zeros((*g.shape[:-1], 1)), np.cumsum(g, axis=-1)], axis=-1)
        return pre[..., self.ends] - pre[..., self.starts]


def null_chunk(cylinders: int) -> int:
    """Replicates drawn at once for a scan of ``cylinders`` (centre, size, end, length) cells:
    about 15 M cylinder sums in memory (a block of zones draws the whole run's chunks, so that
    its replicates are the run's, :mod:`pipelines.signals.blocks`)."""
    return max(1, int(1.5e7 // max(1, cylinders)))


def _null_max(
    cyl: _Cylinders, exp: np.ndarray, b: np.ndarray, *, n_sim: int, seed: int, dispersion: float
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chunk = null_chunk(b.size)
    null_max = np.empty(n_sim)
    done = 0
    while done < n_sim:
        n = min(chunk, n_sim - done)
        y = simulate_counts(exp, n, rng, dispersion)
        v = np.where(cyl.ok, _llr(cyl.sums(y), b[None]), 0.0)
        null_max[done : done + n] = v.reshape(n, -1).max(axis=1)
        done += n
    return null_max


def scan_null(
    panel: Panel,
    neighbours: np.ndarray,
    *,
    max_window: int = 14,
    n_sim: int = 999,
    seed: int = 0,
    dispersion: float = 0.0,
) -> np.ndarray:
    """Maximum LLR over all cylinders in ``n_sim`` null replicates (Poisson or NB2 counts).

    Depends only on the expectations, so it can be computed once and reused
    (``space_time_scan(..., null_max=...)``) for many count series.
    """
    cyl = _Cylinders(panel.period, np.asarray(neighbours, dtype=int), max_window)
    sl = slice(cyl.t_first, cyl.p1)
    valid = panel.valid[:, sl]
    exp = np.where(valid, panel.expected[:, sl], 0.0)
    return _null_max(cyl, exp, cyl.sums(exp), n_sim=n_sim, seed=seed, dispersion=dispersion)


def space_time_scan(
    panel: Panel,
    neighbours: np.ndarray,
    *,
    max_window: int = 14,
    n_sim: int = 999,
    seed: int = 0,
    max_clusters: int = 10,
    dispersion: float = 0.0,
    null_max: np.ndarray | None = None,
    min_llr: float = 1.0,
) -> ScanResult:
    """Expectation-based Poisson space-time scan over zone neighbourhoods and recent windows.

    Parameters
    ----------
    panel
        Daily observed and expected counts; windows end on a day of the period and may start up
        to ``max_window - 1`` days before it.
    neighbours
        (Z, K) array from :func:`knn_neighbours` (or any contiguity order, itself first).
    max_window
        Longest window in days.
    n_sim, seed
        Monte Carlo replicates (999 gives p >= 0.001 before the Gumbel tail) and their seed.
    max_clusters
        Most likely cluster plus at most ``max_clusters - 1`` non-overlapping secondary ones.
    dispersion
        NB2 dispersion of the null counts (0 = Poisson, the classic scan).
    null_max
        Maximum LLR of earlier replicates for the same expectations (skips the Monte Carlo;
        see :func:`scan_null`). With ``n_sim=0`` and no ``null_max`` the p values are NaN.
    min_llr
        Cylinders below this LLR are not assigned to zones in ``zone_day_llr``.

    Returns
    -------
    ScanResult

    References
    ----------
    Kulldorff, M. (2001). Prospective time periodic geographical disease surveillance using a
    scan statistic. JRSS A 164(1), 61-72.
    Neill, D. B., Moore, A. W., Sabhnani, M. & Daniel, K. (2005). Detection of emerging
    space-time clusters. Proc. 11th ACM SIGKDD, 218-227 (expectation-based statistic).
    Abrams, A. M., Kleinman, K. & Kulldorff, M. (2010). Int. J. Health Geographics 9:61.
    """
    nbr, cyl, obs, exp = scan_inputs(panel, neighbours, max_window)
    c_obs = cyl.sums(obs)
    b = cyl.sums(exp)
    llr = np.where(cyl.ok, _llr(c_obs, b), 0.0)  # (Z, K, n_end, L)

    if null_max is None:
        null_max = _null_max(cyl, exp, b, n_sim=n_sim, seed=seed, dispersion=dispersion)

    zone_day = _zone_day_llr(llr.max(axis=-1), nbr, min_llr=min_llr)
    best = best_cylinders(llr, c_obs, b)
    records = _clusters(panel, cyl, best, null_max, max_clusters=max_clusters)
    return ScanResult(clusters=records_frame(records), null_max=null_max, zone_day_llr=zone_day)


def scan_inputs(
    panel: Panel, neighbours: np.ndarray, max_window: int
) -> tuple[np.ndarray, _Cylinders, np.ndarray, np.ndarray]:
    """The neighbours (checked), the cylinders and the observed and expected counts over the
    days the cylinders span (zero where the panel is not valid): what the scan reads, in one
    process (:func:`space_time_scan`) or per zone block (``pipelines.signals.blocks``)."""
    nbr = np.asarray(neighbours, dtype=int)
    z = len(panel.zones)
    if nbr.ndim != 2 or nbr.shape[0] != z:
        raise ValueError(f"neighbours should have shape (zones={z}, K), got {nbr.shape}")
    if max_window < 1:
        raise ValueError(f"max_window should be >= 1, got {max_window}")
    cyl = _Cylinders(panel.period, nbr, max_window)
    sl = slice(cyl.t_first, cyl.p1)
    valid = panel.valid[:, sl]
    obs = np.where(valid, panel.observed[:, sl], 0.0)
    exp = np.where(valid, panel.expected[:, sl], 0.0)
    return nbr, cyl, obs, exp


def _zone_day_llr(best_end: np.ndarray, nbr: np.ndarray, *, min_llr: float) -> np.ndarray:
    """Per-zone prospective statistic: LLR of the reported cluster holding the zone, per end day.

    ``best_end`` is each cylinder's best LLR over its windows ending on each day, (Z, K, n_end).
    For each end day, cylinders above ``min_llr`` are taken strongest first, and each gives its
    LLR to its zones unless one of them already has one.
    """
    z, k = nbr.shape
    zone_day = np.zeros((z, best_end.shape[-1]))
    for e in range(best_end.shape[-1]):
        v = best_end[:, :, e].ravel()
        for idx in np.flatnonzero(v > min_llr)[np.argsort(-v[v > min_llr], kind="stable")]:
            centre, kk = divmod(int(idx), k)
            members = nbr[centre, : kk + 1]
            if (zone_day[members, e] > 0).any():
                continue
            zone_day[members, e] = v[idx]
    return zone_day


@dataclass(frozen=True)
class BestCylinders:
    """The best window of every cylinder (centre, size), flattened centre-major, shape (Z * K,).

    Attributes
    ----------
    llr
        Its LLR (0 when no window exceeds its expectation).
    window
        Its flat (end day, length) index into the scan's ``(n_end, L)`` windows.
    observed, expected
        Its incidents and expected incidents.
    """

    llr: np.ndarray
    window: np.ndarray
    observed: np.ndarray
    expected: np.ndarray

    @classmethod
    def concat(cls, parts: list[BestCylinders]) -> BestCylinders:
        """Blocks of consecutive centres joined in order (:mod:`pipelines.signals.blocks`)."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "llr", "window", "observed", "expected")))  # fmt: skip


def best_cylinders(llr: np.ndarray, c_obs: np.ndarray, b: np.ndarray) -> BestCylinders:
    """Each cylinder's best window from its (Z, K, n_end, L) LLRs, counts and expectations."""
    z, k = llr.shape[:2]
    flat = llr.reshape(z * k, -1)
    best_w = flat.argmax(axis=1)
    rows = np.arange(z * k)
    return BestCylinders(
        llr=flat[rows, best_w],
        window=best_w,
        observed=c_obs.reshape(z * k, -1)[rows, best_w],
        expected=b.reshape(z * k, -1)[rows, best_w],
    )


def _clusters(
    panel: Panel,
    cyl: _Cylinders,
    best: BestCylinders,
    null_max: np.ndarray,
    *,
    max_clusters: int,
) -> list[dict]:
    """The most likely cluster and the non-overlapping secondary ones, as test records."""
    z, k = cyl.nbr.shape
    best_w, best_v = best.window, best.llr
    taken: set[int] = set()
    records: list[dict] = []
    for idx in np.argsort(-best_v, kind="stable"):
        if len(records) >= max_clusters or best_v[idx] <= 0:
            break
        centre, kk = divmod(int(idx), k)
        members = [int(m) for m in cyl.nbr[centre, : kk + 1]]
        if taken.intersection(members):
            continue
        taken.update(members)
        e_i, l_i = divmod(int(best_w[idx]), cyl.max_window)
        t1 = cyl.p0 + e_i + 1
        t0 = t1 - (l_i + 1)
        p = (
            float(mc_pvalue(np.array([best_v[idx]]), null_max[:, None])[0])
            if len(null_max)
            else np.nan
        )
        records.append(
            _cluster_record(
                panel,
                [str(panel.zones[m]) for m in members],
                t0,
                t1,
                observed=float(best.observed[idx]),
                expected=float(best.expected[idx]),
                llr=float(best_v[idx]),
                p_value=p,
                rank="most likely" if not records else "secondary",
            )
        )
    return records


def _cluster_record(
    panel: Panel,
    names: list[str],
    t0: int,
    t1: int,
    *,
    observed: float,
    expected: float,
    llr: float,
    p_value: float,
    rank: str,
) -> dict:
    """The test record of a cluster of zones ``names`` over days ``t0..t1-1``."""
    cc, bb = observed, expected
    start, end = panel.window(t0, t1)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return record(
        "cluster",
        detector="scan",
        zones=names,
        start=start,
        end=end,
        observed=cc,
        expected=bb,
        p_value=p_value,
        explanation=f"Zone{'s' if len(names) > 1 else ''} {shown} together had "
        f"{fmt_number(cc)} incidents against {fmt_number(bb)} expected from {day_label(start)} "
        f"to {day_label(end - pd.Timedelta(1))} (x{cc / bb:.1f}), a space-time cluster "
        f"(LLR {llr:.1f}).",
        statistic=llr,
        rank=rank,
        days=int(t1 - t0),
    )
