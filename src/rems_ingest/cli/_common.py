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
from rems_ingest.config import ConfigError, Settings, load_settings
from rems_ingest.core.errors import CoreError
from rems_ingest.observability.logging import configure
from rems_ingest.service.clinic import ClinicService, Conflict, NotFound


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"rems-ingest: error: {message}", err=True)
    sys.exit(code)


def settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = load_settings(obj.get("config"))
        except ConfigError as exc:
            fail(str(exc))
        s = obj["settings"]
        configure(s.log.format, s.log.level)
    return obj["settings"]  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(path_type=Path), help="TOML config file (default config/rems-ingest.toml; env REMS_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """HL7 lab feed -> clozapine ANC rules -> durable alerts on RabbitMQ."""
    ctx.ensure_object(dict)["config"] = config


def services(ctx: click.Context) -> Services:
    """The daemon's own wiring (bootstrap.build_services), with the store migrated and started."""
    try:
        built = build_services(settings(ctx))
    except CoreError as exc:
        fail(str(exc))
    built.store.migrate()
    built.store.start()
    return built


def run_clinic(ctx: click.Context, fn: Callable[[ClinicService], Coroutine[Any, Any, Any]]) -> None:
    """Run one clinic use case and print its answer as JSON; a refusal is one line, exit 1."""
    built = services(ctx)
    try:
        result = asyncio.run(fn(built.clinic))
    except (Conflict, NotFound, CoreError) as exc:
        fail(str(exc), 1)
    finally:
        built.store.close()
    click.echo(json.dumps(result, indent=2, default=str))
