"""quiet_reference's ``from_day``: a short period after a long history gets the same reference,
scale and lower tail as the whole computation (only the weeks it needs are computed)."""

from __future__ import annotations

import numpy as np

from pipelines.signals.reference import quiet_reference


def test_from_day_gives_the_same_reference():
    rng = np.random.default_rng(0)
    y = rng.normal(5.0, 0.1, (3, 1400, 4))
    y[:, :, 1] += 0.3 * rng.standard_t(3, (3, 1400))  # a heavy lower tail to read
    pool = rng.random(y.shape) > 0.05
    whole = quiet_reference(y, pool)
    part = quiet_reference(y, pool, from_day=1300)  # computed from 104 weeks before its week
    for name in ("loc", "scale", "n_scale", "tail_df"):
        np.testing.assert_array_equal(getattr(part, name)[:, 1300:], getattr(whole, name)[:, 1300:])
    assert np.isnan(part.loc[:, :500]).all()  # weeks far before the period are not computed
