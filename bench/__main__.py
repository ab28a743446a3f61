"""`make bench`: every benchmark, each against a reference run in the same process.

Usage: python -m bench [ingest cube fit signals ...]  (default: all that exist)
       python -m bench NAME --option ...  (one benchmark with its own options, e.g.
       python -m bench region --scale city --only cube)
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

BENCHES = ("ingest", "cube", "fit", "signals", "api", "zones", "live", "region", "scaling", "demo")


def main(argv: list[str]) -> int:
    options = [a for a in argv if a.startswith("-")]
    if options:
        # options belong to one benchmark's own command line: never read them as names
        if not argv or argv[0] not in BENCHES or argv[0].startswith("-"):
            print(f"[bench] options {' '.join(options)} need one benchmark first: "
                  f"python -m bench NAME {' '.join(options)} (NAME among {', '.join(BENCHES)})",
                  file=sys.stderr)  # fmt: skip
            return 2
        mod = importlib.import_module(f"bench.bench_{argv[0]}")
        if not hasattr(mod, "main"):
            print(f"[bench] {argv[0]} takes no options: python -m bench {argv[0]}", file=sys.stderr)
            return 2
        return int(mod.main(argv[1:]) or 0)
    unknown = [a for a in argv if a not in BENCHES]
    if unknown:
        print(f"[bench] no benchmark {', '.join(unknown)} (among {', '.join(BENCHES)})",
              file=sys.stderr)  # fmt: skip
        return 2
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
