"""A signals run per zone block, as Dask tasks (``vigie signals --scheduler``).

Zones are cut into consecutive blocks (:func:`zone_blocks`), one task each, in up to three
rounds; the client joins their results and runs the rest as without a cluster:

1. **The daily panel** (:func:`panel_on_blocks`): each task reads its zones' cube rows over
   the period and its calibration history, computes the expected incidents per row (the fitted
   model's, or the per-capita fallback's, whose factors the client fitted on the weeks before
   the period) and sums both per zone and day. The client never loads the history. The same
   function runs the blocks one after the other in one process when the history is too large
   to read whole (``RunSettings.block_rows``).
2. **The calibrated tests' statistics** (:func:`block_statistics_on_blocks`): each task gets its
   zones' panel rows and computes their rolling level, tail probabilities and drift charts per
   week; the client calibrates them on the pooled past zone-weeks.
3. **The space-time scan** (:func:`scan_on_blocks`, or the scan component of round 2).

The scan's neighbourhoods cross blocks: a cylinder centred in a block may hold zones of other
blocks. Each task receives its zones and every zone their cylinders reach
(:func:`with_halo`: the halo), scans only the cylinders *centred* in its block, and returns
each cylinder's best window (:class:`~pipelines.signals.scan.BestCylinders`), its best LLR per
end day, and the largest LLR of its cylinders in every Monte Carlo replicate. So every cylinder
of the run is scanned once, by the task of its centre, with all its members' counts. The client
takes, per replicate, the largest over the blocks (the run's null maximum), each zone's best
cylinder over every block's, and picks the most likely and secondary clusters with the local
scan's own code.

The results are the one-process run's exactly: every value is the same arithmetic on the same
numbers (a zone-day's sum adds its rows in the same order; a cylinder's sums add the same
counts), and every block draws the run's replicates in the same order from the same seed
(:func:`~pipelines.signals.scan.null_chunk`) before keeping the rows of its halo, so the maxima
are over the same replicates. The price of that exactness is that each block redraws
replicates x zones x scan days counts (a scan sums about K x windows = 8 x 98 cylinders per
zone-day drawn, so the draws stay a small part of a block's work while the blocks are a few
dozen). The presence, origin, correlation and conflict tests of the recent weeks, the excess
and drift tests of a run without calibration history, and Benjamini-Hochberg stay in the
client.

References
----------
Kulldorff, M. (2001). JRSS A 164(1), 61-72; Neill, D. B. et al. (2005). Proc. 11th ACM SIGKDD,
218-227 (the scan); Dwass, M. (1957). Ann. Math. Statist. 28(1), 181-187 (Monte Carlo tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.cube.dask_engine import run_tasks
from features.store import Store
from pipelines.signals.calibration import (
    Blocks,
    BlockStats,
    CalibrationSettings,
    _block_max,
    _cylinders,
    _zone_day,
    block_statistics,
)
from pipelines.signals.expectation import FallbackFit, model_expected
from pipelines.signals.inputs import build_panel, read_cube_rows
from pipelines.signals.panel import Panel, records_frame
from pipelines.signals.period import Period
from pipelines.signals.pvalues import simulate_counts
from pipelines.signals.scan import (
    BestCylinders,
    ScanResult,
    _clusters,
    _Cylinders,
    _llr,
    _zone_day_llr,
    best_cylinders,
    null_chunk,
    scan_inputs,
)

#: zone blocks of a run on a cluster (capped at the zones).
ZONE_BLOCKS = 8


def zone_blocks(n_zones: int, n_blocks: int) -> list[np.ndarray]:
    """Zone positions ``0..n_zones-1`` cut into ``n_blocks`` consecutive blocks (none empty)."""
    if n_blocks < 1:
        raise ValueError(f"n_blocks should be >= 1, got {n_blocks}")
    return [b for b in np.array_split(np.arange(n_zones), min(n_blocks, max(n_zones, 1))) if len(b)]


def with_halo(own: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A block's rows (its zones, then the other zones its cylinders reach) and its cylinders.

    Returns
    -------
    tuple
        ``(rows, local)``: ``rows`` are zone positions in the run, the block's own first;
        ``local`` is ``neighbours[own]`` in positions of ``rows``.
    """
    nbr = np.asarray(neighbours, dtype=int)
    own = np.asarray(own, dtype=int)
    rows = np.concatenate([own, np.setdiff1d(np.unique(nbr[own]), own)])
    pos = np.full(nbr.shape[0], -1, dtype=int)
    pos[rows] = np.arange(len(rows))
    return rows, pos[nbr[own]]


