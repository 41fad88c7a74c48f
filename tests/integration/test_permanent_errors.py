"""A problem a resend cannot fix never gets AE (that stalls the lab's feed behind it), the
message is kept, and the answer is the same on SQLite and PostgreSQL (issues #12 and #13)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.core.model import PatientKey
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
from tests.conftest import make_settings

TODAY = datetime.now(UTC).date()
START = TODAY - timedelta(days=20)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Daemon]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    d = Daemon(make_settings(tmp_path, store_url=url))
    await d.start()
    yield d
    await d.shutdown()


async def _enrolled(d: Daemon, c: MllpClient, pid: str) -> None:
    assert b"MSA|AA" in await c.send(oru(f"{pid}-B", pid, START - timedelta(days=1), "1.8", f"{pid}-B"))
    await d.clinic.enroll(EnrollPatient.from_mapping({"id": pid, "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))


def _msa_err(ack: bytes) -> tuple[str, list[str]]:
    segs = ack.decode().split("\r")
    msa = next(s for s in segs if s.startswith("MSA|")).split("|")[1]
    return msa, [s for s in segs if s.startswith("ERR|")]


async def _statuses(d: Daemon, control_id: str) -> list[str]:
    from sqlalchemy import select

    from rems_ingest.adapters.db.schema import inbound_message as m

    return await d.store.aread(lambda c: [r[0] for r in c.execute(select(m.c.status).where(m.c.control_id == control_id))])


async def test_an_identifier_longer_than_the_store_holds_is_AR_naming_the_field_and_kept(daemon: Daemon) -> None:
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        ack = await c.send(oru("LONG-1", "P" * 250, TODAY, "1.8", "LONG-1"))
        again = await c.send(oru("LONG-1", "P" * 250, TODAY, "1.8", "LONG-1"))
        after = await c.send(oru("OK-1", "P1", TODAY, "1.8", "OK-1"))  # the feed keeps moving
    code, errs = _msa_err(ack)
    assert code == "AR" and any("PID^1^3" in e for e in errs), ack
    assert _msa_err(again)[0] == "AR"
    assert ["REJECTED"] == await _statuses(daemon, "LONG-1")
    assert b"MSA|AA|OK-1" in after


async def test_a_long_filler_order_number_is_AR_not_a_store_error(daemon: Daemon) -> None:
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        fine = await c.send(oru("FIL-1", "P2", TODAY, "1.8", "F" * 150))  # longer than the old sort-key column
        too_long = await c.send(oru("FIL-2", "P2", TODAY, "1.8", "F" * 300))
    assert b"MSA|AA|FIL-1" in fine
    code, errs = _msa_err(too_long)
    assert code == "AR" and any("OBR^1^3" in e for e in errs)


@pytest.mark.parametrize("drawn", [date(9999, 12, 31), date(2099, 1, 1), date(1901, 1, 1)])
async def test_an_implausible_draw_date_is_reported_and_never_moves_the_state(daemon: Daemon, drawn: date) -> None:
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        await _enrolled(daemon, c, "FUT1")
        before = await daemon.clinic.status(PatientKey("FUT1", "HOSP"))
        ack = await c.send(oru("FUT-1", "FUT1", drawn, "0.3", "FUT-1"))
    code, errs = _msa_err(ack)
    assert code == "AA" and errs and "|W|" in errs[0] and "OBX^14" in errs[0], ack
    after = await daemon.clinic.status(PatientKey("FUT1", "HOSP"))
    assert after["monitoring"]["next_due"] == before["monitoring"]["next_due"]
    assert after["category"] == before["category"] == "normal"
    kinds = await daemon.store.aread(lambda c: [r.kind for r in Repository(c).alerts_for(1, 50)])
    assert "data.quality" in kinds and "therapy.emergency" not in kinds


def _unknown_code_cbc(control_id: str, patient: str, on: date) -> bytes:
    raw = oru(control_id, patient, on, "0.9", control_id).decode()
    raw = raw.replace("751-8^Neutrophils [#/volume] in Blood by Automated count^LN", "ZZ7^Result 7^99LOCAL")
    raw += "OBX|2|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||4.1|10*3/uL|||||F\r"
    return raw.encode()


async def test_a_blood_count_whose_anc_was_not_read_is_told_to_the_lab(daemon: Daemon) -> None:
    chem = oru("CHEM-1", "CBC1", TODAY, "1", "CHEM-1").decode()
    chem = chem.replace("57021-8^CBC W Auto Differential panel - Blood^LN", "24323-8^Comprehensive metabolic panel^LN")
    chem = chem.replace("751-8^Neutrophils [#/volume] in Blood by Automated count^LN", "2345-7^Glucose^LN").encode()
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        await _enrolled(daemon, c, "CBC1")
        ack = await c.send(_unknown_code_cbc("CBC-1", "CBC1", TODAY))
        stranger = await c.send(_unknown_code_cbc("CBC-2", "NOT-ENROLLED", TODAY))
        chem_ack = await c.send(chem)
    code, errs = _msa_err(ack)
    assert code == "AA" and errs and "ANC not read" in errs[0] and "|W|" in errs[0]
    assert _msa_err(stranger)[1], "the lab hears about it for any patient"
    assert _msa_err(chem_ack) == ("AA", [])  # chemistry stays silent
    kinds = await daemon.store.aread(lambda c: [r.kind for r in Repository(c).alerts_for(1, 50)])
    assert kinds.count("data.quality") == 1


async def test_an_error_in_processing_one_message_is_AR_and_kept_for_replay(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    import rems_ingest.service.ingest as ingest_mod

    def broken(*_a: object, **_k: object) -> None:
        raise ValueError("a bug this message trips")

    monkeypatch.setattr(ingest_mod, "apply_event", broken)
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        ack = await c.send(oru("BUG-1", "BUG1", TODAY, "1.8", "BUG-1"))
    assert _msa_err(ack)[0] == "AR"
    assert ["REJECTED"] == await _statuses(daemon, "BUG-1")


async def test_a_bug_in_reading_one_message_is_AR_kept_and_the_connection_keeps_serving(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any defect while reading a message (not only the error types a parser expects) answers
    AR with ERR 207 and keeps the message: a dropped connection with no ACK makes the lab
    resend the same message for ever, and nothing behind it gets through."""
    import rems_ingest.hl7v2.parse as parse_mod

    real = parse_mod.extract_segments

    def broken(segs, d, code_map=None, header=None, *args):  # type: ignore[no-untyped-def]
        if header is not None and header.control_id == "BUG-2":
            raise NameError("a defect this vendor's message shape trips")
        return real(segs, d, code_map, header, *args)

    monkeypatch.setattr(parse_mod, "extract_segments", broken)
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        ack = await c.send(oru("BUG-2", "BUG2", TODAY, "1.8", "BUG-2"))
        after = await c.send(oru("OK-2", "OK2", TODAY, "1.8", "OK-2"))
    code, errs = _msa_err(ack)
    assert code == "AR" and errs and "207" in errs[0]
    assert _msa_err(after)[0] == "AA"
    assert ["REJECTED"] == await _statuses(daemon, "BUG-2")


