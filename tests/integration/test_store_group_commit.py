"""Group commit: one failing job does not fail the others, and what they count is counted once."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rems_ingest.adapters.db.store import Store
from rems_ingest.observability import metrics


def stored(conn) -> int:  # type: ignore[no-untyped-def]
    return int(conn.execute(text("SELECT count(*) FROM audit WHERE actor = 'group-test'")).scalar_one())


async def test_a_failing_job_in_a_group_leaves_the_others_committed_and_counted_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/group.db")
    store.migrate()
    store.start()
    gate = threading.Event()
    counter = metrics.OBSERVATIONS.labels("stored")
    before = counter._value.get()
    reruns = metrics.STORE_RETRIES.labels("group_failed")
    reruns_before = reruns._value.get()

    def blocker(conn) -> None:  # type: ignore[no-untyped-def]
        gate.wait(10)  # holds the writer so the next jobs queue up and share one group

    def good(n: int):  # type: ignore[no-untyped-def]
        def job(conn) -> int:  # type: ignore[no-untyped-def]
            conn.execute(text("INSERT INTO audit (at, actor, action, patient_pk, detail) VALUES ('t', 'group-test', 'x', NULL, :n)"), {"n": str(n)})
            metrics.count(metrics.OBSERVATIONS, "stored")
            return n
        return job

    def bad(conn) -> None:  # type: ignore[no-untyped-def]
        metrics.count(metrics.OBSERVATIONS, "stored")
        raise ValueError("this job fails")

    try:
        first = asyncio.ensure_future(store.write(blocker))
        await asyncio.sleep(0.1)
        jobs = [asyncio.ensure_future(store.write(good(n))) for n in range(5)] + [asyncio.ensure_future(store.write(bad))]
        await asyncio.sleep(0.1)
        gate.set()
        await first
        results = await asyncio.gather(*jobs, return_exceptions=True)

        assert [0, 1, 2, 3, 4] == results[:5]
        assert isinstance(results[5], ValueError)
        assert 5 == store.read(stored)
        assert 5 == counter._value.get() - before  # the failed group's attempt counted nothing
        assert 1 == reruns._value.get() - reruns_before  # visible to operators: one group re-run job by job
    finally:
        store.close()


def audits(conn, marker: str) -> int:  # type: ignore[no-untyped-def]
    return int(conn.execute(text("SELECT count(*) FROM audit WHERE detail LIKE :m"), {"m": f"%{marker}%"}).scalar_one())


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/wb.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = Store(url)
    s.migrate()
    s.start()
    yield s
    s.close()


async def test_write_behind_rows_are_visible_to_later_reads_in_the_same_transaction_and_committed(store: Store) -> None:
    from rems_ingest.adapters.db.repository import Repository

    def job(conn) -> int:  # type: ignore[no-untyped-def]
        Repository(conn).audit_decision("2026-01-01T00:00:00+00:00", None, {"marker": "wb-visible"})  # type: ignore[arg-type]
        return audits(conn, "wb-visible")  # a SQLAlchemy read flushes the deferred row first

    assert 1 == await store.write(job)
    assert 1 == store.read(lambda c: audits(c, "wb-visible"))


async def test_write_behind_rows_of_a_failed_transaction_never_reach_a_later_one(store: Store) -> None:
    from rems_ingest.adapters.db.repository import Repository

    def failing(conn) -> None:  # type: ignore[no-untyped-def]
        Repository(conn).audit_decision("2026-01-01T00:00:00+00:00", None, {"marker": "wb-rolled-back"})  # type: ignore[arg-type]
        raise ValueError("the message's transaction fails after its audit row was deferred")

    def later(conn) -> None:  # type: ignore[no-untyped-def]
        Repository(conn).audit_decision("2026-01-01T00:00:00+00:00", None, {"marker": "wb-later"})  # type: ignore[arg-type]

    with pytest.raises(ValueError):
        await store.write(failing)
    await store.write(later)

    assert (0, 1) == (store.read(lambda c: audits(c, "wb-rolled-back")), store.read(lambda c: audits(c, "wb-later")))


async def test_only_a_group_of_bookkeeping_jobs_commits_without_fsync_and_full_sync_comes_back(tmp_path: Path) -> None:
    """The relay's lease/mark jobs may skip the fsync; a message's transaction never may."""
    store = Store(f"sqlite:///{tmp_path}/sync.db")
    store.migrate()
    store.start()
    sync = lambda conn: conn.exec_driver_sql("PRAGMA synchronous").scalar_one()  # noqa: E731  2 = FULL, 1 = NORMAL
    gate = threading.Event()
    try:
        assert 1 == await store.write(sync, durable=False)
        assert 2 == await store.write(sync)  # restored for the next (message) transaction
        first = asyncio.ensure_future(store.write(lambda c: gate.wait(10), durable=False))
        await asyncio.sleep(0.1)
        mixed = [asyncio.ensure_future(store.write(sync, durable=False)), asyncio.ensure_future(store.write(sync))]
        await asyncio.sleep(0.1)
        gate.set()
        await first
        assert [2, 2] == await asyncio.gather(*mixed)  # one group holding a message job: full fsync for all
    finally:
        store.close()


async def test_a_message_commit_never_checkpoints_the_wal_the_checkpoint_does(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint (every 1,000 WAL pages) ran inside whichever commit crossed
    the mark: that message's ACK waited for the whole database copy and its fsync. Commits now
    only append to the WAL; Store.checkpoint (the daemon's wal_checkpoint task) copies it."""
    store = Store(f"sqlite:///{tmp_path}/wal.db")
    store.migrate()
    store.start()
    try:
        store.checkpoint()
        for n in range(60):  # ~1,500 pages of WAL: past the default mark
            await store.write(lambda c, n=n: c.execute(text("INSERT INTO audit (at, actor, action, detail) VALUES (:at, 'test', 'fill', :d)"), {"at": f"2026-01-01T00:00:{n:02d}", "d": "x" * 100_000}))
        wal_pages, copied = store.checkpoint()
        assert wal_pages > 1000  # every page since the first checkpoint is still in the WAL
        assert copied == wal_pages
    finally:
        store.close()


