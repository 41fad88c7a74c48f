"""Background tasks that never stop silently (issue #12).

Every long-running task of the daemon (outbox relay, overdue sweeper, outbox gauges) runs
under a ``Supervisor``: an exception is logged with its type only (never its text, which
can carry PHI), counted in ``rems_task_restarts_total{task}``, and the task restarted after
a capped, jittered back-off. A task that fails again before it has done a unit of work
(``beat``) or run ``stable_after`` seconds is reported failing, which fails ``/readyz`` until
it works again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from rems_ingest.observability import metrics

log = structlog.get_logger("rems_ingest.supervisor")


@dataclass
class TaskHealth:
    name: str
    restarts: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    started_at: float = 0.0
    running: bool = False

    def status(self, stable_after: float, now: float) -> str:
        if self.consecutive_failures >= 2 and (not self.running or now - self.started_at < stable_after):
            return "failing"  # failed again before it ran stable_after seconds: keeps failing
        if not self.running:
            return "restarting" if self.consecutive_failures else "stopped"
        return "ok"


@dataclass
class Supervisor:
    stop: asyncio.Event
    min_backoff: float = 0.5
    max_backoff: float = 2.0
    stable_after: float = 30.0
    health: dict[str, TaskHealth] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        self.health[name] = TaskHealth(name)
        metrics.TASK_RESTARTS.labels(name)  # the series exists (at 0) before the first failure
        task = asyncio.create_task(self._keep(name, run), name=f"supervised:{name}")
        self._tasks.append(task)
        return task

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        h = self.health[name]
        delay = self.min_backoff
        while not self.stop.is_set():
            h.running, h.started_at = True, time.monotonic()
            try:
                await run()
                if self.stop.is_set():
                    break
                raise RuntimeError("task returned while the daemon runs")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point: nothing ends a task silently
                ran = time.monotonic() - h.started_at
                h.running = False
                h.restarts += 1
                h.consecutive_failures = 1 if ran >= self.stable_after else h.consecutive_failures + 1
                h.last_error = type(exc).__name__
                if ran >= self.stable_after:
                    delay = self.min_backoff
                metrics.TASK_RESTARTS.labels(name).inc()
                log.error("task_crashed", task=name, error=type(exc).__name__, restart_in=round(delay, 2), consecutive_failures=h.consecutive_failures)
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(self.max_backoff, delay * 2) * random.uniform(0.8, 1.2)
        h.running = False

    def beat(self, name: str) -> None:
        """The task did a unit of work: it is healthy again, whatever failed before."""
        h = self.health.get(name)
        if h is not None:
            h.consecutive_failures = 0

    def beater(self, name: str) -> Callable[[], None]:
        return lambda: self.beat(name)

    def statuses(self) -> dict[str, str]:
        now = time.monotonic()
        return {name: h.status(self.stable_after, now) for name, h in self.health.items()}

    def down(self) -> list[str]:
        return [name for name, st in self.statuses().items() if st == "failing"]

    async def cancel(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
