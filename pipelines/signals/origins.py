"""Origin anomalies: a zone's visitor mix departs from its reference (an unusual inflow).

For each zone and ISO week under review, the visitors' origins (person-days per origin, each day
weighted alike so that one event day does not make the week's mix; the residents of the study
area left out: :func:`features.cube.origins.weekly_mix`) are compared
with what the zone's reference weeks and the city's week predict. Expected counts follow a
log-linear model with zone x origin and week x origin effects: the zone's pooled shares over
its ``reference_weeks`` weeks before, moved by the city-wide change of each origin's share
between those weeks and this one (the median over zones of each zone's change: the tourist
season moves every zone together and is not an anomaly of one). Origins expected below
``min_expected`` are pooled into one cell.

Pearson's ``X² = Σ (x - e)² / e`` is over-dispersed against a multinomial: daily origins are
means of people, not independent draws, and each day's mix varies. When the shares themselves
vary (a Dirichlet-multinomial), the dispersion grows with the week's visitors ``n``:
``φ(n) = 1 + c n`` (Williams 1982; Agresti §4.7, with ``c`` the intra-class correlation), so a
zone with twice its usual visitors is not flagged for the same share noise. ``c`` of each zone
is estimated on its own reference weeks, each against the others (leave one out): the median of
``(X²_j / median χ²(df_j) - 1) / n_j`` (robust to an inflow among them), floored at 0. The test is the quasi-likelihood F test ``F = X² / ((K-1) φ)`` against F(K-1, d), with
``d = 0.64 R (K-1)`` degrees of freedom for a median over ``R`` weeks (the median's 64 %
efficiency). The signal names the origin with the largest standardised excess (``x - e`` over
``sqrt(φ e)``). p values go with the run's other tests into Benjamini-Hochberg.

References
----------
McCullagh, P. & Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed., ch. 9
(quasi-likelihood, dispersion from Pearson's X², F tests). Agresti, A. (2013). *Categorical Data
Analysis*, 3rd ed., §1.5 (Pearson's chi-square) and §4.7 (over-dispersion). Williams, D. A.
(1982). Extra-binomial variation in logistic linear models. *Applied Statistics* 31(2), 144-148.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from features.cube.origins import iso_week_label, weekly_mix
from features.store import Store
from pipelines.signals.explain import day_facts
from pipelines.signals.mix import mix_tests
from pipelines.signals.panel import fmt_number, record, records_frame
from pipelines.signals.settings import RunInputs

#: reference weeks before the reviewed one
REFERENCE_WEEKS = 8
#: origins expected below this (person-days) are pooled into one cell
MIN_EXPECTED = 5.0
#: efficiency of the median for the dispersion's degrees of freedom
MEDIAN_EFFICIENCY = 0.64


def origin_table(mix: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Visitor person-days as an array (zones, weeks, origins) and its axes (residents out)."""
    vis = mix[mix["class"] != "resident"]
    cube = vis.pivot_table(
        index=["zone_id", "week"], columns="origin", values="balanced", aggfunc="sum"
    )
    zones = sorted(vis["zone_id"].unique())
    weeks = sorted(vis["week"].unique())
    full = pd.MultiIndex.from_product([zones, weeks], names=["zone_id", "week"])
    cube = cube.reindex(full)
    arr = cube.to_numpy(dtype=float).reshape(len(zones), len(weeks), cube.shape[1])
    return arr, zones, weeks, [str(c) for c in cube.columns]


def _pearson(x: np.ndarray, e: np.ndarray, *, min_expected: float) -> tuple[float, int]:
    """X² and degrees of freedom (cells - 1), origins expected below min_expected pooled."""
    ok = np.isfinite(x) & np.isfinite(e)
    x, e = x[ok], e[ok]
    small = e < min_expected
    if small.any():
        x = np.r_[x[~small], x[small].sum()]
        e = np.r_[e[~small], e[small].sum()]
    keep = e > 0
    x, e = x[keep], e[keep]
    if len(e) < 2:
        return np.nan, 0
    return float(((x - e) ** 2 / e).sum()), len(e) - 1


