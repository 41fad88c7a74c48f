"""``rems-ingest`` command line. Bad arguments or config: one clear line on stderr, exit 2.

One module per kind of command (daemon, clinic, store, simulate); each registers on the
group in ``_common`` and calls typed use cases wired by ``bootstrap.build_services``.

The error boundary is ``main``: every failure an operator can meet is one line on stderr —
exit 2 for a usage or configuration error, 1 for a runtime failure (store or broker away, a file
that cannot be read, a refusal) — and an unexpected error is one line too, with ``--debug``
to see its traceback (README, "Command line: exit codes").
"""

from __future__ import annotations

import sys
import traceback

import click
from sqlalchemy.exc import DBAPIError

from rems_ingest.adapters.db.store import StoreError
from rems_ingest.cli import access, clinic, daemon, feeds, simulate, store
from rems_ingest.cli._common import cli, fail
from rems_ingest.config import ConfigError
from rems_ingest.service.ports import RefusedByStore, StoreUnavailable


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False, prog_name="rems-ingest")
    except click.exceptions.NoArgsIsHelpError as exc:  # bare "rems-ingest" or "rems-ingest db"
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.UsageError as exc:
        fail(exc.format_message().replace("\n", " "))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        fail(str(exc))
    except (StoreError, DBAPIError, StoreUnavailable, RefusedByStore) as exc:
        fail(f"the store could not be used: {_first_line(exc)}", 1)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"cannot use{where}: {exc.strerror or _first_line(exc)}", 1)
    except Exception as exc:  # noqa: BLE001 - the boundary: one line, never a bare traceback
        if debug:
            traceback.print_exc()
        fail(f"unexpected error ({type(exc).__name__}); rerun with --debug for the traceback", 1)


__all__ = ["access", "cli", "clinic", "daemon", "feeds", "main", "simulate", "store"]
