"""An alert withdrawn by a correction and justified again by a later one is raised again under
a new id: consumers dropped the old id when they were told it was superseded, so re-using it
would be a silent page. A re-fold's own notices (a resolved overdue) are never withdrawn by the
next re-fold. Same rules in the reference timeline and in the store, also when several messages
for one patient commit in one group."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rems_ingest import profiles
from rems_ingest.adapters.db.store import Store
from rems_ingest.adapters.db.unit_of_work import StoreUnitOfWork
from rems_ingest.core.model import AncResult, Enroll, Event, PatientKey, Population, ResultStatus, Tick
from rems_ingest.core.timeline import Timeline
from rems_ingest.service.patients import apply_event

from .test_snapshots import _apply_to_store, _outbox, _state

POLICY = profiles.load("us-label")
START = date(2026, 1, 5)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _at(days: int) -> datetime:
    d = START + timedelta(days=days)
    return datetime(d.year, d.month, d.day, 8, tzinfo=UTC)


def _start() -> list[Event]:
    return [AncResult("base", Decimal(1800), _at(-1)), Enroll("enroll", START, Population.GENERAL, START, None), AncResult("R1", Decimal(2500), _at(7))]


SEVERE_UP_DOWN: list[Event] = [
    AncResult("R2", Decimal(400), _at(14)),
    AncResult("R2", Decimal(2400), _at(14), ResultStatus.CORRECTED),
    AncResult("R2", Decimal(400), _at(14), ResultStatus.CORRECTED),
]


def _live(t: Timeline, kind: str) -> list[str]:
    return [aid for aid, (a, gone) in t.outbox.items() if a.kind.value == kind and not gone]


def test_a_count_corrected_up_then_back_to_severe_pages_again() -> None:
    t = Timeline(POLICY)
    for e in _start() + SEVERE_UP_DOWN[:2]:
        t.apply(e)
    first = [aid for aid, (a, _) in t.outbox.items() if a.kind.value == "therapy.emergency"]
    assert len(first) == 1 and t.outbox[first[0]][1]  # withdrawn by the correction to 2,400
    again = t.apply(SEVERE_UP_DOWN[2])
    assert {"therapy.emergency", "therapy.interrupt", "pharmacy.hold"} <= {a.kind.value for a in again.raised}
    live = _live(t, "therapy.emergency")
    assert len(live) == 1 and live[0] != first[0]  # a new id: consumers dropped the old one
    assert t.state.dispense_hold


def test_a_final_after_its_preliminary_still_pages_once() -> None:
    t = Timeline(POLICY)
    for e in [*_start(), AncResult("R2", Decimal(400), _at(14), ResultStatus.PRELIMINARY)]:
        t.apply(e)
    final = t.apply(AncResult("R2", Decimal(400), _at(14)))
    assert "therapy.emergency" not in {a.kind.value for a in final.raised}
    assert len(_live(t, "therapy.emergency")) == 1


def test_a_resolved_overdue_stays_resolved_when_a_later_result_re_folds() -> None:
    t = Timeline(POLICY)
    for e in [*_start(), Tick("tick:2026-01-20", START + timedelta(days=15))]:
        t.apply(e)
    assert _live(t, "lab.overdue")
    t.apply(AncResult("R2", Decimal(2500), _at(13)))  # drawn by the due date, arrived late
    assert not _live(t, "lab.overdue") and _live(t, "lab.overdue_resolved")
    later = t.apply(AncResult("R3", Decimal(2600), _at(12)))  # another late one re-folds past it
    assert [] == [a for a in later.raised if a.kind.value == "alert.superseded"]
    assert _live(t, "lab.overdue_resolved")


def test_the_store_raises_again_under_the_same_new_id(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path}/r.db")
    s.migrate()
    key = PatientKey("RR1", "HOSP")
    t = Timeline(POLICY, patient=key)
    try:
        for e in _start() + SEVERE_UP_DOWN:
            t.apply(e)
            _apply_to_store(s, key, e)
        assert _outbox(s, key) == {aid: gone for aid, (_, gone) in t.outbox.items()}
        assert _state(s, key).state == t.state
    finally:
        s.close()


def test_messages_for_one_patient_in_one_commit_group_see_each_others_alerts(tmp_path: Path) -> None:
    """The writer commits what is queued together in one transaction; alerts are written
    behind (one executemany): a re-fold in the same group must still see and withdraw them."""
    s = Store(f"sqlite:///{tmp_path}/g.db", group_max=64)
    s.migrate()
    s.start()
    uow = StoreUnitOfWork(s)
    key = PatientKey("GRP1", "HOSP")
    t = Timeline(POLICY, patient=key)
    events = [*_start(), *SEVERE_UP_DOWN, AncResult("R3", Decimal(450), _at(13)), AncResult("R3", Decimal(2000), _at(13), ResultStatus.CORRECTED), AncResult("R2", Decimal(0), _at(14), ResultStatus.WRONG)]
    for e in events:
        t.apply(e)

    async def feed() -> None:
        def job(e: Event) -> Any:
            return lambda repo: apply_event(repo, POLICY, key, e, cause={"source": "test"}, now=NOW)

        await asyncio.gather(*(uow.write(job(e)) for e in events))

    try:
        asyncio.run(feed())
        assert _outbox(s, key) == {aid: gone for aid, (_, gone) in t.outbox.items()}
        assert _state(s, key).state == t.state
    finally:
        s.close()
