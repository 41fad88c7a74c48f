"""The listener under abuse: limits, deadlines, TLS, fuzz. Nothing blocks the others."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from tests.conftest import make_settings
from tests.fixtures import expected_table

GOOD = next(e for e in expected_table() if e.file == "oru_251_anc_normal.hl7").raw


async def start(tmp_path: Path, **mllp: object) -> Daemon:
    d = Daemon(make_settings(tmp_path, **mllp))
    await d.start()
    return d


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await start(tmp_path, max_frame_bytes=4096, idle_timeout_seconds=1.0, frame_timeout_seconds=1.0, max_connections=4)
    yield d
    await d.shutdown()


async def good_ack(port: int, **kw: object) -> str:
    async with MllpClient("127.0.0.1", port, timeout=5, **kw) as c:  # type: ignore[arg-type]
        return (await c.send(GOOD)).decode().split("\r")[1].split("|")[1]


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout) is not None
    except (TimeoutError, ConnectionError):
        return False


async def test_oversize_frame_with_msh_gets_ar_and_the_connection_keeps_serving(limited: Daemon) -> None:
    big = GOOD.replace(b"OBX|1", b"NTE|1||" + b"x" * 8000 + b"\rOBX|1", 1)
    async with MllpClient("127.0.0.1", limited.server.bound_port, timeout=5) as c:
        reply = (await c.send(big)).decode()
        after = (await c.send(GOOD)).decode()

    assert "MSA|AR|M0001" in reply and "ERR" in reply
    assert "MSA|AA|M0001" in after


async def test_oversize_garbage_closes_only_that_connection(limited: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.server.bound_port)
    writer.write(b"\x0b" + b"\x00" * 10000)
    await writer.drain()

    assert await closed_by_server(reader)
    assert "AA" == await good_ack(limited.server.bound_port)


async def test_idle_client_is_closed_and_does_not_block_others(limited: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.server.bound_port)

    assert "AA" == await good_ack(limited.server.bound_port)
    assert await closed_by_server(reader, timeout=5)
    writer.close()


async def test_client_that_never_sends_the_end_block_is_closed(limited: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", limited.server.bound_port)
    writer.write(b"\x0bMSH|^~\\&|slow")
    await writer.drain()

    async def trickle() -> None:  # slowloris: a byte every 0.3 s keeps the idle timer alive
        for _ in range(20):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.3)

    trickler = asyncio.create_task(trickle())
    try:
        assert "AA" == await good_ack(limited.server.bound_port)
        assert await closed_by_server(reader, timeout=5)
    finally:
        trickler.cancel()
        writer.close()


async def test_at_the_connection_limit_the_oldest_idle_connection_makes_room(limited: Daemon) -> None:
    held = [await asyncio.open_connection("127.0.0.1", limited.server.bound_port) for _ in range(4)]
    await asyncio.sleep(0.1)
    assert "AA" == await good_ack(limited.server.bound_port)  # a fifth sender still gets in
    assert await closed_by_server(held[0][0], timeout=0.5)  # the oldest idle one was closed for it
    for _, w in held:
        w.close()


async def test_allow_list_refuses_other_networks(tmp_path: Path) -> None:
    d = await start(tmp_path, allow=["10.0.0.0/8"])
    try:
        reader, _writer = await asyncio.open_connection("127.0.0.1", d.server.bound_port)
        assert await closed_by_server(reader, timeout=2)
    finally:
        await d.shutdown()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("lab-analyzer.example")
    files = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key", "ca": tmp_path / "ca.pem", "client": tmp_path / "client.pem"}
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


async def test_tls_listener(tmp_path: Path, ca: trustme.CA) -> None:
    f = tls_files(tmp_path, ca)
    d = await start(tmp_path, tls_cert=f["cert"], tls_key=f["key"])
    try:
        ctx = ssl.create_default_context(cafile=str(f["ca"]))
        assert "AA" == await good_ack(d.server.bound_port, ssl_context=ctx)
    finally:
        await d.shutdown()


async def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    f = tls_files(tmp_path, ca)
    d = await start(tmp_path, tls_cert=f["cert"], tls_key=f["key"], tls_client_ca=f["ca"])
    try:
        with_cert = ssl.create_default_context(cafile=str(f["ca"]))
        with_cert.load_cert_chain(str(f["client"]))
        no_cert = ssl.create_default_context(cafile=str(f["ca"]))

        assert "AA" == await good_ack(d.server.bound_port, ssl_context=with_cert)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.TimeoutError, TimeoutError)):
            await good_ack(d.server.bound_port, ssl_context=no_cert)
        assert "AA" == await good_ack(d.server.bound_port, ssl_context=with_cert)
    finally:
        await d.shutdown()


async def test_plain_tcp_on_the_tls_port_is_closed_cleanly(tmp_path: Path, ca: trustme.CA) -> None:
    f = tls_files(tmp_path, ca)
    d = await start(tmp_path, tls_cert=f["cert"], tls_key=f["key"])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", d.server.bound_port)
        writer.write(b"\x0b" + GOOD + b"\x1c\x0d")
        await writer.drain()
        assert await closed_by_server(reader)
    finally:
        await d.shutdown()


frames = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda b: b"\x0b" + b + b"\x1c\x0d", st.binary(max_size=600)),
    st.builds(lambda b, cut: b"\x0b" + GOOD[: cut % len(GOOD)] + b + b"\x1c\x0d", st.binary(max_size=40), st.integers(0, 2000)),
)


def test_fuzzed_frames_over_tcp_never_stop_the_listener(tmp_path: Path) -> None:
    """Random and mutated frames: every frame gets a reply or a clean close; the next good message gets AA."""
    import resource

    async def scenario() -> None:
        d = await start(tmp_path, idle_timeout_seconds=2.0, frame_timeout_seconds=2.0)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        port = d.server.bound_port
        count = 0

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(frames, min_size=1, max_size=4))
        def run(batch: list[bytes]) -> None:
            nonlocal count
            count += 1
            asyncio.run_coroutine_threadsafe(send(batch), loop).result(30)

        async def send(batch: list[bytes]) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"".join(batch))
            await writer.drain()
            writer.write_eof()
            try:
                await asyncio.wait_for(reader.read(), 5)  # replies or close; never a hang
            finally:
                writer.close()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, run)
        assert "AA" == await good_ack(port)
        assert count >= 100
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000  # KiB
        await d.shutdown()

    asyncio.run(scenario())
