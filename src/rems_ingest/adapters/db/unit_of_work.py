"""The store as the use cases' unit of work (service/ports.UnitOfWork): each transaction gets
a ``Repository`` on its connection, and store errors become the ports' two kinds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError

from rems_ingest.adapters.db.engines import as_dbapi_error
from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.db.store import Store, StoreError
from rems_ingest.core.model import PatientKey
from rems_ingest.service.ports import OutboxRow, RefusedByStore, Repositories, StoreUnavailable

T = TypeVar("T")


class StoreUnitOfWork:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, fn: Callable[[Repositories], T], *, durable: bool = True, locks: Iterable[PatientKey] = ()) -> T:
        def tx(conn: Connection) -> T:
            return fn(Repository(conn))

        return await _ported(self.store.write(tx, durable=durable, locks=locks))

    async def read(self, fn: Callable[[Repositories], T]) -> T:
        return await _ported(self.store.aread(lambda conn: fn(Repository(conn))))  # a store that is away: unavailable, never a 500


async def _ported(work: Awaitable[T]) -> T:
    """Await a store call; its store errors come out as the ports' kinds (see _port_error)."""
    try:
        return await work
    except Exception as exc:
        mapped = _port_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _port_error(exc: Exception) -> Exception:
    """A store error as one of the ports' two kinds; any other exception (the use case's own) as it is."""
    if isinstance(exc, StoreError):
        return StoreUnavailable(str(exc))
    wrapped = as_dbapi_error(exc)  # the hot statements' driver errors too
    # a value the database refuses (too long, out of range), or a constraint still broken after
    # the store re-ran the transaction (every hot insert settles a race with ON CONFLICT): the
    # same work fails the same way every time, so never AE (it would stall the lab's feed)
    if isinstance(wrapped, (DataError, IntegrityError)):
        return RefusedByStore(type(wrapped.orig).__name__ if wrapped.orig else type(wrapped).__name__)
    if wrapped is not None:  # connection lost, database locked or full: the same work can succeed later
        return StoreUnavailable(type(wrapped).__name__)
    return exc


class StoreOutboxSource:
    """The outbox as the relay sees it (service/ports.OutboxSource). Its bookkeeping commits
    without waiting for the disk (durable=False): losing it in an OS crash only publishes an
    alert again under the same id."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def reconnects(self) -> int:
        return self.store.reconnects

    async def claim(self, limit: int, now: str, lease_until: str, owner: str) -> list[OutboxRow]:
        return await self.store.write(lambda c: Repository(c).claim(limit, now, lease_until, owner), durable=False)

    async def release_own(self, owner: str) -> int:
        return await self.store.write(lambda c: Repository(c).release_own(owner), durable=False)

    async def settle(self, published: Sequence[int], released: Sequence[int], failed: Sequence[tuple[int, str, str]], now: str) -> None:
        def tx(conn: Connection) -> None:
            repo = Repository(conn)
            repo.mark_published(published, now)
            repo.release(released)
            for row_id, error, next_attempt_at in failed:
                repo.mark_failed([row_id], error, next_attempt_at)

        await self.store.write(tx, durable=False)

    async def stats(self) -> tuple[int, str | None]:
        return await self.store.aread(lambda c: Repository(c).outbox_stats())
