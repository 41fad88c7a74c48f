"""A patient's timeline in the store (issue #18): the snapshot just before a point, the events
and alerts from it on (index ranges on ``sort_key``), and the bookkeeping a re-fold writes.
Mixed into the Repository: the same connection and transaction as every other write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from rems_ingest.adapters.db import codec
from rems_ingest.adapters.db.schema import outbox, patient, patient_event
from rems_ingest.core.model import Alert, Event, PatientKey, PatientState

TIMELINE_SQL = {
    "snapshot_before": "SELECT sort_key, state_after FROM patient_event WHERE patient_pk = :pk AND sort_key < :at ORDER BY sort_key DESC LIMIT 1",
    "events_from": "SELECT body, state_after FROM patient_event WHERE patient_pk = :pk AND sort_key >= :at ORDER BY sort_key",
    "event_body": "SELECT body FROM patient_event WHERE patient_pk = :pk AND event_key = :key",
    "replace_event": "UPDATE patient_event SET body = :body, recorded_at = :recorded_at, sort_key = :sort_key, state_after = :state_after WHERE patient_pk = :pk AND event_key = :key",
    "set_snapshot": "UPDATE patient_event SET sort_key = :sort_key, state_after = :state_after WHERE patient_pk = :pk AND event_key = :key",
    "alerts_from": (
        "SELECT alert_id, alert, sort_key FROM outbox WHERE patient_pk = :pk AND sort_key >= :at AND withdrawn = :no "
        "AND kind NOT IN ('alert.superseded', 'data.quality')"
    ),
    # SQLite reads the id list as JSON; PostgreSQL takes an array (TIMELINE_PG_SQL)
    "alert_states": "SELECT alert_id, withdrawn FROM outbox WHERE alert_id IN (SELECT value FROM json_each(:ids))",
    "set_alert_sort_key": "UPDATE outbox SET sort_key = :sort_key WHERE alert_id = :alert_id",
}


TIMELINE_PG_SQL = {"alert_states": "SELECT alert_id, withdrawn FROM outbox WHERE alert_id = ANY(%(ids)s)"}


class TimelineQueries:
    conn: Connection
    pg: bool

    # the Repository's own (hot statements on the driver cursor; one JSON dump per state)
    def _raw(self, name: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _raw_count(self, name: str, params: dict[str, Any]) -> int:
        raise NotImplementedError

    def _dump(self, state: PatientState) -> str:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def event(self, pk: int, key: str) -> Event | None:
        row = self._raw("event_body", {"pk": pk, "key": key}).fetchone()
        return codec.load_event(row[0]) if row else None

    def events(self, pk: int) -> list[Event]:
        rows = self.conn.execute(select(patient_event.c.body).where(patient_event.c.patient_pk == pk).order_by(patient_event.c.id)).scalars()
        return [codec.load_event(b) for b in rows]

    def add_event(self, pk: int, event: Event, now: str, sort_key: str | None = None, state_after: PatientState | None = None) -> bool:
        """Insert a new event; False if its key is already stored (then take the slow path)."""
        snapshot = self._dump(state_after) if state_after is not None else None
        values = dict(patient_pk=pk, event_key=event.key, body=codec.dump_event(event), recorded_at=now, sort_key=sort_key, state_after=snapshot)
        return bool(self._raw_count("add_event", values))

    def put_event(self, pk: int, event: Event, now: str, sort_key: str | None = None, state_after: PatientState | None = None) -> None:
        """Store ``event`` in place of the one with its key (a correction), or as a new one."""
        values = dict(pk=pk, key=event.key, body=codec.dump_event(event), recorded_at=now, sort_key=sort_key, state_after=self._dump(state_after) if state_after is not None else None)
        if not self._raw_count("replace_event", values):
            self._raw("add_event", dict(patient_pk=pk, event_key=event.key, body=values["body"], recorded_at=now, sort_key=sort_key, state_after=values["state_after"]))

    def snapshot_before(self, pk: int, at: str) -> tuple[str, PatientState | None] | None:
        """(sort key, folded state after it) of the patient's last event before ``at``; None
        when nothing comes before. A NULL state means that snapshot was never written."""
        row = self._raw("snapshot_before", {"pk": pk, "at": at}).fetchone()
        return (row[0], codec.load_state(row[1]) if row[1] else None) if row else None

    def events_from(self, pk: int, at: str) -> list[tuple[Event, PatientState | None]]:
        """The events at or after ``at`` in timeline order, each with its stored snapshot."""
        rows = self._raw("events_from", {"pk": pk, "at": at}).fetchall()
        return [(codec.load_event(body), codec.load_state(state) if state else None) for body, state in rows]

    def set_snapshots(self, pk: int, rows: Sequence[tuple[str, str, PatientState]]) -> None:
        """(event key, sort key, state after) for events already stored."""
        for key, sort_key, state in rows:
            self._raw("set_snapshot", {"pk": pk, "key": key, "sort_key": sort_key, "state_after": codec.dump_state(state)})

    def set_snapshot_profile(self, pk: int, profile: str | None) -> None:
        self.conn.execute(update(patient).where(patient.c.id == pk).values(snapshot_profile=profile))

    def patients_to_snapshot(self, profile: str, limit: int) -> list[PatientKey]:
        rows = self.conn.execute(
            select(patient.c.patient_id, patient.c.authority)
            .where(or_(patient.c.snapshot_profile.is_(None), patient.c.snapshot_profile != profile))
            .order_by(patient.c.id)
            .limit(limit)
        )
        return [PatientKey(r.patient_id, r.authority) for r in rows]

    def delete_event(self, pk: int, key: str) -> None:
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.event_key == key))

    def prune_events(self, pk: int, keep: int) -> None:
        """Keep only the ``keep`` most recently recorded events of a patient."""
        newest = select(patient_event.c.id).where(patient_event.c.patient_pk == pk).order_by(patient_event.c.id.desc()).limit(keep)
        self.conn.execute(delete(patient_event).where(patient_event.c.patient_pk == pk, patient_event.c.id.not_in(newest.scalar_subquery())))

    def active_alerts(self, pk: int, since: str | None = None) -> list[tuple[str, Alert, str | None]]:
        """(id, alert, sort key) of the patient's alerts a re-fold may withdraw: all of them, or
        (``since``) only those raised at or after that point of the timeline (an index range)."""
        if since is not None:
            self._flush()
            rows = self._raw("alerts_from", {"pk": pk, "at": since, "no": False}).fetchall()
            return [(aid, codec.load_alert(body), sk) for aid, body, sk in rows]
        q = select(outbox.c.alert_id, outbox.c.alert, outbox.c.sort_key).where(
            outbox.c.patient_pk == pk, outbox.c.withdrawn.is_(False), outbox.c.kind.not_in(["alert.superseded", "data.quality"])
        )
        return [(r.alert_id, codec.load_alert(r.alert), r.sort_key) for r in self.conn.execute(q)]

    def alert_states(self, alert_ids: Sequence[str]) -> dict[str, bool]:
        """Which of these ids the outbox holds, each with whether it was withdrawn."""
        if not alert_ids:
            return {}
        self._flush()  # alerts this transaction wrote behind must be seen
        ids: Any = list(alert_ids) if self.pg else orjson.dumps(list(alert_ids)).decode()
        return {aid: bool(gone) for aid, gone in self._raw("alert_states", {"ids": ids}).fetchall()}

    def set_alert_sort_keys(self, rows: Sequence[tuple[str, str]]) -> None:
        if not rows:  # the common re-fold moves nothing: keep the rows written behind batched
            return
        self._flush()
        for aid, sort_key in rows:
            self._raw("set_alert_sort_key", {"alert_id": aid, "sort_key": sort_key})