@dataclass(frozen=True)
class ScanBlock:
    """What a block's task returns: its cylinders' best windows, their best LLR per end day
    (centres, K, end days), and its largest LLR in each replicate (R,)."""

    best: BestCylinders
    best_end: np.ndarray
    null_max: np.ndarray


def scan_block(
    period: tuple[int, int],
    local: np.ndarray,
    rows: np.ndarray,
    obs: np.ndarray,
    exp: np.ndarray,
    *,
    max_window: int,
    n_sim: int,
    seed: int,
    dispersion: float,
    chunk: int,
) -> ScanBlock:
    """The scan of the cylinders centred in one block (a task; see the module).

    Parameters
    ----------
    period
        The panel's period (first, stop) day indices.
    local
        The block's cylinders: (own zones, K) positions in ``rows``.
    rows
        The block's rows (own zones, then halo) as positions among all the run's zones.
    obs, exp
        Observed and expected counts of **all** zones over the scan's days (0 where unknown);
        the block reads its rows, and draws replicates of all zones as the run does.
    max_window, n_sim, seed, dispersion
        As :func:`~pipelines.signals.scan.space_time_scan`.
    chunk
        Replicates drawn at once: the run's :func:`~pipelines.signals.scan.null_chunk`.
    """
    cyl = _Cylinders(period, local, max_window)
    c_obs = cyl.sums(obs[rows])
    b = cyl.sums(exp[rows])
    llr = np.where(cyl.ok, _llr(c_obs, b), 0.0)
    rng = np.random.default_rng(seed)
    null_max = np.empty(n_sim)
    done = 0
    while done < n_sim:
        n = min(chunk, n_sim - done)
        y = simulate_counts(exp, n, rng, dispersion)[:, rows]
        v = np.where(cyl.ok, _llr(cyl.sums(y), b[None]), 0.0)
        null_max[done : done + n] = v.reshape(n, -1).max(axis=1)
        done += n
    return ScanBlock(best_cylinders(llr, c_obs, b), llr.max(axis=-1), null_max)


def scan_on_blocks(
    panel: Panel,
    neighbours: np.ndarray,
    *,
    address: str | None,
    blocks: int = ZONE_BLOCKS,
    max_window: int = 14,
    n_sim: int = 999,
    seed: int = 0,
    max_clusters: int = 10,
    dispersion: float = 0.0,
    min_llr: float = 1.0,
) -> ScanResult:
    """:func:`~pipelines.signals.scan.space_time_scan` as one Dask task per zone block.

    Parameters
    ----------
    panel, neighbours, max_window, n_sim, seed, max_clusters, dispersion, min_llr
        As :func:`~pipelines.signals.scan.space_time_scan` (the result is the same).
    address
        A ``distributed`` scheduler address, or None for local threads
        (:func:`~features.cube.dask_engine.run_tasks`).
    blocks
        Zone blocks (tasks).

    Returns
    -------
    ScanResult
    """
    import dask  # heavy: loaded only on this path

    nbr, cyl, obs, exp = scan_inputs(panel, neighbours, max_window)
    z = len(panel.zones)
    chunk = null_chunk(z * nbr.shape[1] * cyl.shape[0] * cyl.shape[1])
    obs_d, exp_d = dask.delayed(obs, pure=True), dask.delayed(exp, pure=True)
    tasks = []
    for own in zone_blocks(z, blocks):
        rows, local = with_halo(own, nbr)
        tasks.append(
            dask.delayed(scan_block, pure=True)(
                panel.period,
                local,
                rows,
                obs_d,
                exp_d,
                max_window=max_window,
                n_sim=n_sim,
                seed=seed,
                dispersion=dispersion,
                chunk=chunk,
            )  # fmt: skip
        )
    parts: list[ScanBlock] = run_tasks(tasks, address)
    null_max = np.max([p.null_max for p in parts], axis=0) if n_sim > 0 else np.empty(0)
    best = BestCylinders.concat([p.best for p in parts])
    zone_day = _zone_day_llr(np.concatenate([p.best_end for p in parts]), nbr, min_llr=min_llr)
    records = _clusters(panel, cyl, best, null_max, max_clusters=max_clusters)
    return ScanResult(clusters=records_frame(records), null_max=null_max, zone_day_llr=zone_day)


