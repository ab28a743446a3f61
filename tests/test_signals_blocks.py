"""A signals run reading its history one zone block after the other, in one process.

A region's calibration history (5 000 zones x a year of hours) does not fit in memory whole:
past ``block_rows`` rows, the run reads only the recent weeks whole and builds the daily panel
zone block by zone block (:func:`~pipelines.signals.blocks.panel_on_blocks`, ``in_process``).
These tests pin that the block path gives the whole-table path's run exactly (the fallback
expectation with a calibration history, and the fitted model), and that each block reads only
its zones' rows.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from _toy_store import toy_store

from features.store import Store
from features.timeutil import last_full_week
from pipelines.signals import blocks as blocks_module
from pipelines.signals import run as run_module
from pipelines.signals.expectation import fallback_expected, fallback_fit
from pipelines.signals.inputs import read_cube_rows, read_cube_rows_by_block
from pipelines.signals.run import parse_period, run_signals
from pipelines.signals.settings import RunSettings


def _assert_same_run(a, b) -> None:
    assert a.expectation == b.expectation
    assert a.test_counts == b.test_counts
    assert a.replicates == b.replicates
    assert a.notes == b.notes
    pd.testing.assert_frame_equal(a.tests, b.tests)
    pd.testing.assert_frame_equal(a.signals, b.signals)


@pytest.fixture(scope="module")
def long_toy(tmp_path_factory):
    """A toy city of 25 zones over 36 weeks: enough weeks to calibrate on past zone-weeks."""
    root = tmp_path_factory.mktemp("blocks_toy") / "store"
    toy_store(root, side=5, weeks=36, seed=3)
    return root


def _counting(monkeypatch) -> dict[str, list]:
    """Record the rows and zones of every cube read of the blocks and of the run's client."""
    seen: dict[str, list] = {"block": [], "client": []}

    def spy(where, real):
        def read(*args, **kwargs):
            frame = real(*args, **kwargs)
            seen[where].append((len(frame), kwargs.get("zones"), kwargs.get("history_days")))
            return frame

        return read

    monkeypatch.setattr(blocks_module, "read_cube_rows", spy("block", blocks_module.read_cube_rows))
    monkeypatch.setattr(run_module, "read_cube_rows", spy("client", run_module.read_cube_rows))
    monkeypatch.setattr(
        run_module, "read_cube_rows_by_block", spy("client", run_module.read_cube_rows_by_block)
    )
    return seen


def test_history_blocks_follow_the_row_budget() -> None:
    cfg = RunSettings(block_rows=4_000_000)
    # a region: 5 000 zones x 24 hours x (364 + 28 + 7 + 1) days = 48 M rows: 13 blocks of
    # at most 416 zones (4 M // 9 600 rows a zone)
    assert cfg.history_blocks(5000, "1h") == 13
    assert cfg.history_blocks(300, "1h") == 1  # a city is read whole, as before
    assert cfg.history_blocks(5000, "1d") == 1
    assert RunSettings(address="tcp://x:1", zone_blocks=3).history_blocks(5000, "1h") == 3
    assert RunSettings(block_rows=1).history_blocks(7, "1h") == 7  # never more than the zones


def test_fallback_fit_reads_only_its_window(long_toy) -> None:
    """The fallback fitted on the weeks before the period alone = fitted on the whole history."""
    st = Store(long_toy)
    frame = st.cube()
    end = pd.Timestamp("2027-01-04", tz="Europe/Paris").tz_convert("UTC")
    window = frame[frame["hour"] >= end - pd.Timedelta(weeks=8)].reset_index(drop=True)
    whole, part = fallback_fit(frame, fit_end=end), fallback_fit(window, fit_end=end)
    assert not whole.whole and not part.whole
    np.testing.assert_array_equal(whole.rate, part.rate)
    np.testing.assert_array_equal(whole.profile, part.profile)
    np.testing.assert_array_equal(part.expected(frame), fallback_expected(frame, fit_end=end))


def test_block_path_equals_the_whole_table_with_calibration(long_toy, monkeypatch) -> None:
    """Fallback expectation, calibrated tests: the same run, each block reading its zones."""
    period = parse_period("2027-W18")
    kw = dict(write=False, calibration_weeks=30, n_sim=199)
    whole = run_signals(long_toy, period, **kw)
    seen = _counting(monkeypatch)
    blocks = run_signals(long_toy, period, block_rows=20_000, **kw)
    assert whole.expectation.source == "fallback" and whole.test_counts["incidents"] > 0
    assert "calibrated" in whole.expectation.note
    _assert_same_run(whole, blocks)
    # each block read its own zones once, within the row budget (with the period's days)
    zones = [z for _, block, _ in seen["block"] for z in block]
    assert sorted(zones) == sorted(set(zones)) and len(zones) == 25 and len(seen["block"]) > 1
    assert all(rows <= 20_000 for rows, _, _ in seen["block"])
    history = read_cube_rows(Store(long_toy), period, timezone="Europe/Paris",
                             history_days=RunSettings(calibration_weeks=30).read_days,
                             columns=["incidents", "local_date"])  # fmt: skip
    assert sum(rows for rows, _, _ in seen["block"]) == len(history)
    # the client read only the recent weeks the presence tests look back on
    assert [h for _, _, h in seen["client"]] == [RunSettings().recent_days]


def test_block_path_equals_the_whole_table_with_a_model(fitted_store, monkeypatch) -> None:
    """The fitted model's expectation per block: the same run as from the whole table."""
    meta = Store(fitted_store).cube_meta()
    period = parse_period(last_full_week(meta["end"], meta["timezone"]))
    whole = run_signals(fitted_store, period, write=False)
    seen = _counting(monkeypatch)
    blocks = run_signals(fitted_store, period, write=False, block_rows=30_000)
    assert whole.expectation.source == "model"
    _assert_same_run(whole, blocks)
    n_zones = meta["zones"]
    assert len(seen["block"]) == RunSettings(block_rows=30_000).history_blocks(n_zones, "1h")
    per_zone = max(rows / len(block) for rows, block, _ in seen["block"])
    assert per_zone <= 24 * (RunSettings().read_days + 8)
    assert all(rows <= 30_000 for rows, _, _ in seen["block"])  # a block holds its zones only


def test_read_by_block_is_the_whole_read(long_toy) -> None:
    """The recent rows read zone block by zone block in Arrow = the whole pandas read (67 local
    days of 25 zones, one of them the 23 hours of the change to summer time)."""
    st = Store(long_toy)
    period = parse_period("2027-W18")
    cols = ["local_hour", "dow", "local_date", "present", "present_baseline", "incidents"]
    kw = dict(timezone="Europe/Paris", history_days=60, columns=cols)
    whole = read_cube_rows(st, period, **kw)
    by_block = read_cube_rows_by_block(st, period, block_rows=5_000, **kw)
    assert len(whole) == 25 * (24 * 67 - 1) and whole["local_date"].map(type).eq(dt.date).all()
    pd.testing.assert_frame_equal(by_block, whole)
