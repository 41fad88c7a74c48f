"""Queries over one transaction's connection; the service never writes SQL itself."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from rems_ingest.adapters.db import codec, pipeline, write_behind
from rems_ingest.adapters.db.access import AccessRecords
from rems_ingest.adapters.db.console_queries import ConsoleQueries
from rems_ingest.adapters.db.feed_queries import FeedQueries
from rems_ingest.adapters.db.schema import audit, inbound_message, observation, outbox, patient
from rems_ingest.adapters.db.timeline import TIMELINE_PG_SQL, TIMELINE_SQL, TimelineQueries
from rems_ingest.core.model import PatientKey, PatientState
from rems_ingest.service.outbox import OutboxEntry
from rems_ingest.service.ports import OutboxRow, PatientRow, split_designees

# Hot-path SQL, written once for both dialects and run on the driver's own cursor inside the
# SQLAlchemy transaction: the profile showed SQLAlchemy's per-statement machinery costing more
# than SQLite itself (bench/run, py-spy). Everything else uses SQLAlchemy Core.
_SQL = {
    "find_message": "SELECT ack_code, ack_detail FROM inbound_message WHERE dedupe_key = :k",
    "insert_message": (
        "INSERT INTO inbound_message (dedupe_key, sending_app, sending_facility, control_id, received_at, status, ack_code, ack_detail, charset, raw, feed, origin) "
        "VALUES (:dedupe_key, :sending_app, :sending_facility, :control_id, :received_at, :status, :ack_code, :ack_detail, :charset, :raw, :feed, :origin) "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
    ),
    "set_ack_detail": "UPDATE inbound_message SET ack_detail = :detail WHERE id = :id",
    "insert_observation": (
        "INSERT INTO observation (message_id, patient_pk, result_key, anc_per_ul, status, observed_at, code, code_system, original_value, original_unit, derived, censored, resulted_at) "
        "VALUES (:message_id, :patient_pk, :result_key, :anc_per_ul, :status, :observed_at, :code, :code_system, :original_value, :original_unit, :derived, :censored, :resulted_at)"
    ),
    "patient": "SELECT id, enrolled, state, version, last_sort_key, prescriber_id, pharmacy_id, snapshot_profile, designees FROM patient WHERE patient_id = :pid AND authority = :auth",
    "new_patient": (
        "INSERT INTO patient (patient_id, authority, enrolled, prescriber_id, pharmacy_id, state, version, last_sort_key, updated_at) "
        "VALUES (:patient_id, :authority, :enrolled, :prescriber_id, :pharmacy_id, :state, :version, :last_sort_key, :updated_at) "
        "ON CONFLICT (patient_id, authority) DO NOTHING"
    ),
    "add_event": (
        "INSERT INTO patient_event (patient_pk, event_key, body, recorded_at, sort_key, state_after) "
        "VALUES (:patient_pk, :event_key, :body, :recorded_at, :sort_key, :state_after) "
        "ON CONFLICT (patient_pk, event_key) DO NOTHING"
    ),
    "save_patient": (
        "UPDATE patient SET state = :state, version = :version, last_sort_key = :lsk, enrolled = :enrolled, next_due = :due, updated_at = :at, "
        "snapshot_profile = COALESCE(:sp, snapshot_profile) WHERE id = :pk"
    ),
    "add_alert": (
        "INSERT INTO outbox (alert_id, patient_pk, kind, cause, alert, routing_key, payload, state_version, created_at, withdrawn, attempts, next_attempt_at, sort_key) "
        "VALUES (:alert_id, :patient_pk, :kind, :cause, :alert, :routing_key, :payload, :state_version, :created_at, :withdrawn, :attempts, :next_attempt_at, :sort_key) "
        "ON CONFLICT (alert_id) DO NOTHING"
    ),
    "audit": "INSERT INTO audit (at, actor, action, patient_pk, detail) VALUES (:at, :actor, :action, :patient_pk, :detail)",
}
_SQL.update(TIMELINE_SQL)
_PG_SQL = {k: re.sub(r":(\w+)", r"%(\1)s", v) for k, v in _SQL.items()}
_PG_SQL.update(TIMELINE_PG_SQL)
_PG_SQL["patient_lock"] = _PG_SQL["patient"] + " FOR UPDATE"  # per-patient serialization across daemons
_PG_SQL["lock_patients"] = (  # one statement text whatever the number of patients (prepared once)
    "SELECT p.patient_id, p.authority FROM patient p "
    "JOIN unnest(%(ids)s::text[], %(auths)s::text[]) AS k(pid, auth) ON p.patient_id = k.pid AND p.authority = k.auth "
    "ORDER BY p.patient_id, p.authority FOR UPDATE OF p"
)
_SQL["patient_lock"] = _SQL["patient"]  # SQLite: the single writer already serializes


write_behind.STATEMENTS.update(sqlite=_SQL, postgresql=_PG_SQL)



@dataclass
class _MessageRow:
    ack_code: str
    ack_detail: str


class Repository(AccessRecords, ConsoleQueries, TimelineQueries, FeedQueries):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self._sql = _PG_SQL if self.pg else _SQL
        self._cursor: Any = None
        self._defer = write_behind.is_deferring(conn.engine)
        self._dumped: tuple[PatientState, str] | None = None

    def _write_behind(self, name: str, params: dict[str, Any]) -> None:
        if self._defer:
            self.conn.info.setdefault(write_behind.DEFERRED, {}).setdefault(name, []).append(params)
        else:
            self._raw(name, params)

    def _raw(self, name: str, params: dict[str, Any]) -> Any:
        """Run a hot statement on the DBAPI cursor of this (already begun) transaction."""
        if self._cursor is None:
            self._cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if self.pg:
            pipeline.enter(self.conn)
        self._cursor.execute(self._sql[name], params)
        return self._cursor

    def _raw_count(self, name: str, params: dict[str, Any]) -> int:
        """A hot statement's row count (in pipeline mode, known only once it was answered)."""
        cursor = self._raw(name, params)
        if self.pg:
            pipeline.sync(self.conn)
        return int(cursor.rowcount)

    # ------------------------------------------------------------ messages

    def find_message(self, dedupe_key: str) -> Any:
        row = self._raw("find_message", {"k": dedupe_key}).fetchone()
        return _MessageRow(*row) if row else None

    def insert_message(self, **values: Any) -> int | None:
        """The new row's id, or None when a message with this dedupe key is already stored
        (one statement decides both: the hot path has no separate lookup)."""
        row = self._raw("insert_message", values).fetchone()
        return int(row[0]) if row else None

    def set_ack_detail(self, message_id: int, detail: str) -> None:
        self._raw("set_ack_detail", {"id": message_id, "detail": detail})

    def insert_observations(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self._write_behind("insert_observation", r)

    def messages_for_replay(self, *, ids: Sequence[int] = (), since: str | None = None, status: str | None = None, warned: bool = False, limit: int = 10_000) -> list[Any]:
        m = inbound_message
        q = select(m.c.id, m.c.control_id, m.c.status, m.c.charset, m.c.dedupe_key, m.c.raw, m.c.received_at, m.c.origin).order_by(m.c.id).limit(limit)
        if ids:
            q = q.where(m.c.id.in_(list(ids)))
        if since:
            q = q.where(m.c.received_at >= since)
        if status:
            q = q.where(m.c.status == status)
        if warned:
            q = q.where(m.c.ack_detail != "[]")
        return list(self.conn.execute(q))

    def prune_raw(self, before: str, dry_run: bool = False) -> int:
        """Blank the raw bytes (names, birth dates, free text) of messages received before
        ``before``; identifiers, observations, decisions and the dedupe key stay."""
        m = inbound_message
        where = (m.c.received_at < before) & (func.length(m.c.raw) > 0)
        if dry_run:
            return int(self.conn.execute(select(func.count()).select_from(m).where(where)).scalar_one())
        return int(self.conn.execute(update(m).where(where).values(raw=b"")).rowcount)

    def observation_count(self, message_id: int) -> int:
        return int(self.conn.execute(select(func.count()).select_from(observation).where(observation.c.message_id == message_id)).scalar_one())

    def replace_observations(self, message_id: int, rows: list[dict[str, Any]]) -> None:
        self.conn.execute(delete(observation).where(observation.c.message_id == message_id))
        self.insert_observations([{**r, "message_id": message_id} for r in rows])

    def mark_replayed(self, message_id: int, ack_detail: str, feed: str | None = None) -> None:
        values: dict[str, Any] = dict(status="REPLAYED", ack_detail=ack_detail)
        if feed:
            values["feed"] = feed
        self.conn.execute(update(inbound_message).where(inbound_message.c.id == message_id).values(**values))

    # ------------------------------------------------------------ patients

    def patient(self, key: PatientKey, *, create: bool, lock: bool, now: str = "") -> PatientRow | None:
        """The patient's row, locked for update (per-patient serialization on PostgreSQL)."""
        q = "patient_lock" if lock else "patient"
        params = {"pid": key.id, "auth": key.authority}
        row = self._raw(q, params).fetchone()
        if row is None and create:
            self._raw(
                "new_patient",
                dict(patient_id=key.id, authority=key.authority, enrolled=False, state=codec.dump_state(PatientState()), version=0, last_sort_key="", updated_at=now, prescriber_id="", pharmacy_id=""),
            )
            row = self._raw(q, params).fetchone()
        if row is None:
            return None
        pk, enrolled, state, version, last_sort_key, prescriber_id, pharmacy_id, snapshot_profile, designees = row
        return PatientRow(pk, key, bool(enrolled), codec.load_state(state), version, last_sort_key, prescriber_id, pharmacy_id, snapshot_profile, split_designees(designees))

    def enrolled_authorities(self, patient_id: str, limit: int = 5) -> list[str]:
        """The assigning authorities an enrolled patient with this id is known under (a hint
        for a request that named none, or the wrong one)."""
        q = select(patient.c.authority).where(patient.c.patient_id == patient_id, patient.c.enrolled.is_(True)).order_by(patient.c.authority).limit(limit)
        return [r[0] for r in self.conn.execute(q)]

    def lock_patients(self, keys: Sequence[PatientKey]) -> None:
        """Lock these patients' rows ahead of a transaction's work, in one order every daemon
        shares (PostgreSQL only; see Store.write): the existing rows in one statement, in the
        database's order, then any new patient is created and locked one by one."""
        found = self._raw("lock_patients", {"ids": [k.id for k in keys], "auths": [k.authority for k in keys]}).fetchall()
        existing = {PatientKey(pid, auth) for pid, auth in found}
        now = datetime.now(UTC).isoformat()  # a new row's updated_at; its first save overwrites it
        for key in keys:
            if key not in existing:
                self.patient(key, create=True, lock=True, now=now)

    def _dump(self, state: PatientState) -> str:
        """A state's JSON, once per state object: the hot path stores the same state as the
        patient's row and as the new event's snapshot."""
        if self._dumped is not None and self._dumped[0] is state:
            return self._dumped[1]
        text = codec.dump_state(state)
        self._dumped = (state, text)
        return text

    def save_patient(self, pk: int, state: PatientState, version: int, last_sort_key: str, now: str, snapshot_profile: str | None = None, **extra: Any) -> None:
        """``snapshot_profile``: set when every snapshot of the patient is now trusted (else unchanged)."""
        if not extra:
            self._raw(
                "save_patient",
                dict(pk=pk, state=self._dump(state), version=version, lsk=last_sort_key, enrolled=state.enrolled, due=state.next_due.isoformat() if state.next_due else None, at=now, sp=snapshot_profile),
            )
            return
        if snapshot_profile is not None:
            extra["snapshot_profile"] = snapshot_profile
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

    def _flush(self) -> None:
        """Send the outbox rows written behind, before a raw statement reads or updates the outbox."""
        if self._defer:
            write_behind.flush(self.conn, only="add_alert")

    def add_alerts(self, entries: Sequence[OutboxEntry]) -> None:
        for e in entries:  # write-behind keeps their order: outbox ids still follow creation
            self._write_behind(
                "add_alert",
                dict(
                    alert_id=e.alert_id,
                    patient_pk=e.patient_pk,
                    kind=e.alert.kind.value,
                    cause=e.alert.cause,
                    alert=codec.dump_alert(e.alert),
                    routing_key=e.routing_key,
                    payload=e.payload,
                    state_version=e.state_version,
                    created_at=e.created_at,
                    withdrawn=False,
                    attempts=0,
                    next_attempt_at=e.created_at,
                    sort_key=e.sort_key,
                ),
            )

    def _lock_in_id_order(self, where: Any) -> None:
        """Ingest (withdraw) and relays (mark published/failed) update overlapping outbox rows:
        taking the row locks in id order first means they queue instead of deadlocking."""
        if self.pg:
            self.conn.execute(select(outbox.c.id).where(where).order_by(outbox.c.id).with_for_update())

    def withdraw(self, alert_ids: Sequence[str]) -> None:
        if alert_ids:
            where = outbox.c.alert_id.in_(list(alert_ids))
            self._lock_in_id_order(where)
            self.conn.execute(update(outbox).where(where).values(withdrawn=True))

    def claim(self, limit: int, now: str, lease_until: str, owner: str = "") -> list[OutboxRow]:
        """Claim unpublished rows under a lease, in one statement (the relay runs it for every
        burst of alerts); SKIP LOCKED lets several relays share PostgreSQL."""
        pick = (
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
            pick = pick.with_for_update(skip_locked=True)
        rows = self.conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(pick))
            .values(claimed_until=lease_until, claimed_by=owner or None)
            .returning(outbox.c.id, outbox.c.alert_id, outbox.c.routing_key, outbox.c.payload, outbox.c.attempts)
        )
        # RETURNING has no order: publish in creation order
        return sorted((OutboxRow(r.id, r.alert_id, r.routing_key, r.payload, r.attempts) for r in rows), key=lambda r: r.id)

    def release_own(self, owner: str) -> int:
        """Release every unpublished claim held under ``owner``: called by a relay that has no
        batch in flight (just started, or recovering from a store error), so they are stale."""
        if not owner:
            return 0
        where = and_(outbox.c.claimed_by == owner, outbox.c.published_at.is_(None), outbox.c.claimed_until.is_not(None))
        self._lock_in_id_order(where)
        return int(self.conn.execute(update(outbox).where(where).values(claimed_until=None, claimed_by=None)).rowcount or 0)

    def release(self, ids: Sequence[int]) -> None:
        """Give back claims this relay holds but could not settle (its store write failed):
        they are published again at once rather than after the lease (same alert ids)."""
        if ids:
            self._lock_in_id_order(outbox.c.id.in_(list(ids)))
            self.conn.execute(update(outbox).where(outbox.c.id.in_(list(ids)), outbox.c.published_at.is_(None)).values(claimed_until=None, claimed_by=None))

    def mark_published(self, ids: Sequence[int], now: str) -> None:
        if ids:
            self._lock_in_id_order(outbox.c.id.in_(list(ids)))
            self.conn.execute(update(outbox).where(outbox.c.id.in_(list(ids))).values(published_at=now, claimed_until=None, claimed_by=None))

    def mark_failed(self, ids: Sequence[int], error: str, next_attempt_at: str) -> None:
        if ids:
            self._lock_in_id_order(outbox.c.id.in_(list(ids)))
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(ids)))
                .values(attempts=outbox.c.attempts + 1, last_error=error[:200], next_attempt_at=next_attempt_at, claimed_until=None, claimed_by=None)
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

    def audit_decision(self, at: str, patient_pk: int, detail: dict[str, Any]) -> None:
        """One row per rules decision (hot path: the driver cursor)."""
        self._write_behind("audit", {"at": at, "actor": "rules", "action": "decision", "patient_pk": patient_pk, "detail": orjson.dumps(detail, default=str).decode()})

    def audit(self, at: datetime, actor: str, action: str, patient_pk: int | None, detail: dict[str, Any]) -> None:
        self.conn.execute(insert(audit).values(at=at.isoformat(), actor=actor, action=action, patient_pk=patient_pk, detail=json.dumps(detail, default=str)))


