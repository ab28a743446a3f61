"""`make bench`: every benchmark, each against a reference run in the same process.

Usage: python -m bench [ingest cube fit signals ...]  (default: all that exist)
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

BENCHES = ("ingest", "cube", "fit", "signals", "api", "zones", "live", "region", "scaling", "demo")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    results = {}
    for name in names:
        try:
            mod = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError:
            print(f"[bench] {name}: no benchmark module", file=sys.stderr)
            continue
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        results[name] = mod.run()
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    out = Path("bench_out")
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"[bench] results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
