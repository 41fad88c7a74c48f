"""The store: one writer thread with group commit, plus read-only connections.

Every write is a job run inside a transaction on the writer thread. Jobs that arrive
together share one transaction (one fsync); each caller is answered only after that commit.
If a shared transaction fails, its jobs are retried one by one so one bad job cannot fail
the others. SQLite runs WAL + synchronous=FULL with BEGIN IMMEDIATE; PostgreSQL uses
row locks (SELECT ... FOR UPDATE) so several daemons can share one database; a transaction
that will touch several patients locks them first, in one global order, so two daemons whose
groups share patients queue instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from rems_ingest.adapters.db import pipeline
from rems_ingest.adapters.db.engines import BEGUN, BUSY_MS, WriteProof, as_dbapi_error, make_engine, sqlite_path
from rems_ingest.adapters.db.repository import Repository
from rems_ingest.core.model import PatientKey
from rems_ingest.observability import metrics

T = TypeVar("T")
log = structlog.get_logger("rems_ingest.store")


_TRANSIENT = {"40P01": "deadlock", "40001": "serialization"}  # PostgreSQL: rolled back, safe to re-run


class StoreError(Exception):
    """The store could not run a transaction (disk full, locked, unreachable)."""


@dataclass
class _Job:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    durable: bool = True
    locks: frozenset[PatientKey] = frozenset()  # patients the job will lock (PostgreSQL lock ordering)
    outcome: tuple[bool, Any] = (False, None)  # (failed, result or exception), set on the writer thread


def _settle(jobs: list[_Job]) -> None:
    """On the caller's event loop: answer every job of one committed group."""
    for job in jobs:
        if job.future.done():  # the caller was cancelled meanwhile
            continue
        failed, value = job.outcome
        if failed:
            job.future.set_exception(value)
        else:
            job.future.set_result(value)


