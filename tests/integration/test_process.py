"""The daemon as a process: the README's command, SIGTERM mid-stream, kill -9 mid-stream.

An MLLP sender keeps every message until it has its ACK and resends it after a reconnect,
as lab interface engines do; the guarantee under test is that AA means stored and that
every alert committed is published once a daemon is running again.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from datetime import date, timedelta
from pathlib import Path

import aio_pika
import pytest

from rems_ingest.adapters.amqp.topology import Topology
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.demo import oru
from tests.conftest import purge_topology
from tests.process import DaemonProcess, outbox, stored

ROOT = Path(__file__).resolve().parents[2]
START = date(2026, 1, 5)
VALUES = ["2.0", "1.4", "0.9", "0.45", "1.2", "1.6", "2.2", "1.1", "0.8", "1.9"]  # 10^3/uL: every category


def streams(patients: int, per_patient: int, connections: int, tag: str) -> list[list[tuple[str, bytes]]]:
    """Per connection, each patient's results in date order (one patient stays on one connection)."""
    out: list[list[tuple[str, bytes]]] = [[] for _ in range(connections)]
    for day in range(per_patient):
        for p in range(patients):
            cid = f"{tag}-{p}-{day}"
            out[p % connections].append((cid, oru(cid, f"P{tag}{p}", START + timedelta(days=7 + day), VALUES[(day + p) % len(VALUES)], cid)))
    return out


def msa(reply: bytes) -> str:
    return reply.decode().split("\r")[1].split("|")[1]


async def send_from(port: int, msgs: list[tuple[str, bytes]], start: int, acks: dict[str, str]) -> int:
    """Send msgs[start:] one at a time; return the index of the first message without an ACK."""
    i = start
    try:
        async with MllpClient("127.0.0.1", port, timeout=30) as c:
            while i < len(msgs):
                acks[msgs[i][0]] = msa(await c.send(msgs[i][1]))
                i += 1
    except (ConnectionError, OSError, TimeoutError):
        pass
    return i


async def enroll(d: DaemonProcess, patients: int, tag: str) -> None:
    async with MllpClient("127.0.0.1", d.mllp_port) as c:
        for p in range(patients):
            assert "AA" == msa(await c.send(oru(f"{tag}-B{p}", f"P{tag}{p}", START - timedelta(days=2), "1.8", f"{tag}-B{p}")))
    for p in range(patients):
        code, body = await asyncio.to_thread(
            d.http, "POST", "/v1/patients", {"id": f"P{tag}{p}", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat(), "prescriber_id": "DR1", "pharmacy_id": "RX1"}
        )
        assert 201 == code, body


async def interrupt_after(d: DaemonProcess, acks: dict[str, str], n: int, sig: int) -> None:
    while len(acks) < n:
        await asyncio.sleep(0.005)
    d.signal(sig)


def assert_every_aa_stored(acks: dict[str, str], db: Path) -> int:
    have = stored(db)
    aa = [c for c, code in acks.items() if code == "AA"]
    missing = [c for c in aa if c not in have or have[c][1] < 1]
    assert not missing, f"{len(missing)} messages ACKed AA but not stored, e.g. {missing[:5]}"
    assert len(aa) == len(acks), {c: a for c, a in acks.items() if a != "AA"}
    return len(aa)


def readme_run_command() -> str:
    text = (ROOT / "README.md").read_text()
    lines = [ln.strip() for ln in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S) for ln in ln.splitlines()]
    return next(ln for ln in lines if ln.endswith("rems-ingest serve"))


