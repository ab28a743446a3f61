"""Origins and who-is-present indicators in the published outputs: `vigie export` and the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
from fastapi.testclient import TestClient

from features.cube.origins import OTHER, weekly_mix
from features.store import Store
from pipelines.api import create_app
from pipelines.export.exporters import export
from pipelines.reports.publish import find_derivable, find_unsuppressed
from tests._export_store import build


@pytest.fixture(scope="module")
def served(tiny_store: Path, tmp_path_factory) -> dict:
    return build(tiny_store, tmp_path_factory.getbasetemp() / "export_store")


@pytest.mark.parametrize("fmt", ["gpkg", "csv"])
def test_origins_export_reads_back_suppressed(served, tmp_path, fmt):
    """Every published origin cell is >= k, 'other' merges >= 2 origins, and each zone-week's
    published cells add up to its raw total (what is hidden is only ever 'other')."""
    st = Store(served["store"])
    k = st.suppression_k
    res = export(
        st, what="origins", fmt=fmt, out=tmp_path / f"origins.{fmt}", period=served["week"]
    )
    df = pyogrio.read_dataframe(res.path)
    assert len(df) == res.rows > 0
    assert {"zone_id", "week", "origin", "class", "present", "merged"} <= set(df.columns)
    assert (df["present"].astype(float) >= k).all()
    other = df[df["origin"] == OTHER]
    assert (other["merged"].astype(int) >= 2).all()
    assert set(df["origin"]) - {OTHER} <= set(st.validated("presence_origin")["origin"])
    raw = weekly_mix(st.validated("presence_origin"), timezone=st.timezone)
    raw = raw[raw["week"] == served["week"]]
    tot = raw.groupby("zone_id")["mean"].apply(lambda s: np.round(s).sum())
    pub = df.groupby(df["zone_id"].astype(str))["present"].apply(lambda s: s.astype(float).sum())
    assert np.allclose(pub, tot.reindex(pub.index))
    if fmt == "gpkg":
        assert pyogrio.read_info(res.path)["crs"] == "EPSG:4326"


def test_zones_export_who_columns_guarded(served, tmp_path):
    """visitor_share is withheld wherever visitors or present is, with a note."""
    res = export(served["store"], what="zones", fmt="gpkg", out=tmp_path / "z.gpkg")
    df = pyogrio.read_dataframe(res.path)
    assert {"visitor_share", "present_peak", "peak_vs_population"} <= set(df.columns)
    hidden = df["visitors"].isna() | df["present"].isna()
    assert hidden.any() and df.loc[hidden, "visitor_share"].isna().all()
    assert df.loc[hidden, "suppressed"].str.contains("visitor_share c").all()
    shown = ~hidden
    assert np.allclose(
        df.loc[shown, "visitor_share"], (df["visitors"] / df["present"])[shown], rtol=0.2
    )


def test_api_origins_and_who(served):
    st = Store(served["store"])
    k, week = st.suppression_k, served["week"]
    c = TestClient(create_app(st))
    r = c.get("/origins", params={"zone": "750560002", "period": week})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["weeks"] == [week] and body["origins"]
    assert all(o["zone_id"] == "750560002" and o["present"] >= k for o in body["origins"])
    assert find_unsuppressed(body, k) == [] and find_derivable(body, k) == []
    assert c.get("/origins", params={"zone": "nope"}).status_code == 404
    assert c.get("/origins", params={"period": "2001-W01"}).status_code == 400
    ind = c.get("/indicators/750560002", params={"period": week}).json()
    assert {"visitor_share", "present_peak", "peak_vs_population"} <= set(ind["who"])
    slots = c.get(
        "/presence", params={"zone": "750560004", "from": "2026-11-09", "to": "2026-11-09"}
    ).json()["slots"]
    small = [s for s in slots if s["visitors"] == f"<{k}"]
    assert small and all(s["visitor_share"] == "c" for s in small)
    assert all(
        isinstance(s["resident_ratio"], float) for s in slots if isinstance(s["present"], float)
    )
