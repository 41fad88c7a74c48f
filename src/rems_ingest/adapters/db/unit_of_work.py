"""The store as the use cases' unit of work (service/ports.UnitOfWork): each transaction gets
a ``Repository`` on its connection, and store errors become the ports' two kinds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError

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

        try:
            return await self.store.write(tx, durable=durable, locks=locks)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        except DataError as exc:  # a value the database refuses (too long, out of range): never AE
            raise RefusedByStore(type(exc.orig).__name__ if exc.orig else "DataError") from exc
        except DBAPIError as exc:  # connection lost, constraint race: the same work can succeed later
            raise StoreUnavailable(type(exc).__name__) from exc

    async def read(self, fn: Callable[[Repositories], T]) -> T:
        return await self.store.aread(lambda conn: fn(Repository(conn)))


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
