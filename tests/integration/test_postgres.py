"""PostgreSQL: the same pipeline, several daemons on one database, no double publishing."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.db.schema import outbox
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.core.model import PatientKey
from rems_ingest.demo import oru
from tests.conftest import make_settings, purge_topology, test_topology
from tests.integration.test_rabbitmq_pipeline import drain, enroll_and_walk, wait_connected

pytestmark = pytest.mark.postgres
START = date(2026, 3, 2)


async def test_seed_walk_through_on_postgres_and_rabbitmq(tmp_path: Path, postgres_url: str, rabbitmq_url: str) -> None:
    topo = test_topology()
    d = Daemon(make_settings(tmp_path, store_url=postgres_url, amqp_url=rabbitmq_url))
    d.relay.topology = topo
    await d.start()
    try:
        await wait_connected(d)
        acks = await enroll_and_walk(d, "PG1", "general")
        paging = await drain(rabbitmq_url, list(topo.queues)[0], expect=4)

        assert ["AA", "AA", "AA"] == acks
        assert ["monitoring.confirm_repeat", "therapy.interrupt", "therapy.emergency", "therapy.interrupt"] == [b["kind"] for b in paging]
    finally:
        await d.shutdown()
        await purge_topology(rabbitmq_url, topo)


async def test_two_daemons_serialize_one_patient_and_never_publish_an_alert_twice(tmp_path: Path, postgres_url: str, rabbitmq_url: str) -> None:
    topo = test_topology()
    daemons = []
    for i in range(2):
        d = Daemon(make_settings(tmp_path / str(i), store_url=postgres_url, amqp_url=rabbitmq_url))
        d.relay.topology = topo
        await d.start()
        daemons.append(d)
    try:
        await wait_connected(daemons[0])
        await wait_connected(daemons[1])
        async with MllpClient("127.0.0.1", daemons[0].server.bound_port) as c:
            await c.send(oru("TW-B", "TWO", START - timedelta(days=1), "1.8", "TW-B"))
        await daemons[0].clinic.enroll({"id": "TWO", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()})

        async def feed(d: Daemon, offset: int) -> None:
            async with MllpClient("127.0.0.1", d.server.bound_port) as c:
                for n in range(20):
                    day = START + timedelta(days=1 + 2 * n + offset)
                    value = "0.9" if n % 5 == 0 else "1.7"
                    await c.send(oru(f"TW-{offset}-{n}", "TWO", day, value, f"TW-{offset}-{n}"))

        await asyncio.gather(feed(daemons[0], 0), feed(daemons[1], 1))
        total = daemons[0].store.read(lambda c: c.execute(select(func.count()).select_from(outbox)).scalar_one())
        consumed = await drain(rabbitmq_url, list(topo.queues)[2], expect=total, timeout=30)
        row = daemons[0].store.read(lambda c: Repository(c).patient(PatientKey("TWO", "HOSP"), create=False, lock=False))

        assert total == len(consumed) == len({b["alert_id"] for b in consumed})
        assert row is not None and 1 + 1 + 40 == row.version  # baseline + enrollment + 40 results, none lost
    finally:
        for d in daemons:
            await d.shutdown()
        await purge_topology(rabbitmq_url, topo)


async def test_concurrent_sweeps_raise_exactly_one_overdue_alert(tmp_path: Path, postgres_url: str) -> None:
    daemons = [Daemon(make_settings(tmp_path / str(i), store_url=postgres_url)) for i in range(2)]
    for d in daemons:
        await d.start()
    try:
        async with MllpClient("127.0.0.1", daemons[0].server.bound_port) as c:
            await c.send(oru("SW-B", "SWEEP", START - timedelta(days=1), "1.8", "SW-B"))
        await daemons[0].clinic.enroll({"id": "SWEEP", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()})
        from datetime import datetime, timezone

        now = datetime(2026, 3, 12, 9, tzinfo=timezone.utc)
        await asyncio.gather(*(d.clinic.sweep_overdue(now) for d in daemons for _ in range(3)))
        overdue = daemons[0].store.read(lambda c: c.execute(select(func.count()).select_from(outbox).where(outbox.c.kind == "lab.overdue")).scalar_one())

        assert 1 == overdue
    finally:
        for d in daemons:
            await d.shutdown()
