"""Async MLLP sender: reads each ACK up to <FS><CR> under a deadline (python-hl7 #44/#17)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable

from rems_ingest.adapters.mllp.framing import Frame, FrameDecoder, frame


class MllpClient:
    def __init__(self, host: str, port: int, *, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.timeout, self.ssl = host, port, timeout, ssl_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder(16 << 20)
        self._pending: list[bytes] = []

    async def __aenter__(self) -> MllpClient:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None), self.timeout
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

    async def send(self, payload: bytes) -> bytes:
        """Send one message and wait for its reply frame; raises TimeoutError / ConnectionError."""
        assert self._writer and self._reader
        self._writer.write(frame(payload))
        await self._writer.drain()
        return await self.receive()

    async def send_only(self, payload: bytes) -> None:
        """Send without waiting for a reply (e.g. acknowledging an application ACK)."""
        assert self._writer
        self._writer.write(frame(payload))
        await self._writer.drain()

    async def receive(self) -> bytes:
        assert self._reader
        async with asyncio.timeout(self.timeout):
            while not self._pending:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("connection closed before the ACK arrived")
                self._pending += [e.payload for e in self._decoder.feed(data) if isinstance(e, Frame)]
        return self._pending.pop(0)


async def send_all(host: str, port: int, payloads: Iterable[bytes], **kw: object) -> AsyncIterator[bytes]:
    async with MllpClient(host, port, **kw) as c:  # type: ignore[arg-type]
        for p in payloads:
            yield await c.send(p)
