"""The daily gathering test joined to the visitor share's rise (issue 13;
:mod:`pipelines.signals.crowd`).

The panel is simulated here, independently of vigie's synthetic city: daily residents and
visitors of 12 zones with a weekday profile and a shared city-wide day level (a school-holiday
fortnight at -20 %, a summer dip). Each zone-day's delivered count is a log-normal factor
(SD 0.08) off, for residents and visitors alike, and the zone's visitors have their own day
noise (SD 0.15), which moves the total and the share together: under the null the two tests are
correlated. One residential zone (10 % visitors) hosts games withheld from the events, about
twice a week in season, their crowds all visitors, each raising the day's presence 1.2-1.35x:
a count alone stands those days 2 to 3 scales up. The tests run :func:`presence_review` and the
run's weekly Benjamini-Hochberg adjustment (:func:`pipelines.signals.run.adjust`), the path of
``vigie signals``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _daily_panel import DAYS, PERIOD, VENUE, ZONES, calendar

from pipelines.signals import crowd
from pipelines.signals.mix import daily_indicators, indicator_z
from pipelines.signals.period import parse_period
from pipelines.signals.presence import presence_review
from pipelines.signals.run import adjust


def _panel(seed: int = 7, *, venue: bool = True) -> tuple[pd.DataFrame, set[str]]:
    """The simulated daily panel with residents and visitors, and the venue's game days."""
    rng = np.random.default_rng(seed)
    cal = calendar(rng, venue=venue)
    rows = []
    for z in ZONES:
        residents = rng.uniform(2000, 8000) * cal.weekday * cal.city
        share = 0.1 if z == VENUE else rng.uniform(0.1, 0.4)
        visitors = residents * share / (1 - share) * np.exp(rng.normal(0, 0.15, DAYS))
        if z == VENUE:  # the game's crowd: visitors, the day's presence x u
            visitors = visitors + np.where(cal.game, rng.uniform(0.2, 0.35, DAYS), 0.0) * (
                residents + visitors
            )
        delivered = np.exp(rng.normal(0, 0.08, DAYS))  # residents and visitors alike
        res, vis = np.round(residents * delivered), np.round(visitors * delivered)
        rows.append(cal.rows(z, res + vis, residents=res, visitors=vis))
    return pd.concat(rows, ignore_index=True), cal.games


def _review(frame: pd.DataFrame, start: str = PERIOD[0], end: str = PERIOD[1]) -> pd.DataFrame:
    period = parse_period(None, start=start, end=end)
    ps, pe = period.bounds("UTC")
    tests = adjust([presence_review(frame, period_start=ps, period_end=pe).tests],
                   period=period, timezone="UTC")  # fmt: skip
    tests["day"] = pd.to_datetime(tests["start"], utc=True).dt.strftime("%Y-%m-%d")
    tests["zone"] = tests["zones"].map(lambda z: z[0])
    return tests


def _recall_precision(tests: pd.DataFrame, games: set[str]) -> tuple[float, float, int]:
    flagged = tests[tests["q_value"] < 0.05]
    game_days = games & {str(d.date()) for d in pd.date_range(*PERIOD)}
    hits = flagged[(flagged["zone"] == VENUE) & (flagged["type"] == "gathering")]
    others = flagged[flagged["zone"] != VENUE][["zone", "day"]].drop_duplicates()
    recall = len(set(hits["day"]) & game_days) / len(game_days)
    precision = float(hits["day"].isin(game_days).mean()) if len(hits) else float("nan")
    return recall, precision, len(others)


@pytest.fixture(scope="module")
def panel():
    return _panel()


def test_the_share_finds_games_a_count_alone_misses(panel):
    """With the split, >= 80 % of the game days are flagged as gatherings at precision >= 0.9
    and the other zones' days flagged either way stay <= 2 %; the same panel without its
    visitors column (a count alone: transit entries, a sensor) finds at least 15 points fewer."""
    frame, games = panel
    recall, precision, others = _recall_precision(_review(frame), games)
    alone = _recall_precision(_review(frame.drop(columns=["visitors", "residents"])), games)[0]
    assert recall >= 0.8 and precision >= 0.9, (recall, precision)
    assert others <= 0.02 * (len(ZONES) - 1) * len(pd.date_range(*PERIOD))
    assert recall >= alone + 0.15, (recall, alone)


