"""Identities and the access trail: token create/list/revoke, audit show/verify."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import IO

import click

from rems_ingest.cli._common import cli, fail, services
from rems_ingest.core.errors import InvalidInput
from rems_ingest.core.model import PatientKey
from rems_ingest.service.access import Role, parse_roles
from rems_ingest.service.audit_anchor import SCHEMA, read_anchors

_ACTOR = {"default": lambda: os.environ.get("USER", "cli"), "show_default": "$USER"}


@cli.group()
def token() -> None:
    """API tokens for people and systems (only a hash is stored)."""


@token.command("create")
@click.option("--name", required=True, help="Who or what holds it: a pharmacy, a system, a person.")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice([r.value for r in Role]), help="Repeatable.")
@click.option("--pharmacy-id", default="", help="pharmacy role: only this pharmacy's patients.")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), help="Default: never (revoke it when it is no longer needed).")
@click.option("--actor", help="Who creates it (audited).", **_ACTOR)  # type: ignore[arg-type]
@click.pass_context
def token_create(ctx: click.Context, name: str, roles: tuple[str, ...], pharmacy_id: str, expires_in_days: int | None, actor: str) -> None:
    """Create a token and print it once: store it in the holder's secret store now."""
    built = services(ctx, create=True)
    try:
        secret = asyncio.run(built.tokens.create(name, parse_roles(roles), pharmacy_id=pharmacy_id, expires_in_days=expires_in_days, created_by=actor))
    except InvalidInput as exc:
        fail(str(exc))
    finally:
        built.store.close()
    click.echo(secret)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """Every token: id, name, roles, pharmacy, created, expires, revoked (never the token)."""
    built = services(ctx)
    try:
        rows = asyncio.run(built.tokens.list())
    finally:
        built.store.close()
    for r in rows:
        click.echo(json.dumps(r))


@token.command("revoke")
@click.argument("token_id", type=int)
@click.option("--actor", help="Who revokes it (audited).", **_ACTOR)  # type: ignore[arg-type]
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int, actor: str) -> None:
    """Revoke a token; the next request with it is refused."""
    built = services(ctx)
    try:
        done = asyncio.run(built.tokens.revoke(token_id, by=actor))
    finally:
        built.store.close()
    if not done:
        fail(f"no active token with id {token_id}", 1)
    click.echo(f"token {token_id} revoked")


@cli.group()
def audit() -> None:
    """The access trail: who did or read what."""


@audit.command("show")
@click.option("--patient", "patient_id", help="Only this patient's entries.")
@click.option("--authority", default="")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_context
def audit_show(ctx: click.Context, patient_id: str | None, authority: str, limit: int) -> None:
    """The newest entries first, one JSON object per line."""
    built = services(ctx)
    try:
        rows = asyncio.run(built.trail.show(PatientKey(patient_id, authority) if patient_id else None, limit))
    finally:
        built.store.close()
    for r in rows:
        click.echo(json.dumps(r))


@audit.command("verify")
@click.option("--anchor", "anchor_file", type=click.File("r"), help="Anchors kept outside the store (JSON lines: the daemon's log, the rems.audit messages), or - for stdin.")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Ed25519 public key (PEM): only anchors it signed count.")
@click.pass_context
def audit_verify(ctx: click.Context, anchor_file: IO[str] | None, public_key: Path | None) -> None:
    """Walk the hash chain; exit 1 naming the first entry that was changed or removed. With
    --anchor, also hold the store against the anchors: a deleted tail, rewritten entries (the
    chain recomputed) and forged appends are each named."""
    built = services(ctx)
    try:
        if anchor_file is not None:
            anchors = read_anchors(anchor_file)
            if not anchors:
                fail(f"no anchors in {anchor_file.name} (expected JSON lines with schema {SCHEMA})")
            findings = asyncio.run(built.trail.verify_against(anchors, public_key))
        checked, broken = asyncio.run(built.trail.verify())
    finally:
        built.store.close()
    if anchor_file is not None:
        for line in findings.lines():
            click.echo(f"rems-ingest: error: {line}", err=True)
        if not findings.holds:
            sys.exit(1)
        click.echo(f"access trail intact: {findings.entries} entries, held against {findings.anchors} anchors ({findings.unanchored} written since the last)")
        return
    if broken is not None:
        click.echo(f"rems-ingest: error: the access trail is broken at entry {broken} ({checked} entries before it hold)", err=True)
        sys.exit(1)
    click.echo(f"access trail intact: {checked} entries")
