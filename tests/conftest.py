"""Shared fixtures: the real RabbitMQ and PostgreSQL on loopback, and a running daemon.

The services are found on 127.0.0.1 or started with the machine's own commands. With
CI=true a missing service fails the run loudly; elsewhere its tests are skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from rems_ingest.adapters.amqp.topology import Topology
from rems_ingest.app import Daemon
from rems_ingest.config import Settings

CI = os.environ.get("CI", "").lower() == "true"
RABBIT_URL = os.environ.get("REMS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_URL = os.environ.get("REMS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _start(cmd: str) -> None:
    try:
        subprocess.run(cmd, shell=True, timeout=120, capture_output=True, check=False)
    except subprocess.TimeoutExpired:
        pass


def _unavailable(what: str) -> None:
    message = f"{what} is not reachable on 127.0.0.1 and could not be started"
    if CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def _rabbit_ready() -> bool:
    import aio_pika

    async def probe() -> bool:
        try:
            conn = await aio_pika.connect(RABBIT_URL, timeout=5)
            await conn.close()
            return True
        except Exception:  # noqa: BLE001 - probing
            return False

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    if not _rabbit_ready():
        if shutil.which("rabbitmq-server"):
            _start("rabbitmq-server -detached")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not _rabbit_ready():
                time.sleep(2)
        if not _rabbit_ready():
            _unavailable("RabbitMQ (5672)")
    return RABBIT_URL


def _pg_connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    def ok() -> bool:
        try:
            _pg_connect(PG_ADMIN_URL).close()
            return True
        except Exception:  # noqa: BLE001 - probing
            return False

    if not ok():
        if Path("/etc/postgresql").is_dir():
            _start("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not ok():
                time.sleep(1)
        if not ok():
            _unavailable("PostgreSQL (5432)")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database per test, dropped afterwards."""
    name = f"rems_test_{uuid.uuid4().hex[:10]}"
    with _pg_connect(postgres_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with _pg_connect(postgres_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_topology(prefix: str | None = None, queue_type: str = "quorum") -> Topology:
    """Per-test names so tests never read each other's alerts on the shared broker."""
    return Topology.with_prefix(prefix or f"t{uuid.uuid4().hex[:8]}", queue_type)


test_topology.__test__ = False  # type: ignore[attr-defined]


def make_settings(tmp_path: Path, store_url: str | None = None, amqp_url: str | None = None, **mllp: object) -> Settings:
    s = Settings()
    s.store.url = store_url or f"sqlite:///{tmp_path}/rems.db"  # type: ignore[assignment]
    s.mllp.port = 0
    s.http.port = 0
    s.amqp.url = amqp_url  # type: ignore[assignment]
    s.sweep.interval_seconds = 3600
    s.http.auth = "none"  # clinical tests call the API as the loopback user; tests/integration/test_access.py covers identities
    for k, v in mllp.items():
        setattr(s.mllp, k, v)
    return s


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(make_settings(tmp_path))
    await d.start()
    yield d
    await d.shutdown()


async def purge_topology(url: str, topo: Topology) -> None:
    import aio_pika

    conn = await aio_pika.connect(url)
    ch = await conn.channel()
    for q in [*topo.queues, topo.dead_letter_queue]:
        await ch.queue_delete(q)
    await ch.exchange_delete(topo.exchange)
    await ch.exchange_delete(topo.dlx)
    await conn.close()


# ------------------------------------------------------------------ the README's stated duration

_SUITE_STARTED = time.monotonic()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The README states how long the whole suite takes; a full CI run that goes over its upper
    bound fails, so the statement cannot drift (issue #19). Partial runs are not judged."""
    import re

    if os.environ.get("CI") != "true" or session.config.args not in (["tests"], [str(Path(__file__).resolve().parent)]):
        return
    stated = re.search(r"The suite takes (\d+)–(\d+) minutes", (Path(__file__).resolve().parents[1] / "README.md").read_text())
    minutes = (time.monotonic() - _SUITE_STARTED) / 60
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if stated is None:
        message = "README no longer states the suite's duration as 'The suite takes N–M minutes'"
    elif minutes > int(stated.group(2)):
        message = f"the suite took {minutes:.1f} minutes; README says {stated.group(1)}–{stated.group(2)}: update one or the other"
    else:
        if reporter is not None:
            reporter.write_line(f"suite took {minutes:.1f} minutes (README: {stated.group(1)}–{stated.group(2)})")
        return
    if reporter is not None:
        reporter.write_line(f"FAILED: {message}", red=True)
    if exitstatus == 0:
        session.exitstatus = 1
