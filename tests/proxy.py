"""A controllable loopback TCP proxy (toxiproxy is not installable here): cut and restore."""

from __future__ import annotations

import asyncio


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, reply_delay: float = 0.0) -> None:
        """``reply_delay``: every byte from the target reaches the client this many seconds after
        it arrived (order kept): a round trip then costs at least that much."""
        self.target = (target_host, target_port)
        self.reply_delay = reply_delay
        self.enabled = True
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            writer.close()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pairs |= {writer, uw}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: float = 0.0) -> None:
            loop = asyncio.get_running_loop()
            late: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def forward_late() -> None:
                while True:
                    at, data = await late.get()
                    await asyncio.sleep(max(0.0, at - loop.time()))
                    w.write(data)
                    await w.drain()

            forwarder = asyncio.create_task(forward_late()) if delay else None
            try:
                while data := await r.read(65536):
                    if not self.enabled:
                        break
                    if forwarder is not None:
                        late.put_nowait((loop.time() + delay, data))
                        continue
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                if forwarder is not None:
                    while not late.empty() and not forwarder.done():
                        await asyncio.sleep(delay / 4)
                    forwarder.cancel()
                w.close()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer, self.reply_delay))
        self._pairs -= {writer, uw}

    def cut(self) -> None:
        """Drop every connection and refuse new ones (broker 'unreachable')."""
        self.enabled = False
        for w in list(self._pairs):
            w.transport.abort()

    def restore(self) -> None:
        self.enabled = True

    async def stop(self) -> None:
        self.cut()
        if self._server:
            self._server.close()
            await self._server.wait_closed()
