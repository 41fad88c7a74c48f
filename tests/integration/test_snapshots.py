"""Timeline snapshots (issue #18): a late, same-time or corrected result re-folds only from the
snapshot just before its draw time, and diffs only the alerts from there on. Folded that way
through the real store, every history must end exactly where folding it from the beginning
ends (``core.timeline``, which re-folds the whole history every time): the same state, the same
alerts, the same ones withdrawn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from rems_ingest import profiles
from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.db.schema import outbox, patient, patient_event
from rems_ingest.adapters.db.store import Store
from rems_ingest.core.errors import EventNotAllowed
from rems_ingest.core.model import AncResult, ClinicalEvent, Enroll, Event, PatientKey, Population, ResultStatus, Tick
from rems_ingest.core.timeline import Timeline
from rems_ingest.service import patients
from rems_ingest.service.patients import apply_event

POLICY = profiles.load("us-label")
START = date(2026, 1, 5)
EXAMPLES = int(os.environ.get("REMS_SNAPSHOT_EXAMPLES", "1000"))
NOW = datetime(2026, 6, 1, tzinfo=UTC)
VALUES = st.one_of(st.sampled_from([300, 499, 700, 999, 1000, 1200, 1499, 1500, 2500]), st.integers(0, 4000))


def _at(day: date, hour: int = 8) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    path = base / f"rems-snapshots-{os.getpid()}.db"
    path.unlink(missing_ok=True)
    s = Store(f"sqlite:///{path}")
    s.migrate()
    yield s
    s.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


_counter = iter(range(10**9))

# one operation of a feed: (kind, parameters); the history builder below turns them into events
OPS = st.one_of(
    st.tuples(st.just("days"), st.integers(0, 9)),
    st.tuples(st.just("result"), VALUES, st.integers(0, 6), st.sampled_from("FFFFP")),  # late by 0-6 days
    st.tuples(st.just("same_time"), VALUES, st.integers(0, 10_000)),  # another count of an earlier draw time
    # a final, a correction (sometimes of the draw time too), a deletion
    st.tuples(st.just("again"), VALUES, st.integers(0, 10_000), st.sampled_from("FCCWDP"), st.sampled_from([0, 0, 0, -3, -1, 2])),
    st.tuples(st.just("prescriber"), st.sampled_from(["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]), st.integers(0, 5)),
    st.tuples(st.just("tick"), st.integers(0, 3)),
)


def _events(population: str, ops: list[tuple[Any, ...]]) -> Iterator[Event]:
    """The feed as it arrives: baselines, the enrollment, then results, repeats and events."""
    pop = Population(population)
    for i, v in enumerate((1800, 1700) if pop is Population.GENERAL else (1200, 1100)):
        yield AncResult(f"base{i}", Decimal(v), _at(START - timedelta(days=2 - i)))
    yield Enroll("enroll", START, pop, START, Decimal(1100) if pop is Population.BEN else None)
    day, n, results = START, 0, []
    for op in ops:
        n += 1
        if op[0] == "days":
            day += timedelta(days=op[1])
        elif op[0] == "result":
            drawn = max(START, day - timedelta(days=op[2]))
            results.append(AncResult(f"S{n}", Decimal(op[1]), _at(drawn), ResultStatus(op[3])))
            yield results[-1]
        elif op[0] == "same_time" and results:
            twin = results[op[2] % len(results)]
            results.append(AncResult(f"S{n}", Decimal(op[1]), twin.observed_at))
            yield results[-1]
        elif op[0] == "again" and results:
            old = results[op[2] % len(results)]
            yield AncResult(old.key, Decimal(op[1]), max(_at(START), old.observed_at + timedelta(days=op[4])), ResultStatus(op[3]))
        elif op[0] == "prescriber":
            yield ClinicalEvent(f"E{n}", op[1], max(START, day - timedelta(days=op[2])), by="DR1", rationale="documented", abrupt=True, temperature_c=Decimal("38.5"))
        elif op[0] == "tick":
            on = max(START, day - timedelta(days=op[1]))
            yield Tick(f"tick:{on.isoformat()}", on)


def _apply_to_store(store: Store, key: PatientKey, event: Event) -> None:
    try:
        store.write_sync(lambda conn: apply_event(Repository(conn), POLICY, key, event, cause={"source": "test"}, now=NOW, strict=True))
    except EventNotAllowed:
        pass  # rolled back: the reference refuses it too


def _outbox(store: Store, key: PatientKey) -> dict[str, bool]:
    def read(conn: Any) -> dict[str, bool]:
        pk = conn.execute(select(patient.c.id).where(patient.c.patient_id == key.id)).scalar_one()
        return {r.alert_id: bool(r.withdrawn) for r in conn.execute(select(outbox.c.alert_id, outbox.c.withdrawn).where(outbox.c.patient_pk == pk))}

    return store.read(read)


def _state(store: Store, key: PatientKey) -> Any:
    return store.read(lambda conn: Repository(conn).patient(key, create=False, lock=False))


def _feed(store: Store, population: str, ops: list[tuple[Any, ...]]) -> tuple[Timeline, PatientKey]:
    key = PatientKey(f"P{next(_counter)}", "HOSP")
    reference = Timeline(POLICY, patient=key)
    for event in _events(population, ops):
        try:
            reference.apply(event)
        except EventNotAllowed:
            pass
        _apply_to_store(store, key, event)
    return reference, key


def _same_as_from_scratch(store: Store, population: str, ops: list[tuple[Any, ...]]) -> None:
    reference, key = _feed(store, population, ops)
    row = _state(store, key)
    assert row.state == reference.state
    assert row.version == reference.state.version
    assert _outbox(store, key) == {aid: gone for aid, (_, gone) in reference.outbox.items()}


HISTORIES = dict(population=st.sampled_from(["general", "general", "ben"]), ops=st.lists(OPS, max_size=24))
LENIENT = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=LENIENT)
@given(**HISTORIES)
def test_refolding_from_snapshots_ends_where_folding_from_scratch_ends(store: Store, population: str, ops: list[tuple[Any, ...]]) -> None:
    _same_as_from_scratch(store, population, ops)


@pytest.fixture(scope="module")
def pg_store(postgres_admin_url: str) -> Iterator[Store]:
    import uuid

    from tests.conftest import _pg_connect

    name = f"rems_snap_{uuid.uuid4().hex[:10]}"
    with _pg_connect(postgres_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    s = Store(f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}")
    s.migrate()
    yield s
    s.close()
    with _pg_connect(postgres_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@settings(max_examples=max(EXAMPLES // 5, 20), deadline=None, suppress_health_check=LENIENT)
@given(**HISTORIES)
def test_on_postgresql_too(pg_store: Store, population: str, ops: list[tuple[Any, ...]]) -> None:
    """The same on PostgreSQL: its timeline ranges compare sort keys in the "C" collation."""
    _same_as_from_scratch(pg_store, population, ops)


def _events_read(apply: Any) -> list[int]:
    """How many events each timeline read inside ``apply()`` returned."""
    read: list[int] = []
    real = Repository.events_from

    def counting(self: Repository, pk: int, at: str) -> list[Any]:
        out = real(self, pk, at)
        read.append(len(out))
        return out

    Repository.events_from = counting  # type: ignore[method-assign]
    try:
        apply()
    finally:
        Repository.events_from = real  # type: ignore[method-assign]
    return read


def test_a_late_result_reads_only_the_timeline_after_its_draw_time(store: Store) -> None:
    """200 results one a day, then one drawn the day before the last: the re-fold takes the
    snapshot before it and the events after it, not the history."""
    key = PatientKey(f"P{next(_counter)}", "HOSP")
    reference = Timeline(POLICY, patient=key)
    events: list[Event] = [AncResult("base", Decimal(1800), _at(START - timedelta(days=1))), Enroll("enroll", START, Population.GENERAL, START, None)]
    events += [AncResult(f"R{i:04d}", Decimal(1200 if i % 7 == 0 else 2500), _at(START + timedelta(days=i))) for i in range(200)]
    for e in events:
        reference.apply(e)
        _apply_to_store(store, key, e)
    late = AncResult("LATE", Decimal(900), _at(START + timedelta(days=198), hour=20))
    read = _events_read(lambda: _apply_to_store(store, key, late))
    reference.apply(late)
    assert read == [1]  # the one result drawn after it
    assert _state(store, key).state == reference.state
    assert _outbox(store, key) == {aid: gone for aid, (_, gone) in reference.outbox.items()}


def test_a_patient_stored_before_snapshots_is_refolded_from_the_beginning_once(store: Store) -> None:
    """As a store migrated from 0004 holds it: events without a place or a snapshot, alerts
    without a place, no snapshot profile. The first late result folds the whole history (as
    before), writes every snapshot, and the next one uses them."""
    key = PatientKey(f"P{next(_counter)}", "HOSP")
    reference = Timeline(POLICY, patient=key)
    events: list[Event] = [AncResult("base", Decimal(1800), _at(START - timedelta(days=1))), Enroll("enroll", START, Population.GENERAL, START, None)]
    events += [AncResult(f"R{i:03d}", Decimal(900 if i == 3 else 2500), _at(START + timedelta(days=7 * i))) for i in range(12)]
    for e in events:
        reference.apply(e)
        _apply_to_store(store, key, e)

    _forget_snapshots(store, key)
    for late in (AncResult("LATE1", Decimal(700), _at(START + timedelta(days=22))), AncResult("LATE2", Decimal(2100), _at(START + timedelta(days=60)))):
        reference.apply(late)
        _apply_to_store(store, key, late)
        assert _state(store, key).state == reference.state
        assert _outbox(store, key) == {aid: gone for aid, (_, gone) in reference.outbox.items()}
    missing = store.read(lambda c: c.execute(text("SELECT count(*) FROM patient_event e JOIN patient p ON p.id = e.patient_pk WHERE p.patient_id = :k AND (e.state_after IS NULL OR e.sort_key IS NULL)"), {"k": key.id}).scalar())
    assert missing == 0
    assert _state(store, key).snapshot_profile == POLICY.label


def test_the_sort_key_text_orders_as_the_timeline_does() -> None:
    """The store finds a re-fold point by comparing the text; the fold orders the tuples."""
    from rems_ingest.core.model import event_sort_key

    evs: list[Event] = [
        AncResult("b", Decimal(1), _at(START, 8)),
        AncResult("a", Decimal(1), _at(START, 8)),
        AncResult("a", Decimal(1), _at(START, 9)),
        Enroll("enroll", START, Population.GENERAL, START, None),
        Tick(f"tick:{START}", START),
        ClinicalEvent("E1", "interrupt", START, by="DR1"),
        AncResult("z", Decimal(1), _at(START + timedelta(days=1), 1)),
    ]
    assert sorted(evs, key=event_sort_key) == sorted(evs, key=patients.sort_key_text)


def _forget_snapshots(store: Store, key: PatientKey) -> None:
    """Make the patient look as a store migrated from 0004 holds it."""

    def forget(conn: Any) -> None:
        pk = conn.execute(select(patient.c.id).where(patient.c.patient_id == key.id)).scalar_one()
        conn.execute(update(patient_event).where(patient_event.c.patient_pk == pk).values(sort_key=None, state_after=None))
        conn.execute(update(outbox).where(outbox.c.patient_pk == pk).values(sort_key=None))
        conn.execute(update(patient).where(patient.c.id == pk).values(snapshot_profile=None))

    store.write_sync(forget)


def test_the_upgrade_snapshots_old_patients_once_and_changes_nothing_clinical(tmp_path: Path) -> None:
    """``rems-ingest db upgrade`` on a store whose patients have no snapshots writes them (no
    state saved, no alert raised or withdrawn); the next late result then re-folds from its
    draw time only, and still ends where a fold from scratch ends."""
    from click.testing import CliRunner

    from rems_ingest.cli import cli

    url = f"sqlite:///{tmp_path}/old.db"
    s = Store(url)
    s.migrate()
    key = PatientKey("OLD1", "HOSP")
    reference = Timeline(POLICY, patient=key)
    events: list[Event] = [AncResult("base", Decimal(1800), _at(START - timedelta(days=1))), Enroll("enroll", START, Population.GENERAL, START, None)]
    events += [AncResult(f"R{i:03d}", Decimal(900 if i == 3 else 2500), _at(START + timedelta(days=7 * i))) for i in range(30)]
    for e in events:
        reference.apply(e)
        _apply_to_store(s, key, e)
    _forget_snapshots(s, key)
    before = (_state(s, key).state, _state(s, key).version, _outbox(s, key))
    s.close()

    out = CliRunner().invoke(cli, ["db", "upgrade"], env={"REMS_STORE__URL": url})
    assert out.exit_code == 0, out.output
    assert "timeline snapshots written for 1 patients" in out.output
    s = Store(url)
    try:
        assert (_state(s, key).state, _state(s, key).version, _outbox(s, key)) == before  # nothing clinical changed
        assert _state(s, key).snapshot_profile == POLICY.label
        again = CliRunner().invoke(cli, ["db", "upgrade"], env={"REMS_STORE__URL": url})
        assert "snapshots" not in again.output  # once
        late = AncResult("LATE", Decimal(700), _at(START + timedelta(days=7 * 28 + 2)))
        read = _events_read(lambda: _apply_to_store(s, key, late))
        reference.apply(late)
        assert read == [1]
        assert _state(s, key).state == reference.state
        assert _outbox(s, key) == {aid: gone for aid, (_, gone) in reference.outbox.items()}
    finally:
        s.close()
