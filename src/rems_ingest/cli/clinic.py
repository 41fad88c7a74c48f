"""Clinic commands, run against the store directly: enroll, event, dispense-check, status,
sweep-overdue, import-patients. Options become the same typed commands the HTTP API builds."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click

from rems_ingest.cli._common import cli, fail, run_clinic, services
from rems_ingest.cli._remote import call, remote
from rems_ingest.core.errors import CoreError, InvalidInput
from rems_ingest.core.model import CLINICAL_EVENT_TYPES, Frequency, PatientKey, Population
from rems_ingest.service.clinic import Conflict
from rems_ingest.service.commands import EnrollPatient, RecordEvent, clinic_csv_rows

_FREQUENCIES = ["weekly", "every_2_weeks", "monthly"]
T = TypeVar("T")


def _show(answer: object) -> None:
    click.echo(json.dumps(answer, indent=2, default=str))


def _quote(patient_id: str) -> str:
    return urllib.parse.quote(patient_id, safe="")


def _decimal(value: float | None) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def _command(build: Callable[..., T], *args: Any) -> T:
    """A typed command from options, or one line and exit 2 when the request is not valid."""
    try:
        return build(*args)
    except InvalidInput as exc:
        fail(str(exc))


@cli.command()
@click.argument("patient_id")
@click.option("--authority", default="", help="PID-3 assigning authority (CX.4).")
@click.option("--population", type=click.Choice(["general", "ben"]), required=True)
@click.option("--therapy-start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--baseline-anc", type=float, help="BEN only: established baseline (cells/uL).")
@click.option("--monitoring-frequency", type=click.Choice(_FREQUENCIES), help="Patient moved from an existing clinic.")
@click.option("--prescriber", default="")
@click.option("--pharmacy", default="")
@click.option("--designee", "designees", multiple=True, help="Care team beside the prescriber (repeat): prescribers who may record decisions too.")
@click.pass_context
def enroll(ctx: click.Context, patient_id: str, authority: str, population: str, therapy_start: datetime, baseline_anc: float | None, monitoring_frequency: str | None, prescriber: str, pharmacy: str, designees: tuple[str, ...]) -> None:
    """Enroll a patient (baseline rules use ANCs already received)."""
    freq = Frequency(monitoring_frequency) if monitoring_frequency else None
    cmd = _command(EnrollPatient, PatientKey(patient_id, authority), Population(population), therapy_start.date(), _decimal(baseline_anc), freq, prescriber, pharmacy, designees)
    if target := remote(ctx):
        body = {"id": patient_id, "authority": authority, "population": population, "therapy_start": cmd.therapy_start.isoformat(), "baseline_anc": baseline_anc, "monitoring_frequency": monitoring_frequency, "prescriber_id": prescriber, "pharmacy_id": pharmacy, "designees": list(cmd.designees)}
        return _show(call(target, "POST", "/v1/patients", body=body))
    run_clinic(ctx, lambda c: c.enroll(cmd, actor="cli"), create=True)


@cli.command()
@click.argument("patient_id")
@click.argument("type_", metavar="TYPE", type=click.Choice(sorted(CLINICAL_EVENT_TYPES)))
@click.option("--authority", default="")
@click.option("--on", "on", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--by", default="", help="Prescriber id (required for rechallenge/override on the database; through the API the token's holder is the author).")
@click.option("--rationale", default="")
@click.option("--temperature-c", type=float)
@click.option("--planned", is_flag=True, help="discontinue: a planned stop (taper), not an abrupt one.")
@click.option("--event-id", default="", help="Your id for this event: sending it again is a no-op; another event under it is refused.")
@click.option("--break-glass", "break_glass", default="", metavar="REASON", help="A decision for a patient outside your care team, with the reason (the clinic is alerted).")
@click.pass_context
def event(ctx: click.Context, patient_id: str, type_: str, authority: str, on: datetime, by: str, rationale: str, temperature_c: float | None, planned: bool, event_id: str, break_glass: str) -> None:
    """Record a prescriber or clinical event (every event the API records)."""
    target = remote(ctx)
    # through the API the author is the token's subject, so --by is neither needed nor sent
    cmd = _command(RecordEvent, type_, on.date(), by or ("token subject" if target else ""), rationale, not planned, _decimal(temperature_c), event_id or uuid.uuid4().hex, bool(break_glass), break_glass)
    if target:
        body = {"type": type_, "on": cmd.on.isoformat(), "rationale": rationale, "abrupt": not planned, "temperature_c": temperature_c, "event_id": cmd.event_id,
                "break_glass": bool(break_glass), "break_glass_reason": break_glass}
        return _show(call(target, "POST", f"/v1/patients/{_quote(patient_id)}/events", {"authority": authority}, body))
    run_clinic(ctx, lambda c: c.record_event(PatientKey(patient_id, authority), cmd, actor="cli"))


@cli.command("dispense-check")
@click.argument("patient_id")
@click.option("--authority", default="")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="Dispense date (default today).")
@click.pass_context
def dispense_check(ctx: click.Context, patient_id: str, authority: str, on: datetime | None) -> None:
    """May clozapine be dispensed? Any doubt means no, with the reason."""
    if target := remote(ctx):
        return _show(call(target, "GET", f"/v1/patients/{_quote(patient_id)}/dispense-check", {"authority": authority, "on": on.date().isoformat() if on else ""}))
    run_clinic(ctx, lambda c: c.dispense_check(PatientKey(patient_id, authority), on.date() if on else None))


@cli.command()
@click.argument("patient_id")
@click.option("--authority", default="")
@click.pass_context
def status(ctx: click.Context, patient_id: str, authority: str) -> None:
    """A patient's state, category, frequency, next due date and recent history."""
    if target := remote(ctx):
        return _show(call(target, "GET", f"/v1/patients/{_quote(patient_id)}", {"authority": authority}))
    run_clinic(ctx, lambda c: c.status(PatientKey(patient_id, authority)))


