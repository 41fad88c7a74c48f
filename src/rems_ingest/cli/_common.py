"""The ``rems-ingest`` group and what every command shares: settings, the one-line failure,
the daemon's own wiring for commands that work on the store directly."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click

from rems_ingest.bootstrap import Services, build_services
from rems_ingest.config import ConfigError, Settings, check_settings, load_settings
from rems_ingest.core.errors import CoreError, InvalidInput
from rems_ingest.observability.logging import configure
from rems_ingest.service.clinic import ClinicService, Conflict, NotFound


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"rems-ingest: error: {message}", err=True)
    sys.exit(code)


def settings(ctx: click.Context, *, daemon: bool = False) -> Settings:
    """Load and check the settings (one line, exit 2, naming the setting when one is wrong).
    Only the daemon logs at the configured level: a CLI command answers on stdout and logs
    warnings only, so its stderr is not a JSON line on every call."""
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        try:
            s = load_settings(obj.get("config"))
            check_settings(s)
        except ConfigError as exc:
            fail(str(exc))
        obj["settings"] = s
        level = s.log.level if daemon else ("WARNING" if s.log.level in ("DEBUG", "INFO") else s.log.level)
        configure(s.log.format, level)
    return obj["settings"]  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(path_type=Path), help="TOML config file (default config/rems-ingest.toml; env REMS_CONFIG).")
@click.option("--debug", is_flag=True, help="On an unexpected error, print its traceback.")
@click.option("--token-file", type=click.Path(path_type=Path), help="API token for REMS_API_URL (else REMS_API_TOKEN).")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool, token_file: Path | None) -> None:
    """HL7 lab feed -> clozapine ANC rules -> durable alerts on RabbitMQ."""
    ctx.ensure_object(dict)["config"] = config


def services(ctx: click.Context, *, create: bool = False) -> Services:
    """The daemon's own wiring (bootstrap.build_services), with the store migrated and started.
    ``create``: the command may create a missing SQLite store (enroll, import); the others
    must find it."""
    try:
        built = build_services(settings(ctx), create_store=create)
    except CoreError as exc:
        fail(str(exc))
    built.store.migrate()
    built.store.start()
    return built


def run_clinic(ctx: click.Context, fn: Callable[[ClinicService], Coroutine[Any, Any, Any]], *, create: bool = False) -> None:
    """Run one clinic use case and print its answer as JSON. Invalid input is a usage error
    (exit 2); a refusal by the stored state (conflict, unknown patient, rule) is exit 1."""
    built = services(ctx, create=create)
    try:
        result = asyncio.run(fn(built.clinic))
    except InvalidInput as exc:
        fail(str(exc))
    except (Conflict, NotFound, CoreError) as exc:
        fail(str(exc), 1)
    finally:
        built.store.close()
    click.echo(json.dumps(result, indent=2, default=str))
