"""MLLP in -> rules -> outbox -> real RabbitMQ queues, including a broker outage."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
from tests.conftest import make_settings, purge_topology, test_topology
from tests.proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq
START = date(2026, 3, 2)


async def drain(url: str, queue: str, expect: int, timeout: float = 20, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Consume (manual ack) until ``expect`` distinct alerts arrived or the timeout passed, then
    until the queue has stayed empty for ``quiet`` seconds: an unexpected extra alert is returned
    too, so the callers' exact comparisons catch it."""
    conn = await aio_pika.connect(url)
    ch = await conn.channel()
    q = await ch.get_queue(queue)
    seen: dict[str, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_until = None
    while loop.time() < deadline:
        msg = await q.get(fail=False)
        if msg is None:
            if len(seen) >= expect:
                quiet_until = quiet_until or loop.time() + quiet
                if loop.time() >= quiet_until:
                    break
            await asyncio.sleep(0.1)
            continue
        quiet_until = None
        body = json.loads(msg.body)
        assert msg.message_id == body["alert_id"] == msg.headers["x-alert-id"]
        assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert "application/json" == msg.content_type
        seen[body["alert_id"]] = body
        await msg.ack()
    await conn.close()
    return sorted(seen.values(), key=lambda b: (b["state_version"], b["kind"]))


async def enroll_and_walk(d: Daemon, pid: str, population: str, baseline: int | None = None) -> list[str]:
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        for i, b in enumerate(["1.8"] if population == "general" else ["1.2", "1.1"]):
            await c.send(oru(f"{pid}-B{i}", pid, START - timedelta(days=2 - i), b, f"{pid}-B{i}"))
        await d.clinic.enroll(EnrollPatient.from_mapping({"id": pid, "authority": "HOSP", "population": population, "therapy_start": START.isoformat(), "baseline_anc": baseline}))
        acks = []
        for n, (day, anc) in enumerate([(7, "1.4"), (14, "0.9"), (15, "0.45")]):
            reply = await c.send(oru(f"{pid}-W{n}", pid, START + timedelta(days=day), anc, f"{pid}-W{n}"))
            acks.append(reply.decode().split("\r")[1].split("|")[1])
    return acks


async def wait_connected(d: Daemon, timeout: float = 20) -> None:
    """The relay declares the topology when it connects; consumers need the queues."""
    for _ in range(int(timeout * 10)):
        if d.relay.connected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("relay did not connect to RabbitMQ")


@pytest.fixture
async def pipeline(tmp_path: Path, rabbitmq_url: str):  # type: ignore[no-untyped-def]
    topo = test_topology()
    d = Daemon(make_settings(tmp_path, amqp_url=rabbitmq_url))
    d.relay.topology = topo
    await d.start()
    await wait_connected(d)
    yield d, topo
    await d.shutdown()
    await purge_topology(rabbitmq_url, topo)


async def test_seed_walk_through_reaches_paging_and_pharmacy_queues(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    d, topo = pipeline

    acks = await enroll_and_walk(d, "GP1", "general")
    paging = await drain(rabbitmq_url, next(iter(topo.queues)), expect=4)
    pharmacy = await drain(rabbitmq_url, list(topo.queues)[1], expect=5)

    assert ["AA", "AA", "AA"] == acks
    assert ["monitoring.confirm_repeat", "therapy.interrupt", "therapy.emergency", "therapy.interrupt"] == [b["kind"] for b in paging]
    assert {"pharmacy.release", "pharmacy.hold", "therapy.interrupt", "therapy.emergency"} == {b["kind"] for b in pharmacy}
    emergency = next(b for b in paging if b["kind"] == "therapy.emergency")
    assert ("critical", "emergency", "daily", 450.0, "severe") == (
        emergency["severity"], emergency["action"], emergency["monitoring"]["frequency"], emergency["anc"]["per_ul"], emergency["anc"]["category"]
    )
    assert {"id": "GP1", "authority": "HOSP"} == emergency["patient"]
    assert (START + timedelta(days=15)).isoformat() + "T08:00:00" == emergency["anc"]["observed_at"][:19]
    assert "rems.alert/1" == emergency["schema"]
    versions = [b["state_version"] for b in paging]
    assert versions == sorted(versions)


async def test_ben_patient_continues_at_900_and_is_interrupted_at_450(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    d, topo = pipeline

    await enroll_and_walk(d, "BEN1", "ben", baseline=1100)
    paging = await drain(rabbitmq_url, next(iter(topo.queues)), expect=3)

    assert ["monitoring.confirm_repeat", "therapy.emergency", "therapy.interrupt"] == [b["kind"] for b in paging]
    assert all(b["population"] == "ben" for b in paging)


async def test_alerts_wait_in_the_outbox_while_the_broker_is_unreachable(tmp_path: Path, rabbitmq_url: str) -> None:
    host_port = rabbitmq_url.rsplit("@", 1)[1].split("/")[0]
    proxy = TcpProxy(host_port.split(":")[0], int(host_port.split(":")[1]))
    await proxy.start()
    topo = test_topology()
    d = Daemon(make_settings(tmp_path, amqp_url=rabbitmq_url.replace(host_port, f"127.0.0.1:{proxy.port}")))
    d.relay.topology = topo
    d.relay.publish_timeout = 2
    d.settings.amqp.ready_max_outbox_age_seconds = 0.5
    await d.start()
    try:
        await wait_connected(d)
        assert d.readiness()["ready"]
        proxy.cut()
        acks = await enroll_and_walk(d, "OUT1", "general")
        await asyncio.sleep(1)
        pending = d.store.read(lambda c: __import__("rems_ingest.adapters.db.repository", fromlist=["Repository"]).Repository(c).outbox_stats()[0])

        assert ["AA", "AA", "AA"] == acks
        assert pending >= 7
        for _ in range(100):  # the relay notices the cut within its publish timeout
            if not d.relay.connected:
                break
            await asyncio.sleep(0.1)
        outage = d.readiness()
        assert (False, "unreachable") == (outage["ready"], outage["broker"])  # alerts are stuck: not ready

        proxy.restore()
        clinic = await drain(rabbitmq_url, list(topo.queues)[2], expect=pending, timeout=60)
        assert pending == len(clinic)
        await wait_connected(d)
        for _ in range(50):
            if d.readiness()["ready"]:
                break
            await asyncio.sleep(0.1)
        assert d.readiness()["ready"]
    finally:
        await d.shutdown()
        await proxy.stop()
        await purge_topology(rabbitmq_url, topo)


async def test_running_the_same_stream_twice_publishes_no_new_alert_ids(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    d, topo = pipeline
    await enroll_and_walk(d, "TWICE", "general")
    first = await drain(rabbitmq_url, list(topo.queues)[2], expect=7)

    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        for n, (day, anc) in enumerate([(7, "1.4"), (14, "0.9"), (15, "0.45")]):
            await c.send(oru(f"TWICE-W{n}", "TWICE", START + timedelta(days=day), anc, f"TWICE-W{n}"))
    again = await drain(rabbitmq_url, list(topo.queues)[2], expect=1, timeout=3)

    assert 7 == len(first)
    assert [] == again


async def test_a_correction_supersedes_the_alerts_it_withdrew(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    d, topo = pipeline
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        await c.send(oru("C-B0", "CORR", START - timedelta(days=1), "1.8", "C-B0"))
        await d.clinic.enroll(EnrollPatient.from_mapping({"id": "CORR", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
        await c.send(oru("C-1", "CORR", START + timedelta(days=6), "0.9", "C-ACC1"))
        corrected = oru("C-2", "CORR", START + timedelta(days=6), "1.9", "C-ACC1").replace(b"||||F\r", b"||||C\r")
        await c.send(corrected)
    alerts = await drain(rabbitmq_url, list(topo.queues)[2], expect=8)
    pharmacy = await drain(rabbitmq_url, list(topo.queues)[1], expect=7)

    assert 8 == len(alerts)  # release at enrollment, 3 for the 900, 3 withdrawn by the correction, a new release
    superseded = {b["detail"]["superseded_kind"] for b in alerts if b["kind"] == "alert.superseded"}
    assert {"therapy.interrupt", "pharmacy.hold", "monitoring.confirm_repeat"} <= superseded
    assert 7 == len(pharmacy)  # release, interrupt, hold, the 3 supersedes and a release in the pharmacy's own words
    assert ["pharmacy.release", "pharmacy.hold", "pharmacy.release"] == [b["kind"] for b in pharmacy if b["kind"].startswith("pharmacy.")]
    # the pharmacy hears that its hold was withdrawn, and the current status says active
    assert "pharmacy.hold" in {b["detail"].get("superseded_kind") for b in pharmacy if b["kind"] == "alert.superseded"}
    assert "active" == max(pharmacy, key=lambda b: b["state_version"])["treatment_status"]
    status = await d.clinic.status(__import__("rems_ingest.core.model", fromlist=["PatientKey"]).PatientKey("CORR", "HOSP"))
    assert ("normal", "active") == (status["category"], status["treatment_status"])


async def test_pharmacy_hold_then_release_end_to_end(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    """enroll -> ORU -> hold on the pharmacy queue -> check says no -> recovery -> release -> yes."""
    from rems_ingest.core.model import PatientKey

    d, topo = pipeline
    key = PatientKey("RX1", "HOSP")
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        await c.send(oru("RX-B", "RX1", START - timedelta(days=1), "1.9", "RX-B"))
        await d.clinic.enroll(EnrollPatient.from_mapping({"id": "RX1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
        released = await drain(rabbitmq_url, list(topo.queues)[1], expect=1)
        await c.send(oru("RX-1", "RX1", START + timedelta(days=7), "0.8", "RX-1"))
        held = await drain(rabbitmq_url, list(topo.queues)[1], expect=2)
        no = await d.clinic.dispense_check(key, START + timedelta(days=7))
        await c.send(oru("RX-2", "RX1", START + timedelta(days=8), "1.2", "RX-2"))
        back = await drain(rabbitmq_url, list(topo.queues)[1], expect=2)
        yes = await d.clinic.dispense_check(key, START + timedelta(days=8))

    assert ["pharmacy.release"] == [b["kind"] for b in released]
    assert {"pharmacy.hold", "therapy.interrupt"} == {b["kind"] for b in held}
    assert (False, "TREATMENT_HELD_HEME") == (no["authorized"], no["code"])
    assert {"pharmacy.release", "therapy.resume_eligible"} == {b["kind"] for b in back}
    assert (True, 7) == (yes["authorized"], yes["max_days_supply"])


async def test_an_alert_the_broker_returns_as_unroutable_stays_in_the_outbox_for_retry(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from sqlalchemy import select

    from rems_ingest.adapters.db.repository import Repository
    from rems_ingest.adapters.db.schema import outbox
    from rems_ingest.core.model import Alert, AlertKind, Severity
    from rems_ingest.service.outbox import OutboxEntry

    d, _topo = pipeline
    await wait_connected(d)
    now = datetime.now(UTC).isoformat()
    alert = Alert(AlertKind.DATA_QUALITY, "test", date.today(), Severity.NORMAL, "test")
    row = OutboxEntry("unroutable-1", None, alert, "nowhere.bound", "{}", 0, now)
    await d.store.write(lambda c: Repository(c).add_alerts([row]))
    d.relay.wake()
    for _ in range(100):
        attempts, published = d.store.read(lambda c: c.execute(select(outbox.c.attempts, outbox.c.published_at).where(outbox.c.alert_id == "unroutable-1")).one())
        if attempts:
            break
        await asyncio.sleep(0.1)

    assert (1, None) == (attempts, published)  # returned by the broker: not marked sent, retried later
    assert d.relay.connected  # a return is not a broken connection


async def test_alerts_of_a_one_connection_feed_share_a_claim(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    """A lab sending one message at a time raises an alert every few milliseconds; each claim and
    its published mark is a transaction on the store's one writer, which the next message waits
    behind. An alert committed 25 ms after the wake-up joins the same claim (the relay lingers)."""
    d, _topo = pipeline
    claims: list[int] = []
    claim = d.relay.store.claim

    async def counting(*args: Any, **kw: Any) -> Any:
        rows = await claim(*args, **kw)
        if rows:
            claims.append(len(rows))
        return rows

    d.relay.store.claim = counting  # type: ignore[method-assign]
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        for pid in ("LG1", "LG2"):
            await d.clinic.enroll(EnrollPatient.from_mapping({"id": pid, "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
        await c.send(oru("LG1-1", "LG1", START + timedelta(days=7), "0.4", "LG1-1"))  # severe: pages
        await asyncio.sleep(0.025)
        await c.send(oru("LG2-1", "LG2", START + timedelta(days=7), "0.4", "LG2-1"))
    from sqlalchemy import text

    def outbox_rows(c: Any) -> list[Any]:
        return list(c.execute(text("SELECT patient_pk, published_at FROM outbox WHERE patient_pk IS NOT NULL")))

    for _ in range(100):
        rows = d.store.read(outbox_rows)
        if rows and all(r.published_at for r in rows):
            break
        await asyncio.sleep(0.1)

    assert 2 == len({r.patient_pk for r in rows}) and all(r.published_at for r in rows)
    assert 1 == len(claims), claims


async def test_voiding_a_discontinue_restores_the_prior_state_and_tells_the_pharmacy(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    """A discontinue entered in error (issue #26): void it, and the patient is back on therapy;
    the hold it raised is superseded on the queues and the pharmacy may dispense again."""
    from rems_ingest.core.model import PatientKey
    from rems_ingest.service.commands import RecordEvent

    d, topo = pipeline
    key = PatientKey("VOID1", "HOSP")
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        await c.send(oru("V-B", "VOID1", START - timedelta(days=1), "1.9", "V-B"))
    await d.clinic.enroll(EnrollPatient.from_mapping({"id": "VOID1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat(), "prescriber_id": "DR1"}))
    before = await d.clinic.status(key)
    await d.clinic.record_event(key, RecordEvent("discontinue", START + timedelta(days=3), "DR1", "mis-click", abrupt=True, event_id="D-1"))
    stopped = await d.clinic.dispense_check(key, START + timedelta(days=4))
    held = await drain(rabbitmq_url, list(topo.queues)[1], expect=2)
    voided = await d.clinic.void_event(key, "D-1", "entered in error: wrong patient", by="DR1")
    after = await drain(rabbitmq_url, list(topo.queues)[1], expect=2)
    again = await d.clinic.dispense_check(key, START + timedelta(days=4))

    assert stopped["authorized"] is False and stopped["code"] == "TREATMENT_DISCONTINUED"
    assert ["pharmacy.release", "pharmacy.hold"] == [b["kind"] for b in held]
    assert (voided["treatment_status"], voided["monitoring"]["frequency"]) == (before["treatment_status"], before["monitoring"]["frequency"])
    hold_id = next(b["alert_id"] for b in held if b["kind"] == "pharmacy.hold")
    assert hold_id in {b["detail"].get("superseded_alert_id") for b in after if b["kind"] == "alert.superseded"}
    assert again["authorized"] is True
    record = await d.services.worklists.record(key)
    assert record is not None and [e.voided for e in record["events"] if getattr(e, "type", "") == "discontinue"] == ["DR1: entered in error: wrong patient"]


async def test_the_access_trails_anchor_reaches_the_audit_queue_and_no_alert_queue(pipeline, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    """Issue #26: the chain head leaves the store as a rems.audit message (not an alert)."""
    from rems_ingest.service.access import Identity, Role

    d, topo = pipeline
    await d.services.trail.record(Identity("DR1", frozenset({Role.PRESCRIBER})), "patient.event override E-1 by DR1", None, 201, "127.0.0.1", anchor=True)
    conn = await aio_pika.connect(rabbitmq_url)
    ch = await conn.channel()
    names = list(topo.queues)
    audit_q, clinic_q = await ch.get_queue(names[3]), await ch.get_queue(names[2])
    msg = None
    for _ in range(100):
        msg = await audit_q.get(fail=False)
        if msg is not None:
            break
        await asyncio.sleep(0.1)
    assert msg is not None, "no anchor on the audit queue"
    body = json.loads(msg.body)
    await msg.ack()
    stray = await clinic_q.get(fail=False)
    await conn.close()
    assert (body["schema"], body["seq"]) == ("rems.audit.anchor/1", 1) and len(body["hash"]) == 64
    assert msg.message_id and names[3].endswith(".audit")
    assert stray is None  # the clinic's complete alert feed carries alerts only
