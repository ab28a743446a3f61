"""`vigie serve`: the API started as a real uvicorn process on a free localhost port, queried over
HTTP with httpx: every endpoint answers, bad parameters get 4xx JSON errors, no count below k
and no incident id in any answer, the token is required when set, long answers are streamed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.store import Store
from pipelines.api import create_app
from pipelines.reports.publish import find_derivable, find_unsuppressed
from tests._export_store import build, incident_ids

TOKEN = "test-token-4f1c"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served(tiny_store: Path, tmp_path_factory) -> dict:
    return build(tiny_store, tmp_path_factory.getbasetemp() / "export_store")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    """`vigie serve --store S --port P` (default host) with $VIGIE_API_TOKEN set."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "VIGIE_API_TOKEN": TOKEN}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--store", served["store"],
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"vigie serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"vigie serve did not answer within 120 s:\n{log.read_text()}")
        time.sleep(0.3)
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    yield {"client": client, "base": base, "log": log, **served}
    client.close()
    proc.terminate()
    proc.wait(timeout=30)


def published_ok(payload, ids: set[str], k: int) -> None:
    """No count below k, nothing that rebuilds one, no incident id."""
    assert find_unsuppressed(payload, k) == []
    assert find_derivable(payload, k) == []
    tokens = set(re.findall(r"[\w-]+", json.dumps(payload)))
    assert not tokens & ids


def test_every_endpoint_answers(server):
    """Each endpoint answers 200 with JSON that is published as the reports are."""
    c, st = server["client"], Store(server["store"])
    k, ids = st.suppression_k, incident_ids(Path(server["store"]))
    zone, week, event = "750560002", server["week"], server["event_id"]
    n_zones = len(st.zones())
    answers = {}
    for url in (
        "/zones",
        f"/zones?period={week}",
        f"/presence?zone={zone}",
        f"/presence?zone={zone}&from=2026-11-14&to=2026-11-14",
        f"/signals?period={week}",
        "/signals",
        "/briefs",
        f"/briefs/{event}",
        f"/indicators/{zone}",
        f"/indicators/{zone}?period={week}",
    ):
        r = c.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        answers[url] = r.json()
        published_ok(answers[url], ids, k)
    assert len(answers["/zones"]["features"]) == n_zones
    props = answers[f"/zones?period={week}"]["features"][0]["properties"]
    assert {"present", "reference", "ratio", "incidents", "suppressed"} <= set(props)
    day = answers[f"/presence?zone={zone}&from=2026-11-14&to=2026-11-14"]
    assert day["count"] == len(day["slots"]) == 24
    sig = answers[f"/signals?period={week}"]
    assert sig["n_signals"] > 0 and sig["count"] == len(sig["signals"])
    assert answers["/briefs"]["briefs"] == [event]
    brief = answers[f"/briefs/{event}"]
    assert brief["event"]["event_id"] == event and brief["hours"] and brief["lamps"]["to_repair"]
    ind = answers[f"/indicators/{zone}?period={week}"]
    assert ind["period"] == week and set(ind["presence"]) == {"present", "reference", "ratio"}


def test_presence_values_and_suppression(server):
    """/presence gives the cube's figures, rounded as published; counts below k read "<k", and
    the ratio and the other part of present beside them "c"."""
    c, st = server["client"], Store(server["store"])
    k, zone = st.suppression_k, "750560002"
    r = c.get("/presence", params={"zone": zone, "from": "2026-11-09", "to": "2026-11-15"})
    slots = r.json()["slots"]
    assert len(slots) == 7 * 24
    cube = st.cube(["present", "present_baseline", "visitors"], zones=[zone]).set_index("hour")
    small = 0
    for s in slots:
        raw = cube.loc[pd.Timestamp(s["hour"])]
        if raw["visitors"] < k:
            small += 1
            # ratio would give present back with the reference; residents would give the
            # visitors back with present (present = residents + visitors)
            assert s["visitors"] == f"<{k}" and s["ratio"] == "c" and s["residents"] == "c"
        else:
            assert s["visitors"] == round(raw["visitors"], 1)
        assert s["present"] == round(raw["present"], 1)
    assert small > 0  # the tiny city has night hours with fewer than k visitors here


def test_streamed_and_ndjson(server):
    """Long answers are streamed (chunked, no Content-Length); NDJSON gives a head line then
    one slot per line."""
    c, zone = server["client"], "750560001"
    with c.stream("GET", "/presence", params={"zone": zone, "from": "2026-09-21"}) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in r.headers
        body = json.loads(r.read())
    assert body["count"] == len(body["slots"]) > 24 * 50
    r = c.get("/presence", params={"zone": zone, "format": "ndjson"})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[0]["zone"] == zone and len(lines) == 1 + 7 * 24
    assert r.headers["content-type"].startswith("application/x-ndjson")


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/presence?zone=nowhere", 404, "unknown zone"),
        ("/indicators/nowhere", 404, "unknown zone"),
        ("/presence?zone=750560002&from=2026-02-31", 400, "expected a local date"),
        ("/presence?zone=750560002&from=2027-01-01", 400, "outside the data"),
        ("/presence?zone=750560002&from=2026-11-10&to=2026-11-01", 400, "is not before"),
        ("/presence", 422, "zone"),
        ("/presence?zone=750560002&format=xml", 422, "format"),
        ("/signals?period=2026-W60", 400, "no week 60"),
        ("/signals?period=2027-W02", 400, "outside the data"),
        ("/signals?period=2026-W45", 404, "no signals for 2026-W45"),
        ("/indicators/750560002?period=soon", 400, "expected an ISO week"),
        ("/briefs/EVT99999", 404, "no brief"),
        ("/nothing", 404, "no such endpoint"),
    ],
)
def test_bad_parameters_are_json_4xx(server, url, status, words):
    r = server["client"].get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and words in body["error"]


def test_token_required(server):
    """With $VIGIE_API_TOKEN set, data endpoints refuse a missing or wrong token (401)."""
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.get(f"{server['base']}/zones", headers=headers, timeout=30)
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server['base']}/docs", timeout=30).status_code == 200


def test_binds_localhost_by_default(server):
    """The default address is 127.0.0.1 (not every interface)."""
    assert "http://127.0.0.1:" in server["log"].read_text()


def test_open_without_token(served):
    """Without a token the API is open (in-process client: the same app)."""
    with TestClient(create_app(served["store"])) as c:
        assert c.get("/briefs").status_code == 200
        assert c.get("/openapi.json").json()["info"]["title"] == "vigie"
