"""What the use cases need from storage, as protocols (issue #14). The db adapter implements
them (``adapters/db``: ``Repository`` satisfies ``Repositories``, ``StoreUnitOfWork`` satisfies
``UnitOfWork``); the use cases import only this module, never SQLAlchemy or the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

from rems_ingest.core.model import Alert, Event, PatientKey, PatientState
from rems_ingest.service.outbox import OutboxEntry

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store could not run the work now (unreachable, locked, disk full): the same work
    can succeed later (a lab's message gets AE)."""


class RefusedByStore(Exception):
    """The store can never hold this value as it is (too long, out of range): permanent (AR)."""


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
    """An alert claimed for publishing."""

    id: int
    alert_id: str
    routing_key: str
    payload: str
    attempts: int


class OutboxSource(Protocol):
    """What the relay needs: claim a batch under a lease, settle it, release stale claims."""

    @property
    def reconnects(self) -> int:
        """Changes whenever the store lost its connection (bookkeeping may have been lost)."""
        ...

    async def claim(self, limit: int, now: str, lease_until: str, owner: str) -> list[OutboxRow]: ...
    async def release_own(self, owner: str) -> int: ...
    async def settle(self, published: Sequence[int], released: Sequence[int], failed: Sequence[tuple[int, str, str]], now: str) -> None:
        """Mark published, give back (connection lost), and back off (id, error, next attempt)."""
        ...

    async def stats(self) -> tuple[int, str | None]:
        """(pending alerts, creation time of the oldest)."""
        ...


class Messages(Protocol):
    def find_message(self, dedupe_key: str) -> Any: ...
    def insert_message(self, **values: Any) -> int | None: ...
    def set_ack_detail(self, message_id: int, detail: str) -> None: ...
    def insert_observations(self, rows: list[dict[str, Any]]) -> None: ...
    def messages_for_replay(self, *, ids: Sequence[int] = (), since: str | None = None, status: str | None = None, warned: bool = False, limit: int = 10_000) -> list[Any]: ...
    def observation_count(self, message_id: int) -> int: ...
    def replace_observations(self, message_id: int, rows: list[dict[str, Any]]) -> None: ...
    def mark_replayed(self, message_id: int, ack_detail: str) -> None: ...
    def prune_raw(self, before: str, dry_run: bool = False) -> int: ...


class Patients(Protocol):
    def patient(self, key: PatientKey, *, create: bool, lock: bool, now: str = "") -> PatientRow | None: ...
    def save_patient(self, pk: int, state: PatientState, version: int, last_sort_key: str, now: str, **extra: Any) -> None: ...
    def event(self, pk: int, key: str) -> Event | None: ...
    def events(self, pk: int) -> list[Event]: ...
    def add_event(self, pk: int, event: Event, now: str) -> bool: ...
    def put_event(self, pk: int, event: Event, now: str) -> None: ...
    def delete_event(self, pk: int, key: str) -> None: ...
    def prune_events(self, pk: int, keep: int) -> None: ...
    def due_patients(self, before: date, limit: int = 10_000) -> list[PatientKey]: ...
    def enrolled_authorities(self, patient_id: str, limit: int = 5) -> list[str]: ...
    def recent_observations(self, pk: int, limit: int = 20) -> list[Any]: ...


class Alerts(Protocol):
    def active_alerts(self, pk: int) -> list[tuple[str, Alert]]: ...
    def add_alerts(self, entries: Sequence[OutboxEntry]) -> None: ...
    def withdraw(self, alert_ids: Sequence[str]) -> None: ...
    def alerts_for(self, pk: int, limit: int = 50) -> list[Any]: ...


class Audit(Protocol):
    def audit_decision(self, at: str, patient_pk: int, detail: dict[str, Any]) -> None: ...
    def audit(self, at: datetime, actor: str, action: str, patient_pk: int | None, detail: dict[str, Any]) -> None: ...


class Repositories(Messages, Patients, Alerts, Audit, Protocol):
    """Everything one transaction may touch."""


class UnitOfWork(Protocol):
    async def write(self, fn: Callable[[Repositories], T], *, durable: bool = True, locks: Iterable[PatientKey] = ()) -> T:
        """Run ``fn`` in one transaction and return after its commit (or raise
        StoreUnavailable / RefusedByStore / what ``fn`` raised)."""
        ...

    async def read(self, fn: Callable[[Repositories], T]) -> T:
        """Run ``fn`` on a read-only view, off the event loop."""
        ...
