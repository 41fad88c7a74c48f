"""Engines for the store: SQLite's pragmas and BEGIN IMMEDIATE, PostgreSQL through psycopg 3,
and the writer's hooks (write-behind rows, pipeline mode)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from rems_ingest.adapters.db import pipeline
from rems_ingest.adapters.db.write_behind import enable as enable_deferred_writes
from rems_ingest.adapters.db.write_behind import flush

WAL_BACKSTOP_PAGES = 20_000  # ~80 MB of WAL before the writer checkpoints itself
BEGUN = "rems_begun"  # connection.info flag: this transaction's BEGIN IMMEDIATE already ran
BUSY_MS = 30_000  # SQLite busy_timeout on the writer thread


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return Path(url[len("sqlite:///") :])
    return None


def as_dbapi_error(exc: BaseException) -> DBAPIError | None:
    """A database error as SQLAlchemy's wrapper of its class (OperationalError, DataError, ...),
    or None for any other exception. The hot statements run on the driver's cursor, where a
    full disk or a lost connection arrives as the driver's own error: unwrapped, it read as an
    error in the message (AR, and the sender moves on) instead of the store's (AE, not ready)."""
    if isinstance(exc, DBAPIError):
        return exc
    for base in (sqlite3.Error, psycopg.Error):
        if isinstance(exc, base):
            return DBAPIError.instance(None, None, exc, base)  # type: ignore[return-value]
    return None


class WriteProof:
    """Whether a transaction wrote a row. Asked only while store writes are failing: a commit
    that wrote nothing (a relay claim or sweep that found no work) succeeds on a full disk and
    proves nothing. SQLite counts the rows its connection changed; PostgreSQL asks whether the
    transaction was given a transaction id, which happens at its first write."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.before = self._changes() if conn.dialect.name == "sqlite" else 0

    def _changes(self) -> int:
        return int(self.conn.connection.dbapi_connection.total_changes)  # type: ignore[union-attr]

    def wrote(self) -> bool:
        flush(self.conn)  # rows written behind count too
        if self.conn.dialect.name == "sqlite":
            return self._changes() > self.before
        return bool(self.conn.exec_driver_sql("SELECT txid_current_if_assigned() IS NOT NULL").scalar())


def make_engine(url: str, *, writer: bool) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=1 if writer else 4, max_overflow=1 if writer else 8)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # we ACK on commit: survive OS crash too
            cur.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            if writer:
                cur.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: the hot indexes stay in memory
                # The daemon checkpoints on its own thread (Store.checkpoint): the commit that
                # crossed SQLite's default 1,000 pages copied them into the database and fsynced
                # it inside a message's transaction (one ACK in ~65 took 5-8 ms, every ~100 ms
                # at 650 msg/s). This is only the backstop if that task stops.
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            if conn.info.pop(BEGUN, False):  # Store._try_inline already holds the write lock
                return
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    else:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        engine = create_engine(url, pool_size=2 if writer else 5, max_overflow=0 if writer else 10, pool_pre_ping=True)
    if writer:
        enable_deferred_writes(engine)
        if not url.startswith("sqlite"):
            pipeline.enable(engine)  # after the deferred-write hooks (see adapters/db/pipeline)
    return engine
