"""The supervisor: nothing in the background ends silently (issue #12)."""

from __future__ import annotations

import asyncio

from rems_ingest.observability import metrics
from rems_ingest.supervision import Supervisor


def _restarts(task: str) -> float:
    return metrics.REGISTRY.get_sample_value("rems_task_restarts_total", {"task": task}) or 0.0


async def test_a_crashing_task_is_restarted_and_counted() -> None:
    stop = asyncio.Event()
    sup = Supervisor(stop, min_backoff=0.01, max_backoff=0.02)
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        await stop.wait()

    before = _restarts("flaky")
    sup.spawn("flaky", flaky)
    for _ in range(100):
        if runs >= 3:
            break
        await asyncio.sleep(0.01)
    assert runs == 3 and _restarts("flaky") - before == 2
    stop.set()
    await sup.cancel()


async def test_a_task_that_keeps_failing_is_reported_down_and_up_again_once_stable() -> None:
    stop = asyncio.Event()
    sup = Supervisor(stop, min_backoff=0.01, max_backoff=0.02, stable_after=0.3)
    broken = True

    async def task() -> None:
        if broken:
            raise ConnectionError("store down")
        await stop.wait()

    sup.spawn("relay", task)
    await asyncio.sleep(0.2)
    assert sup.down() == ["relay"]
    broken = False
    await asyncio.sleep(0.5)
    assert sup.down() == [] and sup.statuses()["relay"] == "ok"
    stop.set()
    await sup.cancel()


async def test_a_task_that_returns_while_the_daemon_runs_is_a_failure() -> None:
    stop = asyncio.Event()
    sup = Supervisor(stop, min_backoff=0.01, max_backoff=0.02)
    calls = 0

    async def returns() -> None:
        nonlocal calls
        calls += 1

    before = _restarts("quitter")
    sup.spawn("quitter", returns)
    await asyncio.sleep(0.1)
    assert calls >= 2 and _restarts("quitter") > before
    stop.set()
    await sup.cancel()
