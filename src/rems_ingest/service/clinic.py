"""Enrollment, prescriber events, status, dispense check and the overdue sweep.

Shared by the HTTP API and the CLI so both answer the same way. Every write runs in one
store transaction: validated by the rules core first, so nothing is half-written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from rems_ingest.core import dispense
from rems_ingest.core.errors import EventNotAllowed, InvalidInput
from rems_ingest.core.model import CLINICAL_EVENT_TYPES, Alert, AlertKind, ClinicalEvent, Enroll, PatientKey, Severity
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.commands import CARE_TEAM_DECISIONS, EnrollPatient, RecordEvent
from rems_ingest.service.outbox import outbox_entry
from rems_ingest.service.patients import apply_event, tick
from rems_ingest.service.ports import PatientRow, Repositories, UnitOfWork, join_designees

log = structlog.get_logger("rems_ingest.clinic")


class Conflict(Exception):
    """409: the request clashes with what is stored (duplicate enrollment, event not allowed)."""


class NotFound(Exception):
    """404: unknown patient."""


class NotInCareTeam(Exception):
    """403: a decision for a patient by someone outside its care team, without breaking glass."""


def _differences(cmd: EnrollPatient, row: PatientRow) -> list[str]:
    """What an enrollment request says that the stored enrollment does not."""
    s = row.state
    pairs = [
        ("population", cmd.population.value, s.population.value),
        ("therapy_start", cmd.therapy_start.isoformat(), s.therapy_start.isoformat() if s.therapy_start else ""),
        ("prescriber_id", cmd.prescriber_id, row.prescriber_id),
        ("pharmacy_id", cmd.pharmacy_id, row.pharmacy_id),
    ]
    if cmd.baseline_anc is not None:
        pairs.append(("baseline_anc", str(cmd.baseline_anc), str(s.baseline_anc) if s.baseline_anc is not None else ""))
    return [f"{name} {new or '(empty)'} here, {old or '(empty)'} stored" for name, new, old in pairs if new != old]


def _enrolled(repo: Repositories, key: PatientKey) -> PatientRow:
    """The enrolled patient's row, locked for the change, or NotFound."""
    row = repo.patient(key, create=False, lock=True)
    if row is None or not row.enrolled:
        raise NotFound(f"patient {key.id} is not enrolled")
    return row


def _authority_hint(key: PatientKey, elsewhere: list[str]) -> str:
    """A patient id is unique only within its assigning authority (PID-3 CX.4): say where the
    same id is enrolled when the request named no authority or another one."""
    if not elsewhere:
        return ""
    named = f"authority {key.authority}" if key.authority else "no authority"
    return f" (asked under {named}; {key.id} is enrolled under authority {', '.join(elsewhere)}: ask with authority={elsewhere[0]})"


