"""``rems-ingest`` command line. Bad arguments or config: one clear line on stderr, exit 2.

One module per kind of command (daemon, clinic, store, simulate); each registers on the
group in ``_common`` and calls typed use cases wired by ``bootstrap.build_services``.
"""

from __future__ import annotations

import sys

import click

from rems_ingest.cli import clinic, daemon, simulate, store
from rems_ingest.cli._common import cli, fail


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="rems-ingest")
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.UsageError as exc:
        fail(exc.format_message().replace("\n", " "))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


__all__ = ["cli", "clinic", "daemon", "main", "simulate", "store"]
