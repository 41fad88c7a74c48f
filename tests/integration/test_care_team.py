"""Clinical decisions (issue #26), through the real API with real tokens: made by the patient's
own prescriber or a designee (anyone else breaks glass, and the clinic hears of it), for a real
date, never overwriting an event under a reused event_id, with one clear body contract."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from rems_ingest.adapters.db.schema import outbox
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.demo import oru
from rems_ingest.service.access import Role
from tests.conftest import make_settings
from tests.integration.test_access import Client

START = date.today() - timedelta(days=10)
TODAY = date.today()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Client]:
    s = make_settings(tmp_path)
    s.http.auth = "tokens"  # real identities: the care team is checked against them
    d = Daemon(s)
    await d.start()
    async with aiohttp.ClientSession() as session:
        yield Client(d, session)
    await d.shutdown()


async def _patient(api: Client, pid: str, *, designees: list[str] | None = None, held: bool = True) -> None:
    """Enrolled by the clinic with DR1 as prescriber; ``held``: interrupted at ANC 900 today."""
    async with MllpClient("127.0.0.1", api.d.server.bound_port) as c:
        assert b"MSA|AA" in await c.send(oru(f"{pid}-B", pid, START - timedelta(days=1), "1.8", f"{pid}-B"))
    clinic = await api.token(Role.CLINIC, name="clinic-desk")
    body = {"id": pid, "authority": "HOSP", "population": "general", "therapy_start": START.isoformat(), "prescriber_id": "DR1", "pharmacy_id": "RX1", "designees": designees or []}
    assert 201 == (await api.call("POST", "/v1/patients", clinic, json=body))[0]
    if held:
        async with MllpClient("127.0.0.1", api.d.server.bound_port) as c:
            assert b"MSA|AA" in await c.send(oru(f"{pid}-W", pid, TODAY, "0.9", f"{pid}-W"))


async def _event(api: Client, token: str, pid: str, **body: Any) -> tuple[int, Any]:
    return await api.call("POST", f"/v1/patients/{pid}/events?authority=HOSP", token, json={"on": TODAY.isoformat(), **body})


async def _may_dispense(api: Client, pid: str) -> bool:
    rx = await api.token(Role.PHARMACY, name="rx", pharmacy_id="RX1")
    return bool((await api.call("GET", f"/v1/patients/{pid}/dispense-check?authority=HOSP&on={TODAY.isoformat()}", rx))[1]["authorized"])


def _kinds(api: Client) -> list[dict[str, Any]]:
    return api.d.store.read(lambda c: [json.loads(r.payload) for r in c.execute(select(outbox.c.payload).where(outbox.c.kind == "access.break_glass"))])


OVERRIDE = {"type": "override", "rationale": "benign ethnic neutropenia confirmed by haematology"}

# who (token name, roles) x what they send -> the answer, and whether the hold is lifted
MATRIX = [
    ("own prescriber", "DR1", (Role.PRESCRIBER,), {}, 201, True),
    ("designee", "DR-LOCUM", (Role.PRESCRIBER,), {}, 201, True),
    ("another patient's prescriber", "DR2", (Role.PRESCRIBER,), {}, 403, False),
    ("another prescriber breaking glass", "DR2", (Role.PRESCRIBER,), {"break_glass": True, "break_glass_reason": "DR1 unreachable, patient in ED"}, 201, True),
    ("break glass without a reason", "DR2", (Role.PRESCRIBER,), {"break_glass": True}, 422, False),
    ("a pharmacist", "RX-PHARMACIST", (Role.PHARMACY,), {}, 403, False),
    ("the clinic desk", "clinic-desk", (Role.CLINIC,), {}, 403, False),
]


@pytest.mark.parametrize(("who", "name", "roles", "extra", "code", "lifted"), MATRIX, ids=[m[0] for m in MATRIX])
async def test_role_by_patient_by_decision(api: Client, who: str, name: str, roles: tuple[Role, ...], extra: dict[str, Any], code: int, lifted: bool) -> None:
    await _patient(api, "CT1", designees=["DR-LOCUM"])
    token = await api.token(*roles, name=name)
    status, body = await _event(api, token, "CT1", **OVERRIDE, **extra)
    assert status == code, body
    assert await _may_dispense(api, "CT1") is lifted
    glass = _kinds(api)
    if extra.get("break_glass") and code == 201:
        assert len(glass) == 1 and glass[0]["detail"]["by"] == "DR2" and glass[0]["patient"]["id"] == "CT1"
        assert glass[0]["alert_id"] in body["alerts_raised"]
    else:
        assert glass == []


async def test_every_decision_kind_is_for_the_care_team_and_a_fever_is_for_anyone(api: Client) -> None:
    await _patient(api, "CT2", held=False)
    dr2 = await api.token(Role.PRESCRIBER, name="DR2")
    for etype in ("interrupt", "discontinue", "stepdown_confirmed", "resume", "rechallenge"):
        status, body = await _event(api, dr2, "CT2", type=etype, rationale="r")
        assert status == 403 and "DR1" in body["detail"], (etype, body)
    assert 201 == (await _event(api, dr2, "CT2", type="fever", temperature_c=38.9))[0]


async def test_a_future_or_far_past_date_is_422_naming_the_bound(api: Client) -> None:
    await _patient(api, "CT3")
    dr1 = await api.token(Role.PRESCRIBER, name="DR1")
    for on, bound in (("2030-01-01", "in the future"), ("9999-12-24", "in the future"), ("1999-01-01", "baseline window")):
        status, body = await _event(api, dr1, "CT3", **{**OVERRIDE, "on": on})
        assert status == 422 and bound in body["detail"], (on, body)
    status, body = await _event(api, dr1, "CT3", type="fever", temperature_c=39.0, on="9999-12-31")  # was a 500 (OverflowError)
    assert status == 422
    assert not await _may_dispense(api, "CT3")
    integration = await api.token(Role.INTEGRATION, name="eng")
    assert 422 == (await api.call("POST", "/v1/sweeps/overdue?now=9999-12-31T09:00:00%2B00:00", integration))[0]


async def test_an_event_id_reused_with_another_body_is_409_and_never_overwrites(api: Client) -> None:
    await _patient(api, "CT4")
    dr1, dr2 = await api.token(Role.PRESCRIBER, name="DR1"), await api.token(Role.PRESCRIBER, name="DR2")
    first = await _event(api, dr1, "CT4", **OVERRIDE, event_id="E-1")
    assert first[0] == 201
    again = await _event(api, dr1, "CT4", **OVERRIDE, event_id="E-1")  # a client's retry
    assert again[0] == 200 and again[1]["duplicate"] is True and again[1]["state_version"] == first[1]["state_version"]
    other = await _event(api, dr1, "CT4", type="interrupt", event_id="E-1")
    assert other[0] == 409
    forged = await _event(api, dr2, "CT4", type="discontinue", event_id="E-1", break_glass=True, break_glass_reason="x")
    assert forged[0] == 409
    assert await _may_dispense(api, "CT4")  # DR1's override stands


async def test_bodies_are_strict_and_by_comes_from_the_identity(api: Client) -> None:
    await _patient(api, "CT5")
    dr1 = await api.token(Role.PRESCRIBER, name="DR1")
    status, body = await _event(api, dr1, "CT5", type="discontinue", planned=True)
    assert status == 422 and "planned" in body["detail"]  # was silently an abrupt stop
    assert 201 == (await _event(api, dr1, "CT5", **OVERRIDE))[0]  # no "by": the server sets it (was 422 "by is required")


async def test_the_remote_cli_records_an_override_as_the_tokens_holder(api: Client) -> None:
    """It always got 422 "by is required" before: the body check ran before the server set by."""
    import asyncio
    import os
    import subprocess

    from tests.process import BIN

    await _patient(api, "CT6")
    dr1 = await api.token(Role.PRESCRIBER, name="DR1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMS_")} | {"REMS_API_URL": api.base, "REMS_API_TOKEN": dr1, "REMS_STORE__URL": "sqlite:////nonexistent/never.db"}
    args = [str(BIN), "event", "CT6", "override", "--authority", "HOSP", "--on", TODAY.isoformat(), "--rationale", "haematology agrees", "--event-id", "CLI-1"]
    done = await asyncio.to_thread(subprocess.run, args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert await _may_dispense(api, "CT6")
    again = await asyncio.to_thread(subprocess.run, args, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and '"duplicate": true' in again.stdout


async def test_void_is_for_the_author_the_care_team_or_the_clinic(api: Client) -> None:
    await _patient(api, "CT7", held=False)
    async with MllpClient("127.0.0.1", api.d.server.bound_port) as c:  # a current normal count: dispensable
        assert b"MSA|AA" in await c.send(oru("CT7-N", "CT7", TODAY, "2.2", "CT7-N"))
    assert await _may_dispense(api, "CT7")
    dr1, dr2 = await api.token(Role.PRESCRIBER, name="DR1"), await api.token(Role.PRESCRIBER, name="DR2")
    clinic = await api.token(Role.CLINIC, name="clinic-lead")
    assert 201 == (await _event(api, dr1, "CT7", type="discontinue", abrupt=True, event_id="STOP-1"))[0]
    assert not await _may_dispense(api, "CT7")
    path = "/v1/patients/CT7/events/{}/void?authority=HOSP"
    status, body = await api.call("POST", path.format("STOP-1"), dr2, json={"reason": "not mine"})
    assert status == 403, body
    assert 404 == (await api.call("POST", path.format("NOPE"), clinic, json={"reason": "x"}))[0]
    assert 422 == (await api.call("POST", path.format("STOP-1"), clinic, json={}))[0]  # a reason is required
    status, body = await api.call("POST", path.format("STOP-1"), clinic, json={"reason": "recorded on the wrong patient"})
    assert status == 200 and body["treatment_status"] == "active", body
    assert await _may_dispense(api, "CT7")
    assert 409 == (await api.call("POST", path.format("STOP-1"), dr1, json={"reason": "again"}))[0]
