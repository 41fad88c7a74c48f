#!/usr/bin/env python3
"""Outbox backlog drain (issue #7): N pending alerts published to RabbitMQ with publisher
confirms, persistent, mandatory — the relay exactly as the daemon runs it.

Fills a SQLite store's outbox with N alerts (as after a day-long broker outage), then times
the relay until every row is confirmed and marked published; prints alerts/s.

    .venv/bin/python bench/backlog.py [--alerts 100000] [--amqp amqp://guest:guest@127.0.0.1:5672/]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, date, datetime

import aio_pika

from rems_ingest.adapters.amqp.relay import OutboxRelay
from rems_ingest.adapters.amqp.topology import Topology
from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.db.store import Store
from rems_ingest.adapters.db.unit_of_work import StoreOutboxSource
from rems_ingest.core.model import Alert, AlertKind, Severity
from rems_ingest.service.outbox import OutboxEntry


def rows(n: int, now: str) -> list[OutboxEntry]:
    body = {"schema": "rems.alert/1", "kind": "lab.overdue", "severity": "normal", "patient": {"id": "", "authority": "HOSP"}, "reason": "No ANC since it was due", "rules_profile": "us-label@bench"}
    out = []
    for i in range(n):
        aid = uuid.uuid4().hex
        alert = Alert(AlertKind.OVERDUE_LAB, f"bench:{i}", date.today(), Severity.NORMAL, "No ANC since it was due")
        payload = json.dumps({**body, "alert_id": aid, "patient": {"id": f"BP{i % 5000:06d}", "authority": "HOSP"}})
        out.append(OutboxEntry(aid, None, alert, "alert.lab.overdue", payload, 1, now))
    return out


async def main(n: int, url: str, batch: int) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    topo = Topology.with_prefix(prefix)
    with tempfile.TemporaryDirectory(prefix="rems-backlog-") as t:
        store = Store(f"sqlite:///{t}/backlog.db")
        store.migrate()
        store.start()
        now = datetime.now(UTC).isoformat()
        t0 = time.perf_counter()
        await store.write(lambda c: Repository(c).add_alerts(rows(n, now)))
        print(f"{n:,} alerts written to the outbox in {time.perf_counter() - t0:.1f} s")
        relay = OutboxRelay(StoreOutboxSource(store), url, topo, batch=batch)
        await relay._connect()
        try:
            t0 = time.perf_counter()
            published = 0
            while True:
                sent = await relay.drain_once()
                published += sent
                if sent == 0:
                    break
            elapsed = time.perf_counter() - t0
            pending = await store.aread(lambda c: Repository(c).outbox_stats()[0])
        finally:
            await relay._disconnect()
            store.close()
            conn = await aio_pika.connect(url)
            async with conn:
                ch = await conn.channel()
                for q in [*topo.queues, topo.dead_letter_queue]:
                    await ch.queue_delete(q)
                await ch.exchange_delete(topo.exchange)
                await ch.exchange_delete(topo.dlx)
    result = {"alerts": n, "published": published, "pending_after": pending, "seconds": round(elapsed, 2), "alerts_per_s": round(published / elapsed, 1), "batch_in_flight": batch}
    print(f"{published:,} alerts published with confirms in {elapsed:.1f} s: {result['alerts_per_s']:,} alerts/s (target >= 5,000), {pending} left pending")
    print(json.dumps(result))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--batch", type=int, default=500, help="alerts in flight per round (amqp.batch)")
    a = ap.parse_args()
    asyncio.run(main(a.alerts, a.amqp, a.batch))
