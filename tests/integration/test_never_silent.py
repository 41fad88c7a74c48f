"""A store error must not stop alert publishing for good, and /readyz must say so while it
lasts (issue #12: one PostgreSQL restart used to end the relay task silently)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.demo import oru
from rems_ingest.observability import metrics
from tests.conftest import make_settings, purge_topology, test_topology
from tests.integration.test_rabbitmq_pipeline import drain, enroll_and_walk, wait_connected


def _store_down(*_a: Any, **_k: Any) -> Any:
    raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))


async def _until(predicate: Any, timeout: float = 15) -> bool:
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.rabbitmq
async def test_relay_outlives_store_errors_readiness_tells_and_alerts_still_leave(tmp_path: Path, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topo = test_topology()
    d = Daemon(make_settings(tmp_path, amqp_url=rabbitmq_url))
    d.relay.topology = topo
    d.supervisor.stable_after = 3
    d.settings.amqp.ready_max_outbox_age_seconds = 1
    await d.start()
    try:
        await wait_connected(d)
        restarts = metrics.REGISTRY.get_sample_value("rems_task_restarts_total", {"task": "relay"}) or 0
        monkeypatch.setattr(Repository, "claim", _store_down)  # every claim fails, as during a database restart
        acks = await enroll_and_walk(d, "SUP1", "general")
        assert ["AA", "AA", "AA"] == acks
        assert await _until(lambda: "relay" in d.supervisor.down())
        ready = d.readiness()
        assert not ready["ready"] and any("relay" in r for r in ready["reasons"]) and ready["broker"] != "unreachable"
        assert await _until(lambda: (metrics.REGISTRY.get_sample_value("rems_outbox_backlog") or 0) >= 7)  # gauges keep moving
        assert (metrics.REGISTRY.get_sample_value("rems_task_restarts_total", {"task": "relay"}) or 0) > restarts

        monkeypatch.undo()  # the database is back
        paging = await drain(rabbitmq_url, next(iter(topo.queues)), expect=3, timeout=30)
        assert {"therapy.emergency", "therapy.interrupt"} <= {b["kind"] for b in paging}
        assert await _until(lambda: d.readiness()["ready"], timeout=20), d.readiness()
        assert (metrics.REGISTRY.get_sample_value("rems_relay_last_publish_timestamp_seconds") or 0) > 0
    finally:
        await d.shutdown()
        await purge_topology(rabbitmq_url, topo)


async def test_readiness_fails_while_writes_fail_and_recovers_with_the_next_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Daemon(make_settings(tmp_path))
    await d.start()
    try:
        assert d.readiness()["ready"]
        async with MllpClient("127.0.0.1", d.server.bound_port, timeout=10) as c:
            monkeypatch.setattr(Repository, "insert_message", _store_down)  # disk full, say
            nak = (await c.send(oru("W-1", "W1", __import__("datetime").date.today(), "1.8", "W-1"))).decode()
            assert "MSA|AE|W-1" in nak
            down = d.readiness()
            assert (False, "write_failing") == (down["ready"], down["store"]) and any("store writes failing" in r for r in down["reasons"])
            monkeypatch.undo()
            ok = (await c.send(oru("W-1", "W1", __import__("datetime").date.today(), "1.8", "W-1"))).decode()
            assert "MSA|AA|W-1" in ok
        assert d.readiness()["ready"]
    finally:
        await d.shutdown()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_commit_that_writes_nothing_does_not_clear_write_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, store: str) -> None:
    """A relay claim or sweep that finds nothing commits an empty transaction, which succeeds on
    a full disk: readiness must keep saying writes fail until a commit has written a row."""
    url = request.getfixturevalue("postgres_url") if store == "postgresql" else None
    d = Daemon(make_settings(tmp_path, store_url=url))
    await d.start()
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port, timeout=10) as c:
            monkeypatch.setattr(Repository, "insert_message", _store_down)
            nak = (await c.send(oru("E-1", "E1", __import__("datetime").date.today(), "1.8", "E-1"))).decode()
            assert "MSA|AE|E-1" in nak
            await d.store.write(lambda conn: None)  # nothing written: no proof the disk takes writes
            await d.store.write(lambda conn: Repository(conn).claim(10, "2000-01-01T00:00:00", "2000-01-01T00:01:00", "x"), durable=False)
            assert "write_failing" == d.readiness()["store"]
            monkeypatch.undo()
            assert "MSA|AA|E-1" in (await c.send(oru("E-1", "E1", __import__("datetime").date.today(), "1.8", "E-1"))).decode()
        assert d.readiness()["ready"]
    finally:
        await d.shutdown()


@pytest.mark.rabbitmq
async def test_alerts_not_leaving_with_the_broker_connected_fail_readiness(tmp_path: Path, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rems_ingest.adapters.amqp.relay import OutboxRelay

    topo = test_topology()
    d = Daemon(make_settings(tmp_path, amqp_url=rabbitmq_url))
    d.relay.topology = topo
    d.settings.amqp.ready_max_outbox_age_seconds = 1
    await d.start()
    try:
        await wait_connected(d)

        async def never_confirmed(self: Any, row: Any) -> None:  # e.g. a queue the broker cannot use
            await asyncio.sleep(3600)

        monkeypatch.setattr(OutboxRelay, "_publish", never_confirmed)
        await enroll_and_walk(d, "STK1", "general")
        assert await _until(lambda: not d.readiness()["ready"], timeout=10)
        ready = d.readiness()
        assert ready["broker"] == "connected" and any("publishing is stuck" in r for r in ready["reasons"]), ready
    finally:
        await d.shutdown()
        await purge_topology(rabbitmq_url, topo)


def _driver_error(store: str, kind: str) -> BaseException:
    """What the database driver itself raises on its cursor (the hot statements bypass SQLAlchemy)."""
    import sqlite3

    import psycopg.errors

    if store == "sqlite":
        return sqlite3.OperationalError("database or disk is full")
    return psycopg.errors.DeadlockDetected("deadlock detected") if kind == "deadlock" else psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_driver_error_on_a_hot_statement_is_ae_and_fails_readiness_never_ar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, store: str) -> None:
    """A full disk or a lost connection met by a statement sent on the driver's own cursor must
    be told apart from a bad message exactly as one met through SQLAlchemy: AE (resend later)
    and not ready, never AR (the sender would move on and the result would wait for a replay)."""
    url = request.getfixturevalue("postgres_url") if store == "postgresql" else None
    d = Daemon(make_settings(tmp_path, store_url=url))
    await d.start()
    try:
        def raw_failure(*_a: Any, **_k: Any) -> Any:
            raise _driver_error(store, "lost")

        async with MllpClient("127.0.0.1", d.server.bound_port, timeout=10) as c:
            monkeypatch.setattr(Repository, "insert_message", raw_failure)
            nak = (await c.send(oru("R-1", "R1", __import__("datetime").date.today(), "1.8", "R-1"))).decode()
            assert "MSA|AE|R-1" in nak
            assert "write_failing" == d.readiness()["store"]
            monkeypatch.undo()
            assert "MSA|AA|R-1" in (await c.send(oru("R-1", "R1", __import__("datetime").date.today(), "1.8", "R-1"))).decode()
        assert d.readiness()["ready"]
    finally:
        await d.shutdown()


@pytest.mark.postgres
async def test_a_deadlock_met_on_a_hot_statement_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    """PostgreSQL rolled the deadlocked transaction back: it is re-run and the sender gets AA."""
    d = Daemon(make_settings(tmp_path, store_url=postgres_url))
    await d.start()
    try:
        real, failures = Repository.insert_message, []

        def once(self: Repository, **values: Any) -> Any:
            if not failures:
                failures.append(1)
                raise _driver_error("postgresql", "deadlock")
            return real(self, **values)

        monkeypatch.setattr(Repository, "insert_message", once)
        async with MllpClient("127.0.0.1", d.server.bound_port, timeout=10) as c:
            assert "MSA|AA|D-1" in (await c.send(oru("D-1", "D1", __import__("datetime").date.today(), "1.8", "D-1"))).decode()
        assert failures == [1] and (metrics.REGISTRY.get_sample_value("rems_store_retries_total", {"reason": "deadlock"}) or 0) >= 1
    finally:
        await d.shutdown()
