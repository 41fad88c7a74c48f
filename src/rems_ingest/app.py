"""Composition root and lifecycle: startup (store, relay, listener, API), serve, drain.

SIGTERM/SIGINT: stop accepting, finish in-flight messages (each ACKed only after its
commit), give the relay a last chance to publish, close the store, exit 0.
SIGHUP: reload the rules profile without dropping connections.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.http.api import build_app
from rems_ingest.adapters.http.openapi import openapi_document
from rems_ingest.adapters.mllp.server import Limits, MllpServer
from rems_ingest.adapters.web.console import Console
from rems_ingest.bootstrap import build_authenticator, build_services, oidc_login
from rems_ingest.config import Settings
from rems_ingest.profiles import PolicyHolder  # noqa: F401 - re-exported: PolicyHolder used to live here
from rems_ingest.supervision import Supervisor

log = structlog.get_logger("rems_ingest.app")


def tls_context(s: Settings) -> ssl.SSLContext | None:
    m = s.mllp
    if not m.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(m.tls_cert), str(m.tls_key) if m.tls_key else None)
    if m.tls_client_ca:
        ctx.load_verify_locations(str(m.tls_client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass
class Daemon:
    settings: Settings
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        s = self.settings
        services = build_services(s)
        self.services = services
        self.policy, self.store, self.relay = services.policy, services.store, services.relay
        self.ingest, self.clinic = services.ingest, services.clinic
        self.server = MllpServer(
            self.ingest,
            host=s.mllp.host,
            port=s.mllp.port,
            limits=Limits(s.mllp.max_frame_bytes, s.mllp.max_connections, s.mllp.idle_timeout_seconds, s.mllp.frame_timeout_seconds, s.mllp.allow, s.mllp.max_connections_per_source, s.mllp.max_junk_bytes),
            ssl_context=tls_context(s),
            reuse_port=s.mllp.reuse_port,
        )
        self.http_port = 0
        self._runner: web.AppRunner | None = None
        self.supervisor = Supervisor(self.stop)
        self._sweep_retry = False
        self.started = asyncio.Event()

    def readiness(self) -> dict[str, Any]:
        """Ready only when every part that keeps patients safe is working, and the body says
        which part is not (issue #12):
        - the store answers and its last write did not fail (disk full, unreachable);
        - every supervised background task is up (one that keeps failing is not);
        - alerts leave: with the broker connected, none has waited longer than
          amqp.ready_max_outbox_age_seconds (a stuck relay); with the broker down, that is
          reported at once and is "not ready" only past the same age, as before."""
        max_age = self.settings.amqp.ready_max_outbox_age_seconds
        reasons: list[str] = []
        reachable = self.store.ping()
        pending, oldest_age = 0, 0.0
        if reachable:
            try:
                pending, oldest = self.store.read(lambda c: Repository(c).outbox_stats())
                oldest_age = (utcnow() - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
            except Exception:  # noqa: BLE001 - a store that cannot answer is not ready
                reachable = False
        failing_since = self.store.write_failing_since
        if not reachable:
            store = "unreachable"
            reasons.append("store unreachable")
        elif failing_since is not None:
            store = "write_failing"
            reasons.append(f"store writes failing for {time.monotonic() - failing_since:.0f} s")
        else:
            store = "ok"
        tasks = self.supervisor.statuses()
        for name in self.supervisor.down():
            reasons.append(f"background task {name} keeps failing")
        relay_up = tasks.get("relay") in ("ok", None)
        if not self.relay.url:
            broker = "disabled"
        elif self.relay.connected:
            broker = "connected"
        else:
            broker = "unreachable" if relay_up else "unknown (relay restarting)"
        if self.relay.url and pending and oldest_age > max_age:
            quiet = time.time() - self.relay.last_publish
            if not self.relay.connected:
                reasons.append(f"alerts pending {oldest_age:.0f} s with the broker {broker}")
            elif quiet > max_age:  # reachable, yet nothing has left for that long
                reasons.append(f"alerts pending {oldest_age:.0f} s with the broker connected and nothing published for {min(quiet, oldest_age):.0f} s: publishing is stuck")
        if not self.started.is_set():
            reasons.append("starting")
        return {
            "ready": not reasons,
            "reasons": reasons,
            "store": store,
            "broker": broker,
            "tasks": tasks,
            "outbox_pending": pending,
            "outbox_oldest_pending_seconds": round(oldest_age, 1),
            "last_publish_at": datetime.fromtimestamp(self.relay.last_publish, UTC).isoformat() if self.relay.last_publish else None,
            "rules_profile": self.policy().label,
        }

    async def start(self) -> None:
        s = self.settings
        await asyncio.to_thread(self.store.migrate)
        self.store.start()
        await self.server.start()
        authenticator = build_authenticator(s, self.services.tokens)
        app = build_app(self.clinic, self.readiness, self.policy.reload, authenticator=authenticator, trail=self.services.trail, openapi=openapi_document())
        Console(self.clinic, self.services.worklists, self.policy, authenticator, self.services.trail, self.services.feeds, self.services.replay, oidc_login(s)).routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        https = None
        if s.http.tls_cert and s.http.tls_key:
            https = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            https.minimum_version = ssl.TLSVersion.TLSv1_2
            https.load_cert_chain(str(s.http.tls_cert), str(s.http.tls_key))
            if s.http.tls_client_ca:  # asked for, not required: a bearer token still works without one
                https.load_verify_locations(str(s.http.tls_client_ca))
                https.verify_mode = ssl.CERT_OPTIONAL
        site = web.TCPSite(self._runner, s.http.host, s.http.port, ssl_context=https)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.relay.on_progress = self.supervisor.beater("relay")
        self.supervisor.spawn("relay", lambda: self.relay.run(self.stop))
        self.supervisor.spawn("outbox_gauges", lambda: self.relay.watch_backlog(self.stop, on_progress=self.supervisor.beater("outbox_gauges")))
        self.supervisor.spawn("overdue_sweeper", self._sweeper)
        self.supervisor.spawn("timeline_snapshots", self._snapshots)
        self.supervisor.spawn("feed_watchdog", self._feed_watchdog)
        self.supervisor.spawn("audit_anchor", self._audit_anchor)
        if self.store.dialect == "sqlite":
            self.supervisor.spawn("wal_checkpoint", self._checkpoints)
        self.started.set()
        log.info("daemon_started", mllp_port=self.server.bound_port, http_port=self.http_port, store=self.store.dialect, broker="configured" if self.relay.url else "none (alerts held in outbox)", rules_profile=self.policy().label)

    async def _sweeper(self) -> None:
        """The periodic overdue sweep. A failed sweep propagates to the supervisor (logged,
        counted, restarted) and is retried after its back-off rather than a whole interval
        later, so one that keeps failing shows as a failing task on /readyz."""
        while not self.stop.is_set():
            if not self._sweep_retry:
                try:
                    await asyncio.wait_for(self.stop.wait(), self.settings.sweep.interval_seconds)
                except TimeoutError:
                    pass
                if self.stop.is_set():
                    return
            self._sweep_retry = True
            await self.clinic.sweep_overdue()
            self._sweep_retry = False
            self.supervisor.beat("overdue_sweeper")

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the daemon is stopping."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass
        return self.stop.is_set()

    async def _every(self, name: str, seconds: float, work: Callable[[], Awaitable[object]], *, first_wait: bool = False) -> None:
        """A periodic background task: ``work``, a heartbeat, a pause. A failure propagates to
        the supervisor (logged, counted, restarted, shown on /readyz when it keeps failing)."""
        if first_wait and await self._stopped_within(seconds):
            return
        while not self.stop.is_set():
            await work()
            self.supervisor.beat(name)
            if await self._stopped_within(seconds):
                return

    def _feed_watchdog(self) -> Awaitable[None]:
        """Every sweep.feed_check_seconds: is each registered lab feed still sending?"""
        return self._every("feed_watchdog", self.settings.sweep.feed_check_seconds, self.services.watchdog.check)

    def _audit_anchor(self) -> Awaitable[None]:
        """Every audit.anchor_seconds: the access trail's head, to the log and the broker."""
        return self._every("audit_anchor", self.settings.audit.anchor_seconds, self.services.trail.anchor_now, first_wait=True)

    def _checkpoints(self, every: float = 0.25) -> Awaitable[None]:
        """SQLite: checkpoint the WAL on a thread of its own, so no message's commit pays for
        copying pages into the database (see Store.checkpoint); the writer's own backstop
        checkpoint keeps the WAL bounded while this one is failing."""
        return self._every("wal_checkpoint", every, lambda: asyncio.to_thread(self.store.checkpoint))

    async def _snapshots(self) -> None:
        """Once after an upgrade to schema 0005 (or a change of rules profile): snapshot the
        patients stored without them, a few per transaction beside live ingest. Nothing waits
        for it: a patient not done yet is re-folded from the beginning at its next late result."""
        await self.services.snapshots.backfill(batch=10)
        self.supervisor.beat("timeline_snapshots")
        await self.stop.wait()

    async def shutdown(self) -> None:
        grace = self.settings.shutdown_grace_seconds
        self.stop.set()
        await self.server.stop(grace)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.relay.url and self.relay.connected:
            try:
                await asyncio.wait_for(self.relay.drain_once(), grace / 2)
            except Exception:  # noqa: BLE001 - anything unpublished stays in the outbox
                pass
        await self.supervisor.cancel()
        try:
            pending: int | str = await self.store.aread(lambda c: Repository(c).outbox_stats()[0])
        except Exception:  # noqa: BLE001 - shutting down anyway; the rows are on disk
            pending = "unknown"
        self.store.close()
        log.info("daemon_stopped", outbox_pending=pending)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.policy.reload_quietly)
        try:
            await self.start()
            await self.stop.wait()
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


def utcnow() -> datetime:
    return datetime.now(UTC)
