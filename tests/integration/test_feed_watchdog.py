"""The feed watchdog on a fake clock (issue #25): one feed.silent and one feed.resumed per
outage, whatever the number of looks, and the overdue alerts raised in between say that the
patient's feed is silent (the blood test may have been done)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from rems_ingest import profiles
from rems_ingest.adapters.db.schema import outbox
from rems_ingest.adapters.db.store import Store
from rems_ingest.adapters.db.unit_of_work import StoreUnitOfWork
from rems_ingest.core.model import PatientKey, Population
from rems_ingest.feeds.settings import FeedSettings, registry
from rems_ingest.service.clinic import ClinicService
from rems_ingest.service.commands import EnrollPatient
from rems_ingest.service.feed_watchdog import FeedWatchdog
from rems_ingest.service.ingest import IngestService

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
POLICY = profiles.load("us-label")
DRAWN = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # oru_251_anc_normal.hl7: drawn 2026-03-04 07:00-05:00


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/watch.db")
    s.migrate()
    s.start()
    yield s
    s.close()


def _alerts(store: Store, kind: str) -> list[dict[str, Any]]:
    def read(conn: Any) -> list[dict[str, Any]]:
        return [json.loads(r.payload) for r in conn.execute(select(outbox.c.payload).where(outbox.c.kind == kind).order_by(outbox.c.id))]

    return store.read(read)


def _result(control_id: str, drawn: str, value: str) -> bytes:
    raw = (FIXTURES / "oru_251_anc_normal.hl7").read_bytes()
    return raw.replace(b"|M0001|", f"|{control_id}|".encode()).replace(b"20260304070000-0500", drawn.encode()).replace(b"||2.1|", f"||{value}|".encode())


async def test_one_silent_and_one_resumed_per_outage_and_overdue_alerts_say_so(store: Store) -> None:
    feeds = registry({"lab": FeedSettings(networks=["127.0.0.0/8"], facilities=["GHH_LAB"], authorities=["HOSP"], silent_after_minutes=60)}, {})
    clock = Clock(DRAWN)
    uow = StoreUnitOfWork(store)
    ingest = IngestService(uow, lambda: POLICY, registry=feeds, clock=clock)
    clinic = ClinicService(uow, lambda: POLICY, clock=clock)
    watchdog = FeedWatchdog(uow, feeds, lambda: POLICY, clock=clock)

    assert b"MSA|AA" in await ingest.handle_frame(_result("W1", "20260304070000-0500", "2.1"), "127.0.0.1:4000")  # type: ignore[operator]
    await clinic.enroll(EnrollPatient(PatientKey("MRN1001", "HOSP"), Population.GENERAL, date(2026, 3, 4)))

    clock.t = DRAWN + timedelta(minutes=59)
    assert await watchdog.check() == []  # within the threshold
    clock.t = DRAWN + timedelta(minutes=61)
    first = await watchdog.check()
    assert [a["kind"] for a in first] == ["feed.silent"]
    replica = FeedWatchdog(uow, feeds, lambda: POLICY, clock=clock)  # a second daemon on the same store
    for minutes in (62, 120, 600):  # looking again, or from another daemon, pages no one twice
        clock.t = DRAWN + timedelta(minutes=minutes)
        assert await watchdog.check() == [] and await replica.check() == []
    silent = _alerts(store, "feed.silent")
    assert len(silent) == 1 and silent[0]["detail"]["feed"] == "lab" and silent[0]["severity"] == "high"

    # the weekly ANC is overdue while the feed is silent: the alert still goes out, and says so
    clock.t = datetime(2026, 3, 12, 14, 0, tzinfo=UTC)
    await clinic.sweep_overdue()
    overdue = _alerts(store, "lab.overdue")
    assert len(overdue) == 1
    assert overdue[0]["detail"]["feed_silent_since"] == silent[0]["detail"]["last_message_at"]
    assert overdue[0]["detail"]["feed"] == "lab"

    # traffic comes back: one feed.resumed; the feed is watched again from its new last message
    assert b"MSA|AA" in await ingest.handle_frame(_result("W2", "20260312080000-0500", "2.4"), "127.0.0.1:4001")  # type: ignore[operator]
    clock.t += timedelta(minutes=1)
    assert [a["kind"] for a in await watchdog.check()] == ["feed.resumed"]
    assert await watchdog.check() == []
    assert len(_alerts(store, "feed.resumed")) == 1

    # a second outage is a second page, under a new id
    clock.t += timedelta(hours=2)
    assert [a["kind"] for a in await watchdog.check()] == ["feed.silent"]
    ids = {a["alert_id"] for a in _alerts(store, "feed.silent")}
    assert len(ids) == 2


async def test_lab_hours_give_a_longer_threshold_at_night(store: Store) -> None:
    feeds = registry({"lab": FeedSettings(networks=["127.0.0.0/8"], facilities=["*"], authorities=["*"], lab_hours="07:00-19:00", silent_after_minutes=60, silent_after_minutes_off_hours=480)}, {})
    clock = Clock(datetime(2026, 3, 4, 18, 30, tzinfo=UTC))
    uow = StoreUnitOfWork(store)
    ingest = IngestService(uow, lambda: POLICY, registry=feeds, clock=clock)
    watchdog = FeedWatchdog(uow, feeds, lambda: POLICY, clock=clock)
    assert b"MSA|AA" in await ingest.handle_frame(_result("N1", "20260304130000-0500", "2.1"), "127.0.0.1:4000")  # type: ignore[operator]
    clock.t = datetime(2026, 3, 4, 21, 0, tzinfo=UTC)  # 2.5 h quiet, but outside lab hours
    assert await watchdog.check() == []
    clock.t = datetime(2026, 3, 5, 2, 31, tzinfo=UTC)  # 8 h 1 min quiet at night
    assert [a["kind"] for a in await watchdog.check()] == ["feed.silent"]
