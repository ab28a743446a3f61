"""A brief reads what it needs: the stops' ridership and the comparables' origins, filtered.

At region scale the ridership (79 M rows) and the origins (58 M rows) do not fit in memory
whole; the brief reads the rows of the stops near the venue and of the comparables' zones over
the weeks it looks back on. These tests pin that the filtered reads give what the whole tables
gave, and read fewer rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.store import Store
from pipelines.events import context
from pipelines.events.brief import make_brief
from pipelines.events.origins import REFERENCE_WEEKS, origin_uplift, origins_near
from pipelines.events.spec import BriefParams, load_event
from pipelines.events.timeline import event_hours


@pytest.fixture(scope="module")
def tiny_brief(fitted_store):
    st = Store(fitted_store)
    events = st.validated("events").sort_values("expected_attendance", ascending=False)
    ev_id = str(events["event_id"].iloc[0])
    return st, ev_id, make_brief(st, ev_id, write=False)


def test_origins_near_give_the_whole_table_uplift(tiny_brief) -> None:
    st, _, brief = tiny_brief
    comp = pd.DataFrame(brief.context.comparables)
    if comp.empty:
        pytest.skip("the tiny city's largest event has no comparable")
    whole = st.validated("presence_origin")
    near = origins_near(st, comp, weeks=REFERENCE_WEEKS)
    assert 0 < len(near) < len(whole)
    kw = dict(timezone=st.timezone, weeks=REFERENCE_WEEKS)
    up = origin_uplift(near, comp, **kw)
    assert len(up) > 0
    pd.testing.assert_frame_equal(up, origin_uplift(whole, comp, **kw))


def test_ridership_near_gives_the_whole_table_usual_entries(tiny_brief) -> None:
    st, ev_id, _ = tiny_brief
    ev = load_event(st, ev_id, notes=[])
    bp = BriefParams.from_mapping(None).for_event(ev)
    hours = event_hours(ev.start, ev.end, before=bp.hours_before, after=bp.hours_after)
    stops = st.validated("stops")
    near = stops.iloc[:5]  # any stops: the read is per stop
    since = ev.start - pd.Timedelta(weeks=bp.baseline_weeks)
    rid = context.ridership_near(st, near["stop_id"], since=since, until=ev.start)
    whole = st.validated("ridership")
    assert rid is not None and 0 < len(rid) < len(whole)
    args = (near, hours, ev, st.timezone, bp.baseline_weeks)
    got, want = context._usual_entries(rid, *args), context._usual_entries(whole, *args)
    assert want.sum() > 0
    np.testing.assert_array_equal(got, want)
