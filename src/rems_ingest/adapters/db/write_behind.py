"""Write-behind for the hot path's insert-only rows (the comment below says why); the repository
registers its statements here and engines.make_engine installs the hooks on the writer engine."""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# Write-behind for rows the hot path never reads back inside the transaction that writes them
# (observations, decision audits, outbox alerts): they are kept on the connection and sent with one executemany per group
# — before any other SQLAlchemy statement runs on that connection (which might read them) and
# before COMMIT — instead of one statement each. On PostgreSQL that is a network round trip each.
# Only engines that carry the flushing hooks defer; any other connection writes at once.
DEFERRED = "rems_deferred_rows"
_DEFERRING: weakref.WeakSet[Engine] = weakref.WeakSet()
STATEMENTS: dict[str, dict[str, str]] = {}  # dialect -> statement name -> SQL (the repository's)


def is_deferring(engine: Engine) -> bool:
    return engine in _DEFERRING


def enable(engine: Engine) -> None:
    """Install the hooks that flush deferred rows (before each statement and at commit) and
    drop them on rollback — and at BEGIN, ahead of every other hook, so rows left by a transaction
    that died without a rollback event can never land in the next one."""

    @event.listens_for(engine, "begin", insert=True)
    def _on_begin(conn: Connection) -> None:
        conn.info.pop(DEFERRED, None)

    @event.listens_for(engine, "before_cursor_execute")
    def _before_statement(conn: Connection, *_: Any) -> None:
        flush(conn)

    @event.listens_for(engine, "commit")
    def _before_commit(conn: Connection) -> None:
        flush(conn)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        conn.info.pop(DEFERRED, None)

    _DEFERRING.add(engine)


def flush(conn: Connection, only: str | None = None) -> None:
    """Send the rows written behind (``only``: just that statement's rows, the rest stay behind)."""
    pending: dict[str, list[dict[str, Any]]] | None = conn.info.pop(DEFERRED, None)
    if only is not None and pending:
        if only not in pending:
            conn.info[DEFERRED] = pending
            return
        rest, pending = pending, {only: pending.pop(only)}
        if rest:
            conn.info[DEFERRED] = rest
    if not pending:
        return
    sql = STATEMENTS[conn.dialect.name]
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for name, rows in pending.items():
            if len(rows) == 1:  # psycopg runs executemany as a pipeline of its own: 84 µs of CPU against 45
                cursor.execute(sql[name], rows[0])
            else:
                cursor.executemany(sql[name], rows)
    finally:
        cursor.close()
