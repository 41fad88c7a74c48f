"""Commands that look after the stored feed and the configuration: replay, prune, db upgrade,
check-config."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime

import aio_pika
import click
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from rems_ingest import profiles
from rems_ingest.adapters.db.store import Store, StoreError
from rems_ingest.bootstrap import build_services
from rems_ingest.cli._common import cli, fail, services, settings
from rems_ingest.config import display_url
from rems_ingest.core.errors import CoreError
from rems_ingest.service.ports import StoreUnavailable
from rems_ingest.service.retention import prune_raw_messages

_ACTOR = {"default": lambda: os.environ.get("USER", "cli"), "show_default": "$USER"}


@cli.command()
@click.option("--id", "ids", type=int, multiple=True, help="Stored message id (repeatable).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), help="Messages received at or after this time (UTC if no offset).")
@click.option("--status", type=click.Choice(["PROCESSED", "FILTERED", "REPLAYED", "REJECTED"]), help="Only messages in this status (FILTERED: no ANC was found; REJECTED: answered AR, kept for a replay).")
@click.option("--with-warnings", is_flag=True, help="Only messages whose ACK carried warnings (unusable results).")
@click.option("--dry-run", is_flag=True, help="List what would be replayed and change nothing.")
@click.option("--actor", help="Who replays (audited).", **_ACTOR)  # type: ignore[arg-type]
@click.pass_context
def replay(ctx: click.Context, ids: tuple[int, ...], since: datetime | None, status: str | None, with_warnings: bool, dry_run: bool, actor: str) -> None:
    """Reprocess stored messages through the live code path (after fixing a code or unit
    mapping, say). Idempotent: what was already applied changes nothing; audited."""
    if not (ids or since or status or with_warnings):
        raise click.UsageError("say which messages: --id, --since, --status or --with-warnings")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    built = services(ctx)
    service = built.replay

    async def go() -> int:
        rows = await service.select(ids=ids, since=since, status=status, warned=with_warnings)
        missing = sorted(set(ids) - {r.id for r in rows})
        for mid in missing:
            click.echo(f"#{mid}: no such stored message", err=True)
        for r in rows:
            if dry_run:
                click.echo(f"#{r.id} {r.control_id} {r.status} received {r.received_at}: would replay")
                continue
            out = await service.replay(r, actor)
            if out["replayed"]:
                click.echo(f"#{r.id} {r.control_id}: {out['previous_status']} -> REPLAYED, observations {out['observations_before']} -> {out['observations_after']}"
                           + (f", warnings: {'; '.join(out['warnings'])}" if out["warnings"] else ""))
            else:
                click.echo(f"#{r.id} {r.control_id}: not replayed: {out['reason']}")
        click.echo(f"{len(rows)} message(s) {'selected' if dry_run else 'replayed'}")
        return 1 if missing else 0

    try:
        code = asyncio.run(go())
    finally:
        built.store.close()
    sys.exit(code)


@cli.command()
@click.option("--older-than", "older_than", required=True, type=click.IntRange(min=1, max=36500), metavar="DAYS", help="Blank raw messages received more than DAYS days ago.")
@click.option("--dry-run", is_flag=True, help="Count what would be pruned and change nothing.")
@click.option("--actor", **_ACTOR)  # type: ignore[arg-type]
@click.pass_context
def prune(ctx: click.Context, older_than: int, dry_run: bool, actor: str) -> None:
    """PHI retention: blank the raw HL7 (names, birth dates, free text) of old messages. Results,
    decisions, alerts and duplicate detection stay; such messages can no longer be replayed."""
    built = services(ctx)
    try:
        n, cutoff = asyncio.run(prune_raw_messages(built.uow, older_than_days=older_than, dry_run=dry_run, actor=actor, now=datetime.now(UTC)))
    finally:
        built.store.close()
    click.echo(f"{n} message(s) received before {cutoff[:10]} {'would be' if dry_run else 'were'} pruned")


@cli.group()
def db() -> None:
    """Store maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations and write the timeline snapshots of patients stored
    without them (the daemon also does both at start-up)."""
    try:
        built = build_services(settings(ctx), create_store=True)
    except CoreError as exc:
        fail(str(exc))
    store = built.store
    try:
        store.migrate()
        revision = store.revision()
        store.start()
        counts = asyncio.run(built.snapshots.backfill())
    except (StoreError, StoreUnavailable) as exc:
        fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"schema at revision {revision}")
    if counts["written"] or counts["differs"]:
        click.echo(f"timeline snapshots written for {counts['written'] + counts['differs']} patients")


@cli.command("check-config")
@click.option("--connect", is_flag=True, help="Also open the store and connect to the broker, and say which failed.")
@click.pass_context
def check_config(ctx: click.Context, connect: bool) -> None:
    """Validate the configuration and print it: the store and broker URLs resolved (an SQLite
    store as its absolute path), passwords masked."""
    s = settings(ctx)
    try:
        profiles.load(s.rules.profile, s.rules.dispense_profile)
    except CoreError as exc:
        fail(str(exc))
    shown = json.loads(s.model_dump_json())
    store_url, amqp_url = s.store.resolved_url(), s.amqp.resolved_url()
    shown["store"]["url"] = display_url(store_url)
    shown["amqp"]["url"] = display_url(amqp_url) if amqp_url else None
    click.echo(json.dumps(shown, indent=2))
    if connect:
        failed = [what for what in (_try_store(store_url), _try_broker(amqp_url)) if what]
        for line in failed:
            click.echo(f"rems-ingest: error: {line}", err=True)
        if failed:
            sys.exit(1)


def _try_store(url: str) -> str:
    """'' when the store opens and answers, else one line saying why."""
    try:
        store = Store(url, create=False)
        try:
            store.read(lambda c: c.execute(text("SELECT 1")).scalar())
        finally:
            store.close()
    except (StoreError, DBAPIError) as exc:
        return f"store {display_url(url)}: {str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}"
    click.echo(f"store {display_url(url)}: reachable")
    return ""


def _try_broker(url: str | None) -> str:
    if url is None:
        click.echo("broker: none configured (alerts are held in the outbox)")
        return ""

    for name in ("aiormq", "aio_pika"):  # their own error line would repeat ours
        logging.getLogger(name).setLevel(logging.CRITICAL)

    async def go() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported, with its kind
        return f"broker {display_url(url)}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no answer'}"
    click.echo(f"broker {display_url(url)}: reachable")
    return ""
