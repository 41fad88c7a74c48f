#!/usr/bin/env python3
"""Cost by history length (issue #18): does a late or same-time result cost more as a patient's
history grows?

Starts ``rems-ingest serve`` on SQLite (synchronous=FULL, no broker), enrolls ``--patients``
patients and gives each its own MLLP connection (one message in flight, as a lab sends). Each
patient then gets ``--history`` CBC results in blocks of ``--step``; every block is one timed
round for all connections together. Three arrival patterns, each on a fresh daemon:

- in order: each result drawn one step (``--spacing-hours``) after the one before;
- late: every other result drawn one step *before* the result sent just before it (it sorts
  before the newest stored result: the re-fold path);
- same time: every result of a patient with the same specimen time (the tie-break, the filler
  order number, grows with arrival like a LIS accession number).

Prints msg/s and the daemon's CPU per message for each block, then the ratios the issue's
targets are stated in, and the daemon's RSS.

    .venv/bin/python bench/history.py [--patients 16] [--history 2000] [--step 100]
    .venv/bin/python bench/history.py --patients 1000 --connections 16 --history 2000 --step 200 --patterns late   # memory
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from importlib.machinery import SourceFileLoader  # noqa: E402

run = SourceFileLoader("bench_run", str(HERE / "run")).load_module()
from loadgen import FS_CR, VT, cbc_oru, pick_anc  # noqa: E402

PATTERNS = ("in order", "late", "same time")


def draw_times(pattern: str, n: int, first: datetime, spacing: timedelta) -> list[datetime]:
    if pattern == "in order":
        return [first + i * spacing for i in range(n)]
    if pattern == "late":  # 1, 0, 3, 2, 5, 4 ... steps: every other one older than the one before
        return [first + (i + (1 if i % 2 == 0 else -1)) * spacing for i in range(n)]
    return [first] * n


class Feed:
    """One lab connection for one patient: send, wait for the ACK, check it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buf, self.errors = reader, writer, b"", 0

    async def send(self, control_id: str, payload: bytes) -> None:
        self.writer.write(VT + payload + FS_CR)
        await self.writer.drain()
        while FS_CR not in self.buf:
            chunk = await asyncio.wait_for(self.reader.read(65536), 60)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        end = self.buf.index(FS_CR)
        ack, self.buf = self.buf[self.buf.index(VT) + 1 : end], self.buf[end + 2 :]
        msa = next((s for s in ack.split(b"\r") if s.startswith(b"MSA")), b"MSA").decode("latin-1").split("|")
        if len(msa) < 3 or msa[1] != "AA" or msa[2] != control_id:
            self.errors += 1


async def one_pattern(d: object, pattern: str, args: argparse.Namespace, first: datetime) -> list[dict[str, float]]:
    rnd = random.Random(7)
    spacing = timedelta(hours=args.spacing_hours)
    connections = min(args.patients, args.connections or args.patients)
    feeds = [Feed(*await asyncio.open_connection("127.0.0.1", d.mllp)) for _ in range(connections)]  # type: ignore[attr-defined]
    times = draw_times(pattern, args.history, first, spacing)
    tag = pattern.replace(" ", "")[:4].upper()
    rows = []
    try:
        for block in range(0, args.history, args.step):
            async def connection_block(c: int, block: int) -> None:
                for i in range(block, min(block + args.step, args.history)):
                    for p in range(c, args.patients, connections):  # its patients, interleaved
                        cid = f"H{tag}{p:04d}-{i:05d}"
                        # filler order number: a fixed-width accession that grows with arrival
                        await feeds[c].send(cid, cbc_oru(cid, f"HP{p:06d}", times[i], pick_anc(rnd, 0.02), 100_000_000 + p * 10_000 + i))

            cpu0, t0 = d.cpu(), time.perf_counter()  # type: ignore[attr-defined]
            await asyncio.gather(*(connection_block(c, block) for c in range(connections)))
            seconds, cpu = time.perf_counter() - t0, d.cpu() - cpu0  # type: ignore[attr-defined]
            n = args.patients * min(args.step, args.history - block)
            rows.append({"from": block, "to": block + args.step, "msgs_per_s": n / seconds, "cpu_us": cpu / n * 1e6, "errors": sum(f.errors for f in feeds), "rss_mb": d.rss()})  # type: ignore[attr-defined]
            r = rows[-1]
            print(f"{pattern} {r['from']}–{r['to']}: {r['msgs_per_s']:,.0f} msg/s, {r['cpu_us']:,.0f} µs/msg, RSS {r['rss_mb']:.0f} MB, errors {r['errors']}", file=sys.stderr, flush=True)
    finally:
        for f in feeds:
            f.writer.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--history", type=int, default=2000, help="results per patient")
    ap.add_argument("--step", type=int, default=100, help="results per patient in one timed block")
    ap.add_argument("--spacing-hours", type=float, default=4.0, help="hours between draw times (all within a year: older results are refused as implausible)")
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--connections", type=int, default=0, help="MLLP connections (default: one per patient); each sends for its share of the patients")
    args = ap.parse_args()
    patterns = [p.strip() for p in args.patterns.split(",")]
    first = (datetime.now(UTC) - timedelta(hours=args.spacing_hours * (args.history + 2))).replace(minute=0, second=0, microsecond=0)
    results: dict[str, list[dict[str, float]]] = {}
    for pattern in patterns:
        with tempfile.TemporaryDirectory(prefix="rems-history-") as t:
            d = run.Daemon(f"history {pattern}", f"sqlite:///{t}/h.db", None, Path(t))
            try:
                d.enroll(args.patients, therapy_start=first.date().isoformat(), prefix="HP")
                results[pattern] = asyncio.run(one_pattern(d, pattern, args, first))
            finally:
                d.stop()
    conns = f"{args.connections} connections" if args.connections and args.connections < args.patients else "one connection each"
    print(f"\n{args.patients} patients, {conns}, {args.history} results each in blocks of {args.step}; SQLite FULL, no broker\n")
    print("| history | " + " | ".join(f"{p} msg/s | {p} CPU µs/msg" for p in patterns) + " |")
    print("|---|" + "---:|---:|" * len(patterns))
    for i in range(len(results[patterns[0]])):
        r0 = results[patterns[0]][i]
        cells = " | ".join(f"{results[p][i]['msgs_per_s']:,.0f} | {results[p][i]['cpu_us']:,.0f}" for p in patterns)
        print(f"| {r0['from']}–{r0['to']} | {cells} |")
    print()
    for p in patterns:
        first_row, last_row = results[p][0], results[p][-1]
        tenth = results[p][max(0, len(results[p]) // 10 - 1)]
        print(f"{p}: msg/s at {last_row['from']}–{last_row['to']} is {last_row['msgs_per_s'] / first_row['msgs_per_s']:.2f}× that at 0–{first_row['to']}; "
              f"CPU per message {last_row['cpu_us'] / first_row['cpu_us']:.2f}×; errors {last_row['errors']}; "
              f"daemon RSS {last_row['rss_mb']:.0f} MB after {last_row['to']} results each, {tenth['rss_mb']:.0f} MB after {tenth['to']} ({last_row['rss_mb'] / tenth['rss_mb']:.2f}×)")
    if "in order" in results and "late" in results:
        ratios = [results["late"][i]["msgs_per_s"] / results["in order"][i]["msgs_per_s"] for i in range(len(results["late"]))]
        print(f"late / in order at the same history: {min(ratios):.2f}× (lowest block) to {max(ratios):.2f}×; last block {ratios[-1]:.2f}×")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
