"""The console's worklists (issue #16) put each patient on the right lists, found in SQL by due
date and state (the stored JSON is matched without decoding every patient)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
from rems_ingest.service.worklists import Filters

TODAY = date.today()


@pytest.fixture
def d(daemon: Daemon) -> Daemon:
    return daemon  # conftest's daemon (SQLite, http.auth = none), under a short name


async def _patient(d: Daemon, pid: str, start: date, results: list[tuple[date, str]], prescriber: str = "DR1", population: str = "general") -> None:
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        assert b"MSA|AA" in await c.send(oru(f"{pid}-B", pid, start - timedelta(days=1), "1.8" if population == "general" else "1.2", f"{pid}-B"))
        if population == "ben":
            assert b"MSA|AA" in await c.send(oru(f"{pid}-B2", pid, start - timedelta(days=2), "1.1", f"{pid}-B2"))
        await d.clinic.enroll(EnrollPatient.from_mapping({"id": pid, "authority": "HOSP", "population": population, "therapy_start": start.isoformat(), "prescriber_id": prescriber, "pharmacy_id": "RX1"}))
        for n, (on, anc) in enumerate(results):
            assert b"MSA|AA" in await c.send(oru(f"{pid}-{n}", pid, on, anc, f"{pid}-{n}"))


def _on(lists: dict[str, list[object]], name: str) -> set[str]:
    return {i.patient.id for i in lists[name]}  # type: ignore[attr-defined]


async def test_each_patient_is_on_the_lists_its_state_calls_for(d: Daemon) -> None:
    await _patient(d, "LATE", TODAY - timedelta(days=30), [])  # weekly from 30 days ago: overdue
    await _patient(d, "DUE", TODAY - timedelta(days=7), [])  # weekly, next due today
    await _patient(d, "HELD", TODAY - timedelta(days=3), [(TODAY, "0.9")])  # moderate: interrupt, hold
    await _patient(d, "MILD", TODAY - timedelta(days=3), [(TODAY, "1.2")], prescriber="DR2")  # mild: repeat within 24 h
    await _patient(d, "FINE", TODAY - timedelta(days=2), [(TODAY, "2.5")])
    await _patient(d, "SEVERE", TODAY - timedelta(days=20), [(TODAY - timedelta(days=12), "0.4"), *((TODAY - timedelta(days=11 - k), "1.6") for k in range(11))])
    wl = (await d.services.worklists.worklists(Filters())).lists
    assert "LATE" in _on(wl, "overdue") and "DUE" in _on(wl, "due")
    assert {"HELD"} <= _on(wl, "holds") and "FINE" not in _on(wl, "holds")
    assert "MILD" in _on(wl, "confirm")
    assert "SEVERE" in _on(wl, "decisions")
    assert "FINE" not in set().union(*(_on(wl, n) for n in ("overdue", "holds", "confirm", "decisions")))
    held = next(i for i in wl["holds"] if i.patient.id == "HELD")
    assert held.action == "interrupt" and "interrupted" in held.detail
    mine = (await d.services.worklists.worklists(Filters(prescriber="DR2"))).lists
    assert {"MILD"} == set().union(*(_on(mine, n) for n in ("overdue", "due", "holds", "confirm", "decisions")))


async def test_a_result_for_nobody_enrolled_is_listed(d: Daemon) -> None:
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        assert b"MSA|AA" in await c.send(oru("TYPO-1", "MRN-TYPO", TODAY, "1.9", "TYPO-1"))
    wl = (await d.services.worklists.worklists(Filters())).lists
    assert "MRN-TYPO" in _on(wl, "unattributed")


def test_a_sender_that_usually_sends_in_this_hour_and_has_not_is_flagged_quiet() -> None:
    from datetime import UTC, datetime

    from rems_ingest.service.feeds import gone_quiet

    now = datetime(2026, 3, 10, 14, 20, tzinfo=UTC)
    usual = {(now - timedelta(days=d)).strftime("%Y-%m-%dT%H"): 30 for d in range(1, 8)}
    assert gone_quiet(now, usual)  # 7 of 7 days at 14:00, nothing this hour or the last
    assert not gone_quiet(now, {**usual, "2026-03-10T14": 3})  # it is sending
    assert not gone_quiet(now, {**usual, "2026-03-10T13": 3})  # it sent in the last hour
    assert not gone_quiet(now, {k: v for k, v in list(usual.items())[:3]})  # only 3 of 7 days: not usual


async def test_feeds_count_messages_rejects_and_warnings_per_sender(d: Daemon) -> None:
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        for n in range(3):
            assert b"MSA|AA" in await c.send(oru(f"F-{n}", f"FEED{n}", TODAY, "1.9", f"F-{n}"))
        assert b"MSA|AR" in await c.send(oru("F-BAD", "FEED9", TODAY, "1.9", "F-BAD").replace(b"ORU^R01", b"ADT^A01"))
    (feed,) = await d.services.feeds.feeds()
    assert feed.messages == 4 and feed.rejected == 1 and sum(feed.hourly) == 4 and feed.hourly[-1] == 4
    assert not feed.quiet and feed.last_at


async def test_the_patient_record_names_the_held_episodes_and_what_superseded_an_alert(d: Daemon) -> None:
    from rems_ingest.core.model import PatientKey

    start = TODAY - timedelta(days=10)
    await _patient(d, "EP1", start, [(TODAY - timedelta(days=3), "0.9"), (TODAY - timedelta(days=2), "1.6")])
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:  # the lab corrects the 900 to 1,800
        corrected = oru("EP1-0", "EP1", TODAY - timedelta(days=3), "1.8", "EP1-0").replace(b"|||F", b"|||C")
        assert b"MSA|AA" in await c.send(corrected)
    record = await d.services.worklists.record(PatientKey("EP1", "HOSP"))
    assert record is not None
    superseded = [a for a in record["alerts"] if a["withdrawn"]]
    assert superseded and all(a["superseded_by"].startswith("alert.superseded") for a in superseded)
    assert [] == record["episodes"]  # the correction took the interruption away
    await _patient(d, "EP2", start, [(TODAY - timedelta(days=3), "0.9")])
    held = await d.services.worklists.record(PatientKey("EP2", "HOSP"))
    assert held is not None
    (episode,) = held["episodes"]
    assert (episode.start, episode.end, episode.what) == (TODAY - timedelta(days=3), None, "therapy interrupted for neutropenia")


async def test_a_worklist_sorts_by_a_column(d: Daemon) -> None:
    await _patient(d, "ZED", TODAY - timedelta(days=30), [])
    await _patient(d, "ABE", TODAY - timedelta(days=20), [])
    by_lateness = [i.patient.id for i in (await d.services.worklists.worklists(Filters())).lists["overdue"]]
    by_name = [i.patient.id for i in (await d.services.worklists.worklists(Filters(sort="patient"))).lists["overdue"]]
    assert by_lateness == ["ZED", "ABE"] and by_name == ["ABE", "ZED"]