@pytest.mark.parametrize("via", ["the driver's cursor", "SQLAlchemy"])
async def test_a_constraint_the_message_always_breaks_is_AR_kept_and_the_feed_moves_on(daemon: Daemon, monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    """Every hot insert resolves a race with ON CONFLICT, so a constraint error left is the same on
    every resend: AE would stall the lab's feed behind this message for ever. (A real race is
    retried inside the store first.)"""
    from sqlalchemy import text

    def violates(self: Repository, rows: object) -> None:
        sql = "INSERT INTO outbox (id) VALUES (NULL)"  # NOT NULL columns missing, on both stores
        if via == "SQLAlchemy":
            self.conn.execute(text(sql))
        else:
            self.conn.connection.dbapi_connection.cursor().execute(sql)  # type: ignore[union-attr]

    monkeypatch.setattr(Repository, "insert_observations", violates)
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        ack = await c.send(oru("CON-1", "CON1", TODAY, "1.8", "CON-1"))
        monkeypatch.undo()
        after = await c.send(oru("CON-2", "CON2", TODAY, "1.8", "CON-2"))
    assert _msa_err(ack)[0] == "AR", ack
    assert ["REJECTED"] == await _statuses(daemon, "CON-1")
    assert _msa_err(after)[0] == "AA"
    assert daemon.readiness()["ready"]


async def test_a_constraint_error_that_goes_away_on_a_re_run_is_retried_inside_the_store(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two daemons racing on one row: the loser's transaction is re-run and the sender gets AA."""
    from rems_ingest.observability import metrics

    real, tries = Repository.insert_observations, []

    def races_once(self: Repository, rows: list[dict[str, object]]) -> None:
        tries.append(1)
        if len(tries) == 1:
            self.conn.connection.dbapi_connection.cursor().execute("INSERT INTO outbox (id) VALUES (NULL)")  # type: ignore[union-attr]
        real(self, rows)

    before = metrics.REGISTRY.get_sample_value("rems_store_retries_total", {"reason": "constraint"}) or 0
    monkeypatch.setattr(Repository, "insert_observations", races_once)
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        ack = await c.send(oru("RACE-1", "RACE1", TODAY, "1.8", "RACE-1"))
    assert _msa_err(ack)[0] == "AA" and len(tries) == 2
    assert (metrics.REGISTRY.get_sample_value("rems_store_retries_total", {"reason": "constraint"}) or 0) == before + 1
    assert ["PROCESSED"] == await _statuses(daemon, "RACE-1")
