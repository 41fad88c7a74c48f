"""A slow drip outside a frame, or one address opening many connections, cannot lock a lab
out (issue #12): bytes outside a frame are bounded and never reset the idle timer, each
source has its own cap, and at the global cap an idle connection makes room."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from tests.conftest import make_settings
from tests.integration.test_mllp_limits import GOOD, closed_by_server, good_ack


@pytest.fixture
async def fair(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(make_settings(tmp_path, idle_timeout_seconds=1.5, frame_timeout_seconds=5.0, max_connections=20, max_connections_per_source=20, max_junk_bytes=64))
    await d.start()
    yield d
    await d.shutdown()


async def test_junk_outside_a_frame_closes_the_connection_past_the_bound(fair: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fair.server.bound_port)
    writer.write(b"x" * 200)
    await writer.drain()
    started = time.monotonic()
    assert await closed_by_server(reader, timeout=1)
    assert time.monotonic() - started < 1  # at once, not at the idle timeout
    writer.close()


async def test_a_trickle_does_not_reset_the_idle_timer(fair: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fair.server.bound_port)
    started = time.monotonic()

    async def drip() -> None:
        for _ in range(30):
            writer.write(b"\n")  # whitespace: not even counted as junk
            await writer.drain()
            await asyncio.sleep(0.2)

    dripper = asyncio.create_task(drip())
    assert await closed_by_server(reader, timeout=4)
    assert time.monotonic() - started < 3  # idle timeout 1.5 s counted from the connect
    dripper.cancel()
    writer.close()


async def test_a_normal_sender_gets_in_while_trickling_connections_fill_the_cap(fair: Daemon) -> None:
    junk = [await asyncio.open_connection("127.0.0.1", fair.server.bound_port) for _ in range(20)]
    for _, w in junk:
        w.write(b"\n")
    await asyncio.sleep(0.1)
    for _ in range(3):
        assert "AA" == await good_ack(fair.server.bound_port)
    for _, w in junk:
        w.close()


async def test_one_source_never_holds_more_than_its_cap(tmp_path: Path) -> None:
    d = Daemon(make_settings(tmp_path, max_connections=50, max_connections_per_source=3))
    await d.start()
    try:
        held = [await asyncio.open_connection("127.0.0.1", d.server.bound_port) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert "AA" == await good_ack(d.server.bound_port)  # the source's newest connection is served...
        assert await closed_by_server(held[0][0], timeout=0.5)  # ...and its oldest idle one made room
        assert len(d.server._conns) <= 3
        for _, w in held:
            w.close()
    finally:
        await d.shutdown()


async def test_an_empty_frame_gets_a_nak_and_the_connection_keeps_serving(fair: Daemon) -> None:
    async with MllpClient("127.0.0.1", fair.server.bound_port, timeout=3) as c:
        nak = (await c.send(b"")).decode()
        after = (await c.send(GOOD)).decode()
    assert "MSA|AR" in nak and "ERR|" in nak
    assert "MSA|AA" in after