@dataclass
class ClinicService:
    store: UnitOfWork
    policy: Callable[[], RulesPolicy]
    timezone: str = "UTC"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_alerts: Callable[[], None] = lambda: None

    def today(self, now: datetime | None = None) -> date:
        return (now or self.clock()).astimezone(ZoneInfo(self.timezone)).date()

    # ------------------------------------------------------------ enrollment

    def _enrollment(self, cmd: EnrollPatient) -> Enroll:
        """The rules core's event for an enrollment: dated no later than today."""
        on = min(cmd.therapy_start, self.today(self.clock()))
        return Enroll(key="enroll", on=on, population=cmd.population, therapy_start=cmd.therapy_start, baseline_anc=cmd.baseline_anc, monitoring_frequency=cmd.monitoring_frequency)

    def _enroll_in(self, repo: Repositories, cmd: EnrollPatient, actor: str, now: datetime) -> None:
        key, event, prescriber, pharmacy = cmd.patient, self._enrollment(cmd), cmd.prescriber_id, cmd.pharmacy_id
        row = repo.patient(key, create=True, lock=True, now=now.isoformat())
        assert row is not None
        if row.enrolled:
            raise Conflict(f"patient {key.id} ({key.authority or 'no authority'}) is already enrolled")
        apply_event(repo, self.policy(), key, event, cause={"source": actor}, now=now, row=row, strict=True, extra={"prescriber_id": prescriber, "pharmacy_id": pharmacy, "designees": join_designees(cmd.designees)})
        repo.audit(now, actor, "enroll", row.pk, {"population": event.population.value, "therapy_start": event.therapy_start, "prescriber_id": prescriber, "designees": list(cmd.designees)})

    async def enroll_many(self, requests: list[EnrollPatient], actor: str = "import", *, dry_run: bool = False) -> list[str]:
        """Bulk import (a clinic moving its patients): every row is validated first (by the
        caller, building the commands), then all are enrolled in one transaction, so a bad row
        leaves nothing half-written. A patient twice in one file is an error (which row is
        right?). A patient already enrolled is skipped, so a re-run of the same file is
        harmless, and any difference from what is stored is reported, never applied silently.
        ``dry_run``: the same outcomes, nothing written."""
        seen: dict[PatientKey, int] = {}
        for n, req in enumerate(requests, 1):
            if req.patient in seen:
                raise InvalidInput(f"rows {seen[req.patient]} and {n} are the same patient ({req.patient.id}, {req.patient.authority or 'no authority'}); keep one")
            seen[req.patient] = n
        now = self.clock()

        def outcome_of(repo: Repositories, req: EnrollPatient) -> str | None:
            row = repo.patient(req.patient, create=False, lock=False)
            if row is None or not row.enrolled:
                return None
            diffs = _differences(req, row)
            return "already enrolled: skipped" + (f"; differs from the stored enrollment ({'; '.join(diffs)}), not changed" if diffs else "")

        if dry_run:
            return await self.store.read(lambda repo: [outcome_of(repo, r) or "would enroll" for r in requests])

        def job(repo: Repositories) -> list[str]:
            outcome = []
            for n, req in enumerate(requests, 1):
                existing = outcome_of(repo, req)
                if existing is not None:
                    outcome.append(existing)
                    continue
                try:
                    self._enroll_in(repo, req, actor, now)
                except EventNotAllowed as exc:
                    raise Conflict(f"row {n}: {exc}") from None
                outcome.append(self._view(repo, req.patient)["action"])
            return outcome

        result = await self.store.write(job, locks=(r.patient for r in requests))
        self.on_alerts()
        return result

    async def enroll(self, cmd: EnrollPatient, actor: str = "api") -> dict[str, Any]:
        now = self.clock()

        def job(repo: Repositories) -> dict[str, Any]:
            self._enroll_in(repo, cmd, actor, now)
            return self._view(repo, cmd.patient)

        try:
            view = await self.store.write(job, locks=(cmd.patient,))
        except EventNotAllowed as exc:
            raise Conflict(str(exc)) from None
        self.on_alerts()
        return view

    # ------------------------------------------------------------ prescriber events

    async def record_event(self, key: PatientKey, cmd: RecordEvent, actor: str = "api", *, care_team: bool = False) -> dict[str, Any]:
        """``care_team``: ``cmd.by`` is an authenticated identity, and a decision is theirs to
        record only if they are the patient's prescriber or a designee (else they break glass).
        Off for the local operator (the CLI on the store's host, http.auth = none)."""
        etype, on, by, event_id = cmd.type, cmd.on, cmd.by, cmd.event_id
        now = self.clock()

        def job(repo: Repositories) -> dict[str, Any]:
            row = _enrolled(repo, key)
            policy = self.policy()
            _check_date(on, row, policy.baseline_window_days, self.today(now))
            glass = _break_glass(row, cmd) if care_team and etype in CARE_TEAM_DECISIONS else ""
            event = ClinicalEvent(key=f"event:{event_id}", type=etype, on=on, by=by, rationale=cmd.rationale, abrupt=cmd.abrupt, temperature_c=cmd.temperature_c, break_glass=glass)
            stored = repo.event(row.pk, event.key)
            if stored is not None:  # the same event_id: a retry answers as before; another body is refused
                if stored != event:
                    raise Conflict(f"event_id {event_id} is already recorded for a different event; use a new event_id (or void it)")
                view = self._view(repo, key)
                view["alerts_raised"], view["duplicate"] = [], True
                return view
            applied = apply_event(repo, policy, key, event, cause={"source": actor, "event": etype, "by": by}, now=now, row=row, strict=True)
            alerts = list(applied.alerts)
            if glass:
                alerts.append(_raise_break_glass(repo, policy, row, applied, event, now))
            repo.audit(now, by or actor, f"event.{etype}", row.pk, {"on": on, "event_id": event_id, "by": by, **({"break_glass": glass[:200]} if glass else {})})
            view = self._view(repo, key)
            view["alerts_raised"] = alerts
            return view

        try:
            view = await self.store.write(job, locks=(key,))
        except EventNotAllowed as exc:
            raise Conflict(str(exc)) from None
        self.on_alerts()
        return view

    async def void_event(self, key: PatientKey, event_id: str, reason: str, *, by: str, clinic: bool = False, care_team: bool = False) -> dict[str, Any]:
        """Entered in error: the event is kept, marked void, and the patient re-folded from the
        snapshot before it; alerts the re-fold no longer justifies are withdrawn with
        alert.superseded, as for a corrected result (a voided discontinue gives the patient back
        their prior state). By its author, the patient's care team, or a clinic role (``clinic``);
        ``care_team`` False: the local operator (no identity to check)."""
        reason = reason.strip()
        if not reason or len(reason) > 2000:
            raise InvalidInput("voiding an event needs a reason (at most 2000 characters)")
        now = self.clock()

        def job(repo: Repositories) -> dict[str, Any]:
            row = _enrolled(repo, key)
            stored = repo.event(row.pk, f"event:{event_id}")
            if not isinstance(stored, ClinicalEvent) or stored.type not in CLINICAL_EVENT_TYPES:
                raise NotFound(f"no clinical event {event_id} for this patient")
            if stored.voided:
                raise Conflict(f"event {event_id} is already void ({stored.voided})")
            if care_team and not (clinic or by == stored.by or row.in_care_team(by)):
                raise NotInCareTeam(f"only the event's author ({stored.by}), the patient's care team or the clinic may void it")
            voided = replace(stored, voided=f"{by}: {reason}"[:2000])
            applied = apply_event(repo, self.policy(), key, voided, cause={"source": "void", "event": stored.type, "by": by}, now=now, row=row)
            repo.audit(now, by, f"event.void.{stored.type}", row.pk, {"event_id": event_id, "reason": reason[:200]})
            view = self._view(repo, key)
            view["alerts_raised"] = applied.alerts
            return view

        view = await self.store.write(job, locks=(key,))
        self.on_alerts()
        return view

    async def reassign(self, key: PatientKey, prescriber_id: str, pharmacy_id: str, actor: str = "api", designees: tuple[str, ...] | None = None) -> dict[str, Any]:
        """A patient's prescriber, designees or pharmacy change (a transfer): a clinic action,
        audited, rules untouched. ``designees`` None: unchanged."""
        prescriber_id, pharmacy_id = prescriber_id.strip(), pharmacy_id.strip()
        if len(prescriber_id) > 200 or len(pharmacy_id) > 200:
            raise InvalidInput("prescriber_id and pharmacy_id are at most 200 characters")
        now = self.clock()

        def job(repo: Repositories) -> dict[str, Any]:
            row = _enrolled(repo, key)
            team = row.designees if designees is None else designees
            repo.set_assignment(row.pk, prescriber_id, pharmacy_id, team)
            repo.audit(now, actor, "reassign", row.pk, {"prescriber_id": [row.prescriber_id, prescriber_id], "pharmacy_id": [row.pharmacy_id, pharmacy_id], "designees": [list(row.designees), list(team)]})
            return self._view(repo, key)

        return await self.store.write(job, locks=(key,))

    async def unenroll(self, key: PatientKey, reason: str, actor: str = "api") -> dict[str, Any]:
        """Take a patient off the programme (rules: only when nothing is left to monitor)."""
        reason = reason.strip()
        if not reason or len(reason) > 2000:
            raise InvalidInput("un-enrolling needs a reason (at most 2000 characters)")
        now = self.clock()
        event = ClinicalEvent(key=f"event:{uuid.uuid4().hex}", type="unenroll", on=self.today(now), by=actor, rationale=reason)

        def job(repo: Repositories) -> dict[str, Any]:
            row = _enrolled(repo, key)
            apply_event(repo, self.policy(), key, event, cause={"source": actor, "event": "unenroll", "by": actor}, now=now, row=row, strict=True)
            repo.audit(now, actor, "unenroll", row.pk, {"reason": reason[:200]})
            return self._view(repo, key)

        try:
            view = await self.store.write(job, locks=(key,))
        except EventNotAllowed as exc:
            raise Conflict(str(exc)) from None
        self.on_alerts()
        return view

    # ------------------------------------------------------------ reads

    @staticmethod
    def _with_hint(repo: Repositories, key: PatientKey) -> tuple[PatientRow | None, list[str]]:
        row = repo.patient(key, create=False, lock=False)
        if row is not None and row.enrolled:
            return row, []
        return row, [a for a in repo.enrolled_authorities(key.id) if a != key.authority]

    def _view(self, repo: Repositories, key: PatientKey) -> dict[str, Any]:
        row = repo.patient(key, create=False, lock=False)
        if row is None:
            raise NotFound(f"patient {key.id} is not known" + _authority_hint(key, [a for a in repo.enrolled_authorities(key.id) if a != key.authority]))
        s = row.state
        latest = s.latest
        return {
            "patient": {"id": key.id, "authority": key.authority},
            "enrolled": s.enrolled,
            "population": s.population.value,
            "baseline_anc": float(s.baseline_anc) if s.baseline_anc is not None else None,
            "therapy_start": s.therapy_start.isoformat() if s.therapy_start else None,
            "phase": s.phase.value,
            "category": latest.category.value if latest else None,
            "action": s.action,
            "treatment_status": s.treatment.value,
            "monitoring": {"frequency": s.frequency.value, "routine_interval": s.interval.value, "next_due": s.next_due.isoformat() if s.next_due else None},
            "rechallenge_restricted": s.rechallenge_restricted,
            "pending_confirm_until": s.pending_confirm_until.isoformat() if s.pending_confirm_until else None,
            "stepdown_suggested": s.stepdown_offered.value if s.stepdown_offered and s.stepdown_offered is not s.interval else None,
            "prescriber_id": row.prescriber_id,
            "designees": list(row.designees),
            "pharmacy_id": row.pharmacy_id,
            "state_version": row.version,
            "latest_anc": {"per_ul": float(latest.value), "drawn_on": latest.on.isoformat(), "category": latest.category.value} if latest else None,
            "history": [
                {"per_ul": float(r.anc_per_ul), "status": r.status, "observed_at": r.observed_at, "code": r.code, "derived": bool(r.derived), "censored": r.censored}
                for r in repo.recent_observations(row.pk)
            ],
            "recent_alerts": [{"alert_id": a.alert_id, "kind": a.kind, "created_at": a.created_at, "published": a.published_at is not None, "withdrawn": bool(a.withdrawn)} for a in repo.alerts_for(row.pk, 20)],
        }

    async def status(self, key: PatientKey, *, pharmacy: str = "") -> dict[str, Any]:
        """``pharmacy``: the caller sees only that pharmacy's patients (a scoped pharmacy token)."""
        view = await self.store.read(lambda repo: self._view(repo, key))
        if pharmacy and view["pharmacy_id"] != pharmacy:
            raise NotFound(f"patient {key.id} is not known to pharmacy {pharmacy}")
        return view

    async def dispense_check(self, key: PatientKey, on: date | None, *, pharmacy: str = "") -> dict[str, Any]:
        """Fail safe: any doubt (unknown patient, store error) is 'not authorized' with the reason.
        ``pharmacy``: a scoped pharmacy asks only about its own patients (else NotFound)."""
        on = on or self.today()
        policy = self.policy()
        try:
            row, elsewhere = await self.store.read(lambda repo: self._with_hint(repo, key))
        except Exception as exc:  # noqa: BLE001 - an unreachable store must never mean "yes"
            log.error("dispense_check_store_failed", error=type(exc).__name__)
            return {"authorized": False, "code": "STORE_UNAVAILABLE", "reason": "Do not dispense: patient status could not be read", "latest_anc": None, "max_days_supply": 0, "on": on.isoformat()}
        if pharmacy and (row is None or row.pharmacy_id != pharmacy):
            raise NotFound(f"patient {key.id} is not known to pharmacy {pharmacy}")
        d = dispense.check(policy, row.state if row else None, on)
        return {
            "authorized": d.authorized,
            "code": d.code,
            "reason": d.reason + _authority_hint(key, elsewhere),
            "warning": d.warning or None,
            "latest_anc": {"per_ul": float(d.latest.value), "drawn_on": d.latest.on.isoformat(), "category": d.latest.category.value} if d.latest else None,
            "window_days": d.window_days,
            "max_days_supply": d.max_days_supply,
            "on": on.isoformat(),
            "rules_profile": policy.label,
            "dispense_profile": policy.dispense_profile,
        }

    # ------------------------------------------------------------ overdue sweep

    async def sweep_overdue(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """One lab.overdue per patient per missed due date, however often and wherever it runs.
        ``now`` (a backdated or test sweep) sets the day swept, which the alerts carry as
        ``effective_on``; their ``created_at`` is always the wall clock (the outbox age and
        /readyz measure it)."""
        wall = self.clock()
        today = self.today(now or wall)  # the clinical day swept; every stamp is the wall clock
        if today > self.today(wall) + timedelta(days=1) or today.year < 1970:
            # a sweep "as of" 9999 would raise every overdue alert up to then, today
            raise InvalidInput(f"now {today} is not a day to sweep: at most tomorrow ({self.today(wall) + timedelta(days=1)}), site time")
        due = await self.store.read(lambda repo: repo.due_patients(today))
        raised: list[dict[str, Any]] = []
        for key in due:
            def job(repo: Repositories, k: PatientKey = key) -> list[tuple[str, str]]:
                return tick(repo, self.policy(), k, wall, today)

            ids = await self.store.write(job, locks=(key,))
            raised += [{"alert_id": i, "kind": kind, "patient": {"id": key.id, "authority": key.authority}} for i, kind in ids]
        if raised:
            self.on_alerts()
        log.info("overdue_sweep_done", checked=len(due), alerts=len(raised), today=today.isoformat())
        return raised


def _check_date(on: date, row: PatientRow, baseline_window_days: int, today: date) -> None:
    """A clinical event happens between therapy start (less the baseline window) and tomorrow
    in the site's time zone: a mistyped year (9999, 2030) would hold or release a patient today
    for a day that has not come."""
    earliest = (row.state.therapy_start or today) - timedelta(days=baseline_window_days)
    latest = today + timedelta(days=1)
    if on > latest:
        raise InvalidInput(f"on {on} is in the future: an event is dated at most {latest} (today plus one day, site time)")
    if on < earliest:
        raise InvalidInput(f"on {on} is before {earliest} (therapy start {row.state.therapy_start} less the {baseline_window_days}-day baseline window)")


def _break_glass(row: PatientRow, cmd: RecordEvent) -> str:
    """'' when ``cmd.by`` is in the patient's care team; the reason when they broke glass."""
    if row.in_care_team(cmd.by):
        return ""
    if not cmd.break_glass:
        team = ", ".join([row.prescriber_id, *row.designees]) if row.prescriber_id or row.designees else "no prescriber assigned"
        raise NotInCareTeam(f"{cmd.type} for this patient is for its care team ({team}); {cmd.by} is not in it: break glass with a reason to act anyway")
    return cmd.break_glass_reason


def _raise_break_glass(repo: Repositories, policy: RulesPolicy, row: PatientRow, applied: Any, event: ClinicalEvent, now: datetime) -> str:
    """The clinic hears of every decision made outside the care team, in the same transaction."""
    reason = f"{event.by} recorded {event.type} on {event.on} outside the patient's care team (break glass)"
    alert = Alert(AlertKind.BREAK_GLASS, f"glass:{event.key}", event.on, Severity.HIGH, reason, (("by", event.by), ("event", event.type), ("event_id", event.key.removeprefix("event:")), ("prescriber_id", row.prescriber_id)))
    entry = outbox_entry(row.key, row.pk, alert, applied.state, applied.version, {"source": "break_glass", "by": event.by}, policy, now)
    repo.add_alerts([entry])
    return entry.alert_id
