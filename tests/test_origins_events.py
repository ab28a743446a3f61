"""Origins of comparable events' crowds in the brief (pipelines.events.origins), tiny city."""

from __future__ import annotations

import pandas as pd
import pytest

from features.store import Store
from pipelines.events.origins import crowd_origins, crowd_text, origin_uplift


def _comparables(st: Store) -> list[dict]:
    ev = st.validated("events")
    meta = st.cube_meta()
    lo = pd.Timestamp(meta["start"]) + pd.Timedelta(weeks=4)
    ev = ev[(ev["category"] == "match") & (ev["start"] >= lo) & (ev["end"] < meta["end"])]
    ev = ev.sort_values("start").tail(4)
    tz = st.timezone
    return [
        {"event_id": r.event_id, "zone_id": str(r.zone_id),
         "start_local": r.start.tz_convert(tz).isoformat(),
         "end_local": r.end.tz_convert(tz).isoformat()}
        for r in ev.itertuples()
    ]  # fmt: skip


def test_uplift_by_origin_by_hand(tiny_store):
    """One event, one origin: the event day's count minus the median of the same weekday of
    the weeks before, computed here from the raw rows."""
    st = Store(tiny_store)
    comp = pd.DataFrame(_comparables(st)[-1:])
    src = st.validated("presence_origin")
    up = origin_uplift(src, comp, timezone=st.timezone, weeks=4).set_index("origin")
    day = pd.Timestamp(comp["start_local"].iloc[0]).tz_localize(None).normalize()
    z = comp["zone_id"].iloc[0]
    rows = src[(src["zone_id"].astype(str) == z) & (src["origin"] == "dep_92")]
    local = pd.to_datetime(rows["start"], utc=True).dt.tz_convert(st.timezone).dt.date
    now = rows.loc[local == day.date(), "count"].sum()
    refs = [(day - pd.Timedelta(weeks=w)).date() for w in range(1, 5)]
    ref = rows[local.isin(refs)].groupby(local[local.isin(refs)])["count"].sum().median()
    assert up.loc["dep_92", "uplift"] == pytest.approx(max(now - ref, 0.0))


def test_crowd_origins_published(tiny_store):
    st = Store(tiny_store)
    k = st.suppression_k
    c = crowd_origins(st, _comparables(st), k=k)
    assert c is not None and len(c.events) >= 2
    top = c.top_table()
    assert (top["crowd"] >= k).all() and len(top) <= 11
    assert top["share"].sum() == pytest.approx(100, abs=0.5)
    assert 0 <= c.share_abroad <= c.share_outside <= 1
    assert c.visitor_share_of_uplift is not None and 0 < c.visitor_share_of_uplift <= 1
    assert 25 <= c.travel_minutes <= 180
    assert "Multilingual signage" in crowd_text(c)
    assert crowd_origins(st, _comparables(st), k=10**9) is None  # the whole crowd below k
    assert crowd_origins(st, [], k=k) is None
