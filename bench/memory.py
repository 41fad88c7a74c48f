#!/usr/bin/env python3
"""Memory with history (issue #7): RSS of the daemon after 100,000 messages and after N more.

Starts ``rems-ingest serve`` on SQLite (no broker: alerts accumulate in the outbox, the worst
case for memory), drives it with bench/loadgen.py in chunks of 100,000 and prints the daemon's
RSS after each chunk, then the growth between the first and the last.

    .venv/bin/python bench/memory.py [--chunks 10] [--chunk 100000] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from importlib.machinery import SourceFileLoader  # noqa: E402

run = SourceFileLoader("bench_run", str(HERE / "run")).load_module()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--patients", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rems-mem-") as t:
        d = run.Daemon("memory", f"sqlite:///{t}/mem.db", None, Path(t))
        try:
            d.enroll(args.patients)
            rss = []
            for i in range(args.chunks):
                r = run.loadgen(d.mllp, args.connections, args.chunk, args.patients, f"M{i}-{int(time.time())}")
                rss.append(d.rss())
                print(json.dumps({"messages": (i + 1) * args.chunk, "msgs_per_s": r["msgs_per_s"], "p99_ms": r["p99_ms"], "errors": r["errors"], "rss_mb": round(rss[-1], 1),
                                  "db_mb": round(sum(f.stat().st_size for f in Path(t).glob("mem.db*")) / 1e6, 1)}), flush=True)
        finally:
            d.stop()
    growth = (rss[-1] - rss[0]) / rss[0] * 100 if rss and rss[0] else 0
    print(f"RSS after {args.chunk:,} messages: {rss[0]:.1f} MB; after {args.chunk * args.chunks:,}: {rss[-1]:.1f} MB; growth {growth:+.1f}% (target: within 10%)")


if __name__ == "__main__":
    main()
