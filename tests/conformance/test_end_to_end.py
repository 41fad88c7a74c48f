"""Every rules.md row end to end: MLLP in, RabbitMQ out, HTTP status and dispense check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from rems_ingest.app import Daemon
from tests.conformance.cases import CASES, Case
from tests.conformance.e2e import Collector, Driver
from tests.conformance.pure import compare
from tests.conftest import make_settings, purge_topology, test_topology

pytestmark = [pytest.mark.rabbitmq, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def driver(tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str) -> AsyncIterator[Driver]:
    topo = test_topology()
    s = make_settings(Path(tmp_path_factory.mktemp("conformance")), amqp_url=rabbitmq_url)
    # the cases replay dated histories (2025-2026): judge draw times against them, not today
    s.mllp.max_result_age_days = 36500
    s.mllp.max_future_skew_hours = 24 * 365
    d = Daemon(s)
    d.relay.topology = topo
    await d.start()
    clinic_queue = next(q for q in topo.queues if q.endswith(".clinic"))
    collector = Collector(rabbitmq_url, clinic_queue)
    for _ in range(200):
        if d.relay.connected:
            break
        await __import__("asyncio").sleep(0.05)
    await collector.start()
    try:
        yield Driver(d, collector)
    finally:
        await collector.stop()
        await d.shutdown()
        await purge_topology(rabbitmq_url, topo)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_rule(driver: Driver, case: Case) -> None:
    wrong = compare(case, await driver.run(case))
    assert not wrong, f"{case.section} {case.rule}: " + "; ".join(wrong)
