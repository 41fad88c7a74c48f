"""Private RabbitMQ node and PostgreSQL cluster for the fault suite (killed and restarted at
will; the shared services are never touched)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CI
from tests.faults.nodes import PgCluster, RabbitNode, available

FULL = os.environ.get("REMS_FAULTS_FULL", "") == "1"  # the long run: more messages, more kills


def _skip_or_fail() -> None:
    why = available()
    if why:
        if CI:
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    _skip_or_fail()
    base = Path(tmp_path_factory.mktemp("rabbit"))
    os.chmod(base.parent, 0o755)
    os.chmod(base.parent.parent, 0o755)
    node = RabbitNode(base)
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    _skip_or_fail()
    base = Path(tmp_path_factory.mktemp("pg"))
    os.chmod(base, 0o755)
    os.chmod(base.parent, 0o755)
    os.chmod(base.parent.parent, 0o755)
    cluster = PgCluster(base / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(autouse=True)
def _services_up(request: pytest.FixtureRequest) -> None:
    """A test that failed half-way through a fault must not leave the next one without its
    broker or database: bring them back first."""
    from tests.faults.nodes import _port_open

    if "rabbit" in request.fixturenames:
        node: RabbitNode = request.getfixturevalue("rabbit")
        if not _port_open(node.port):
            node.start()
    if "pg" in request.fixturenames:
        cluster: PgCluster = request.getfixturevalue("pg")
        if not _port_open(cluster.port):
            cluster.start()