def test_joined_tests_carry_their_parts(panel):
    """A joined gathering names the visitors' share and keeps the presence test's own p value,
    the share's z and the study's correlation in its details, not the share itself (beside the
    people present it would give the visitors' count); the correlation the panel plants
    (the visitors' own noise moves the total and the share) is found."""
    frame, games = panel
    tests = _review(frame)
    g = tests[(tests["type"] == "gathering") & (tests["zone"] == VENUE) & tests["day"].isin(games)]
    d = g["details"].iloc[0]
    assert {"p_presence", "share_z", "rho"} <= set(d)
    assert not {"share", "share_usual", "visitors"} & set(d)  # with the people present: a count
    assert d["share_z"] > 2.0 and d["p_unweighted"] < d["p_presence"]
    assert "visitors' share" in g["explanation"].iloc[0]
    assert 0.1 < d["rho"] < 0.9, d["rho"]


def test_no_venue_keeps_the_false_discovery_rate():
    """Without any gathering, over 6 panels of 18 weeks, the joined tests keep the bounds of the
    count's own null test (tests/test_presence_daily.py): their share of unweighted p below 0.01
    lies within 0.5-1.5 % and below 0.001 at most 0.2 %, and at most 10 of the 108 weekly
    Benjamini-Hochberg families hold a discovery at FDR 0.05 (expected <= 5.4;
    P(Binomial(108, 0.05) >= 11) = 0.02). Joined as if independent (rho = 0, no Bonferroni
    with the count's own test), the same tests are liberal: their share below 0.01 is higher."""
    shares, indep, weeks_with = [], [], 0
    for seed in range(20, 26):
        frame, _ = _panel(seed, venue=False)
        tests = _review(frame)
        g = tests[tests["type"] == "gathering"]
        pu = g["details"].map(lambda d: d["p_unweighted"]).astype(float)
        shares.append(((pu < 0.01).mean(), (pu < 0.001).mean()))
        joined_ = g["details"].map(lambda d: "share_z" in d)
        z1 = g.loc[joined_, "details"].map(lambda d: d["p_presence"]).astype(float)
        z2 = g.loc[joined_, "details"].map(lambda d: d["share_z"]).astype(float)
        p0 = crowd.stats.norm.sf((crowd.stats.norm.isf(z1) + z2) / np.sqrt(2.0))
        indep.append((p0 < 0.01).sum() / len(g))
        week = pd.to_datetime(tests["day"]).dt.to_period("W")
        weeks_with += int((tests["q_value"] < 0.05).groupby(week).any().sum())
    below_01, below_001 = np.mean(shares, axis=0)
    assert 0.005 <= below_01 <= 0.015, shares
    assert below_001 <= 0.002, shares
    assert weeks_with <= 10, weeks_with
    assert np.mean(indep) > 1.5 * below_01, (indep, below_01)


def test_joined_only_where_more_people_and_a_known_correlation():
    """Visitors replacing residents who left (a holiday) raise the share but not the total: the
    test stays presence's own, as it does for a zone without a correlation (too few quiet days
    behind it). Where the total stands above, the share's rise joins it, Bonferroni with the
    count's own test: a crowd of residents (4 SD up, its share 2 SD down) stays as strong as
    its count makes it, up to that factor 2."""
    p = np.array([0.7, 0.04, 0.04, 3e-5])
    out = crowd.joined(p, np.array([5.0, 5.0, 5.0, -2.0]), np.array([0.4, 0.4, np.nan, 0.4]),
                       above=np.array([False, True, True, True]))  # fmt: skip
    assert out.used.tolist() == [False, True, False, True]
    assert out.p[0] == 0.7 and out.p[2] == 0.04
    z = (crowd.stats.norm.isf(0.04) + 5.0) / np.sqrt(2.8)
    assert out.p[1] == pytest.approx(2 * crowd.stats.norm.sf(z))
    assert out.p[3] == pytest.approx(6e-5)


