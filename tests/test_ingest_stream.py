"""Ingest at scale (issue 18): the C time parsers agree with pandas, and a presence source read
file by file gives the validated table and quarantine computed independently."""

from __future__ import annotations

import pandas as pd
import pytest

from features.ingest.times import _strptime, _strptime_aware

#: times pandas and a lenient C strptime may read differently
_AWARE = [
    "18/11/2024 00:00:04+0100",
    "18/11/2024 00:00:04+01:00",
    "18/11/2024 00:00:04Z",
    "18/11/2024 00:00:04",
    "31/02/2024 00:00:04+0100",
    "30/04/2024 00:00:04+0100",
    "01/03/2024 00:00:04+0100",
    "18/11/2024 00:00:04 +0100",
    "18/11/0225 00:00:04+0100",
    None,
    "18/11/2024 00:00:04-0530",
    "18/11/2024 00:00:04+01",
    "1/2/2024 00:00:04+0100",
    "29/02/2024 23:59:59+0000",
    "29/02/2023 23:59:59+0000",
    "18/11/24 00:00:04+0100",
    "18/11/2024 24:00:00+0100",
    "nonsense",
]


def test_aware_times_read_as_pandas_reads_them():
    s = pd.Series(_AWARE, dtype="string[pyarrow]")
    fmt = "%d/%m/%Y %H:%M:%S%z"
    got = _strptime_aware(s, fmt).astype("datetime64[us, UTC]")
    want = pd.to_datetime(s.astype(object), format=fmt, errors="coerce", utc=True)
    pd.testing.assert_series_equal(got, want.astype("datetime64[us, UTC]"), check_names=False)
    # the impossible dates are refused, not rolled over into the next month
    assert got.iloc[4] is pd.NaT and got.iloc[14] is pd.NaT  # 31/02/2024, 29/02/2023
    assert got.iloc[5] == pd.Timestamp("2024-04-29 23:00:04", tz="UTC")


@pytest.mark.parametrize("fmt", ["%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S"])
def test_naive_format_refuses_impossible_dates(fmt):
    good = pd.Timestamp("2024-02-29 10:00")
    vals = [good.strftime(fmt), "31/02/2024 10:00", "2024-02-30 10:00:00", "18/11/24 10:00"]
    s = pd.Series(vals, dtype="string[pyarrow]")
    got = _strptime(s, [fmt], fallback=fmt)
    want = pd.to_datetime(s.astype(object), format=fmt, errors="coerce")
    pd.testing.assert_series_equal(
        got.astype("datetime64[us]"), want.astype("datetime64[us]"), check_names=False
    )
    assert got.iloc[0] == good
