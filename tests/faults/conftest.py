"""Private RabbitMQ node and PostgreSQL cluster for the fault suite (killed and restarted at
will; the shared services are never touched)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

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