_STOP = object()

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Store:
    def __init__(self, url: str, *, group_max: int = 256, create: bool = True) -> None:
        """``create``: a missing SQLite file (and its folder) may be created. Commands that only
        read or act on stored patients pass False, so a wrong path or working directory is an
        error naming the file, never a new empty store that answers "not known"."""
        path = sqlite_path(url)
        if path is not None and not path.exists():
            if not create:
                raise StoreError(f"no store at {path} (store.url): nothing has been stored there; check the path, or create it with 'rems-ingest db upgrade'")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.group_max = group_max
        self._writer = make_engine(url, writer=True)
        self._reader = make_engine(url, writer=False)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # one group at a time on the held connection, whichever thread runs it
        self._group_lock = threading.Lock()
        # writes asked for in this turn of the event loop, dispatched together (Store._dispatch)
        self._pending: list[_Job] = []
        self._busy_ms = BUSY_MS  # SQLite busy_timeout currently set on the held connection
        self._held: Connection | None = None  # the writer thread's own connection, kept between groups
        self._checkpointer: sqlite3.Connection | None = None  # Store.checkpoint's own connection
        # checkpoint runs on an executor thread: close() must never close that connection under it
        self._checkpoint_lock = threading.Lock()
        self._closed = False
        self._synchronous = "FULL"  # SQLite sync level currently set on it
        # readiness: set when a write failed for a store reason (disk full, unreachable, locked),
        # cleared by the next commit that wrote a row (an empty one succeeds on a full disk too)
        self.write_failing_since: float | None = None
        self._proved = True  # this group has shown writes work (asked only while they failed)
        # writer reconnects: durable=False bookkeeping may be lost with one, so the relay re-checks its claims
        self.reconnects = 0

    # ------------------------------------------------------------ lifecycle

    def migrate(self) -> None:
        """Bring the schema to this daemon's head revision (Alembic), in one transaction.

        Several daemons may start together on PostgreSQL: an advisory lock lets one migrate
        while the others wait. A database created before migrations existed (it has
        ``schema_version`` but no ``alembic_version``) is stamped as revision 0001 first."""
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from sqlalchemy import inspect

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(727001)"))
            cfg.attributes["connection"] = conn
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" in tables:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if current is not None and current not in {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}:
                    raise StoreError(f"database schema {current} is newer than this daemon (head {head}); upgrade rems-ingest")
            elif "schema_version" in tables:
                command.stamp(cfg, "0001")
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at (``db upgrade`` prints it)."""
        return self.read(lambda c: c.execute(text("SELECT version_num FROM alembic_version")).scalar())

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rems-store-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None
        with self._checkpoint_lock:  # waits for a checkpoint in progress on another thread
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        self._writer.dispose()
        self._reader.dispose()

    # ------------------------------------------------------------ API

    async def write(self, fn: Callable[[Connection], T], *, durable: bool = True, locks: Iterable[PatientKey] = ()) -> T:
        """Run ``fn`` in a write transaction; returns after the commit (or raises).

        ``durable=False`` is for bookkeeping that is safe to lose in an OS crash (the relay's
        lease and published marks: losing them re-publishes an alert with the same id): a group
        made only of such jobs commits without waiting for the disk (SQLite synchronous=NORMAL,
        PostgreSQL synchronous_commit=off). A group holding any other job keeps the full fsync,
        which also covers everything committed before it.

        ``locks``: the patients ``fn`` will lock. On PostgreSQL a transaction holding more than
        one patient locks them all first, in one order, so that two daemons sharing a database
        never lock two patients in opposite orders (a deadlock PostgreSQL only detects after
        deadlock_timeout, 1 s by default, then the whole group is retried job by job)."""
        if self._thread is None:
            raise StoreError("store is not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, fut, durable, frozenset(locks))
        if self.dialect != "sqlite":
            self._queue.put(job)
        else:
            self._pending.append(job)
            if len(self._pending) == 1:
                loop.call_soon(self._dispatch)
        return await fut

    def _dispatch(self) -> None:
        """SQLite, on the event loop, once the writes asked for in one turn of it are in: a lone
        write while the writer thread is idle runs here, in its own transaction, and skips two
        thread hand-offs (the queue, then the loop's self-pipe): a one-connection feed, 605 -> 716
        msg/s. Several writes, a busy writer or a failing store go to the writer thread (one commit).

        Only a write that can start at once runs here: with no connection held (connecting may
        wait) or the database locked by another process (busy_timeout would stall the loop for
        up to 30 s) it goes to the thread. SQLite only: a PostgreSQL row lock held by another
        daemon or a stalled network would stall every connection's loop."""
        jobs, self._pending = self._pending, []
        if len(jobs) == 1 and self._thread is not None and self._queue.empty() and self.write_failing_since is None and self._group_lock.acquire(blocking=False):
            try:
                ran = self._try_inline(jobs[0])
            except Exception as exc:  # noqa: BLE001 - a callback must never leave its caller waiting
                log.error("store_inline_write_failed", error=type(exc).__name__)
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(StoreError("the store could not commit the transaction"))
                ran = True
            finally:
                self._group_lock.release()
            if ran:
                return
        if self._thread is None:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(StoreError("store is not started"))
            return
        for job in jobs:
            self._queue.put(job)

    def _sqlite_session(self, dbapi: Any, durable: bool, *, busy_ms: int) -> None:
        """The held SQLite connection's sync level and busy timeout for the next transaction,
        each set only when it changes (a PRAGMA is a statement)."""
        wanted = "FULL" if durable else "NORMAL"
        if self._synchronous != wanted:
            dbapi.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted
        if self._busy_ms != busy_ms:
            dbapi.execute(f"PRAGMA busy_timeout={busy_ms}")
            self._busy_ms = busy_ms

    def _try_inline(self, job: _Job) -> bool:
        """Run one job on this thread if the write lock is free now (False: it was not run)."""
        held = self._held
        if held is None or held.closed or held.invalidated:
            return False
        dbapi: Any = held.connection.dbapi_connection
        try:
            self._sqlite_session(dbapi, job.durable, busy_ms=0)
            dbapi.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # locked by another process: the thread waits for it instead
            return False
        held.info[BEGUN] = True
        self._commit([job], inline=True)
        return True

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        with self._writer.begin() as conn:
            return fn(conn)

    def read(self, fn: Callable[[Connection], T]) -> T:
        with self._reader.connect() as conn:
            return fn(conn)

    async def aread(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self.read, fn)

    def checkpoint(self) -> tuple[int, int]:
        """SQLite: copy committed WAL pages into the database file without blocking the writer
        or readers (a PASSIVE checkpoint on a connection of its own; its fsync is off the
        commit path). Returns (pages in the WAL, pages copied); (0, 0) on PostgreSQL. The WAL
        restarts from its beginning once every page is in the database and no reader needs it."""
        path = sqlite_path(self.url)
        if path is None:
            return (0, 0)
        with self._checkpoint_lock:
            if self._closed:
                return (0, 0)
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
            try:
                _busy, wal, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                self._checkpointer.close()
                self._checkpointer = None
                raise
        return (max(0, wal), max(0, copied))

    def ping(self) -> bool:
        try:
            with self._reader.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness probe: any failure means not ready
            return False

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                with self._group_lock:
                    self._drop_held()
                return
            batch = [first]
            while len(batch) < self.group_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            with self._group_lock:
                self._commit(batch)

    @contextmanager
    def _transaction(self, durable: bool = True, locks: frozenset[PatientKey] = frozenset()) -> Iterator[Connection]:
        """A transaction on the writer thread's own connection. Keeping one connection open
        skips the pool's checkout, checkin and reset-rollback for every group; after any
        database error the connection is dropped and the next group opens a fresh one."""
        if self._held is None or self._held.closed or self._held.invalidated:
            self._held = self._writer.connect()
            if self.dialect == "postgresql":
                pipeline.allow(self._held)  # the hot statements go in round trips of several
            self._synchronous = "FULL"  # what the connect hook sets on every new SQLite connection
            self._busy_ms = BUSY_MS
        conn = self._held
        if self.dialect == "sqlite" and not conn.info.get(BEGUN):
            # Set before BEGIN, for every transaction, from what this one needs: a message's
            # transaction can never inherit the relaxed setting of the bookkeeping one before it.
            # (Store._try_inline sets both itself before its own BEGIN.)
            try:
                self._sqlite_session(conn.connection.dbapi_connection, durable, busy_ms=BUSY_MS)
            except Exception as exc:
                self._drop_held()
                raise StoreError("could not set the SQLite sync level") from exc
        try:
            with metrics.counted_on_commit(), conn.begin():
                proof = None if self._proved else WriteProof(conn)
                if self.dialect == "postgresql":
                    if not durable:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    if len(locks) > 1:
                        Repository(conn).lock_patients(sorted(locks, key=lambda k: (k.id, k.authority)))
                yield conn
                wrote = proof is not None and proof.wrote()
            self._proved = self._proved or wrote
        except Exception as exc:
            wrapped = as_dbapi_error(exc)  # one the driver raised on its own cursor, too
            if wrapped is None:
                raise  # the job's own (domain) error
            self._drop_held()
            raise wrapped from exc.__cause__ if wrapped is exc else exc

    def _write_health(self, ok: bool) -> None:
        if ok:
            if self.write_failing_since is not None:
                log.info("store_writes_recovered", failed_for_seconds=round(time.monotonic() - self.write_failing_since, 1))
            self.write_failing_since = None
        elif self.write_failing_since is None:
            self.write_failing_since = time.monotonic()
        metrics.STORE_WRITE_FAILING.set(0 if ok else 1)

    def _drop_held(self) -> None:
        """Let go of the writer's connection for good: the driver connection is closed, not
        returned to the pool, so its session settings (sync level) never reach a later one."""
        if self._held is not None:
            self.reconnects += 1
            try:
                pipeline.leave(self._held, quietly=True)
                self._held.invalidate()
                self._held.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
            self._held = None

    def _run_with_retry(self, job: _Job, attempts: int = 3) -> Any:
        """One job in its own transaction; a deadlock, serialization failure or constraint error
        (rolled back, nothing written) is re-run: a constraint error left after that is permanent."""
        for attempt in range(1, attempts + 1):
            try:
                with self._transaction(job.durable, job.locks) as conn:
                    return job.fn(conn)
            except (OperationalError, IntegrityError) as exc:  # a constraint: a race another daemon won
                reason = "constraint" if isinstance(exc, IntegrityError) else _TRANSIENT.get(getattr(exc.orig, "sqlstate", None) or "")
                if attempt == attempts or reason is None:
                    raise
                metrics.STORE_RETRIES.labels(reason).inc()
                log.warning("store_transaction_retried", reason=reason, attempt=attempt)

    def _commit(self, batch: list[_Job], *, inline: bool = False) -> None:
        self._proved = self.write_failing_since is None
        self._run_group(batch)
        if self._proved and any(not failed for failed, _ in (job.outcome for job in batch)):
            self._write_health(ok=True)
        elif any(isinstance(value, StoreError) for _, value in (job.outcome for job in batch)):
            self._write_health(ok=False)
        if inline:  # on the callers' own loop already
            _settle(batch)
            return
        # one wake-up per event loop for the whole group, not one per job (the self-pipe write
        # and loop iteration per message showed in the profile)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.future.get_loop(), []).append(job)
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, jobs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _run_group(self, batch: list[_Job]) -> None:
        if len(batch) > 1:
            try:
                with self._transaction(any(job.durable for job in batch), frozenset().union(*(job.locks for job in batch))) as conn:
                    results = [job.fn(conn) for job in batch]
            except Exception:  # noqa: BLE001 - fall back to one transaction per job below
                metrics.STORE_RETRIES.labels("group_failed").inc()
            else:
                for job, result in zip(batch, results):
                    job.outcome = (False, result)
                return
        for job in batch:
            try:
                job.outcome = (False, self._run_with_retry(job))
            except OperationalError as exc:
                log.error("store_transaction_failed", error=type(exc).__name__, detail=str(getattr(exc, "orig", exc)).splitlines()[0][:160])
                job.outcome = (True, StoreError("the store could not commit the transaction"))
            except Exception as exc:  # noqa: BLE001 - domain errors travel back to the caller
                job.outcome = (True, exc)
