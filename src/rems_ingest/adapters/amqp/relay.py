"""Outbox relay: claim rows -> publish with confirms -> mark sent only after the broker's Ack.

Alerts wait safely in the outbox while the broker is down; the listener keeps ACKing.
A publish that times out, is returned (unroutable) or nacked stays in the outbox and is
retried with back-off. Delivery is at-least-once; consumers dedupe on ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.connection import make_url
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError

from rems_ingest.adapters.amqp.topology import Topology, declare
from rems_ingest.observability import metrics
from rems_ingest.service.ports import OutboxRow, OutboxSource

log = structlog.get_logger("rems_ingest.relay")

RETRYABLE = tuple(CONNECTION_EXCEPTIONS) + (asyncio.TimeoutError, ConnectionError, OSError, aiormq.exceptions.AMQPError)


def _utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class OutboxRelay:
    store: OutboxSource  # the outbox port (adapters/db/unit_of_work.StoreOutboxSource)
    url: str | None
    topology: Topology = field(default_factory=Topology)
    batch: int = 500
    publish_timeout: float = 10.0
    # a claimed row is someone else's to publish once this passes: a daemon killed mid-batch
    # holds its alerts this long at most (a batch's publishes all time out within
    # publish_timeout, so a live relay has marked them by then; overlap only re-publishes
    # the same alert id)
    lease_seconds: float | None = None  # default: max(5, publish_timeout)
    poll_interval: float = 0.5
    max_backoff: float = 300.0  # a returned or nacked alert's retry delay
    max_reconnect_delay: float = 3.0  # broker reconnect back-off cap (with jitter)
    # after a wake-up, let the alerts of the next messages join the same claim: a one-connection
    # feed raises one every few ms, and each claim and mark is a writer transaction the next
    # message queues behind (5 ms: 1,313 µs CPU/msg at one connection; 50 ms: 1,135-1,170)
    linger: float = 0.05
    backlog_refresh: float = 1.0  # the backlog gauges are re-read at most this often while busy
    clock: Callable[[], datetime] = _utc
    on_progress: Callable[[], None] = lambda: None  # a claim or a gauge refresh worked (supervisor heartbeat)
    owner: str = ""  # amqp.relay_id: names this relay's claims (stable across restarts)

    def __post_init__(self) -> None:
        self.connected = False
        self.last_error = ""  # why the broker was last unreachable ("" once connected)
        self._wake = asyncio.Event()
        self._conn: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._channel: AbstractChannel | None = None
        self._backlog_at = 0.0
        self.last_publish: float = 0.0  # unix time of the last confirmed publish
        # Claims are made under ``owner``. When this relay has no batch in flight and may hold
        # stale claims (it just started after a kill -9, or a store error cut a batch short),
        # it releases its own at once instead of waiting out the lease.
        self._release_own = True
        self._store_reconnects = 0
        if self.lease_seconds is None:
            self.lease_seconds = max(5.0, self.publish_timeout)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``. A broker that is down is retried here (capped back-off with
        jitter); anything else, a store error while claiming or marking included, propagates to
        the supervisor, which logs, counts and restarts this task."""
        if not self.url:
            log.warning("relay_disabled", reason="no broker configured: alerts are held in the outbox")
            await stop.wait()  # the backlog gauges have their own task
            return
        delay = 0.5
        while not stop.is_set():
            try:
                await self._connect()
                delay = 0.5
                await self._pump(stop)
            except RETRYABLE as exc:
                self.last_error = type(exc).__name__
                metrics.PUBLISH_FAILURES.labels("connection").inc()
                log.warning("relay_broker_unavailable", error=type(exc).__name__, retry_in=round(delay, 1))
            finally:
                await self._disconnect()
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(self.max_reconnect_delay, delay * 2) * random.uniform(0.8, 1.2)  # capped back-off with jitter

    async def _connect(self) -> None:
        assert self.url
        # aio_pika.connect() drops a connection that failed half-way (broker unreachable) without
        # closing it, and its __del__ later schedules a close nobody awaits; close it here instead
        conn = aio_pika.Connection(make_url(self.url))
        try:
            await asyncio.wait_for(conn.connect(timeout=10), 15)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
            raise
        self._conn = conn
        channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await declare(channel, self.topology)
        self._channel = channel
        self.connected, self.last_error = True, ""
        metrics.BROKER_CONNECTED.set(1)
        log.info("relay_connected")

    async def _disconnect(self) -> None:
        self.connected = False
        metrics.BROKER_CONNECTED.set(0)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001 - already broken
                pass

    async def _pump(self, stop: asyncio.Event) -> None:
        """Claim when woken (or every ``poll_interval``). Under load a wake-up came with nearly
        every message, and each cost a claim, a mark and an empty claim on the store's single
        writer: now the flag is cleared before the claim (an alert committed after it wakes us
        again, none is missed), a short linger gathers a burst into one claim, and only a full
        batch is followed by an immediate re-claim."""
        while not stop.is_set():
            self._wake.clear()
            sent = await self.drain_once()
            if sent >= self.batch:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                continue
            if self.linger:
                await asyncio.sleep(self.linger)

    async def drain_once(self) -> int:
        """Claim one batch and publish it; raises on a broken connection (rows stay pending)."""
        try:
            return await self._drain()
        except BaseException:
            self._release_own = True  # the batch may have been cut short: its claims are stale
            raise

    async def _drain(self) -> int:
        await self._release_stale_claims()
        now = self.clock()
        lease = (now + timedelta(seconds=self.lease_seconds or self.publish_timeout)).isoformat()
        rows = await self.store.claim(self.batch, now.isoformat(), lease, self.owner)
        self.on_progress()
        if not rows or time.monotonic() - self._backlog_at >= self.backlog_refresh:
            await self._update_backlog()
        if not rows:
            return 0
        results = await asyncio.gather(*(self._publish(r) for r in rows), return_exceptions=True)
        ok = [r.id for r, res in zip(rows, results, strict=True) if res is None]
        failed = [(r, res) for r, res in zip(rows, results, strict=True) if res is not None]
        await self._settle(ok, failed)
        return len(ok)

    async def _release_stale_claims(self) -> None:
        reconnects = self.store.reconnects
        if reconnects != self._store_reconnects:
            # the store lost its connection since the last batch: a published mark committed
            # without waiting for the disk may be gone, leaving our claim to wait out its lease
            self._store_reconnects, self._release_own = reconnects, True
        if self._release_own and self.owner:
            stale = await self.store.release_own(self.owner)
            if stale:
                log.info("relay_released_stale_claims", count=stale)
        self._release_own = False

    async def _settle(self, ok: list[int], failed: list[tuple[OutboxRow, BaseException]]) -> None:
        """Mark what the broker confirmed; a lost connection says nothing about the alert, so it
        goes again as soon as the broker is back; a return or nack is about this alert: it
        backs off. Raises the first lost-connection error, after settling, to reconnect."""
        now = self.clock()
        released = [r.id for r, exc in failed if _connection_lost(exc)]
        backed_off = [
            (r.id, type(exc).__name__, (now + timedelta(seconds=min(self.max_backoff, 2 ** min(r.attempts, 12)))).isoformat())
            for r, exc in failed
            if not _connection_lost(exc)
        ]
        await self.store.settle(ok, released, backed_off, now.isoformat())  # lost in an OS crash = published again, same id
        metrics.PUBLISHED.inc(len(ok))
        if ok:
            self.last_publish = time.time()
            metrics.RELAY_LAST_PUBLISH.set(self.last_publish)
        for _, exc in failed:
            metrics.PUBLISH_FAILURES.labels(type(exc).__name__).inc()
        if failed:
            log.warning("relay_publish_failed", failed=len(failed), published=len(ok), error=type(failed[0][1]).__name__)
            broken = [exc for _, exc in failed if _connection_lost(exc)]
            if broken:
                raise broken[0]

    async def _publish(self, row: OutboxRow) -> None:
        """One persistent, mandatory publish, answered by the broker's confirm. It goes straight
        to aiormq's ``basic_publish`` (aio-pika's public ``get_underlay_channel``), with the same
        properties aio-pika's ``Message`` would build: that wrapper cost ~9 µs per alert on a
        backlog of 100,000. A return (unroutable) or nack raises, so the row stays pending."""
        assert self._exchange is not None and self._channel is not None
        channel = await self._channel.get_underlay_channel()
        properties = aiormq.spec.Basic.Properties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,  # persistent
            message_id=row.alert_id,
            headers={"x-alert-id": row.alert_id, "x-schema": "rems.alert/1"},
        )
        await channel.basic_publish(
            row.payload.encode("utf-8"), exchange=self._exchange.name, routing_key=row.routing_key, properties=properties, mandatory=True, timeout=self.publish_timeout
        )

    async def watch_backlog(self, stop: asyncio.Event, every: float = 2.0, on_progress: Callable[[], None] = lambda: None) -> None:
        """The backlog gauges on their own schedule, whatever the relay is doing: they can
        never freeze at 0 while alerts pile up behind a dead or stuck relay."""
        while not stop.is_set():
            await self._update_backlog()
            on_progress()
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass

    async def _update_backlog(self) -> None:
        self._backlog_at = time.monotonic()
        count, oldest = await self.store.stats()
        metrics.OUTBOX_BACKLOG.set(count)
        if oldest:
            metrics.OUTBOX_OLDEST_AGE.set(max(0.0, (self.clock() - datetime.fromisoformat(oldest)).total_seconds()))
        else:
            metrics.OUTBOX_OLDEST_AGE.set(0)


def _connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE) and not isinstance(exc, (DeliveryError, PublishError))
