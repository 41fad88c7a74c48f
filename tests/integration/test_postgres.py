"""PostgreSQL: the same pipeline, several daemons on one database, no double publishing."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.db.schema import outbox
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.core.model import PatientKey
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
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
        paging = await drain(rabbitmq_url, next(iter(topo.queues)), expect=4)

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
        await daemons[0].clinic.enroll(EnrollPatient.from_mapping({"id": "TWO", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))

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
        await daemons[0].clinic.enroll(EnrollPatient.from_mapping({"id": "SWEEP", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
        from datetime import datetime

        now = datetime(2026, 3, 12, 9, tzinfo=UTC)
        await asyncio.gather(*(d.clinic.sweep_overdue(now) for d in daemons for _ in range(3)))
        overdue = daemons[0].store.read(lambda c: c.execute(select(func.count()).select_from(outbox).where(outbox.c.kind == "lab.overdue")).scalar_one())

        assert 1 == overdue
    finally:
        for d in daemons:
            await d.shutdown()


def test_daemons_sharing_one_mllp_port_split_the_connections_and_ack_every_message(tmp_path: Path, postgres_url: str) -> None:
    """mllp.reuse_port: two daemon processes on one port (SO_REUSEPORT) and one database; the
    kernel spreads the connections, every message is ACKed AA once and stored once."""
    import urllib.request

    from sqlalchemy import create_engine

    from tests.process import DaemonProcess

    # 24 loopback senders: the kernel's split is random, and one daemon taking 17 of them would
    # evict at the default per-source cap of 16 (a reset the sender retries, not this test's subject)
    env = {"REMS_STORE__URL": postgres_url, "REMS_MLLP__REUSE_PORT": "true", "REMS_MLLP__MAX_CONNECTIONS_PER_SOURCE": "64"}
    first = DaemonProcess(tmp_path, env=env).start()
    second = DaemonProcess(tmp_path, env={**env, "REMS_MLLP__PORT": str(first.mllp_port)}).start()
    try:
        async def sender(n: int) -> list[str]:
            async with MllpClient("127.0.0.1", first.mllp_port) as c:
                replies = [await c.send(oru(f"RP-{n}-{k}", f"RP{n}", START + timedelta(days=k), "1.8", f"RP-{n}-{k}")) for k in range(3)]
            return [r.split(b"\rMSA|", 1)[1].split(b"|", 1)[0].decode() for r in replies]

        async def all_senders() -> list[list[str]]:
            return await asyncio.gather(*(sender(n) for n in range(24)))

        acks = asyncio.run(all_senders())

        def processed(d: DaemonProcess) -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/metrics", timeout=10) as r:
                return sum(float(line.split()[-1]) for line in r.read().decode().splitlines() if line.startswith("rems_messages_total{"))

        engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*), count(DISTINCT control_id) FROM inbound_message").one()
        engine.dispose()

        assert [["AA"] * 3] * 24 == acks
        assert (72, 72) == tuple(stored)
        shares = processed(first), processed(second)
        assert sum(shares) == 72 and min(shares) > 0  # both daemons took connections (2 in 2^24 chance to fail)
    finally:
        for d in (first, second):
            d.stop()


@pytest.mark.parametrize("patients", ["new", "already stored"])
async def test_groups_of_two_daemons_lock_shared_patients_in_one_order_and_never_deadlock(postgres_url: str, patients: str) -> None:
    """Daemon A's group touches patient X then Y, daemon B's touches Y then X, and each holds its
    first patient until the other has started. Locked in arrival order that is a deadlock:
    PostgreSQL aborts one group after deadlock_timeout and its jobs run again one by one. The
    store locks every patient of a group up front in one order, so each job runs exactly once."""
    import threading
    from collections import Counter

    from rems_ingest.adapters.db.store import Store

    x, y = PatientKey("LOCK-X", "HOSP"), PatientKey("LOCK-Y", "HOSP")
    stores = [Store(postgres_url), Store(postgres_url)]
    stores[0].migrate()
    for s in stores:
        s.start()
    runs: Counter[str] = Counter()
    both_hold_one = threading.Barrier(2)
    from rems_ingest.observability import metrics

    reruns = [metrics.STORE_RETRIES.labels(r) for r in ("group_failed", "deadlock")]
    reruns_before = [r._value.get() for r in reruns]

    def touch(name: str, key: PatientKey, wait_for_other: bool):  # type: ignore[no-untyped-def]
        def job(conn):  # type: ignore[no-untyped-def]
            runs[name] += 1
            Repository(conn).patient(key, create=True, lock=True, now="2026-01-01T00:00:00+00:00")
            if wait_for_other:
                try:
                    both_hold_one.wait(timeout=3)  # unordered locking: both now hold their first patient
                except threading.BrokenBarrierError:
                    pass  # ordered locking: the other daemon is still queued behind this one
            return name

        return job

    try:
        if patients == "already stored":
            await stores[0].write(lambda c: [Repository(c).patient(k, create=True, lock=False, now="2026-01-01T00:00:00+00:00") for k in (x, y)])
        gates = [threading.Event(), threading.Event()]
        held = [asyncio.ensure_future(s.write(lambda c, g=g: g.wait(10))) for s, g in zip(stores, gates)]
        await asyncio.sleep(0.2)  # each writer thread is inside its gate job: what follows forms one group
        groups = [
            [stores[0].write(touch("A1", x, True), locks=(x,)), stores[0].write(touch("A2", y, False), locks=(y,))],
            [stores[1].write(touch("B1", y, True), locks=(y,)), stores[1].write(touch("B2", x, False), locks=(x,))],
        ]
        pending = [asyncio.ensure_future(w) for g in groups for w in g]
        for g in gates:
            g.set()
        await asyncio.gather(*held)

        assert ["A1", "A2", "B1", "B2"] == await asyncio.wait_for(asyncio.gather(*pending), 30)
        assert {"A1": 1, "A2": 1, "B1": 1, "B2": 1} == dict(runs)
        assert reruns_before == [r._value.get() for r in reruns]  # rems_store_retries_total stays flat
    finally:
        for s in stores:
            s.close()


async def test_a_message_on_postgresql_takes_five_round_trips_six_with_alerts(postgres_url: str) -> None:
    """Across a network each round trip to PostgreSQL is paid for by the lab waiting for its ACK
    (and by every daemon sharing the database). In pipeline mode the patient, audit, observation
    and outbox rows go with COMMIT: BEGIN, the message row, the patient lock, the event (its row
    count decides the path) and COMMIT, plus the alert-id lookup when it raised alerts. It was
    eight to twelve (measured with this test before)."""
    from rems_ingest import profiles
    from rems_ingest.adapters.db.store import Store
    from rems_ingest.adapters.db.unit_of_work import StoreUnitOfWork
    from rems_ingest.service.clinic import ClinicService
    from rems_ingest.service.ingest import IngestService
    from tests.proxy import TcpProxy

    schema = Store(postgres_url)
    schema.migrate()
    schema.close()
    host, port = postgres_url.split("@", 1)[1].split("/", 1)[0].split(":")
    delay = 0.1  # every answer from the database comes this much later: round trips = time // delay
    proxy = TcpProxy(host, int(port), reply_delay=delay)
    await proxy.start()
    store = Store(postgres_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}"))
    store.start()
    try:
        policy = profiles.load("us-label")
        await ClinicService(StoreUnitOfWork(store), lambda: policy).enroll(EnrollPatient.from_mapping({"id": "RT1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
        ingest = IngestService(StoreUnitOfWork(store), lambda: policy)

        def outbox_rows(c: Any) -> int:
            return int(c.execute(select(func.count()).select_from(outbox)).scalar_one())

        async def trips(n: int, anc: str) -> tuple[int, int]:
            """(round trips of one message, alerts it raised)"""
            before = await store.write(outbox_rows)
            started = asyncio.get_running_loop().time()
            reply = await ingest.handle_frame(oru(f"RT-{n}", "RT1", START + timedelta(days=7 * n), anc, f"RT-{n}"), "127.0.0.1:0")
            turns = int((asyncio.get_running_loop().time() - started) // delay)  # the CPU between them stays under one delay
            assert isinstance(reply, bytes) and b"MSA|AA|" in reply
            return turns, await store.write(outbox_rows) - before

        counts = [await trips(n, anc) for n, anc in enumerate(["2.5", "2.4", "2.6", "2.5", "2.4", "2.6", "1.4", "2.5", "1.3"], 1)]
        steady = counts[5:]  # psycopg prepares a statement from its fifth run on
        assert {True, False} == {raised > 0 for _, raised in steady}, counts
        assert all(turns == (6 if raised else 5) for turns, raised in steady), counts
    finally:
        store.close()
        await proxy.stop()
