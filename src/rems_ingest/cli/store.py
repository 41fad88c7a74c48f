"""Commands that look after the stored feed and the configuration: replay, prune, db upgrade,
check-config."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

import click

from rems_ingest import profiles
from rems_ingest.adapters.db.store import Store, StoreError
from rems_ingest.cli._common import cli, fail, services, settings
from rems_ingest.core.errors import CoreError
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
@click.option("--older-than", "older_than", required=True, type=click.IntRange(min=1), metavar="DAYS", help="Blank raw messages received more than DAYS days ago.")
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
    """Apply pending schema migrations (the daemon also does this at start-up)."""
    store = Store(settings(ctx).store.resolved_url())
    try:
        store.migrate()
        revision = store.revision()
    except StoreError as exc:
        fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"schema at revision {revision}")


@cli.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the configuration and print it with secrets masked."""
    s = settings(ctx)
    try:
        profiles.load(s.rules.profile, s.rules.dispense_profile)
    except CoreError as exc:
        fail(str(exc))
    click.echo(s.model_dump_json(indent=2))
