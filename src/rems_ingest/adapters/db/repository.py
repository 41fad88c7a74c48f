"""Queries over one transaction's connection; the service never writes SQL itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Sequence

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from rems_ingest.adapters.db import codec
from rems_ingest.adapters.db.schema import audit, inbound_message, observation, outbox, patient, patient_event
from rems_ingest.core.model import Alert, Event, PatientKey, PatientState


@dataclass
class PatientRow:
    pk: int
    key: PatientKey
    enrolled: bool
    state: PatientState
    version: int
    last_sort_key: str
    prescriber_id: str
    pharmacy_id: str


@dataclass
class OutboxRow:
    id: int
    alert_id: str
    routing_key: str
    payload: str
    attempts: int


_STATEMENTS: dict[tuple[str, bool], Any] = {}


def _hot(name: str, pg: bool) -> Any:
    """Hot-path statements built once per dialect; values travel as bind parameters, so
    SQLAlchemy neither re-coerces values nor recomputes cache keys per message."""
    key = (name, pg)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        ins = pg_insert if pg else sqlite_insert
        if name == "find_message":
            stmt = select(inbound_message.c.ack_code, inbound_message.c.ack_detail).where(inbound_message.c.dedupe_key == bindparam("k"))
        elif name == "insert_message":
            stmt = insert(inbound_message).returning(inbound_message.c.id)
        elif name in ("patient", "patient_lock"):
            stmt = select(patient).where(patient.c.patient_id == bindparam("pid"), patient.c.authority == bindparam("auth"))
            if name == "patient_lock" and pg:
                stmt = stmt.with_for_update()  # per-patient serialization across daemons
        elif name == "new_patient":
            stmt = ins(patient).on_conflict_do_nothing(index_elements=["patient_id", "authority"])
        elif name == "add_event":
            stmt = ins(patient_event).on_conflict_do_nothing(index_elements=["patient_pk", "event_key"])
        elif name == "save_patient":
            stmt = (
                update(patient)
                .where(patient.c.id == bindparam("pk"))
                .values(state=bindparam("state"), version=bindparam("version"), last_sort_key=bindparam("lsk"), enrolled=bindparam("enrolled"), next_due=bindparam("due"), updated_at=bindparam("at"))
            )
        elif name == "add_alerts":
            stmt = ins(outbox).on_conflict_do_nothing(index_elements=["alert_id"])
        else:  # pragma: no cover
            raise KeyError(name)
        _STATEMENTS[key] = stmt
    return stmt


class Repository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    # ------------------------------------------------------------ messages

    def find_message(self, dedupe_key: str) -> Any:
        return self.conn.execute(_hot("find_message", self.pg), {"k": dedupe_key}).first()

    def insert_message(self, **values: Any) -> int:
        return int(self.conn.execute(_hot("insert_message", self.pg), values).scalar_one())

    def insert_observations(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(observation), rows)

    # ------------------------------------------------------------ patients

    def patient(self, key: PatientKey, *, create: bool, lock: bool, now: str = "") -> PatientRow | None:
        """The patient's row, locked for update (per-patient serialization on PostgreSQL)."""
        q = _hot("patient_lock" if lock else "patient", self.pg)
        params = {"pid": key.id, "auth": key.authority}
        row = self.conn.execute(q, params).first()
        if row is None and create:
            self.conn.execute(
                _hot("new_patient", self.pg),
                dict(patient_id=key.id, authority=key.authority, enrolled=False, state=codec.dump_state(PatientState()), version=0, last_sort_key="", updated_at=now, prescriber_id="", pharmacy_id=""),
            )
            row = self.conn.execute(q, params).first()
        if row is None:
            return None
        return PatientRow(row.id, key, bool(row.enrolled), codec.load_state(row.state), row.version, row.last_sort_key, row.prescriber_id, row.pharmacy_id)

    def save_patient(self, pk: int, state: PatientState, version: int, last_sort_key: str, now: str, **extra: Any) -> None:
        if not extra:
            self.conn.execute(
                _hot("save_patient", self.pg),
                dict(pk=pk, state=codec.dump_state(state), version=version, lsk=last_sort_key, enrolled=state.enrolled, due=state.next_due.isoformat() if state.next_due else None, at=now),
            )
            return
        self.conn.execute(
            update(patient)
            .where(patient.c.id == pk)
            .values(
                state=codec.dump_state(state),
                version=version,
                last_sort_key=last_sort_key,
                enrolled=state.enrolled,
                next_due=state.next_due.isoformat() if state.next_due else None,
                updated_at=now,
                **extra,
            )
        )

    def event(self, pk: int, key: str) -> Event | None:
        body = self.conn.execute(select(patient_event.c.body).where(patient_event.c.patient_pk == pk, patient_event.c.event_key == key)).scalar()
        return codec.load_event(body) if body else None

    def events(self, pk: int) -> list[Event]:
        rows = self.conn.execute(select(patient_event.c.body).where(patient_event.c.patient_pk == pk).order_by(patient_event.c.id)).scalars()
        return [codec.load_event(b) for b in rows]

    def add_event(self, pk: int, event: Event, now: str) -> bool:
        """Insert a new event; False if its key is already stored (then take the slow path)."""
        values = dict(patient_pk=pk, event_key=event.key, body=codec.dump_event(event), recorded_at=now)
        return bool(self.conn.execute(_hot("add_event", self.pg), values).rowcount)

    def put_event(self, pk: int, event: Event, now: str) -> None:
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.event_key == event.key))
        self.conn.execute(insert(patient_event).values(patient_pk=pk, event_key=event.key, body=codec.dump_event(event), recorded_at=now))

    def delete_event(self, pk: int, key: str) -> None:
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.event_key == key))

    def prune_events(self, pk: int, keep: int) -> None:
        """Keep only the ``keep`` most recently recorded events of a patient."""
        newest = select(patient_event.c.id).where(patient_event.c.patient_pk == pk).order_by(patient_event.c.id.desc()).limit(keep)
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.id.not_in(newest.scalar_subquery())))

    def due_patients(self, before: date, limit: int = 10_000) -> list[PatientKey]:
        rows = self.conn.execute(
            select(patient.c.patient_id, patient.c.authority)
            .where(patient.c.enrolled.is_(True), patient.c.next_due.is_not(None), patient.c.next_due < before.isoformat())
            .order_by(patient.c.id)
            .limit(limit)
        )
        return [PatientKey(r.patient_id, r.authority) for r in rows]

    def recent_observations(self, pk: int, limit: int = 20) -> list[Any]:
        return list(
            self.conn.execute(
                select(observation.c.anc_per_ul, observation.c.status, observation.c.observed_at, observation.c.code, observation.c.derived, observation.c.censored)
                .where(observation.c.patient_pk == pk)
                .order_by(observation.c.observed_at.desc(), observation.c.id.desc())
                .limit(limit)
            )
        )

    # ------------------------------------------------------------ outbox

    def active_alerts(self, pk: int) -> list[tuple[str, Alert]]:
        rows = self.conn.execute(
            select(outbox.c.alert_id, outbox.c.alert).where(
                outbox.c.patient_pk == pk, outbox.c.withdrawn.is_(False), outbox.c.kind.not_in(["alert.superseded", "data.quality"])
            )
        )
        return [(r.alert_id, codec.load_alert(r.alert)) for r in rows]

    def add_alerts(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:  # one by one: executemany with ON CONFLICT is not portable
            self.conn.execute(_hot("add_alerts", self.pg), row)

    def withdraw(self, alert_ids: Sequence[str]) -> None:
        if alert_ids:
            self.conn.execute(update(outbox).where(outbox.c.alert_id.in_(list(alert_ids))).values(withdrawn=True))

    def claim(self, limit: int, now: str, lease_until: str) -> list[OutboxRow]:
        """Claim unpublished rows under a lease; SKIP LOCKED lets several relays share PostgreSQL."""
        q = (
            select(outbox.c.id)
            .where(
                outbox.c.published_at.is_(None),
                outbox.c.next_attempt_at <= now,
                or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        ids = list(self.conn.execute(q).scalars())
        if not ids:
            return []
        self.conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(claimed_until=lease_until))
        rows = self.conn.execute(
            select(outbox.c.id, outbox.c.alert_id, outbox.c.routing_key, outbox.c.payload, outbox.c.attempts).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)
        )
        return [OutboxRow(r.id, r.alert_id, r.routing_key, r.payload, r.attempts) for r in rows]

    def mark_published(self, ids: Sequence[int], now: str) -> None:
        if ids:
            self.conn.execute(update(outbox).where(outbox.c.id.in_(list(ids))).values(published_at=now, claimed_until=None))

    def mark_failed(self, ids: Sequence[int], error: str, next_attempt_at: str) -> None:
        if ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(ids)))
                .values(attempts=outbox.c.attempts + 1, last_error=error[:200], next_attempt_at=next_attempt_at, claimed_until=None)
            )

    def outbox_stats(self) -> tuple[int, str | None]:
        row = self.conn.execute(select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))).first()
        return (int(row[0]), row[1]) if row else (0, None)

    def alerts_for(self, pk: int, limit: int = 50) -> list[Any]:
        return list(
            self.conn.execute(
                select(outbox.c.alert_id, outbox.c.kind, outbox.c.created_at, outbox.c.published_at, outbox.c.withdrawn, outbox.c.payload)
                .where(outbox.c.patient_pk == pk)
                .order_by(outbox.c.id.desc())
                .limit(limit)
            )
        )

    # ------------------------------------------------------------ audit

    def audit(self, at: datetime, actor: str, action: str, patient_pk: int | None, detail: dict[str, Any]) -> None:
        self.conn.execute(insert(audit).values(at=at.isoformat(), actor=actor, action=action, patient_pk=patient_pk, detail=json.dumps(detail, default=str)))


