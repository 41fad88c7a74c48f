"""asyncio MLLP listener: one message in flight per connection, bounded everything.

Limits (frame size, connections, idle and per-frame deadlines, allow-list) are enforced
here; every hit is logged and counted, never a crash.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from rems_ingest.adapters.mllp.framing import Frame, FrameDecoder, Junk, Oversize, frame
from rems_ingest.feeds.registry import Origin
from rems_ingest.observability import metrics

log = structlog.get_logger("rems_ingest.mllp")


class FrameHandler(Protocol):
    """What the listener calls: the ingest service, or an in-process sink in tests."""

    async def handle_frame(self, payload: bytes, peer: str, origin: Origin | None = None) -> bytes | list[bytes] | None: ...

    def reject_oversize(self, head: bytes) -> bytes | None: ...


@dataclass
class Limits:
    max_frame_bytes: int = 1 << 20
    max_connections: int = 256
    idle_timeout: float = 300.0
    frame_timeout: float = 60.0
    allow: Sequence[str] = ()  # empty: no connection-level filter (the feeds decide per message)
    max_connections_per_source: int = 16
    max_junk_bytes: int = 4096  # bytes outside any frame since the last complete one


def origin_of(writer: asyncio.StreamWriter, ip: str) -> Origin:
    """The connection's identity. Certificate names are taken only from a certificate the TLS
    handshake verified against mllp.tls_client_ca (getpeercert() is empty otherwise)."""
    tls = writer.get_extra_info("ssl_object")
    if tls is None:
        return Origin(ip)
    cert = tls.getpeercert() or {}
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    names += [v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "URI", "email", "IP Address")]
    der = tls.getpeercert(binary_form=True) if cert else None
    return Origin(ip, True, tuple(names), hashlib.sha256(der).hexdigest() if der else "")


@dataclass
class _Conn:
    """What fairness needs to know of one open connection."""

    ip: str
    writer: asyncio.StreamWriter
    origin: Origin  # who it is: address and verified client certificate (the feeds decide by it)
    opened: float
    last_frame: float  # monotonic time of the last complete frame (or of the connect)
    frames: int = 0
    busy: bool = False  # a message is being processed: never evicted then


@dataclass
class MllpServer:
    handler: FrameHandler
    host: str = "127.0.0.1"
    port: int = 2575
    limits: Limits = field(default_factory=Limits)
    ssl_context: ssl.SSLContext | None = None
    reuse_port: bool = False  # share the port with sibling daemons (SO_REUSEPORT)

    def __post_init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = False
        self._ids = itertools.count(1)
        self._nets = [ipaddress.ip_network(n, strict=False) for n in self.limits.allow]

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port, ssl=self.ssl_context, limit=1 << 16, backlog=512, reuse_port=self.reuse_port or None)
        log.info("mllp_listening", host=self.host, port=self.bound_port, tls=self.ssl_context is not None, shared_port=self.reuse_port)

    def _allowed(self, ip: str) -> bool:
        if not self._nets:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in n for n in self._nets if n.version == addr.version)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{peername[0]}:{peername[1]}"
        cid = next(self._ids)
        if not self._allowed(str(peername[0])):
            metrics.LIMIT_HITS.labels("allow_list").inc()
            log.warning("mllp_connection_refused", reason="not in allow-list", peer_ip=peername[0])
            writer.close()
            return
        ip = str(peername[0])
        if self._stopping:
            writer.close()
            return
        if sum(1 for c in self._conns.values() if c.ip == ip) >= self.limits.max_connections_per_source and not self._evict_one(ip):
            metrics.LIMIT_HITS.labels("max_connections_per_source").inc()
            log.warning("mllp_connection_refused", reason="per-source connection limit", peer_ip=ip, limit=self.limits.max_connections_per_source)
            writer.close()
            return
        if len(self._conns) >= self.limits.max_connections and not self._evict_one():
            metrics.LIMIT_HITS.labels("max_connections").inc()
            log.warning("mllp_connection_refused", reason="connection limit", open=len(self._conns))
            writer.close()
            return
        now = time.monotonic()
        state = _Conn(ip, writer, origin_of(writer, ip), now, now)
        self._conns[task] = state
        self._writers.add(writer)
        metrics.OPEN_CONNECTIONS.inc()
        with structlog.contextvars.bound_contextvars(connection_id=cid, peer=peer):
            try:
                await self._serve(reader, writer, state, peer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                log.info("mllp_connection_lost", error=type(exc).__name__)
            finally:
                metrics.OPEN_CONNECTIONS.dec()
                self._conns.pop(task, None)
                self._writers.discard(writer)
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(), 2)
                except (TimeoutError, ConnectionError, ssl.SSLError):
                    pass

    def _evict_one(self, ip: str | None = None) -> bool:
        """At a cap, make room for a new connection by closing the one that has gone longest
        without a complete frame (one that never sent a frame first), as long as it has nothing
        in flight: junk trickles and sockets a restarted engine left behind go before a lab
        that sent a result a minute ago, and a connection busy with a message is never cut.
        ``ip``: at the per-source cap, only that source's own connections are candidates."""
        idle = [c for c in self._conns.values() if not c.busy and (ip is None or c.ip == ip)]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.frames > 0, c.last_frame))
        metrics.LIMIT_HITS.labels("evicted_idle").inc()
        log.warning("mllp_connection_evicted", reason="connection limit: oldest idle connection closed for a new one", idle_seconds=round(time.monotonic() - victim.last_frame, 1), frames=victim.frames)
        victim.writer.close()
        task = next(t for t, c in self._conns.items() if c is victim)
        self._conns.pop(task, None)  # its own finally runs later; the slot is free now
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn, peer: str) -> None:
        decoder = FrameDecoder(self.limits.max_frame_bytes)
        frame_started: float | None = None
        junk = 0
        while not self._stopping:
            # only a complete frame resets the idle timer: bytes dripping outside a frame never do
            timeout = max(0.0, conn.last_frame + self.limits.idle_timeout - time.monotonic())
            if frame_started is not None:
                timeout = min(timeout, max(0.0, frame_started + self.limits.frame_timeout - time.monotonic()))
            try:
                async with asyncio.timeout(timeout):  # no extra task per read, unlike wait_for
                    data = await reader.read(65536)
            except TimeoutError:
                reason = "frame_timeout" if frame_started is not None else "idle_timeout"
                metrics.LIMIT_HITS.labels(reason).inc()
                log.info("mllp_connection_closed", reason=reason)
                return
            if not data:
                return
            for ev in decoder.feed(data):
                if isinstance(ev, Frame):
                    conn.busy = True
                    try:
                        reply = await self.handler.handle_frame(ev.payload, peer, conn.origin)
                        if reply is not None:
                            for r in reply if isinstance(reply, list) else (reply,):
                                writer.write(frame(r))
                            await writer.drain()
                    finally:
                        conn.busy = False
                    conn.last_frame = time.monotonic()
                    conn.frames += 1
                    junk = 0
                elif isinstance(ev, Oversize):
                    metrics.LIMIT_HITS.labels("max_frame_bytes").inc()
                    log.warning("mllp_frame_too_large", limit=self.limits.max_frame_bytes)
                    nak = self.handler.reject_oversize(ev.head)
                    if nak is None:
                        return
                    writer.write(frame(nak))
                    await writer.drain()
                elif isinstance(ev, Junk):
                    metrics.LIMIT_HITS.labels("junk_bytes").inc()
                    log.info("mllp_junk_discarded", size=ev.size)
                    junk += ev.size
                    if junk > self.limits.max_junk_bytes:
                        metrics.LIMIT_HITS.labels("junk_limit").inc()
                        log.warning("mllp_connection_closed", reason="junk_limit", junk_bytes=junk, limit=self.limits.max_junk_bytes)
                        return
            frame_started = (frame_started or time.monotonic()) if decoder.in_frame else None

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight messages finish and their ACKs go out, then close."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        # connections blocked in read() have nothing in flight: wake them by closing
        deadline = time.monotonic() + grace
        for w in list(self._writers):
            try:
                w.transport.pause_reading()  # type: ignore[attr-defined]  # a socket transport reads too
            except Exception:  # noqa: BLE001 - transport already gone
                pass
        pending = list(self._conns.keys())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=max(0.1, min(0.5, deadline - time.monotonic())))
            for w in list(self._writers):
                w.close()
            if still:
                await asyncio.wait(still, timeout=max(0.1, deadline - time.monotonic()))
                for t in still:
                    t.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("mllp_stopped")
