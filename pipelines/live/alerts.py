"""Persistence, the alert records (``store/live/alerts.jsonl``) and their delivery to a webhook.

A zone's run of consecutive out-of-band slots of the same direction is kept in
``store/live/state.json``; when it reaches ``persistence`` slots an alert is written, once per
episode (its id is the zone, the direction and the slot the episode began). A late slot (older
than the zone's last one) is tested but never changes a run; a slot that does not follow the
last one (a gap in the feed) starts a new run. Every step is idempotent, so a file processed
again after a crash neither doubles an alert nor lengthens a run.

Delivery: each alert not yet in ``store/live/delivered.jsonl`` is POSTed as JSON (header
``Idempotency-Key`` = the alert id) with a timeout and retries with backoff; a webhook that is
down only delays the alerts to the next pass, never the ingest.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store import Store
from pipelines.live.detect import SlotTest
from pipelines.live.settings import LiveSettings
from pipelines.reports.publish import suppress_value

log = logging.getLogger(__name__)

ALERTS = "live/alerts.jsonl"
DELIVERED = "live/delivered.jsonl"
STATE = "live/state.json"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (a line cut by a kill is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records, flushed to disk (a cut last line is closed first)."""
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = False
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            cut = fh.read(1) != b"\n"
    with open(path, "ab") as fh:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        fh.write((("\n" if cut else "") + text).encode())
        fh.flush()
        os.fsync(fh.fileno())


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 2)


def _explain(row: pd.Series, run: int, since: str, name: str, k: int) -> str:
    word = "above" if row["band"] == "surge" else "below"
    present = suppress_value(row["present"], k)
    ref = suppress_value(round(row["reference"]), k)
    text = (
        f"{name}: {present} people present, {word} the reference {ref} "
        f"(same hour of the same weekday over past weeks) for {run} slots since {since}"
    )
    if isinstance(present, str):
        return text + "."
    text += f"; ratio {row['ratio']:.2f}, robust z {row['z']:.1f}"
    if np.isfinite(row["forecast"]):
        text += f"; {row['event']} forecast {suppress_value(round(row['forecast']), k)}"
    return text + "."


def update(
    st: Store,
    test: SlotTest,
    *,
    settings: LiveSettings,
    names: dict[str, str],
    tz: str,
    k: int,
) -> list[dict[str, Any]]:
    """Advance every zone's run with ``test``; the alerts of runs reaching ``persistence``."""
    state: dict[str, Any] = st.read_json(STATE) or {}
    known = {a["id"] for a in read_jsonl(st.root / ALERTS)}
    step = pd.Timedelta(minutes=test.slot_minutes)
    alerts = []
    for row in test.frame.itertuples(index=False):
        r = row._asdict()
        z = state.get(r["zone_id"], {})
        last = pd.Timestamp(z["last"]) if z.get("last") else None
        if last is not None and test.slot <= last:
            continue  # a late or repeated slot: tested, shown, but runs move forward only
        band = r["band"] if r["band"] in ("surge", "drop") else ""
        follows = last is not None and test.slot - last == step
        if band and follows and z.get("band") == band:
            run, since = z["run"] + 1, z["since"]
        elif band:
            run, since = 1, test.slot.isoformat()
        else:
            run, since = 0, None
        state[r["zone_id"]] = {
            "last": test.slot.isoformat(),
            "band": band,
            "run": run,
            "since": since,
        }
        if band and run >= settings.persistence:
            aid = f"{r['zone_id']}-{band}-{since}"
            if aid not in known:
                known.add(aid)
                alerts.append(_record(aid, r, run, since, test, names, tz, k))
    append_jsonl(st.root / ALERTS, alerts)
    st.write_json(STATE, state)
    return alerts


def _record(aid, r, run, since, test, names, tz, k) -> dict[str, Any]:
    name = names.get(r["zone_id"]) or r["zone_id"]
    since_local = pd.Timestamp(since).tz_convert(tz).strftime("%H:%M")
    suppressed = isinstance(suppress_value(r["present"], k), str)
    return {
        "id": aid,
        "zone_id": r["zone_id"],
        "zone_name": name,
        "kind": r["band"],
        "slot": test.slot.isoformat(),
        "slot_local": test.slot.tz_convert(tz).isoformat(),
        "since": since,
        "present": suppress_value(_num(r["present"]), k),
        "reference": suppress_value(_num(r["reference"]), k),
        "forecast": suppress_value(_num(r["forecast"]), k),
        "event": r["event"] or None,
        "ratio": "c" if suppressed else _num(r["ratio"]),
        "z": "c" if suppressed else _num(r["z"]),
        "persistence": int(run),
        "explanation": _explain(pd.Series(r), run, since_local, name, k),
        "raised_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }


def deliver(st: Store, settings: LiveSettings) -> int:
    """POST every alert not yet delivered to the webhook; returns how many were delivered.

    Stops at the first alert that still fails after its retries (the webhook is down: the rest
    wait for the next pass, in order)."""
    if not settings.webhook:
        return 0
    done = {d["id"] for d in read_jsonl(st.root / DELIVERED)}
    sent = 0
    for alert in read_jsonl(st.root / ALERTS):
        if alert["id"] in done:
            continue
        if not _post(settings, alert):
            log.warning(
                "webhook %s unreachable: alert %s kept for later", settings.webhook, alert["id"]
            )
            break
        append_jsonl(
            st.root / DELIVERED, [{"id": alert["id"], "at": pd.Timestamp.now(tz="UTC").isoformat()}]
        )
        sent += 1
    return sent


def _post(settings: LiveSettings, alert: dict[str, Any]) -> bool:
    assert settings.webhook is not None
    body = json.dumps(alert, ensure_ascii=False).encode()
    for attempt in range(settings.webhook_retries):
        req = urllib.request.Request(
            settings.webhook,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": alert["id"]},
        )
        try:
            with urllib.request.urlopen(req, timeout=settings.webhook_timeout) as resp:  # noqa: S310
                if 200 <= resp.status < 300:
                    return True
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            log.info("webhook attempt %d for %s failed: %s", attempt + 1, alert["id"], exc)
        if attempt + 1 < settings.webhook_retries:
            time.sleep(min(0.2 * 2**attempt, 5.0))
    return False