def rows_panel(panel: Panel, rows: np.ndarray) -> Panel:
    """The panel of some zones (positions ``rows``), over the same days."""
    return Panel(
        zones=panel.zones[rows], days=panel.days, observed=panel.observed[rows],
        expected=panel.expected[rows], period=panel.period, day_ends=panel.day_ends,
    )  # fmt: skip


def stats_block(
    panel: Panel,
    n_own: int,
    local: np.ndarray | None,
    *,
    dispersion: float,
    cfg: CalibrationSettings,
) -> BlockStats:
    """The calibrated tests' statistics of one zone block (a task): the panel's first ``n_own``
    zones are the block's, the others its halo; ``local`` (own zones, K) are the cylinders
    centred in the block, in the panel's positions (None: no scan)."""
    st = block_statistics(panel, None, Blocks.of(panel), dispersion=dispersion, cfg=cfg)
    best = length = None
    if local is not None:
        best, length = _cylinders(st.obs, st.exp, local, cfg.max_window)
    own = slice(0, n_own)
    return BlockStats(
        scores={n: v[own] for n, v in st.scores.items()}, usable=st.usable, obs=st.obs[own],
        exp=st.exp[own], day_p=st.day_p[own], paths={n: v[own] for n, v in st.paths.items()},
        scan_best=best, scan_len=length, level=st.level[own], p3=st.p3[own],
    )  # fmt: skip


def block_statistics_on_blocks(
    panel: Panel,
    neighbours: np.ndarray | None,
    *,
    dispersion: float,
    cfg: CalibrationSettings,
    address: str | None,
    blocks: int = ZONE_BLOCKS,
) -> BlockStats:
    """:func:`~pipelines.signals.calibration.block_statistics` as one Dask task per zone block.

    Each task gets its zones' rows of the panel (and, when the scan is a component, the halo
    its cylinders reach) and returns its zones' statistics and its cylinders; the client joins
    them, takes each zone's best cylinder over every block's (a cylinder centred in one block
    may hold zones of another), and which weeks have enough known zone-days. The result is
    the one-process statistics exactly (every value is the same arithmetic on the same numbers);
    the calibration on the pooled past zone-weeks then runs in the client, on (zones x weeks)
    scores.
    """
    import dask  # heavy: loaded only on this path

    z = len(panel.zones)
    nbr = None if neighbours is None else np.asarray(neighbours, dtype=int)
    scan = nbr is not None and "scan" in cfg.components
    tasks = []
    for own in zone_blocks(z, blocks):
        rows, local = with_halo(own, nbr) if scan and nbr is not None else (own, None)
        tasks.append(
            dask.delayed(stats_block, pure=True)(
                rows_panel(panel, rows), len(own), local, dispersion=dispersion, cfg=cfg
            )
        )
    parts: list[BlockStats] = run_tasks(tasks, address)

    def cat(get) -> np.ndarray:
        return np.concatenate([get(p) for p in parts])

    cal = Blocks.of(panel)
    scores = {n: cat(lambda p, n=n: p.scores[n]) for n in parts[0].scores}
    exp = cat(lambda p: p.exp)
    known = np.array([(exp[:, a:b] > 0).mean() for a, b in zip(cal.a, cal.b, strict=True)])
    best = length = None
    if scan and nbr is not None:
        best, length = cat(lambda p: p.scan_best), cat(lambda p: p.scan_len)
        scores["scan"] = _block_max(_zone_day(best, nbr), cal)
    return BlockStats(
        scores=scores, usable=(known >= 0.5) & (cal.a >= 7 * min(cfg.level_weeks, 4)),
        obs=cat(lambda p: p.obs), exp=exp, day_p=cat(lambda p: p.day_p),
        paths={n: cat(lambda p, n=n: p.paths[n]) for n in parts[0].paths}, scan_best=best,
        scan_len=length, level=cat(lambda p: p.level), p3=cat(lambda p: p.p3),
    )  # fmt: skip