@cli.command("sweep-overdue")
@click.option("--now", "now", help="ISO date-time with offset (default: now).")
@click.pass_context
def sweep_overdue(ctx: click.Context, now: str | None) -> None:
    """Raise lab.overdue for patients whose ANC is past due (idempotent)."""
    when = None
    if now:
        try:
            when = datetime.fromisoformat(now)
        except ValueError:
            fail(f"--now {now!r} is not an ISO date-time")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    run_clinic(ctx, lambda c: c.sweep_overdue(when))


@cli.command("import-patients")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), show_default="$USER", help="Who imports (audited).")
@click.option("--dry-run", is_flag=True, help="Check every row and show what would happen; change nothing.")
@click.pass_context
def import_patients(ctx: click.Context, file: Path, actor: str, dry_run: bool) -> None:
    """Enroll the patients of an existing clozapine clinic from a CSV with a header row:
    id,authority,population,therapy_start[,baseline_anc,monitoring_frequency,prescriber_id,pharmacy_id].
    All rows or none; a patient twice in the file is an error; patients already enrolled are
    skipped (a re-run is harmless) and any difference from their stored enrollment is shown."""
    rows = _csv_rows(file)
    built = services(ctx, create=True)
    commands: list[EnrollPatient] = []
    try:
        for n, row in enumerate(rows, 1):
            try:
                commands.append(EnrollPatient.from_mapping(row))
            except CoreError as exc:
                fail(f"{file}: row {n}: {exc}; nothing was imported")
        outcome = asyncio.run(built.clinic.enroll_many(commands, actor=actor, dry_run=dry_run))
    except (Conflict, CoreError) as exc:
        fail(f"{file}: {exc}; nothing was imported")
    finally:
        built.store.close()
    for cmd, what in zip(commands, outcome, strict=True):
        click.echo(f"{cmd.patient.id} ({cmd.patient.authority or 'no authority'}): {what}")
    _summary(outcome, dry_run)


def _csv_rows(file: Path) -> list[dict[str, str | None]]:
    """The CSV's rows as dicts of stripped values ('' becomes None); one line for a bad file."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as fh:
            return clinic_csv_rows(fh)
    except InvalidInput as exc:
        raise click.UsageError(f"{file}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"{file} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8 CSV") from None


def _summary(outcome: list[str], dry_run: bool) -> None:
    skipped = sum(1 for o in outcome if o.startswith("already"))
    differ = sum(1 for o in outcome if "differs" in o)
    tail = f" ({differ} differ from this file: see above)" if differ else ""
    if dry_run:
        click.echo(f"dry run: {len(outcome) - skipped} would be enrolled, {skipped} already enrolled{tail}; nothing was changed")
    else:
        click.echo(f"{len(outcome) - skipped} enrolled, {skipped} already enrolled{tail}")
