"""A presence test of a day does not depend on the period it is run in, when the runs read the
same history (here a cube of 40 weeks, shorter than a run's year of history: every run reads it
from its start; on a longer cube a weekly run reads the year before its week and a study the
year before its first one, and the references, trimmed out of sample, differ by what those
first weeks trimmed): a weekly run and a retrospective study over weeks before and after it
give that day the same statistic and the same unweighted p value (daily grain), in this process
with the history read in zone blocks, and without the incident tests' calibration history. Until 2026-12 the study's shift of a day read each
zone's usual level over every day read, the later ones too
(:func:`~pipelines.signals.shift.city_shift`), and a weekly run read 26 weeks of presence
history where a study read 26 weeks before its own first day
(:meth:`~pipelines.signals.settings.RunSettings.presence_days`). Only the weights may differ: a
study reads a zone's rate of gathering days on its other weeks too (``PERIOD_FOLDS``)."""

from __future__ import annotations

import pandas as pd

from pipelines.signals.period import parse_period
from pipelines.signals.run import run_signals
from pipelines.signals.settings import RunSettings
from tests._toy_store import toy_store

WEEKS = 40


def _presence(run, first: str, last: str) -> pd.DataFrame:
    t = run.tests[run.tests["type"].isin(["gathering", "emptied"])].copy()
    day = pd.to_datetime(t["start"], utc=True).dt.tz_convert(run.timezone).dt.strftime("%Y-%m-%d")
    t = t[(day >= first) & (day <= last)]
    t.index = pd.MultiIndex.from_arrays([t["zones"].str[0], day[t.index], t["type"]])
    t["p_unweighted"] = t["details"].map(lambda d: d["p_unweighted"])
    return t[["statistic", "p_unweighted"]].sort_index()


def test_a_week_reads_the_same_in_a_weekly_run_and_a_study(tmp_path):
    toy_store(tmp_path / "st", side=4, weeks=WEEKS, grain="1d", seed=5)
    week = ("2027-04-26", "2027-05-02")  # week 35 of the 40
    one = run_signals(tmp_path / "st", parse_period(None, start=week[0], end=week[1]),
                      use_model=False, write=False)  # fmt: skip
    study = run_signals(tmp_path / "st", parse_period(None, start="2027-03-22", end="2027-06-06"),
                        use_model=False, write=False)  # fmt: skip
    blocks = run_signals(tmp_path / "st", parse_period(None, start=week[0], end=week[1]),
                         use_model=False, write=False, block_rows=2_000)  # fmt: skip
    uncalibrated = run_signals(tmp_path / "st", parse_period(None, start=week[0], end=week[1]),
                               use_model=False, write=False, calibration_weeks=0)  # fmt: skip
    a, b = _presence(one, *week), _presence(study, *week)
    assert len(a) == 16 * 7 * 2 and a.index.equals(b.index)
    for other in (b, _presence(blocks, *week), _presence(uncalibrated, *week)):
        pd.testing.assert_frame_equal(a, other, check_exact=False, rtol=1e-9)


def test_daily_presence_reads_the_calibration_year():
    """At daily grain the presence tests read the run's whole history (a year: the 52-week
    memory of a venue's rate of gathering days); at hourly grain the 26 weeks before."""
    cfg = RunSettings()
    assert cfg.presence_days("1d") == cfg.read_days >= 364
    assert RunSettings(calibration_weeks=0).presence_days("1d") >= 364
    assert cfg.presence_days("1h") == cfg.recent_days == 182
