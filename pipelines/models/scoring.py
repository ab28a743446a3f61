"""Scores of backtest forecasts: Poisson deviance, MAE, hit rate, PAI and interval coverage.

Mean unit Poisson deviance (a strictly proper scoring rule for counts, Gneiting & Raftery
2007), MAE, hit rate and PAI (Chainey, Tompson & Uhlig 2008: share of incidents captured /
share of area x time flagged) when the top 1, 5 and 10 % of zone-slots of each week are
flagged, and the coverage of the 80 % and 95 % predictive intervals.

Counts are discrete: the central interval ``[q(0.1), q(0.9)]`` of a mean of 0.2 is ``[0, 1]``
and holds 98 % of outcomes, not 80 %. Beside that coverage, the expected coverage of the
randomised interval is given (``pit_coverage80/95``): the share of the randomised PIT (Czado,
Gneiting & Held 2009) that falls in ``[0.1, 0.9]`` (``[0.025, 0.975]``), exact in expectation
without drawing any random number. It is 80 % (95 %) for a calibrated forecast at any mean.

References
----------
Czado, C., Gneiting, T. & Held, L. (2009). Predictive model assessment for count data.
*Biometrics* 65(4), 1254-1261.
Chainey, S., Tompson, L. & Uhlig, S. (2008). The utility of hotspot mapping for predicting
spatial patterns of crime. *Security Journal* 21, 4-28.
Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
estimation. *JASA* 102(477), 359-378.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from features.timeutil import utc_ns
from pipelines.models.results import BacktestEvaluation, ModelScore, OriginScore

FLAG_LEVELS = (0.01, 0.05, 0.10)


def level_label(level: float) -> str:
    """A flag level as the evaluation labels it (0.05 -> ``"5%"``)."""
    return f"{level * 100:g}%"


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Unit Poisson deviance of each count ``y`` under its mean ``mu`` (clipped at 1e-9)."""
    mu = np.clip(mu, 1e-9, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2.0 * (t - (y - mu))


def _cdf(y: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """P(Y <= y) under Poisson (alpha 0) or NB2 means ``mu`` (0 for y < 0)."""
    mu = np.clip(mu, 1e-12, None)
    n = 1.0 / np.where(alpha > 0, alpha, 1.0)
    nb = stats.nbinom.cdf(y, n, n / (n + mu))
    return np.where(alpha > 0, nb, stats.poisson.cdf(y, mu))


def pit_coverage(y: np.ndarray, mu: np.ndarray, alpha: np.ndarray, level: float) -> float:
    """Expected share of randomised PITs inside the central ``level`` interval.

    The randomised PIT of a count ``y`` is uniform on ``[F(y - 1), F(y)]``; the share of that
    segment inside ``[(1 - level) / 2, (1 + level) / 2]`` is its probability of falling there.
    """
    y = np.asarray(y, np.float64)
    lo, hi = _cdf(y - 1, mu, alpha), _cdf(y, mu, alpha)
    a, b = (1 - level) / 2, (1 + level) / 2
    inside = np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0, None)
    width = hi - lo
    share = np.divide(inside, width, out=((lo >= a) & (hi <= b)).astype(float), where=width > 0)
    return float(share.mean())


def count_pmfs(mu: np.ndarray, alpha: np.ndarray | float, top: int):
    """Yield ``(k, P(Y = k))`` for ``k = 0..top`` under Poisson (alpha 0) or NB2 means ``mu``,
    one vector per ``k``, by the ratio of consecutive probabilities (log scale, no underflow):
    ``p(k+1) / p(k) = mu / (k + 1)`` (Poisson), ``(k + r) / (k + 1) * mu / (r + mu)`` (NB2,
    ``r = 1 / alpha``). The same figures as ``scipy.stats`` pmfs, in one pass."""
    mu = np.clip(np.asarray(mu, np.float64), 1e-300, None)
    a = np.broadcast_to(np.asarray(alpha, np.float64), mu.shape)
    nb = a > 0
    r = 1.0 / np.where(nb, a, 1.0)
    logq = np.where(nb, np.log(mu) - np.log(r + mu), np.log(mu))
    logp = np.where(nb, -r * np.log1p(mu / r), -mu)
    for k in range(top + 1):
        yield k, np.exp(logp)
        logp = logp + logq + np.where(nb, np.log(k + r), 0.0) - math.log(k + 1)


def expected_deviance(mu: np.ndarray, alpha: np.ndarray) -> float:
    """Mean of ``E[d(Y, mu)]`` for ``Y`` drawn from each row's own predictive distribution.

    The sum over counts runs to ``8 x`` a row's variance ``+ 20`` (at most 10 000), rows
    grouped by that bound (a few rows with large means do not make every row's sum run long;
    the former cap of 400 for every row cut the sum of means above about 300 short)."""
    mu = np.clip(np.asarray(mu, np.float64), 1e-12, None)
    a = np.broadcast_to(np.nan_to_num(np.asarray(alpha, np.float64)), mu.shape)
    need = np.clip(mu * (1 + a * mu) * 8 + 20, 20, 10_000)
    bounds = np.array([20, 40, 80, 160, 400, 1_000, 3_000, 10_000])
    band = np.minimum(np.searchsorted(bounds, need), len(bounds) - 1)  # NaN means: the last
    total = np.zeros(len(mu))
    for b in np.unique(band):
        rows = np.flatnonzero(band == b)
        m, top = mu[rows], int(bounds[b])
        acc = np.zeros(len(rows))
        for k, p in count_pmfs(m, a[rows], top):
            acc += p * poisson_deviance(np.full(len(rows), float(k)), m)
        total[rows] = acc
    return float(total.mean()) if len(mu) else float("nan")


def common_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The finite forecasts of the zone-slots that every model of ``frame`` forecast."""
    finite = np.isfinite(frame["predicted"].to_numpy(np.float64))
    f = frame if finite.all() else frame[finite]
    nmod = f["model"].nunique()
    # a zone-slot's key from integer codes (a region's backtest holds 50 M rows: hashing
    # pairs of strings there took gigabytes)
    z = pd.factorize(f["zone_id"].to_numpy())[0].astype(np.int64)
    t, slots = pd.factorize(utc_ns(f["period_start"]).astype(np.int64))
    _, inverse, counts = np.unique(z * len(slots) + t, return_inverse=True, return_counts=True)
    keep = counts[inverse] == nmod
    return f if keep.all() else f[keep]


def _median(area: dict[str, float]) -> float:
    """The area given to a zone without one: the median of the others (1 when none)."""
    return float(np.median(list(area.values()))) if area else 1.0


def _flag_order(
    go: pd.DataFrame, area: dict[str, float] | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Zone-slots of one week by forecast per unit area (ties at random), and the cumulative
    share of area x time flagged along that order."""
    po = go["predicted"].to_numpy(np.float64)
    a = (
        np.ones(len(go))
        if area is None
        else go["zone_id"].astype(str).map(area).fillna(_median(area)).to_numpy(np.float64)
    )
    order = np.lexsort((rng.random(len(go)), -po / a))
    return order, np.cumsum(a[order]) / a.sum()


def _score_origin(
    name: str,
    origin,
    go: pd.DataFrame,
    hits: dict[float, list[float]],
    *,
    levels: Sequence[float],
    area: dict[str, float] | None,
    rng: np.random.Generator,
) -> OriginScore:
    """Score one model at one origin, adding its flagged incidents to ``hits``."""
    yo = go["observed"].to_numpy(np.float64)
    po = go["predicted"].to_numpy(np.float64)
    order, cum = _flag_order(go, area, rng)
    pai: dict[str, float | None] = {}
    for lv in levels:
        nflag = max(int(np.searchsorted(cum, lv, side="right")), 1)
        sel = order[:nflag]
        hits[lv][0] += yo[sel].sum()
        hits[lv][1] += yo.sum()
        hits[lv][2] += cum[nflag - 1]
        if lv == 0.05:
            hr = yo[sel].sum() / yo.sum() if yo.sum() > 0 else float("nan")
            pai[level_label(lv)] = float(hr / cum[nflag - 1]) if yo.sum() > 0 else None
    return OriginScore(
        origin=str(origin),
        model=name,
        poisson_deviance=float(poisson_deviance(yo, po).mean()),
        mae=float(np.abs(yo - po).mean()),
        pai=pai,
    )


def _score_model(
    name: str,
    g: pd.DataFrame,
    *,
    levels: Sequence[float],
    area: dict[str, float] | None,
    rng: np.random.Generator,
) -> tuple[ModelScore, list[OriginScore]]:
    """Score one model over every origin: its metrics, and its scores per origin."""
    yv = g["observed"].to_numpy(np.float64)
    mu = g["predicted"].to_numpy(np.float64)
    hits = {lv: [0.0, 0.0, 0.0] for lv in levels}  # captured, total, flagged share sum
    by_origin = [
        _score_origin(name, origin, go, hits, levels=levels, area=area, rng=rng)
        for origin, go in g.groupby("origin", sort=True)
    ]
    n_orig = len(by_origin)
    hit_rate: dict[str, float | None] = {}
    pai: dict[str, float | None] = {}
    for lv in levels:
        cap, tot, share = hits[lv]
        hr = cap / tot if tot > 0 else float("nan")
        hit_rate[level_label(lv)] = float(hr)
        pai[level_label(lv)] = float(hr / (share / n_orig)) if tot > 0 else float("nan")
    score = ModelScore(
        n=int(len(g)),
        poisson_deviance=float(poisson_deviance(yv, mu).mean()),
        mae=float(np.abs(yv - mu).mean()),
        coverage80=float(
            ((g["lower80"] <= g["observed"]) & (g["observed"] <= g["upper80"])).mean()
        ),
        coverage95=float(((g["lower"] <= g["observed"]) & (g["observed"] <= g["upper"])).mean()),
        hit_rate=hit_rate,
        pai=pai,
        **_calibration(g, yv, mu),
    )
    return score, by_origin


def _calibration(g: pd.DataFrame, yv: np.ndarray, mu: np.ndarray) -> dict[str, float | None]:
    """PIT coverages and the expected deviance, when the rows carry their NB2 ``alpha``."""
    if "alpha" not in g.columns:
        return {}
    a = np.nan_to_num(g["alpha"].to_numpy(np.float64))
    return {
        "pit_coverage80": pit_coverage(yv, mu, a, 0.8),
        "pit_coverage95": pit_coverage(yv, mu, a, 0.95),
        "expected_deviance": expected_deviance(mu, a),
    }


def evaluate(
    frame: pd.DataFrame,
    *,
    levels: Sequence[float] = FLAG_LEVELS,
    area: dict[str, float] | None = None,
    seed: int = 0,
) -> BacktestEvaluation:
    """Metrics per model over the rows every model could forecast.

    Parameters
    ----------
    frame
        Backtest rows (:data:`pipelines.models.backtest.BACKTEST_COLUMNS`).
    levels
        Shares of area x time flagged for hit rate and PAI.
    area
        Zone area (any unit) for area-weighted flagging; equal areas when ``None``.
    seed
        Tie-breaking of equal forecasts when flagging.

    Returns
    -------
    BacktestEvaluation
        ``models`` (model -> :class:`ModelScore`), ``by_origin``, ``n_rows``, ``n_incidents``
        and ``origins``; deviance is the mean unit Poisson deviance per zone-slot.
    """
    f = common_rows(frame)
    rng = np.random.default_rng(seed)
    if f.empty:
        return BacktestEvaluation(by_origin=(), n_rows=0, n_incidents=0, origins=())
    first = f[f["model"] == f["model"].iloc[0]]
    models: dict[str, ModelScore] = {}
    by_origin: list[OriginScore] = []
    model = f["model"].to_numpy()
    for name in pd.unique(model):  # one model's rows at a time (no sorted copy of them all)
        g = f[model == name]
        models[str(name)], rows = _score_model(str(name), g, levels=levels, area=area, rng=rng)
        by_origin += rows
        del g
    return BacktestEvaluation(
        models=models,
        by_origin=tuple(by_origin),
        n_rows=int(len(first)),
        n_incidents=int(first["observed"].sum()),
        origins=tuple(str(pd.Timestamp(o)) for o in sorted(pd.unique(f["origin"]))),
    )
