#!/usr/bin/env python3
"""MLLP load generator (stdlib only): N connections, each sends and waits for its ACK.

Every ACK's MSA-1 and MSA-2 are checked. Prints msgs/s and ACK latency percentiles, then a
final JSON line. Example:

    python3 bench/loadgen.py --port 2575 --connections 16 --messages 20000 --patients 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from datetime import datetime, timedelta

VT, FS_CR = b"\x0b", b"\x1c\x0d"


def cbc_oru(control_id: str, patient: str, when: datetime, anc: float, seq: int) -> bytes:
    """A realistic ~1.2 KB CBC with differential (v2.5.1)."""
    t = when.strftime("%Y%m%d%H%M")
    wbc = max(anc / 550, 1.0)
    rows = [
        ("6690-2^Leukocytes [#/volume] in Blood by Automated count^LN", f"{wbc:.1f}", "10*3/uL", "4.0-11.0"),
        ("789-8^Erythrocytes [#/volume] in Blood by Automated count^LN", "4.62", "10*6/uL", "4.20-5.40"),
        ("718-7^Hemoglobin [Mass/volume] in Blood^LN", "13.8", "g/dL", "12.0-16.0"),
        ("4544-3^Hematocrit [Volume Fraction] of Blood by Automated count^LN", "41.2", "%", "36-46"),
        ("777-3^Platelets [#/volume] in Blood by Automated count^LN", "251", "10*3/uL", "150-400"),
        ("770-8^Neutrophils/100 leukocytes in Blood by Automated count^LN", f"{anc / (wbc * 10):.1f}", "%", "40-75"),
        ("751-8^Neutrophils [#/volume] in Blood by Automated count^LN", f"{anc / 1000:.2f}", "10*3/uL", "1.50-7.80"),
        ("731-0^Lymphocytes [#/volume] in Blood by Automated count^LN", "1.9", "10*3/uL", "1.0-4.8"),
        ("742-7^Monocytes [#/volume] in Blood by Automated count^LN", "0.5", "10*3/uL", "0.2-0.9"),
    ]
    segs = [
        f"MSH|^~\\&|BENCH_LIS|BENCH_LAB|REMS|PSYCH|{t}||ORU^R01^ORU_R01|{control_id}|P|2.5.1|||||UNICODE UTF-8",
        f"PID|1||{patient}^^^HOSP^MR||TESTPATIENT^BENCH^Q||19800101|F|||1 MAIN ST^^CITY^ST^00000",
        "PV1|1|O|CLOZ^^^CLINIC||||1234^PRESCRIBER^PAT",
        f"ORC|RE|PLC{seq}|FIL{seq}",
        f"OBR|1|PLC{seq}|FIL{seq}|57021-8^CBC W Auto Differential panel - Blood^LN|||{t}|||||||{t}||1234^PRESCRIBER^PAT||||||{t}||HM|F",
    ]
    for i, (code, value, unit, ref) in enumerate(rows, 1):
        segs.append(f"OBX|{i}|NM|{code}||{value}|{unit}^{unit}^UCUM|{ref}|N|||F|||{t}")
    return ("\r".join(segs) + "\r").encode()


def pick_anc(rnd: random.Random, low_fraction: float) -> float:
    if rnd.random() < low_fraction:
        return rnd.choice([1400, 1200, 900, 700, 450])
    return rnd.uniform(1600, 6000)


async def connection(host: str, port: int, jobs: asyncio.Queue, latencies: list[float], errors: list[str], timeout: float) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    buf = b""
    try:
        while True:
            try:
                control_id, payload = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            writer.write(VT + payload + FS_CR)
            await writer.drain()
            while FS_CR not in buf:
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            end = buf.index(FS_CR)
            ack, buf = buf[buf.index(VT) + 1 : end], buf[end + 2 :]
            latencies.append(time.perf_counter() - t0)
            msa = next((s for s in ack.split(b"\r") if s.startswith(b"MSA")), b"MSA")
            parts = msa.decode("latin-1").split("|")
            if len(parts) < 3 or parts[1] != "AA" or parts[2] != control_id:
                errors.append(f"{control_id}: {msa[:60]!r}")
    finally:
        writer.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    rnd = random.Random(args.seed)
    base = datetime(2026, 1, 1, 8, 0)
    jobs: asyncio.Queue = asyncio.Queue()
    prefix = args.prefix or f"B{int(time.time())}"
    for i in range(args.messages):
        cid = f"{prefix}-{i}"
        patient = f"BP{rnd.randrange(args.patients):06d}"
        when = base + timedelta(hours=i)  # later results are newer: the incremental path
        jobs.put_nowait((cid, cbc_oru(cid, patient, when, pick_anc(rnd, args.low_fraction), i)))
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(connection(args.host, args.port, jobs, latencies, errors, args.timeout) for _ in range(args.connections)))
    elapsed = time.perf_counter() - t0
    result = {
        "connections": args.connections,
        "messages": len(latencies),
        "errors": len(errors),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0,
        "p50_ms": round(pct(latencies, 50) * 1000, 3),
        "p90_ms": round(pct(latencies, 90) * 1000, 3),
        "p99_ms": round(pct(latencies, 99) * 1000, 3),
        "max_ms": round(max(latencies, default=0) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else 0,
    }
    if errors:
        result["first_errors"] = errors[:3]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2575)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--low-fraction", type=float, default=0.05, help="share of results in the neutropenic ranges")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--prefix", default="", help="MSH-10 prefix (default: unique per run)")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    print(f"{result['messages']} msgs over {result['connections']} connections in {result['seconds']} s: {result['msgs_per_s']} msg/s, "
          f"ACK p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms, errors {result['errors']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
