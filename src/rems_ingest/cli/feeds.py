"""``rems-ingest feeds``: the registered lab feeds, and whether each is sending (issue #25)."""

from __future__ import annotations

import asyncio
import json

import click

from rems_ingest.cli._common import cli, services


@cli.group()
def feeds() -> None:
    """The lab feeds allowed to send results ([feeds.NAME] in the config)."""


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_feeds(ctx: click.Context, as_json: bool) -> None:
    """Each registered feed: who may send for it, what it may send, how it is read, and its
    last accepted message (or since when it is silent)."""
    built = services(ctx)
    try:
        rows = asyncio.run(built.feeds.registered())
    finally:
        built.store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        who = ", ".join(r["networks"] + r["certificate_names"])
        state = f"SILENT since {r['silent_since'][:19]}" if r["silent_since"] else f"last accepted {(r['last_accepted_at'] or 'never')[:19]}"
        click.echo(f"{r['name']}: from {who}; MSH-3 {','.join(r['applications'])} MSH-4 {','.join(r['facilities'])}; "
                   f"authorities {','.join(r['authorities'])}; draw time {r['draw_time']}; {state}")
