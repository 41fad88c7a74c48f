"""Commands that run or feed the daemon: serve, demo, send, validate."""

from __future__ import annotations

import asyncio
import ssl
import sys
import tempfile
from pathlib import Path

import click

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.cli._common import cli, fail, settings
from rems_ingest.core.errors import CoreError
from rems_ingest.demo import demo_feeds, run_demo
from rems_ingest.hl7v2.strict import validate_strict
from rems_ingest.observability.logging import configure


@cli.command()
@click.option("--mllp-port", type=int, help="Override mllp.port.")
@click.option("--http-port", type=int, help="Override http.port.")
@click.option("--store", "store_url", help="Override store.url (sqlite:///path or postgresql://...).")
@click.option("--amqp", "amqp_url", help="Override amqp.url (amqp://user:pass@host:5672/).")
@click.pass_context
def serve(ctx: click.Context, mllp_port: int | None, http_port: int | None, store_url: str | None, amqp_url: str | None) -> None:
    """Run the daemon: MLLP listener, rules, store, outbox relay, HTTP API."""
    s = settings(ctx, daemon=True)
    if mllp_port is not None:
        s.mllp.port = mllp_port
    if http_port is not None:
        s.http.port = http_port
    if store_url:
        s.store.url = store_url  # type: ignore[assignment]
    if amqp_url:
        s.amqp.url = amqp_url  # type: ignore[assignment]
    if s.mllp.reuse_port and not s.store.resolved_url().startswith("postgresql"):
        # SQLite has one write lock: measured, a second daemon on the same file adds no
        # throughput and stalls ACKs for seconds while the two wait for each other
        fail("mllp.reuse_port needs a PostgreSQL store (daemons sharing a SQLite file only wait for each other's write lock)")
    try:
        asyncio.run(Daemon(s).run())
    except OSError as exc:
        fail(f"cannot start: {exc.strerror or exc}", 1)
    except CoreError as exc:
        fail(str(exc))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Strict structural validation of HL7 files (or every *.hl7 in a folder) with hl7apy, for
    onboarding a feed; the daemon itself tolerates real-world quirks. Exit 1 if any is invalid."""
    files = [f for p in paths for f in (sorted(p.glob("*.hl7")) if p.is_dir() else [p])]
    bad = 0
    for f in files:
        for v in validate_strict(f.read_bytes()):
            bad += not v.valid
            click.echo(f"{f.name} #{v.index}: {'valid' if v.valid else 'INVALID'}  {v.detail}")
    sys.exit(1 if bad else 0)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2575, show_default=True, type=click.IntRange(1, 65535))
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Seconds to wait for each ACK.")
@click.option("--tls-ca", type=click.Path(exists=True, path_type=Path), help="CA file: connect with TLS.")
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path), help="Client certificate (mutual TLS).")
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path))
def send(paths: tuple[Path, ...], host: str, port: int, timeout: float, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Send HL7 files (or every *.hl7 in a folder) over MLLP and print each ACK. A file with no
    answer is reported with the reason and the rest are still sent (on a new connection); a
    summary line follows; exit 1 if any file was not accepted (AA/CA)."""
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.hl7")) if p.is_dir() else [p]
    if not files:
        raise click.UsageError(f"no .hl7 files in {', '.join(str(p) for p in paths)}")
    ctx_ssl = None
    if tls_ca:
        ctx_ssl = ssl.create_default_context(cafile=str(tls_ca))
        if tls_cert:
            ctx_ssl.load_cert_chain(str(tls_cert), str(tls_key) if tls_key else None)
    counts = asyncio.run(_send_files(files, host, port, timeout, ctx_ssl))
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()))
    sys.exit(0 if counts["sent"] == counts["accepted"] else 1)


async def _send_files(files: list[Path], host: str, port: int, timeout: float, ctx_ssl: ssl.SSLContext | None) -> dict[str, int]:
    counts = {"sent": 0, "accepted": 0, "rejected (AE/AR)": 0, "no answer": 0}
    client: MllpClient | None = None
    show = click.progressbar(files, label="sending", file=sys.stderr) if len(files) > 50 and sys.stderr.isatty() else None
    try:
        for f in show or files:
            payload = f.read_bytes()
            counts["sent"] += 1
            if not payload.strip():
                counts["no answer"] += 1
                click.echo(f"{f.name}: not sent: the file is empty")
                continue
            try:
                if client is None:
                    client = await MllpClient(host, port, timeout=timeout, ssl_context=ctx_ssl).__aenter__()
                reply = await client.send(payload)
            except (OSError, TimeoutError) as exc:
                counts["no answer"] += 1
                click.echo(f"{f.name}: no answer: {_why(exc, host, port, timeout, connected=client is not None)}")
                if client is not None:
                    await client.__aexit__(None, None, None)
                    client = None
                continue
            text = reply.decode("latin-1")
            # a file of several messages is answered with one ACK each (a response batch):
            # the file is accepted only if every one of them was
            codes = [s.split("|")[1] if "|" in s else "?" for s in text.split("\r") if s.startswith("MSA")] or ["?"]
            ok = all(c in ("AA", "CA") for c in codes)
            counts["accepted" if ok else "rejected (AE/AR)"] += 1
            click.echo(f"{f.name}: {','.join(codes)}  {text.strip().replace(chr(13), ' | ')}")
    finally:
        if client is not None:
            await client.__aexit__(None, None, None)
    return counts


def _why(exc: BaseException, host: str, port: int, timeout: float, *, connected: bool) -> str:
    """A timeout, a refused connection and a connection closed mid-message are different faults."""
    if isinstance(exc, TimeoutError):
        return f"no ACK within {timeout:g} s" if connected else f"{host}:{port} did not accept a connection within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"{host}:{port} refused the connection (is the daemon listening there?)"
    detail = exc.strerror or str(exc) or type(exc).__name__  # type: ignore[attr-defined]
    return f"{'connection lost' if connected else f'could not connect to {host}:{port}'}: {detail}"


@cli.command()
@click.option("--amqp", "amqp_url", help="Also publish to this broker (default: REMS_AMQP__URL, else hold alerts).")
@click.option("--stay", is_flag=True, help="Keep the daemon up afterwards and print the web console's address and a login.")
@click.pass_context
def demo(ctx: click.Context, amqp_url: str | None, stay: bool) -> None:
    """Start the daemon on a throw-away SQLite store, enroll two patients, send the seed
    walk-through over MLLP and print the decisions and alerts."""
    s = settings(ctx)
    with tempfile.TemporaryDirectory(prefix="rems-demo-") as tmp:
        s.store.url = f"sqlite:///{tmp}/demo.db"  # type: ignore[assignment]
        s.mllp.host, s.mllp.port = "127.0.0.1", 0
        s.http.port = 0
        s.feeds = demo_feeds()
        s.log.level = "ERROR"
        if amqp_url:
            s.amqp.url = amqp_url  # type: ignore[assignment]
        configure(s.log.format, "ERROR")  # the output is the walk-through, not daemon chatter
        if not asyncio.run(run_demo(s, click.echo, stay)):
            sys.exit(1)
