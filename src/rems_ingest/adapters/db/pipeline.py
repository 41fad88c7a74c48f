"""PostgreSQL pipeline mode for the writer's hot statements (psycopg 3, libpq 14+).

One message was eight to twelve network round trips to PostgreSQL: BEGIN, the message row, the
patient lock, the event, the patient row, the audit, observation and outbox rows (one
``executemany`` each), COMMIT, and the alert-id lookup when it raised alerts. Across a network
the lab waits for each of them before it gets its ACK. In pipeline mode psycopg sends a
statement without waiting for its answer and waits only where a result is read: the patient,
audit, observation and outbox rows go with COMMIT. A message is five round trips (BEGIN, which
psycopg syncs on its own; the message row; the patient lock; the event insert, whose row count
decides the path; COMMIT), six if it raised alerts (their ids are looked up).

Only the hot statements the repository runs on the driver cursor (``Repository._raw``) are
pipelined: SQLAlchemy reads a statement's result description at once, which pipeline mode does
not have yet, so before any SQLAlchemy statement the pipeline is left (a sync: everything queued
is sent and its errors raised there). Only the store's writer connection pipelines
(``allow``). An error in a queued write surfaces at the next sync, at the latest at COMMIT, and
fails the transaction as before; the rows queued after it never run.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

_ALLOWED = "rems_pipeline_allowed"  # connection.info: this connection may pipeline
_OPEN = "rems_pipeline"  # connection.info: (context manager, psycopg Pipeline) while in pipeline mode


def allow(conn: Connection) -> None:
    conn.info[_ALLOWED] = True


def enter(conn: Connection) -> None:
    """Switch to pipeline mode, if this connection may and is not in it already."""
    info = conn.info
    if _OPEN in info or not info.get(_ALLOWED):
        return
    cm = conn.connection.dbapi_connection.pipeline()  # type: ignore[union-attr]
    info[_OPEN] = (cm, cm.__enter__())


def sync(conn: Connection) -> None:
    """Wait for every statement sent so far (a row count is only known after its answer)."""
    opened = conn.info.get(_OPEN)
    if opened is not None:
        opened[1].sync()


def leave(conn: Connection, *, quietly: bool = False) -> None:
    """Leave pipeline mode: a sync, which raises a queued statement's error unless ``quietly``."""
    opened = conn.info.pop(_OPEN, None)
    if opened is None:
        return
    if quietly:
        with contextlib.suppress(Exception):
            opened[0].__exit__(None, None, None)
        return
    opened[0].__exit__(None, None, None)


def enable(engine: Engine) -> None:
    """Leave pipeline mode before any SQLAlchemy statement (after the rows written behind are
    queued, so they go in the same sync) and before a rollback. Register after the deferred-write
    hooks: listeners run in the order they were added."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before_statement(conn: Connection, *_: Any) -> None:
        leave(conn)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        leave(conn, quietly=True)