def panel_block(
    root: str,
    zones: list[str],
    period: Period,
    *,
    timezone: str,
    history_days: int,
    fallback: FallbackFit | None = None,
    columns: list[str] | None = None,
) -> tuple[Panel, bool, str]:
    """One block's rows of the daily panel (a task): its zones' cube rows over the period and
    its history (``columns``, default all), their expected incidents (the fitted model's, or
    ``fallback``'s), their daily sums. Returns the panel, whether any expectation is known,
    and where it came from (``"model"``, ``"fallback"``, or why the model gave none)."""
    st = Store(root)
    frame = read_cube_rows(st, period, timezone=timezone, history_days=history_days,
                           columns=columns, zones=zones)  # fmt: skip
    if fallback is None:
        exp, how = model_expected(st, frame)
    else:
        exp, how = fallback.expected(frame), "fallback"
    known = exp is not None and bool(np.isfinite(exp).any())
    frame["expected"] = exp if exp is not None else np.nan
    panel = build_panel(frame, zones=zones, period=period, timezone=timezone,
                        history_days=history_days)  # fmt: skip
    return panel, known, how


def panel_on_blocks(
    st: Store,
    zones: list[str],
    period: Period,
    *,
    timezone: str,
    history_days: int,
    address: str | None,
    blocks: int = ZONE_BLOCKS,
    fallback: FallbackFit | None = None,
    columns: list[str] | None = None,
    in_process: bool = False,
) -> tuple[Panel | None, str]:
    """The run's daily panel of incidents and expectation, built per zone block: each block
    reads its zones' rows of the cube over the period and its history, so the run never holds
    the history whole.

    Parameters
    ----------
    st, zones, period, timezone, history_days
        The run's store, zones (sorted), period, time zone and days of history.
    address, blocks
        The Dask scheduler (None: local threads) and the zone blocks (tasks).
    fallback
        The per-capita fallback's fit (:func:`~pipelines.signals.expectation.fallback_fit`),
        or None for the store's fitted model.
    columns
        The cube columns each block reads (None: all, as the model needs).
    in_process
        Run the blocks one after the other in this process (no Dask): memory is then bounded
        by one block's rows.

    Returns
    -------
    tuple
        The panel (None when the model gives no expectation in any block), and where the
        expectation came from (:func:`panel_block`'s, the first block's).

    Notes
    -----
    The same panel as :func:`~pipelines.signals.inputs.build_panel` on all the rows: the
    expectation is per row (the fallback's factors are fitted once, on the window before the
    period), and a zone-day's sum adds its rows in the same order.
    """
    kw = dict(timezone=timezone, history_days=history_days, fallback=fallback, columns=columns)
    groups = [[zones[i] for i in own] for own in zone_blocks(len(zones), blocks)]
    if in_process:
        parts = [panel_block(str(st.root), g, period, **kw) for g in groups]  # type: ignore[arg-type]
    else:
        import dask  # heavy: loaded only on this path

        tasks = [
            dask.delayed(panel_block, pure=True)(str(st.root), g, period, **kw) for g in groups
        ]
        parts = run_tasks(tasks, address)
    if not any(known for _, known, _ in parts):
        return None, parts[0][2]
    first = parts[0][0]
    panel = Panel(
        zones=np.asarray(zones, dtype=object), days=first.days,
        observed=np.concatenate([p.observed for p, _, _ in parts]),
        expected=np.concatenate([p.expected for p, _, _ in parts]), period=first.period,
    )  # fmt: skip
    return panel, parts[0][2]
