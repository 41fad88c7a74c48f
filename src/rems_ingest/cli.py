"""``rems-ingest`` command line. Bad arguments or config: one clear line on stderr, exit 2."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click

from rems_ingest import profiles
from rems_ingest.config import ConfigError, Settings, load_settings
from rems_ingest.core.errors import CoreError, EventNotAllowed
from rems_ingest.core.model import AncResult, ClinicalEvent, Enroll, Frequency, PatientKey, Population, ResultStatus, Tick
from rems_ingest.core.policy import DISPENSE_PROFILES


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"rems-ingest: error: {message}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = load_settings(obj.get("config"))
        except ConfigError as exc:
            _fail(str(exc))
        from rems_ingest.observability.logging import configure

        s = obj["settings"]
        configure(s.log.format, s.log.level)
    return obj["settings"]  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(path_type=Path), help="TOML config file (default config/rems-ingest.toml; env REMS_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """HL7 lab feed -> clozapine ANC rules -> durable alerts on RabbitMQ."""
    ctx.ensure_object(dict)["config"] = config


# ---------------------------------------------------------------- daemon


@cli.command()
@click.option("--mllp-port", type=int, help="Override mllp.port.")
@click.option("--http-port", type=int, help="Override http.port.")
@click.option("--store", "store_url", help="Override store.url (sqlite:///path or postgresql://...).")
@click.option("--amqp", "amqp_url", help="Override amqp.url (amqp://user:pass@host:5672/).")
@click.pass_context
def serve(ctx: click.Context, mllp_port: int | None, http_port: int | None, store_url: str | None, amqp_url: str | None) -> None:
    """Run the daemon: MLLP listener, rules, store, outbox relay, HTTP API."""
    from rems_ingest.app import Daemon

    s = _settings(ctx)
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
        _fail("mllp.reuse_port needs a PostgreSQL store (daemons sharing a SQLite file only wait for each other's write lock)")
    try:
        asyncio.run(Daemon(s).run())
    except OSError as exc:
        _fail(f"cannot start: {exc.strerror or exc}", 1)
    except CoreError as exc:
        _fail(str(exc))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Strict structural validation of HL7 files (or every *.hl7 in a folder) with hl7apy, for
    onboarding a feed; the daemon itself tolerates real-world quirks. Exit 1 if any is invalid."""
    from rems_ingest.hl7v2.strict import validate_strict

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
@click.option("--port", default=2575, show_default=True, type=int)
@click.option("--timeout", default=30.0, show_default=True, type=float, help="Seconds to wait for each ACK.")
@click.option("--tls-ca", type=click.Path(exists=True, path_type=Path), help="CA file: connect with TLS.")
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path), help="Client certificate (mutual TLS).")
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path))
def send(paths: tuple[Path, ...], host: str, port: int, timeout: float, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Send HL7 files (or every *.hl7 in a folder) over MLLP and print each ACK."""
    import ssl

    from rems_ingest.adapters.mllp.client import MllpClient

    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.hl7")) if p.is_dir() else [p]
    ctx_ssl = None
    if tls_ca:
        ctx_ssl = ssl.create_default_context(cafile=str(tls_ca))
        if tls_cert:
            ctx_ssl.load_cert_chain(str(tls_cert), str(tls_key) if tls_key else None)

    async def go() -> int:
        bad = 0
        async with MllpClient(host, port, timeout=timeout, ssl_context=ctx_ssl) as c:
            for f in files:
                reply = await c.send(f.read_bytes())
                text = reply.decode("latin-1")
                msa = next((s for s in text.split("\r") if s.startswith("MSA")), "MSA|?")
                code = msa.split("|")[1] if "|" in msa else "?"
                bad += code not in ("AA", "CA")
                click.echo(f"{f.name}: {code}  {text.strip().replace(chr(13), ' | ')}")
        return bad

    try:
        bad = asyncio.run(go())
    except (OSError, TimeoutError) as exc:
        _fail(f"could not reach {host}:{port}: {exc}", 1)
    sys.exit(1 if bad else 0)


# ---------------------------------------------------------------- clinic commands (run against the store directly)


def _services(ctx: click.Context) -> Any:
    """The daemon's own wiring (bootstrap.build_services), with the store migrated and started."""
    from rems_ingest.bootstrap import build_services

    try:
        services = build_services(_settings(ctx))
    except CoreError as exc:
        _fail(str(exc))
    services.store.migrate()
    services.store.start()
    return services


def _clinic(ctx: click.Context) -> Any:
    services = _services(ctx)
    return services.store, services.clinic


def _run_clinic(ctx: click.Context, fn: Any) -> None:
    from rems_ingest.service.clinic import Conflict, NotFound

    store, clinic = _clinic(ctx)
    try:
        result = asyncio.run(fn(clinic))
    except (Conflict, NotFound, CoreError) as exc:
        _fail(str(exc), 1)
    finally:
        store.close()
    click.echo(json.dumps(result, indent=2, default=str))


@cli.command()
@click.argument("patient_id")
@click.option("--authority", default="", help="PID-3 assigning authority (CX.4).")
@click.option("--population", type=click.Choice(["general", "ben"]), required=True)
@click.option("--therapy-start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--baseline-anc", type=float, help="BEN only: established baseline (cells/uL).")
@click.option("--monitoring-frequency", type=click.Choice(["weekly", "every_2_weeks", "monthly"]), help="Patient moved from an existing clinic.")
@click.option("--prescriber", default="")
@click.option("--pharmacy", default="")
@click.pass_context
def enroll(ctx: click.Context, patient_id: str, authority: str, population: str, therapy_start: datetime, baseline_anc: float | None, monitoring_frequency: str | None, prescriber: str, pharmacy: str) -> None:
    """Enroll a patient (baseline rules use ANCs already received)."""
    body = {"id": patient_id, "authority": authority, "population": population, "therapy_start": therapy_start.date().isoformat(), "baseline_anc": baseline_anc, "monitoring_frequency": monitoring_frequency, "prescriber_id": prescriber, "pharmacy_id": pharmacy}
    _run_clinic(ctx, lambda c: c.enroll(body, actor="cli"))


@cli.command()
@click.argument("patient_id")
@click.argument("type_", metavar="TYPE", type=click.Choice(["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]))
@click.option("--authority", default="")
@click.option("--on", "on", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--by", default="", help="Prescriber id (required for rechallenge/override).")
@click.option("--rationale", default="")
@click.option("--temperature-c", type=float)
@click.option("--planned", is_flag=True, help="discontinue: a planned stop (taper), not an abrupt one.")
@click.pass_context
def event(ctx: click.Context, patient_id: str, type_: str, authority: str, on: datetime, by: str, rationale: str, temperature_c: float | None, planned: bool) -> None:
    """Record a prescriber or clinical event."""
    body = {"type": type_, "on": on.date().isoformat(), "by": by, "rationale": rationale, "temperature_c": temperature_c, "abrupt": not planned}
    _run_clinic(ctx, lambda c: c.record_event(PatientKey(patient_id, authority), body, actor="cli"))


@cli.command("dispense-check")
@click.argument("patient_id")
@click.option("--authority", default="")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="Dispense date (default today).")
@click.pass_context
def dispense_check(ctx: click.Context, patient_id: str, authority: str, on: datetime | None) -> None:
    """May clozapine be dispensed? Any doubt means no, with the reason."""
    _run_clinic(ctx, lambda c: c.dispense_check(PatientKey(patient_id, authority), on.date() if on else None))


@cli.command()
@click.argument("patient_id")
@click.option("--authority", default="")
@click.pass_context
def status(ctx: click.Context, patient_id: str, authority: str) -> None:
    """A patient's state, category, frequency, next due date and recent history."""
    _run_clinic(ctx, lambda c: c.status(PatientKey(patient_id, authority)))


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
            _fail(f"--now {now!r} is not an ISO date-time")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    _run_clinic(ctx, lambda c: c.sweep_overdue(when))


@cli.command("import-patients")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), show_default="$USER", help="Who imports (audited).")
@click.pass_context
def import_patients(ctx: click.Context, file: Path, actor: str) -> None:
    """Enroll the patients of an existing clozapine clinic from a CSV with a header row:
    id,authority,population,therapy_start[,baseline_anc,monitoring_frequency,prescriber_id,pharmacy_id].
    All rows or none; patients already enrolled are skipped, so a re-run is harmless."""
    from rems_ingest.service.clinic import Conflict

    with open(file, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(row for row in fh if not row.lstrip().startswith("#"))
        missing = {"id", "population", "therapy_start"} - set(reader.fieldnames or ())
        if missing:
            raise click.UsageError(f"{file}: header lacks {', '.join(sorted(missing))}")
        rows = [{k: (v.strip() if isinstance(v, str) else v) or None for k, v in r.items() if k} for r in reader]
    store, clinic = _clinic(ctx)
    try:
        outcome = asyncio.run(clinic.enroll_many(rows, actor=actor))
    except (Conflict, CoreError) as exc:
        _fail(f"{file}: {exc}; nothing was imported")
    finally:
        store.close()
    for r, what in zip(rows, outcome):
        click.echo(f"{r['id']} ({r.get('authority') or 'no authority'}): {what}")
    click.echo(f"{sum(1 for o in outcome if not o.startswith('already'))} enrolled, {sum(1 for o in outcome if o.startswith('already'))} already enrolled")


@cli.command()
@click.option("--id", "ids", type=int, multiple=True, help="Stored message id (repeatable).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), help="Messages received at or after this time (UTC if no offset).")
@click.option("--status", type=click.Choice(["PROCESSED", "FILTERED", "REPLAYED", "REJECTED"]), help="Only messages in this status (FILTERED: no ANC was found; REJECTED: answered AR, kept for a replay).")
@click.option("--with-warnings", is_flag=True, help="Only messages whose ACK carried warnings (unusable results).")
@click.option("--dry-run", is_flag=True, help="List what would be replayed and change nothing.")
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), show_default="$USER", help="Who replays (audited).")
@click.pass_context
def replay(ctx: click.Context, ids: tuple[int, ...], since: datetime | None, status: str | None, with_warnings: bool, dry_run: bool, actor: str) -> None:
    """Reprocess stored messages through the live code path (after fixing a code or unit
    mapping, say). Idempotent: what was already applied changes nothing; audited."""
    if not (ids or since or status or with_warnings):
        raise click.UsageError("say which messages: --id, --since, --status or --with-warnings")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    services = _services(ctx)
    store, service = services.store, services.replay

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
        store.close()
    sys.exit(code)


@cli.command()
@click.option("--older-than", "older_than", required=True, type=click.IntRange(min=1), metavar="DAYS", help="Blank raw messages received more than DAYS days ago.")
@click.option("--dry-run", is_flag=True, help="Count what would be pruned and change nothing.")
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@click.pass_context
def prune(ctx: click.Context, older_than: int, dry_run: bool, actor: str) -> None:
    """PHI retention: blank the raw HL7 (names, birth dates, free text) of old messages. Results,
    decisions, alerts and duplicate detection stay; such messages can no longer be replayed."""
    from rems_ingest.adapters.db.repository import Repository

    store, _ = _clinic(ctx)
    now = datetime.now(UTC)
    cutoff = (now - timedelta(days=older_than)).isoformat()

    def job(conn: Any) -> int:
        repo = Repository(conn)
        n = repo.prune_raw(cutoff, dry_run=dry_run)
        if not dry_run:
            repo.audit(now, actor, "prune_raw", None, {"received_before": cutoff, "messages": n})
        return n

    try:
        n = asyncio.run(store.write(job))
    finally:
        store.close()
    click.echo(f"{n} message(s) received before {cutoff[:10]} {'would be' if dry_run else 'were'} pruned")


@cli.group()
def db() -> None:
    """Store maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations (the daemon also does this at start-up)."""
    from sqlalchemy import text

    from rems_ingest.adapters.db.store import Store, StoreError

    store = Store(_settings(ctx).store.resolved_url())
    try:
        store.migrate()
        revision = store.read(lambda c: c.execute(text("SELECT version_num FROM alembic_version")).scalar())
    except StoreError as exc:
        _fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"schema at revision {revision}")


@cli.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the configuration and print it with secrets masked."""
    s = _settings(ctx)
    try:
        profiles.load(s.rules.profile, s.rules.dispense_profile)
    except CoreError as exc:
        _fail(str(exc))
    click.echo(s.model_dump_json(indent=2))


# ---------------------------------------------------------------- simulate


class _DispenseQuery:
    """A ``date,dispense`` line: the pharmacy's question on that date (changes nothing)."""

    def __init__(self, on: date) -> None:
        self.on = on


def _simulate_events(path: Path, population: Population, therapy_start: date, baseline: Decimal | None, transfer: Frequency | None = None) -> list[tuple[int, str, Any]]:
    events: list[tuple[int, str, Any]] = []
    last: date | None = None
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].strip().startswith("#") or row[0].strip() == "date":
                continue
            try:
                on = date.fromisoformat(row[0].strip())
            except ValueError:
                raise click.UsageError(f"{path}:{n}: {row[0]!r} is not a date YYYY-MM-DD") from None
            what = row[1].strip() if len(row) > 1 else ""
            args = [a.strip() for a in row[2:]]
            keyed = len(args) > 2 and bool(args[2])  # a result with its specimen id may arrive late (corrections)
            if last and on < last and not keyed:
                raise click.UsageError(f"{path}:{n}: date {on} is before the previous line ({last}); lines must be in date order (a late or corrected result names its specimen)")
            last = max(on, last) if last else on
            try:
                value = Decimal(what.replace(",", "."))
            except InvalidOperation:
                value = None
            if value is not None:
                try:
                    status = ResultStatus(args[0]) if args and args[0] else ResultStatus.FINAL
                    wbc = Decimal(args[1].replace(",", ".")) if len(args) > 1 and args[1] else None
                except (ValueError, InvalidOperation):
                    raise click.UsageError(f"{path}:{n}: expected date,anc[,status F/C/P/X/D/W[,wbc per uL[,specimen id]]]") from None
                label = f"ANC {what}" + (f" ({status.value}, ignored)" if not status.counts else (" (C)" if status is ResultStatus.CORRECTED else ""))
                events.append((n, label, AncResult(args[2] if keyed else f"line{n}", value, datetime(on.year, on.month, on.day, 8), status, wbc=wbc)))
            elif what == "tick":
                events.append((n, "overdue check", Tick(f"tick{n}", on)))
            elif what == "dispense":
                events.append((n, "dispense check", _DispenseQuery(on)))
            elif what in ("interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"):
                temp = Decimal(args[0]) if what == "fever" and args else None
                by = args[0] if what in ("rechallenge", "override") and args else ""
                rationale = args[1] if what in ("rechallenge", "override") and len(args) > 1 else ""
                abrupt = not (what == "discontinue" and args and args[0] in ("planned", "taper"))
                events.append((n, what, ClinicalEvent(f"line{n}", what, on, by=by, rationale=rationale, abrupt=abrupt, temperature_c=temp)))
            else:
                raise click.UsageError(f"{path}:{n}: {what!r} is neither an ANC value nor a known event")
    # enrollment happens at therapy start: earlier lines are pre-treatment (baseline) results
    at = next((i for i, (_, _, e) in enumerate(events) if e.on >= therapy_start), len(events))
    events.insert(at, (0, "enroll", Enroll("enroll", therapy_start, population, therapy_start, baseline, transfer)))
    return events


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--profile", default="us-label", show_default=True)
@click.option("--population", type=click.Choice(["general", "ben"]), default="general", show_default=True)
@click.option("--therapy-start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--baseline-anc", type=float, help="BEN established baseline.")
@click.option("--monitoring-frequency", type=click.Choice(["weekly", "every_2_weeks", "monthly"]), help="A patient moved from a clinic on this routine interval.")
@click.option("--dispense-profile", type=click.Choice(DISPENSE_PROFILES))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decision.")
def simulate(file: Path, profile: str, population: str, therapy_start: datetime, baseline_anc: float | None, monitoring_frequency: str | None, dispense_profile: str | None, as_json: bool) -> None:
    """Print the decision timeline for FILE (lines: date,anc[,status[,wbc[,specimen]]] or
    date,event[,args]; counts in cells/uL). Lines apply in file order, as the daemon applies
    messages in arrival order: a line naming its specimen may be dated earlier (a late or
    corrected result) and re-folds the history. ``date,discontinue,planned`` is a planned stop.
    WBC matters only to profiles that use it (uk-cpms)."""
    try:
        policy = profiles.load(profile, dispense_profile)
    except CoreError as exc:
        raise click.UsageError(str(exc)) from None
    from rems_ingest.core import dispense as dispense_rules
    from rems_ingest.core.timeline import Timeline

    events = _simulate_events(file, Population(population), therapy_start.date(), Decimal(str(baseline_anc)) if baseline_anc else None, Frequency(monitoring_frequency) if monitoring_frequency else None)
    timeline = Timeline(policy)  # events applied as the daemon applies them when they arrive in this order
    rows: list[dict[str, Any]] = []
    for line, label, ev in events:
        if isinstance(ev, _DispenseQuery):
            check = dispense_rules.check(policy, timeline.state, ev.on)
            rows.append({"line": line, "date": ev.on.isoformat(), "input": label, "dispense": {"authorized": check.authorized, "code": check.code, "reason": check.reason, "max_days_supply": check.max_days_supply}})
            continue
        try:
            d = timeline.apply(ev)
        except EventNotAllowed as exc:
            rows.append({"line": line, "date": ev.on.isoformat(), "input": label, "error": f"not allowed: {exc}"})
            continue
        except CoreError as exc:
            raise click.UsageError(f"{file}:{line}: {exc}") from None
        state = d.state
        latest = state.latest
        rows.append(
            {
                "line": line,
                "date": ev.on.isoformat(),
                "input": label,
                # pre-enrollment results are baselines, not yet categorized for this patient's population
                "category": latest.category.value if latest and state.enrolled else "",
                "phase": state.phase.value,
                "action": state.action,
                "treatment": state.treatment.value,
                "frequency": state.frequency.value,
                "next_due": state.next_due.isoformat() if state.next_due else "",
                "alerts": [a.kind.value for a in d.raised],
                "severity": {a.kind.value: a.severity.value for a in d.raised},
                "state_version": state.version,
            }
        )
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    click.echo(f"profile {policy.label}, population {population}, dispense profile {policy.dispense_profile}")
    header = f"{'date':<10}  {'input':<20}  {'category':<15}  {'action':<30}  {'treatment':<16}  {'frequency':<18}  {'next due':<10}  alerts"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        if "error" in r:
            click.echo(f"{r['date']:<10}  {r['input']:<20}  {r['error']}")
            continue
        if "dispense" in r:
            ok = r["dispense"]
            click.echo(f"{r['date']:<10}  {r['input']:<20}  {'authorized' if ok['authorized'] else 'NOT authorized'} ({ok['code']}): {ok['reason']}")
            continue
        click.echo(f"{r['date']:<10}  {r['input']:<20}  {r['category']:<15}  {r['action']:<30}  {r['treatment']:<16}  {r['frequency']:<18}  {r['next_due']:<10}  {', '.join(r['alerts'])}")


# ---------------------------------------------------------------- demo


@cli.command()
@click.option("--amqp", "amqp_url", help="Also publish to this broker (default: REMS_AMQP__URL, else hold alerts).")
@click.pass_context
def demo(ctx: click.Context, amqp_url: str | None) -> None:
    """Start the daemon on a throw-away SQLite store, enroll two patients, send the seed
    walk-through over MLLP and print the decisions and alerts."""
    from rems_ingest.demo import run_demo

    s = _settings(ctx)
    with tempfile.TemporaryDirectory(prefix="rems-demo-") as tmp:
        s.store.url = f"sqlite:///{tmp}/demo.db"  # type: ignore[assignment]
        s.mllp.port = 0
        s.http.port = 0
        s.log.level = "ERROR"
        if amqp_url:
            s.amqp.url = amqp_url  # type: ignore[assignment]
        from rems_ingest.observability.logging import configure

        configure(s.log.format, "ERROR")  # the output is the walk-through, not daemon chatter
        asyncio.run(run_demo(s, click.echo))


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="rems-ingest")
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        _fail(exc.format_message().replace("\n", " "))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["Frequency", "cli", "main", "timedelta"]
