"""Reads the web console needs (worklists, the patient page, the message browser): mixed into
the Repository so pages go through the same unit of work as the JSON API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.engine import Connection

from rems_ingest.adapters.db import codec
from rems_ingest.adapters.db.schema import inbound_message, observation, outbox, patient
from rems_ingest.core.model import PatientKey
from rems_ingest.service.ports import PatientRow, PatientSummary, join_designees


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


class ConsoleQueries:
    conn: Connection

    def enrolled_summaries(self, prescriber: str = "", pharmacy: str = "", limit: int = 100_000, due_by: date | None = None) -> list[PatientSummary]:
        """The worklist fields of enrolled patients, parsed straight from the stored JSON (about
        10 µs each, where decoding the whole state costs 150). ``due_by``: only patients due by
        then, on hold, awaiting a decision or awaiting a confirmation repeat — found in SQL, so a
        page reads the patients on some list, not all of them."""
        q = select(patient.c.id, patient.c.patient_id, patient.c.authority, patient.c.state, patient.c.prescriber_id, patient.c.pharmacy_id).where(patient.c.enrolled.is_(True))
        if prescriber:
            q = q.where(patient.c.prescriber_id == prescriber)
        if pharmacy:
            q = q.where(patient.c.pharmacy_id == pharmacy)
        if due_by is not None:
            q = q.where(
                or_(
                    patient.c.next_due <= due_by.isoformat(),
                    patient.c.state.like('%"dispense_hold":true%'),
                    patient.c.state.like('%"phase":"severe_recovered_hold"%'),
                    patient.c.state.not_like('%"pending_confirm_until":null%'),
                )
            )
        out = []
        for pk, pid, auth, state, prescriber_id, pharmacy_id in self.conn.execute(q.order_by(patient.c.id).limit(limit)):
            s = orjson.loads(state)
            latest = s.get("latest") or {}
            out.append(PatientSummary(pk, PatientKey(pid, auth), prescriber_id, pharmacy_id, s.get("population", ""), s.get("phase", ""), latest.get("category") or "", _day(s.get("next_due")), bool(s.get("dispense_hold")), _day(s.get("pending_confirm_until"))))
        return out

    def patients_by_pk(self, pks: Sequence[int]) -> list[PatientRow]:
        if not pks:
            return []
        q = select(patient.c.id, patient.c.patient_id, patient.c.authority, patient.c.enrolled, patient.c.state, patient.c.version, patient.c.last_sort_key, patient.c.prescriber_id, patient.c.pharmacy_id).where(patient.c.id.in_(list(pks)))
        return [PatientRow(r.id, PatientKey(r.patient_id, r.authority), bool(r.enrolled), codec.load_state(r.state), r.version, r.last_sort_key, r.prescriber_id, r.pharmacy_id) for r in self.conn.execute(q)]

    def unenrolled_with_results(self, since: str, limit: int = 200) -> list[dict[str, Any]]:
        """Results that reached no enrolled patient (a typo'd MRN, a patient not yet enrolled)."""
        q = (
            select(patient.c.patient_id, patient.c.authority, func.count(observation.c.id).label("results"), func.max(observation.c.observed_at).label("last"))
            .join(observation, observation.c.patient_pk == patient.c.id)
            .where(patient.c.enrolled.is_(False), patient.c.updated_at >= since)
            .group_by(patient.c.patient_id, patient.c.authority)
            .order_by(func.max(observation.c.observed_at).desc())
            .limit(limit)
        )
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def recent_alerts_of_kind(self, kind: str, since: str, limit: int = 200) -> list[dict[str, Any]]:
        q = select(outbox.c.alert_id, outbox.c.created_at, outbox.c.payload).where(and_(outbox.c.kind == kind, outbox.c.created_at >= since)).order_by(outbox.c.id.desc()).limit(limit)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def observation_points(self, pk: int, limit: int = 100_000) -> list[dict[str, Any]]:
        """Every result of a patient, oldest first, with the message it came in (for the chart and table)."""
        q = (
            select(observation.c.anc_per_ul, observation.c.status, observation.c.observed_at, observation.c.code, observation.c.derived, observation.c.censored, inbound_message.c.control_id, inbound_message.c.sending_facility, inbound_message.c.id.label("message_id"))
            .join(inbound_message, inbound_message.c.id == observation.c.message_id)
            .where(observation.c.patient_pk == pk)
            .order_by(observation.c.observed_at, observation.c.id)
            .limit(limit)
        )
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def messages(self, *, status: str = "", control_id: str = "", sender: str = "", ack: str = "", since: str = "", limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        cols = (inbound_message.c.id, inbound_message.c.received_at, inbound_message.c.sending_app, inbound_message.c.sending_facility, inbound_message.c.control_id, inbound_message.c.status, inbound_message.c.ack_code, inbound_message.c.ack_detail)
        q = select(*cols)
        if status:
            q = q.where(inbound_message.c.status == status)
        if control_id:
            q = q.where(inbound_message.c.control_id == control_id)
        if sender:
            q = q.where(inbound_message.c.sending_facility == sender)
        if ack:
            q = q.where(inbound_message.c.ack_code == ack)
        if since:
            q = q.where(inbound_message.c.received_at >= since)
        return [dict(r._mapping) for r in self.conn.execute(q.order_by(inbound_message.c.id.desc()).limit(limit).offset(offset))]

    def set_assignment(self, pk: int, prescriber_id: str, pharmacy_id: str, designees: tuple[str, ...] = ()) -> None:
        self.conn.execute(update(patient).where(patient.c.id == pk).values(prescriber_id=prescriber_id, pharmacy_id=pharmacy_id, designees=join_designees(designees)))

    def message_detail(self, message_id: int) -> dict[str, Any] | None:
        """One stored message with its raw HL7 (PHI: shown to the integration role only, audited)."""
        cols = (inbound_message.c.id, inbound_message.c.received_at, inbound_message.c.sending_app, inbound_message.c.sending_facility, inbound_message.c.control_id, inbound_message.c.status, inbound_message.c.ack_code, inbound_message.c.ack_detail, inbound_message.c.charset, inbound_message.c.raw)
        row = self.conn.execute(select(*cols).where(inbound_message.c.id == message_id)).fetchone()
        if row is None:
            return None
        out = dict(row._mapping)
        stored = select(patient.c.patient_id, patient.c.authority, observation.c.anc_per_ul, observation.c.status, observation.c.observed_at, observation.c.code).join(patient, patient.c.id == observation.c.patient_pk).where(observation.c.message_id == message_id)
        out["results"] = [dict(r._mapping) for r in self.conn.execute(stored.order_by(observation.c.id))]
        out["observations"] = len(out["results"])
        return out

    def feed_hours(self, since: str) -> list[dict[str, Any]]:
        """Messages per sender per hour since ``since`` (ISO), with how many were answered AE/AR
        and how many carried warnings: aggregated in SQL, whatever the volume."""
        m = inbound_message
        hour = func.substr(m.c.received_at, 1, 13)
        q = (
            select(
                m.c.sending_facility.label("facility"),
                m.c.sending_app.label("app"),
                hour.label("hour"),
                func.count().label("n"),
                func.sum(case((m.c.ack_code.in_(["AE", "AR"]), 1), else_=0)).label("rejected"),
                func.sum(case((m.c.ack_detail != "[]", 1), else_=0)).label("warned"),
                func.max(m.c.received_at).label("last"),
                func.max(m.c.feed).label("feed"),
            )
            .where(m.c.received_at >= since)
            .group_by(m.c.sending_facility, m.c.sending_app, hour)
        )
        return [dict(r._mapping) for r in self.conn.execute(q)]
