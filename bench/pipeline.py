#!/usr/bin/env python3
"""The ingest pipeline without sockets: parse -> rules -> group commit (SQLite FULL) -> ACK text.

`bench/run` measures what a sender sees, but on a shared 2-CPU machine its figures move by ±20 %
from run to run, which hides a 10 % change. This drives ``IngestService.handle_frame`` directly
from N concurrent senders in one process (no MLLP, no broker, no load generator competing for the
CPU) and prints msg/s and the process CPU time per message — the number an optimisation must move.

    .venv/bin/python bench/pipeline.py [--messages 8000] [--senders 16] [--patients 500] [--store URL]

Logs at WARNING; REMS_BENCH_LOG_LEVEL=INFO adds the per-message log line (about 30 µs of CPU each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import cbc_oru, pick_anc  # noqa: E402

from rems_ingest import profiles  # noqa: E402
from rems_ingest.adapters.db.store import Store  # noqa: E402
from rems_ingest.adapters.db.unit_of_work import StoreUnitOfWork  # noqa: E402
from rems_ingest.observability.logging import configure  # noqa: E402
from rems_ingest.service.clinic import ClinicService  # noqa: E402
from rems_ingest.service.commands import EnrollPatient  # noqa: E402
from rems_ingest.service.ingest import IngestService  # noqa: E402


async def run(args: argparse.Namespace, url: str) -> dict[str, object]:
    policy = profiles.load("us-label")
    store = Store(url)
    store.migrate()
    store.start()
    try:
        clinic = ClinicService(StoreUnitOfWork(store), lambda: policy)
        await clinic.enroll_many([EnrollPatient.from_mapping({"id": f"BP{i:06d}", "authority": "HOSP", "population": "general", "therapy_start": "2025-12-20"}) for i in range(args.patients)])
        ingest = IngestService(StoreUnitOfWork(store), lambda: policy)
        rnd = random.Random(args.seed)
        base = datetime(2026, 1, 1, 8)
        pending = [cbc_oru(f"PL{i}", f"BP{rnd.randrange(args.patients):06d}", base + timedelta(hours=i), pick_anc(rnd, 0.05), i) for i in range(args.messages)]
        pending.reverse()
        rejected = 0

        async def sender() -> None:
            nonlocal rejected
            while pending:
                ack = await ingest.handle_frame(pending.pop(), "127.0.0.1:0")
                if not isinstance(ack, bytes) or b"MSA|AA|" not in ack:
                    rejected += 1

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(sender() for _ in range(args.senders)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        store.close()
    return {
        "messages": args.messages,
        "senders": args.senders,
        "not_aa": rejected,
        "msgs_per_s": round(args.messages / elapsed, 1),
        "cpu_us_per_msg": round(cpu / args.messages * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=8000)
    ap.add_argument("--senders", type=int, default=16)
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--store", default="", help="store URL (default: a new SQLite file, synchronous=FULL)")
    args = ap.parse_args()
    configure("json", os.environ.get("REMS_BENCH_LOG_LEVEL", "WARNING"))
    with tempfile.TemporaryDirectory(prefix="rems-pipeline-") as tmp:
        result = asyncio.run(run(args, args.store or f"sqlite:///{tmp}/pipeline.db"))
    print(f"{result['messages']} messages from {result['senders']} senders: {result['msgs_per_s']} msg/s, "
          f"{result['cpu_us_per_msg']} µs CPU per message, {result['not_aa']} not AA")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