@pytest.mark.timeout(400)
def test_the_readme_run_command_starts_a_daemon_that_acks_and_is_ready(tmp_path: Path) -> None:
    command = readme_run_command()
    assert command.startswith("python3 -m venv .venv && .venv/bin/pip install")
    # Only the ports are moved (the defaults may be taken on a shared machine); the store is
    # the embedded default and no broker is configured.
    d = DaemonProcess(tmp_path, command=command, cwd=ROOT, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/readme.db"})
    try:
        d.start(timeout=300)
        reply = asyncio.run(_send_one(d.mllp_port))
        assert "AA" == msa(reply)
        code, ready = d.http("GET", "/readyz")
        assert (200, True, "disabled") == (code, ready["ready"], ready["broker"])
        assert 1 == stored(tmp_path / "readme.db")["README-1"][1]  # its observation is on disk
    finally:
        d.stop()
    assert 0 == d.proc.returncode  # type: ignore[union-attr]


async def _send_one(port: int) -> bytes:
    async with MllpClient("127.0.0.1", port) as c:
        return await c.send(oru("README-1", "P-README", START, "1.8", "README-1"))


async def test_sigterm_mid_stream_exits_0_and_loses_no_acked_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "term.db"
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{db}", "REMS_SHUTDOWN_GRACE_SECONDS": "10"}).start()
    tag = uuid.uuid4().hex[:6]
    await enroll(d, 8, tag)
    conns = streams(8, 100, 4, tag)
    acks: dict[str, str] = {}
    results = await asyncio.gather(*(send_from(d.mllp_port, m, 0, acks) for m in conns), interrupt_after(d, acks, 300, signal.SIGTERM))
    rc = await asyncio.to_thread(d.wait, 30)

    assert 0 == rc, d.output()[-2000:]
    n = assert_every_aa_stored(acks, db)
    assert 300 <= n < 800, "SIGTERM should have landed mid-stream"
    assert sum(results[:4]) == n
    assert '"daemon_stopped"' in d.output()
    with capsys.disabled():  # the counts belong in the CI log
        print(f"\n  SIGTERM after {n} of 800 ACKs: exit 0, {n} AA'd messages all stored")


@pytest.mark.rabbitmq
@pytest.mark.timeout(400)
async def test_kill_9_mid_stream_of_10000_then_restart_loses_nothing(tmp_path: Path, rabbitmq_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "kill.db"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    topo = Topology.with_prefix(prefix)
    env = {"REMS_STORE__URL": f"sqlite:///{db}", "REMS_AMQP__URL": rabbitmq_url, "REMS_AMQP__TOPOLOGY_PREFIX": prefix}
    d = DaemonProcess(tmp_path, env=env).start()
    try:
        await wait_broker(d)
        tag = uuid.uuid4().hex[:6]
        await enroll(d, 40, tag)
        conns = streams(40, 250, 4, tag)
        total = sum(map(len, conns))
        acks: dict[str, str] = {}
        positions = await asyncio.gather(*(send_from(d.mllp_port, m, 0, acks) for m in conns), interrupt_after(d, acks, 4000, signal.SIGKILL))
        await asyncio.to_thread(d.wait, 30)
        before_kill = len(acks)
        _, pending_at_kill = outbox(db)

        d.start()  # same store, same ports: the sender reconnects and resends what was not ACKed
        await asyncio.gather(*(send_from(d.mllp_port, m, p, acks) for m, p in zip(conns, positions[:4])))
        assert total == len(acks)
        n = assert_every_aa_stored(acks, db)

        ids, pending = outbox(db)
        for _ in range(600):
            if pending == 0:
                break
            await asyncio.sleep(0.2)
            ids, pending = outbox(db)
        assert 0 == pending, "alerts still unpublished after restart"
        consumed, deliveries = await drain_ids(rabbitmq_url, f"{prefix}.clinic", expect=ids)
        assert ids <= consumed, f"{len(ids - consumed)} committed alerts never reached the broker"
        with capsys.disabled():  # the counts belong in the CI log
            print(
                f"\n  kill -9 after {before_kill} ACKs ({pending_at_kill} alerts pending in the outbox at the kill); "
                f"after restart {n}/{total} messages AA and stored; {len(ids)} alerts in the outbox, "
                f"{len(consumed & ids)} distinct published and consumed ({deliveries} deliveries incl. at-least-once repeats)"
            )
    finally:
        d.stop()
        await purge_topology(rabbitmq_url, topo)


async def wait_broker(d: DaemonProcess) -> None:
    for _ in range(200):
        if (await asyncio.to_thread(d.http, "GET", "/readyz"))[1]["broker"] == "connected":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("relay did not connect")


async def drain_ids(url: str, queue: str, expect: set[str]) -> tuple[set[str], int]:
    """Consume until every expected id arrived or the queue stays quiet for 3 s."""
    seen: set[str] = set()
    deliveries = 0
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=1000)
        q = await ch.get_queue(queue, ensure=False)
        try:
            async with q.iterator(timeout=3) as it:
                async for msg in it:
                    await msg.ack()
                    deliveries += 1
                    seen.add(json.loads(msg.body)["alert_id"])
                    if expect <= seen:
                        break
        except TimeoutError:
            pass
    return seen, deliveries


async def test_sighup_and_the_api_reload_the_rules_without_dropping_connections(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    profile = (ROOT / "config" / "rules" / "us-label.toml").read_text()
    (rules / "us-label.toml").write_text(profile)
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/hup.db", "REMS_RULES_DIR": str(rules)}).start()
    try:
        version = re.search(r'version = "([^"]+)"', profile).group(1)  # type: ignore[union-attr]
        async with MllpClient("127.0.0.1", d.mllp_port) as c:
            assert "AA" == msa(await c.send(oru("HUP-1", "PH1", START, "1.8", "HUP-1")))
            (rules / "us-label.toml").write_text(profile.replace(version, "2099.1.1"))
            d.signal(signal.SIGHUP)
            for _ in range(50):
                if (await asyncio.to_thread(d.http, "GET", "/readyz"))[1]["rules_profile"] == "us-label@2099.1.1":
                    break
                await asyncio.sleep(0.1)
            assert "us-label@2099.1.1" == (await asyncio.to_thread(d.http, "GET", "/readyz"))[1]["rules_profile"]
            assert "AA" == msa(await c.send(oru("HUP-2", "PH1", START + timedelta(days=1), "1.8", "HUP-2")))  # same connection

            (rules / "us-label.toml").write_text(profile.replace(version, "2099.1.2").replace("normal = 1500", "normal = banana"))
            code, body = await asyncio.to_thread(d.http, "POST", "/v1/admin/reload-rules")
            assert 422 == code and "us-label" in body["detail"]  # a bad edit is refused...
            assert "us-label@2099.1.1" == (await asyncio.to_thread(d.http, "GET", "/readyz"))[1]["rules_profile"]  # ...the old one stays
            (rules / "us-label.toml").write_text(profile.replace(version, "2099.1.3"))
            assert (200, {"rules_profile": "us-label@2099.1.3"}) == await asyncio.to_thread(d.http, "POST", "/v1/admin/reload-rules")
            assert "AA" == msa(await c.send(oru("HUP-3", "PH1", START + timedelta(days=2), "1.8", "HUP-3")))
    finally:
        d.stop()


async def test_kill_9_among_late_results_leaves_every_snapshot_true(tmp_path: Path) -> None:
    """Late results re-fold from the snapshot before their draw time; after a kill -9 mid-stream
    and a restart, every stored event's snapshot is exactly what the stored history folds to at
    that point, and each patient's state what it folds to in the end (issue #18)."""
    from sqlalchemy import create_engine, select

    from rems_ingest import profiles
    from rems_ingest.adapters.db import codec
    from rems_ingest.adapters.db.schema import patient, patient_event
    from rems_ingest.core import rules
    from rems_ingest.core.model import event_sort_key, evolve

    db = tmp_path / "late.db"
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{db}"}).start()
    tag = uuid.uuid4().hex[:6]
    try:
        await enroll(d, 8, tag)
        conns: list[list[tuple[str, bytes]]] = [[] for _ in range(4)]
        for i in range(60):
            day = i + (1 if i % 2 == 0 else -1)  # every other result drawn before the one sent just before it
            for p in range(8):
                cid = f"{tag}-{p}-{i}"
                conns[p % 4].append((cid, oru(cid, f"P{tag}{p}", START + timedelta(days=7 + day), VALUES[(i + p) % len(VALUES)], f"{tag}{p:02d}{i:04d}")))
        acks: dict[str, str] = {}
        positions = await asyncio.gather(*(send_from(d.mllp_port, m, 0, acks) for m in conns), interrupt_after(d, acks, 200, signal.SIGKILL))
        await asyncio.to_thread(d.wait, 30)
        d.start()
        await asyncio.gather(*(send_from(d.mllp_port, m, p, acks) for m, p in zip(conns, positions[:4])))
        assert 480 == len(acks) and set(acks.values()) == {"AA"}
    finally:
        d.stop()
    policy = profiles.load("us-label")
    with create_engine(f"sqlite:///{db}").connect() as conn:
        for pk, state, profile in conn.execute(select(patient.c.id, patient.c.state, patient.c.snapshot_profile).where(patient.c.enrolled.is_(True))):
            rows = conn.execute(select(patient_event.c.body, patient_event.c.state_after, patient_event.c.sort_key).where(patient_event.c.patient_pk == pk)).all()
            events = sorted(((codec.load_event(b), s, k) for b, s, k in rows), key=lambda r: event_sort_key(r[0]))
            folded = rules.fold(policy, [e for e, _, _ in events])
            assert profile == policy.label and len(events) == 62  # baseline, enrollment, 60 results
            for (e, snapshot, _), decision in zip(events, folded.decisions):
                assert evolve(codec.load_state(snapshot), version=0) == evolve(decision.state, version=0), e.key
            assert [k for _, _, k in events] == sorted(k for _, _, k in events)
            assert evolve(codec.load_state(state), version=0) == evolve(folded.state, version=0)
