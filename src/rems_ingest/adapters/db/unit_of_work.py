"""The store as the use cases' unit of work (service/ports.UnitOfWork): each transaction gets
a ``Repository`` on its connection, and store errors become the ports' two kinds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.db.store import Store, StoreError
from rems_ingest.core.model import PatientKey
from rems_ingest.service.ports import RefusedByStore, Repositories, StoreUnavailable

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