def _expected(ref: np.ndarray, x_total: float, move: np.ndarray) -> np.ndarray:
    """Expected counts: the zone's pooled reference shares moved by the city's change."""
    shares = np.nansum(ref, axis=0)
    s = shares / max(shares.sum(), 1e-12) * move
    return x_total * s / max(s.sum(), 1e-12)


def city_move(ref: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Each origin's city-wide change of share: the median over zones of the zone's share this
    week over its reference share (one zone's inflow does not move it), 1 where unknown."""
    s_ref = _shares(np.nansum(ref, axis=1))
    s_now = _shares(now)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where((s_ref > 0) & (np.nansum(now, axis=1) > 0)[:, None], s_now / s_ref, np.nan)
    move = np.nanmedian(r, axis=0) if np.isfinite(r).any() else np.ones(ref.shape[-1])
    return np.where(np.isfinite(move) & (move > 0), move, 1.0)


def _shares(a: np.ndarray) -> np.ndarray:
    tot = np.nansum(a, axis=-1, keepdims=True)
    return np.nan_to_num(a) / np.where(tot > 0, tot, 1.0)


def origin_shift_tests(
    mix: pd.DataFrame,
    *,
    weeks: list[str],
    reference_weeks: int = REFERENCE_WEEKS,
    min_expected: float = MIN_EXPECTED,
) -> pd.DataFrame:
    """One test per zone and reviewed week (see the module docstring).

    Parameters
    ----------
    mix
        From :func:`features.cube.origins.weekly_mix` (the reviewed weeks and those before).
    weeks
        The ISO weeks under review.
    reference_weeks, min_expected
        The reference's length and the pooling of rare origins.

    Returns
    -------
    pandas.DataFrame
        Test records (``type`` ``origin_shift``), ``start``/``end`` the week's first local
        day and the next Monday as UTC-naive dates (the caller localises).
    """
    arr, zones, all_weeks, origins = origin_table(mix)
    recs = []
    for week in weeks:
        if week not in all_weeks:
            continue
        w = all_weeks.index(week)
        r0 = max(0, w - reference_weeks)
        if w - r0 < 3:
            continue
        move = city_move(arr[:, r0:w], arr[:, w])
        for z, zone in enumerate(zones):
            rec = _zone_test(arr[z, r0:w], arr[z, w], move, min_expected)
            if rec is not None:
                recs.append((zone, week, rec))
    return _records(recs, origins)


def dispersion_slope(ref: np.ndarray, min_e: float) -> float:
    """``c`` in ``φ(n) = 1 + c n``: each reference week against the others (leave one out),
    ``(X²_j / median χ²(df_j) - 1) / n_j``, their median (robust to an inflow among them),
    floored at 0."""
    slopes = []
    for j in range(len(ref)):
        n_j = float(np.nansum(ref[j]))
        ej = _expected(np.delete(ref, j, axis=0), n_j, np.ones(ref.shape[1]))
        x2_j, df_j = _pearson(np.nan_to_num(ref[j]), ej, min_expected=min_e)
        if df_j and n_j > 0:
            slopes.append((x2_j / stats.chi2.median(df_j) - 1.0) / n_j)
    return max(0.0, float(np.median(slopes))) if slopes else 0.0


def _zone_test(ref: np.ndarray, x: np.ndarray, move: np.ndarray, min_e: float) -> dict | None:
    """The F test of one zone-week, or None without visitors or a usable reference."""
    ref = ref[np.nansum(ref, axis=1) > 0]
    n = float(np.nansum(x))
    if len(ref) < 3 or n <= 0:
        return None
    e = _expected(ref, n, move)
    x2, df = _pearson(np.nan_to_num(x), e, min_expected=min_e)
    if df == 0:
        return None
    phi = max(1.0, 1.0 + dispersion_slope(ref, min_e) * n)
    d2 = max(1.0, MEDIAN_EFFICIENCY * len(ref) * df)
    f = x2 / (df * phi)
    resid = (np.nan_to_num(x) - e) / np.sqrt(phi * np.maximum(e, min_e))
    top = int(np.argmax(resid))
    return {"x2": x2, "df": df, "phi": phi, "f": f, "p": float(stats.f.sf(f, df, d2)),
            "top": top, "x_top": float(np.nan_to_num(x)[top]), "e_top": float(e[top]),
            "n": n, "resid": float(resid[top])}  # fmt: skip


def _records(recs: list, origins: list[str]) -> pd.DataFrame:
    rows = []
    for zone, week, t in recs:
        monday = pd.Timestamp(dt_from_week(week))
        o = origins[t["top"]]
        ratio = t["x_top"] / t["e_top"] if t["e_top"] > 0 else np.nan
        rows.append(
            record(
                "origin_shift",
                detector="origin_mix_quasi_f",
                zones=[zone],
                start=monday,
                end=monday + pd.Timedelta(days=7),
                observed=t["x_top"] / 7,
                expected=t["e_top"] / 7,
                ratio=ratio,
                p_value=t["p"],
                statistic=t["f"],
                explanation=(
                    f"zone {zone}, week {week}: the visitors' origins depart from the zone's "
                    f"reference weeks (F = {t['f']:.1f}, dispersion {t['phi']:.1f}); most of it "
                    f"from {o}: {fmt_number(t['x_top'] / 7)} present a day against "
                    f"{fmt_number(t['e_top'] / 7)} expected"
                ),
                week=week,
                origin=o,
                chi2=round(t["x2"], 2),
                df=t["df"],
                dispersion=round(t["phi"], 3),
                visitors_per_day=round(t["n"] / 7, 1),
                residual=round(t["resid"], 2),
            )  # fmt: skip
        )
    return records_frame(rows)


def dt_from_week(week: str) -> pd.Timestamp:
    """The Monday of an ISO week ``YYYY-Www``."""
    y, w = week.split("-W")
    return pd.Timestamp.fromisocalendar(int(y), int(w), 1)


def origin_review(
    origins: pd.DataFrame,
    *,
    weeks: list[str],
    timezone: str,
    reference_weeks: int = REFERENCE_WEEKS,
) -> pd.DataFrame:
    """The origin tests of a run: weekly mixes of the store's ``presence_origin``, tested,
    with ``start``/``end`` as UTC instants of the weeks' local midnights."""
    mix = weekly_mix(origins, timezone=timezone)
    tests = origin_shift_tests(mix, weeks=weeks, reference_weeks=reference_weeks)
    for col in ("start", "end"):
        tests[col] = (
            pd.to_datetime(tests[col]).dt.tz_localize(timezone, nonexistent="shift_forward",
                                                       ambiguous=False).dt.tz_convert("UTC")
        )  # fmt: skip
    return tests


def who_parts(st: Store, inp: RunInputs) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The run's tests of who is present: visitor share and resident ratio per zone-day
    (:mod:`pipelines.signals.mix`) and origin shifts per zone-week of the period, with notes."""
    tz = inp.timezone
    first = inp.start.tz_convert(tz).date()
    last = (inp.end - pd.Timedelta(seconds=1)).tz_convert(tz).date()
    area = (st.study() or {}).get("area", {})
    facts = day_facts(
        inp.frame, events=st.validated("events"), country=st.cube_meta().get("country"),
        subdivision=area.get("subdivision"),
    )  # fmt: skip
    parts = {"presence_mix": mix_tests(inp.frame, first=first, last=last, timezone=tz, facts=facts)}
    notes = []
    origins = st.validated("presence_origin")
    if origins is None or origins.empty:
        notes.append("no presence_origin source: no origin anomalies.")
        return parts, notes
    lo = inp.start - pd.Timedelta(weeks=REFERENCE_WEEKS + 1)
    at = pd.to_datetime(origins["start"], utc=True)
    origins = origins[(at >= lo) & (at < inp.end)]
    days = pd.date_range(first, last, freq="D")
    weeks = sorted(set(iso_week_label(pd.Series(days))))
    full = [w for w in weeks if pd.Series(days).pipe(iso_week_label).eq(w).sum() == 7]
    if len(full) < len(weeks):
        notes.append("origin anomalies test whole ISO weeks only: partial weeks left out.")
    parts["origin_shift"] = origin_review(origins, weeks=full, timezone=tz)
    return parts, notes
