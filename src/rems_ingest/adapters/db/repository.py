"""Queries over one transaction's connection; the service never writes SQL itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import delete, func, insert, or_, select, update
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


class Repository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    def _insert_ignore(self, table: Any, values: dict[str, Any] | list[dict[str, Any]], key: str) -> Any:
        ins = pg_insert(table) if self.pg else sqlite_insert(table)
        return self.conn.execute(ins.values(values).on_conflict_do_nothing(index_elements=[key]))

    # ------------------------------------------------------------ messages

    def find_message(self, dedupe_key: str) -> Any:
        return self.conn.execute(select(inbound_message).where(inbound_message.c.dedupe_key == dedupe_key)).first()

    def insert_message(self, **values: Any) -> int:
        return int(self.conn.execute(insert(inbound_message).values(**values).returning(inbound_message.c.id)).scalar_one())

    def finish_message(self, msg_id: int, status: str, ack_code: str, ack_detail: list[dict[str, Any]]) -> None:
        self.conn.execute(
            update(inbound_message).where(inbound_message.c.id == msg_id).values(status=status, ack_code=ack_code, ack_detail=json.dumps(ack_detail))
        )

    def insert_observation(self, **values: Any) -> None:
        self.conn.execute(insert(observation).values(**values))

    # ------------------------------------------------------------ patients

    def patient(self, key: PatientKey, *, create: bool, lock: bool, now: str = "") -> PatientRow | None:
        """The patient's row, locked for update (per-patient serialization on PostgreSQL)."""
        q = select(patient).where(patient.c.patient_id == key.id, patient.c.authority == key.authority)
        if lock and self.pg:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        if row is None and create:
            ins = (pg_insert(patient) if self.pg else sqlite_insert(patient)).values(
                patient_id=key.id, authority=key.authority, enrolled=False, state=codec.dump_state(PatientState()), version=0, last_sort_key="", updated_at=now, prescriber_id="", pharmacy_id=""
            )
            self.conn.execute(ins.on_conflict_do_nothing(constraint="uq_patient_key") if self.pg else ins.on_conflict_do_nothing(index_elements=["patient_id", "authority"]))
            row = self.conn.execute(q).first()
        if row is None:
            return None
        return PatientRow(row.id, key, bool(row.enrolled), codec.load_state(row.state), row.version, row.last_sort_key, row.prescriber_id, row.pharmacy_id)

    def save_patient(self, pk: int, state: PatientState, version: int, last_sort_key: str, now: str, **extra: Any) -> None:
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

    def put_event(self, pk: int, event: Event, now: str) -> None:
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.event_key == event.key))
        self.conn.execute(insert(patient_event).values(patient_pk=pk, event_key=event.key, body=codec.dump_event(event), recorded_at=now))

    def delete_event(self, pk: int, key: str) -> None:
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.event_key == key))

    def prune_events(self, pk: int, keep_keys: Iterable[str]) -> None:
        keep = list(keep_keys)
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.event_key.not_in(keep)))

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

    def add_alerts(self, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        return int(self._insert_ignore(outbox, list(rows), "alert_id").rowcount or 0)

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


