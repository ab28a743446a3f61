"""`vigie live` latency: from a new slot file landing to its alert in alerts.jsonl and the page.

A synthetic city is generated and ingested; the last ``slots`` hourly slots are replayed
(`vigie live --replay`, speed 0) through the live path, each slot timed from its file being
written to the end of its pass (append, test, alerts.jsonl written, page rewritten); resident
memory is read after every slot. The same store's full re-ingest + cube rebuild is timed for
the ratio. Run: ``python -m bench live`` (``scale`` city by default; tiny for a quick look).
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil


def run(scale: str = "city", *, slots: int = 100, seed: int = 0) -> dict:
    from features.cube import build_cube
    from features.ingest import ingest
    from features.store import Store
    from features.synth import generate
    from pipelines.live.replay import replay
    from pipelines.live.settings import LiveSettings

    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    generate(scale, tmp / "city", seed=seed)
    t0 = time.perf_counter()
    ingest(tmp / "city" / "sources.yaml", tmp / "store")
    build_cube(Store(tmp / "store"))
    full_s = time.perf_counter() - t0
    st = Store(tmp / "store")
    end = pd.read_parquet(st.validated_path("presence"), columns=["start"])["start"].max()
    start = end - pd.Timedelta(hours=slots - 1)
    proc = psutil.Process()
    lat, rss = [], []
    last = [time.perf_counter()]

    def on_slot(_slot, _done) -> None:
        now = time.perf_counter()
        lat.append(now - last[0])
        rss.append(proc.memory_info().rss / 2**20)
        last[0] = time.perf_counter()

    replay(
        st,
        start=start,
        end=end + pd.Timedelta(hours=1),
        drill=tmp / "drill",
        reports=tmp / "reports",
        settings=LiveSettings(),
        speed=0,
        on_slot=on_slot,
    )
    lat_a = np.array(lat[1:] or lat)  # the first pass also loads the zones and the briefs
    half = len(rss) // 2
    return {
        "date": pd.Timestamp.now(tz="UTC").isoformat(),
        "machine": f"{platform.node()} {platform.machine()} {psutil.cpu_count()} cores",
        "data": f"synthetic {scale} city, seed {seed}",
        "slots": len(lat),
        "latency_p50_s": round(float(np.percentile(lat_a, 50)), 3),
        "latency_p99_s": round(float(np.percentile(lat_a, 99)), 3),
        "rss_first_half_mb": round(float(np.mean(rss[:half])), 1) if half else None,
        "rss_second_half_mb": round(float(np.mean(rss[half:])), 1),
        "full_reingest_and_cube_s": round(full_s, 2),
        "ratio_full_over_p50": round(full_s / float(np.percentile(lat_a, 50)), 1),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "city"), indent=2))