def test_zone_correlation_reads_each_zone_before_its_week():
    """Each zone's correlation over the 26 weeks before a day's ISO week: two zones with rho 0.4
    and 0 read within one standard error above their own (raised by one, never below); 3 % of
    days far up in both tests (gatherings) move the winsorized estimate by less than Pearson's
    moves; nothing of the day's own week or later enters it; with fewer than 56 pairs, none."""
    rng = np.random.default_rng(3)
    n = 7 * 40
    days = pd.date_range("2024-01-01", periods=n, freq="D")  # a Monday
    wd = days.dayofweek.to_numpy()
    a = rng.multivariate_normal([0, 0], [[1, 0.4], [0.4, 1]], n)
    b = rng.standard_normal((n, 2))
    z1, z2 = np.stack([a[:, 0], b[:, 0]]), np.stack([a[:, 1], b[:, 1]])
    r = crowd.zone_correlation(z1, z2, wd)
    se = 1 / np.sqrt(7 * 26 - 3)
    assert 0.4 <= r[0, -1] <= np.tanh(np.arctanh(0.4) + 2.5 * se), r[0, -1]
    assert 0.0 <= r[1, -1] <= np.tanh(2.5 * se), r[1, -1]
    late = z1.copy()
    late[:, -3:] = 50.0  # the last week's own days
    assert np.array_equal(crowd.zone_correlation(late, z2, wd)[:, -1], r[:, -1])
    hit = rng.random(n) < 0.03
    up1, up2 = np.where(hit, z1 + 6, z1), np.where(hit, z2 + 6, z2)
    rw = crowd.zone_correlation(up1, up2, wd)[0, -1]
    w = slice(n - 7 - 7 * 26, n - 7)
    pearson = np.corrcoef(up1[0, w], up2[0, w])[0, 1]
    assert rw - r[0, -1] < pearson - np.corrcoef(z1[0, w], z2[0, w])[0, 1], (rw, pearson)
    assert np.isnan(crowd.zone_correlation(z1, z2, wd)[:, 7 * 8 - 1]).all()  # 7 weeks behind


def test_share_test_is_the_same_in_a_weekly_run_and_a_study(panel):
    """The visitor share's test of a day reads the weeks before that day's ISO week, so a
    one-week run and a study over 18 weeks give its days the same z; the Monday and Tuesday of
    a Wednesday's own week do not enter its scale, the Sunday before does."""
    frame, _ = panel
    daily = daily_indicators(frame)
    day = pd.Timestamp("2024-08-14").date()  # a Wednesday
    week = indicator_z(daily, "visitor_share", first=pd.Timestamp("2024-08-12").date(),
                       last=pd.Timestamp("2024-08-18").date())  # fmt: skip
    study = indicator_z(daily, "visitor_share", first=pd.Timestamp(PERIOD[0]).date(),
                        last=pd.Timestamp(PERIOD[1]).date())  # fmt: skip
    a = week.z[:, list(week.days).index(day)]
    b = study.z[:, list(study.days).index(day)]
    assert np.isfinite(a).all() and np.array_equal(a, b)

    def z_after(changed: str) -> np.ndarray:
        d = daily.copy()
        on = (pd.to_datetime(d["local_date"]) == changed) & (d["zone_id"] == VENUE)
        d.loc[on, "visitor_share"] = 0.9
        iz = indicator_z(d, "visitor_share", first=day, last=day)
        return iz.z[list(iz.zones).index(VENUE), 0]

    z0 = a[ZONES.index(VENUE)]
    assert z_after("2024-08-12") == z0 and z_after("2024-08-13") == z0
    assert z_after("2024-08-11") != z0
