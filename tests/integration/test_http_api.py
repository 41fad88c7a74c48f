"""The HTTP API through the real aiohttp server: enrollment, events, dispense checks, sweeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.demo import oru

START = date(2026, 3, 2)


class Api:
    def __init__(self, d: Daemon, session: aiohttp.ClientSession) -> None:
        self.d, self.s = d, session
        self.base = f"http://127.0.0.1:{d.http_port}"

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.s.request(method, self.base + path, **kw) as r:
            return r.status, await r.json()

    async def enroll(self, pid: str, population: str = "general", **extra: Any) -> tuple[int, Any]:
        return await self.call("POST", "/v1/patients", json={"id": pid, "authority": "HOSP", "population": population, "therapy_start": START.isoformat(), **extra})

    async def event(self, pid: str, type_: str, on: date, **extra: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/v1/patients/{pid}/events?authority=HOSP", json={"type": type_, "on": on.isoformat(), "by": "DR1", **extra})

    async def check(self, pid: str, on: date) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/patients/{pid}/dispense-check?authority=HOSP&on={on.isoformat()}")
        assert 200 == status
        return body  # type: ignore[no-any-return]

    async def anc(self, pid: str, on: date, k: str, n: int = 0) -> None:
        async with MllpClient("127.0.0.1", self.d.server.bound_port) as c:
            reply = await c.send(oru(f"{pid}-{on}-{n}", pid, on, k, f"{pid}-{on}-{n}"))
        assert b"MSA|AA" in reply


@pytest.fixture
async def api(daemon: Daemon) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as s:
        yield Api(daemon, s)


async def started(api: Api, pid: str, freq: str | None = None, population: str = "general") -> None:
    if population == "ben":
        await api.anc(pid, START - timedelta(days=2), "1.2")
        await api.anc(pid, START - timedelta(days=1), "1.1")
        status, _ = await api.enroll(pid, "ben", baseline_anc=1100)
    else:
        await api.anc(pid, START - timedelta(days=1), "1.8")
        status, _ = await api.enroll(pid, monitoring_frequency=freq) if freq else await api.enroll(pid)
    assert 201 == status


class TestEnrollment:
    async def test_enroll_returns_the_patient_status(self, api: Api) -> None:
        await api.anc("E1", START - timedelta(days=1), "1.8")
        status, body = await api.enroll("E1", prescriber_id="DR1", pharmacy_id="RX1")

        assert 201 == status
        assert ("continue", "active", "weekly") == (body["action"], body["treatment_status"], body["monitoring"]["frequency"])

    async def test_duplicate_enrollment_is_409(self, api: Api) -> None:
        await api.enroll("E2")
        status, body = await api.enroll("E2")

        assert (409, "conflict") == (status, body["error"])

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"id": "X", "population": "martian", "therapy_start": "2026-03-02"}, 422),
            ({"id": "X", "population": "general", "therapy_start": "03/02/2026"}, 422),
            ({"population": "general", "therapy_start": "2026-03-02"}, 422),
            ({"id": "X", "population": "general", "therapy_start": "2026-03-02", "baseline_anc": 1200}, 422),
        ],
    )
    async def test_invalid_enrollment_says_why(self, api: Api, body: dict[str, Any], status: int) -> None:
        got, err = await api.call("POST", "/v1/patients", json=body)

        assert status == got
        assert err["detail"]

    async def test_malformed_json_is_400(self, api: Api) -> None:
        status, body = await api.call("POST", "/v1/patients", data=b"{not json", headers={"Content-Type": "application/json"})

        assert (400, "bad_json") == (status, body["error"])

    async def test_unknown_patient_status_is_404(self, api: Api) -> None:
        assert 404 == (await api.call("GET", "/v1/patients/NOPE?authority=HOSP"))[0]


class TestPrescriberEvents:
    async def test_interrupt_and_resume(self, api: Api) -> None:
        await started(api, "P1")
        s1, b1 = await api.event("P1", "interrupt", START + timedelta(days=3))
        s2, b2 = await api.event("P1", "resume", START + timedelta(days=5))

        assert (201, "held_other") == (s1, b1["treatment_status"])
        assert (201, "active") == (s2, b2["treatment_status"])

    async def test_resume_below_recovery_threshold_is_409(self, api: Api) -> None:
        await started(api, "P2")
        await api.anc("P2", START + timedelta(days=7), "0.8")
        status, body = await api.event("P2", "resume", START + timedelta(days=8))

        assert 409 == status
        assert "not recovered" in body["detail"]

    async def test_rechallenge_after_severe_needs_a_recorded_decision(self, api: Api) -> None:
        await started(api, "P3")
        await api.anc("P3", START + timedelta(days=7), "0.4")
        await api.anc("P3", START + timedelta(days=9), "1.6")
        missing, _ = await api.event("P3", "rechallenge", START + timedelta(days=10))
        ok, body = await api.event("P3", "rechallenge", START + timedelta(days=10), rationale="treatment-resistant; benefit outweighs risk")

        assert 422 == missing
        assert (201, "active", START + timedelta(days=10)) == (ok, body["treatment_status"], date.fromisoformat(body["therapy_start"]))

    async def test_discontinue_override_fever_and_stepdown(self, api: Api) -> None:
        await started(api, "P4")
        await api.anc("P4", START + timedelta(days=7), "0.8")
        s_override, b_override = await api.event("P4", "override", START + timedelta(days=8), rationale="documented benefit")
        s_fever, b_fever = await api.event("P4", "fever", START + timedelta(days=9), temperature_c=39.0)
        s_step, _ = await api.event("P4", "stepdown_confirmed", START + timedelta(days=9))
        s_disc, b_disc = await api.event("P4", "discontinue", START + timedelta(days=10))

        assert (201, "continue_with_override") == (s_override, b_override["action"])
        assert 201 == s_fever and b_fever["alerts_raised"]
        assert 409 == s_step
        assert (201, "discontinued") == (s_disc, b_disc["treatment_status"])

    async def test_event_for_unknown_patient_is_404(self, api: Api) -> None:
        assert 404 == (await api.event("GHOST", "interrupt", START))[0]


class TestDispenseCheck:
    @pytest.mark.parametrize(("freq", "window", "supply"), [("weekly", 7, 7), ("every_2_weeks", 15, 14), ("monthly", 31, 30)])
    async def test_days_around_each_window_boundary(self, api: Api, freq: str, window: int, supply: int) -> None:
        pid = f"W-{freq}"
        await started(api, pid, freq=freq)
        drawn = START + timedelta(days=1)
        await api.anc(pid, drawn, "2.0")

        inside = await api.check(pid, drawn + timedelta(days=window - 1))
        edge = await api.check(pid, drawn + timedelta(days=window))
        past = await api.check(pid, drawn + timedelta(days=window + 1))

        assert (True, True, False) == (inside["authorized"], edge["authorized"], past["authorized"])
        assert supply == edge["max_days_supply"]
        assert 2000.0 == edge["latest_anc"]["per_ul"]
        assert "DISPENSE_HOLD_ANC_NOT_CURRENT" == past["code"]

    async def test_ben_patient_at_800_may_dispense(self, api: Api) -> None:
        await started(api, "B1", population="ben")
        await api.anc("B1", START + timedelta(days=7), "0.8")

        assert (await api.check("B1", START + timedelta(days=7)))["authorized"]

    async def test_interrupted_patient_may_not(self, api: Api) -> None:
        await started(api, "I1")
        await api.event("I1", "interrupt", START + timedelta(days=2))
        body = await api.check("I1", START + timedelta(days=3))

        assert (False, "TREATMENT_HELD_OTHER") == (body["authorized"], body["code"])

    async def test_unknown_patient_may_not(self, api: Api) -> None:
        body = await api.check("NOBODY", START)

        assert (False, "PATIENT_NOT_ENROLLED") == (body["authorized"], body["code"])

    async def test_store_unreachable_means_no(self, api: Api) -> None:
        from sqlalchemy import create_engine

        healthy = api.d.store._reader
        api.d.store._reader = create_engine("sqlite:////nonexistent/dir/x.db")
        try:
            body = await api.check("ANY", START)
        finally:
            api.d.store._reader = healthy

        assert (False, "STORE_UNAVAILABLE") == (body["authorized"], body["code"])


async def test_a_check_without_the_authority_says_where_the_patient_is_enrolled(api: Api) -> None:
    """Issue #19: `dispense-check ID` without --authority answered PATIENT_NOT_ENROLLED for a
    patient enrolled under HOSP, with no hint."""
    await started(api, "AUTH1")
    status, body = await api.call("GET", f"/v1/patients/AUTH1/dispense-check?on={(START + timedelta(days=1)).isoformat()}")
    assert 200 == status and body["authorized"] is False and body["code"] == "PATIENT_NOT_ENROLLED"
    assert "AUTH1 is enrolled under authority HOSP: ask with authority=HOSP" in body["reason"]
    status, body = await api.call("GET", "/v1/patients/AUTH1")
    assert 404 == status and "enrolled under authority HOSP" in body["detail"]


async def test_un_enrolling_waits_until_nothing_is_left_to_monitor(api: Api) -> None:
    """A clinic takes a patient off the programme only before therapy starts or once monitoring
    has ended after a discontinuation; a patient on therapy stays monitored (409)."""
    await started(api, "UN1")
    status, body = await api.call("DELETE", "/v1/patients/UN1?authority=HOSP", json={"reason": "moved to another trust"})
    assert 409 == status and "discontinuation first" in body["detail"]
    assert 422 == (await api.call("DELETE", "/v1/patients/UN1?authority=HOSP", json={}))[0]  # a reason is required
    assert 201 == (await api.event("UN1", "discontinue", START + timedelta(days=1), abrupt=False))[0]
    status, body = await api.call("DELETE", "/v1/patients/UN1?authority=HOSP", json={"reason": "moved to another trust"})
    assert 200 == status and body["enrolled"] is False
    check = await api.check("UN1", START + timedelta(days=2))
    assert (False, "PATIENT_NOT_ENROLLED") == (check["authorized"], check["code"])
    assert 422 == (await api.event("UN1", "unenroll", START + timedelta(days=2)))[0]  # not a prescriber event


class TestOverdue:
    async def test_one_lab_overdue_per_missed_date_however_often_the_sweep_runs(self, api: Api) -> None:
        await started(api, "O1")
        await api.anc("O1", START + timedelta(days=1), "1.9")  # due START+8
        now = f"{(START + timedelta(days=10)).isoformat()}T09:00:00%2B00:00"

        first = await api.call("POST", f"/v1/sweeps/overdue?now={now}")
        second = await api.call("POST", f"/v1/sweeps/overdue?now={now}")
        later = await api.call("POST", f"/v1/sweeps/overdue?now={(START + timedelta(days=12)).isoformat()}T09:00:00%2B00:00")

        assert ["lab.overdue", "pharmacy.hold"] == sorted(a["kind"] for a in first[1]["alerts"])
        kinds = [a["kind"] for a in (await api.call("GET", "/v1/patients/O1?authority=HOSP"))[1]["recent_alerts"]]
        assert 1 == kinds.count("lab.overdue")
        assert [] == second[1]["alerts"] and [] == later[1]["alerts"]

    async def test_a_backdated_sweep_stamps_its_alerts_with_the_wall_clock(self, api: Api) -> None:
        """The clinical date stays in effective_on; created_at (what the outbox age and /readyz
        measure) is when the alert was made, so a backdated sweep does not look 250 days stale."""
        import json
        from datetime import UTC, datetime

        from sqlalchemy import select

        from rems_ingest.adapters.db.schema import outbox

        await started(api, "O2")
        await api.anc("O2", START + timedelta(days=1), "1.9")
        before = datetime.now(UTC)
        swept = await api.call("POST", f"/v1/sweeps/overdue?now={(START + timedelta(days=10)).isoformat()}T09:00:00%2B00:00")
        assert swept[1]["alerts"]
        rows = await api.d.store.aread(lambda c: list(c.execute(select(outbox.c.kind, outbox.c.created_at, outbox.c.payload).where(outbox.c.kind == "lab.overdue"))))
        ((_kind, created_at, payload),) = rows
        body = json.loads(payload)
        assert body["effective_on"] == (START + timedelta(days=10)).isoformat()
        for stamp in (created_at, body["created_at"]):
            assert datetime.fromisoformat(stamp) >= before - timedelta(seconds=1)

    async def test_sweep_now_must_carry_an_offset(self, api: Api) -> None:
        assert 422 == (await api.call("POST", "/v1/sweeps/overdue?now=2026-03-10T09:00:00"))[0]


async def test_health_readiness_and_metrics(api: Api) -> None:
    h = await api.call("GET", "/healthz")
    r = await api.call("GET", "/readyz")
    async with api.s.get(api.base + "/metrics") as resp:
        text = await resp.text()

    assert (200, "ok") == (h[0], h[1]["status"])
    assert (200, True, "disabled") == (r[0], r[1]["ready"], r[1]["broker"])
    assert "rems_outbox_backlog" in text and "rems_ack_latency_seconds" in text


@pytest.mark.parametrize("raised", ["through SQLAlchemy", "by the driver"])
async def test_a_store_that_is_down_is_a_json_503_with_retry_after_never_a_500(api: Api, monkeypatch: pytest.MonkeyPatch, raised: str) -> None:
    """While the database is away a read or a write is "unavailable, retry later" (503 with
    Retry-After), never an unexplained 500; a dispense check stays an answer, "do not dispense"
    (the contract: any doubt is authorized false)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from rems_ingest.adapters.db.repository import Repository

    await started(api, "DOWN1")

    def down(*_a: Any, **_k: Any) -> Any:
        if raised == "by the driver":
            raise sqlite3.OperationalError("unable to open database file")
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))

    monkeypatch.setattr(Repository, "patient", down)
    monkeypatch.setattr(Repository, "patient_row", down, raising=False)
    status, check = await api.call("GET", f"/v1/patients/DOWN1/dispense-check?authority=HOSP&on={START.isoformat()}")
    assert (200, False, "STORE_UNAVAILABLE") == (status, check["authorized"], check["code"])
    for method, path, kw in [
        ("GET", "/v1/patients/DOWN1?authority=HOSP", {}),
        ("POST", "/v1/patients", {"json": {"id": "DOWN2", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}}),
    ]:
        async with api.s.request(method, api.base + path, **kw) as r:
            body = await r.json()
            assert (503, "store_unavailable") == (r.status, body["error"]), (path, r.status, body)
            assert "Retry-After" in r.headers
    monkeypatch.undo()
    assert (await api.check("DOWN1", START))["authorized"]  # answered again once it is back


async def test_the_console_says_the_store_cannot_be_reached_in_a_page(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """An on-call psychiatrist opening a patient while the database is away reads why, in the
    console's own page (503, Retry-After), not a JSON error or a blank 500."""
    from sqlalchemy.exc import OperationalError

    from rems_ingest.adapters.db.repository import Repository

    await started(api, "DOWNUI")

    def down(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))

    monkeypatch.setattr(Repository, "patient", down)
    async with api.s.get(api.base + "/ui/patients/DOWNUI?authority=HOSP") as r:
        page = await r.text()
        assert (503, "text/html") == (r.status, r.content_type) and "Retry-After" in r.headers
        assert "store cannot be reached" in page and "nothing was changed" in page