async def test_a_lone_write_commits_on_the_loop_and_concurrent_ones_share_the_writer_thread(tmp_path: Path) -> None:
    """One connection, one message in flight: its transaction runs where it was asked for, with
    no hand-off to the writer thread and back. Writes asked for together still go to the writer
    thread as one group (one commit, one fsync)."""
    store = Store(f"sqlite:///{tmp_path}/lone.db")
    store.migrate()
    store.start()
    try:
        await store.write(lambda c: None)  # the writer thread opens the connection first
        ran_on: list[str] = []

        def job(c: Any, n: int) -> int:
            ran_on.append(threading.current_thread().name)
            c.execute(text("INSERT INTO audit (at, actor, action, detail) VALUES ('t', 'test', 'lone', :n)"), {"n": str(n)})
            return n

        assert 1 == await store.write(lambda c: job(c, 1))
        assert [threading.current_thread().name] == ran_on
        ran_on.clear()
        assert [2, 3, 4] == await asyncio.gather(*(store.write(lambda c, n=n: job(c, n)) for n in (2, 3, 4)))
        assert ["rems-store-writer"] * 3 == ran_on
        assert 4 == store.read(lambda c: c.execute(text("SELECT count(*) FROM audit WHERE action = 'lone'")).scalar())
    finally:
        store.close()


async def test_a_lone_write_never_stalls_the_loop_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    """A CLI command writing to the same SQLite file holds the write lock: the write waits for it
    on the writer thread (busy_timeout), never on the event loop every connection shares."""
    import sqlite3

    store = Store(f"sqlite:///{tmp_path}/locked.db")
    store.migrate()
    store.start()
    other = sqlite3.connect(f"{tmp_path}/locked.db", isolation_level=None)
    try:
        await store.write(lambda c: None)
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(store.write(lambda c: c.execute(text("INSERT INTO audit (at, actor, action, detail) VALUES ('t', 'test', 'locked', '')"))))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(5):  # the loop keeps turning while the write waits
            await asyncio.sleep(0.05)
        assert loop.time() - started < 0.5
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, 10)
        assert 1 == store.read(lambda c: c.execute(text("SELECT count(*) FROM audit WHERE action = 'locked'")).scalar())
    finally:
        other.close()
        store.close()


def test_closing_the_store_while_a_checkpoint_runs_on_another_thread(tmp_path: Path) -> None:
    """The daemon's wal_checkpoint task runs on an executor thread and a shutdown closes the
    store under it: closing the checkpoint's SQLite connection while it is in use crashed the
    process (a segfault in CI). close() now waits for it, and a later checkpoint does nothing."""
    for n in range(10):
        store = Store(f"sqlite:///{tmp_path}/close{n}.db")
        store.migrate()
        stop = threading.Event()

        def hammer(store: Store = store, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                store.checkpoint()

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        store.close()
        stop.set()
        for t in threads:
            t.join(5)
        assert (0, 0) == store.checkpoint()
