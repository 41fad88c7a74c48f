"""Every fixture through a real socket into a real SQLite store: ACK, ERR and stored rows."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from rems_ingest.adapters.db.schema import inbound_message, observation, outbox
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.service.commands import EnrollPatient
from tests.fixtures import Expected, expected_table

TABLE = expected_table()


def segments(reply: bytes) -> list[list[str]]:
    return [s.split("|") for s in reply.decode("latin-1").split("\r") if s]


def ack_codes(reply: bytes) -> list[str]:
    out = []
    segs = segments(reply)
    for i, s in enumerate(segs):
        if s[0] == "MSA":
            errs = [e for e in segs[i + 1 :] if e[0] == "ERR"]
            nxt = next((j for j, e in enumerate(segs[i + 1 :]) if e[0] in ("MSH", "BTS")), len(segs))
            errs = [e for e in segs[i + 1 : i + 1 + nxt] if e[0] == "ERR"]
            hard = [e for e in errs if len(e) > 4 and e[4] == "E"]
            code = s[1]
            out.append(f"{code}:{hard[0][3].split('^')[0]}" if code == "AR" and hard else code)
    return out


def count(d: Daemon, table, *where) -> int:  # type: ignore[no-untyped-def]
    return int(d.store.read(lambda c: c.execute(select(func.count()).select_from(table).where(*where)).scalar_one()))


@pytest.mark.parametrize("e", [e for e in TABLE if e.acks], ids=lambda e: e.file)
async def test_fixture_gets_the_expected_ack_over_a_real_socket(daemon: Daemon, e: Expected) -> None:
    async with MllpClient("127.0.0.1", daemon.server.bound_port, timeout=10) as c:
        reply = await c.send(e.raw)

    assert e.acks == ack_codes(reply)
    assert len(e.observations) == count(daemon, observation)


async def test_ack_mirrors_control_id_and_swaps_sender_and_receiver(daemon: Daemon) -> None:
    raw = next(e for e in TABLE if e.file == "oru_251_anc_normal.hl7").raw
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        msh, msa = segments(await c.send(raw))[:2]

    assert ["REMS", "PSYCH", "LIS", "GHH_LAB"] == msh[2:6]
    assert "ACK^R01^ACK" == msh[8]
    assert "M0001" != msh[9] and msh[9]
    assert ["MSA", "AA", "M0001"] == msa[:3]


async def test_data_quality_problems_are_stored_acked_with_a_warning_and_alerted(daemon: Daemon) -> None:
    raw = next(e for e in TABLE if e.file == "oru_251_unknown_unit.hl7").raw
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        segs = segments(await c.send(raw))

    err = next(s for s in segs if s[0] == "ERR")
    assert "AA" == segs[1][1]
    assert ("103", "W") == (err[3].split("^")[0], err[4])
    assert 1 == count(daemon, outbox, outbox.c.kind == "data.quality")
    body = json.loads(daemon.store.read(lambda c: c.execute(select(outbox.c.payload)).scalar_one()))
    assert "data.quality" == body["kind"] and "unknown unit" in body["reason"]
    assert "DOE" not in json.dumps(body) and "JANE" not in json.dumps(body)


async def test_resend_gets_the_same_ack_and_changes_nothing(daemon: Daemon) -> None:
    raw = next(e for e in TABLE if e.file == "oru_251_two_patients.hl7").raw
    resent = raw.replace(b"20260304081500-0500", b"20260304091500-0500", 1)  # engines rebuild MSH-7
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        first = ack_codes(await c.send(raw))
        second = ack_codes(await c.send(resent))

    assert ["AA"] == first == second
    assert 1 == count(daemon, inbound_message)
    assert 2 == count(daemon, observation)


async def test_resend_of_a_message_acked_with_warnings_gets_the_same_warnings(daemon: Daemon) -> None:
    raw = next(e for e in TABLE if e.file == "oru_251_unknown_unit.hl7").raw
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        first = [s for s in segments(await c.send(raw)) if s[0] in ("MSA", "ERR")]
        second = [s for s in segments(await c.send(raw)) if s[0] in ("MSA", "ERR")]

    errs = lambda segs: [(s[3], s[4], s[8]) for s in segs if s[0] == "ERR"]  # noqa: E731
    assert errs(first) and errs(first) == errs(second)
    assert first[0][1] == second[0][1] == "AA"
    assert 1 == count(daemon, inbound_message)
    assert 1 == count(daemon, outbox, outbox.c.kind == "data.quality")


async def test_same_control_id_with_different_content_is_a_new_message(daemon: Daemon) -> None:
    raw = next(e for e in TABLE if e.file == "oru_251_anc_normal.hl7").raw
    other = raw.replace(b"|2.1|", b"|2.2|")
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        await c.send(raw)
        await c.send(other)

    assert 2 == count(daemon, inbound_message)


async def test_many_messages_on_one_connection_and_many_connections(daemon: Daemon) -> None:
    raws = [e.raw for e in TABLE if e.acks == ["AA"]]

    async def sender(n: int) -> list[str]:
        async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
            return [ack_codes(await c.send(r))[0] for r in raws]

    results = await asyncio.gather(*(sender(n) for n in range(8)))

    assert all(set(r) == {"AA"} for r in results)


async def test_ack_is_never_sent_when_the_store_cannot_commit(daemon: Daemon) -> None:
    """A failing store answers AE (resend later), never AA."""
    raw = next(e for e in TABLE if e.file == "oru_251_anc_normal.hl7").raw
    daemon.store.close()  # the writer thread is gone: every write fails
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        segs = segments(await c.send(raw))
    daemon.store.start()

    assert "AE" == segs[1][1]
    assert "207" == next(s for s in segs if s[0] == "ERR")[3].split("^")[0]


def _enhanced(cid: str, accept: str, app: str, processing: str = "P") -> bytes:
    from datetime import date

    from rems_ingest.demo import oru

    raw = oru(cid, "ENH1", date(2026, 3, 4), "2.2", cid).decode()
    msh, rest = raw.split("\r", 1)
    fields = msh.split("|")
    fields[10] = processing
    fields += [""] * (17 - len(fields))
    fields[14], fields[15] = accept, app
    return ("|".join(fields) + "\r" + rest).encode()


async def test_enhanced_mode_commit_ack_then_application_ack_when_msh16_asks(daemon: Daemon) -> None:
    async with MllpClient("127.0.0.1", daemon.server.bound_port, timeout=5) as c:
        commit = segments(await c.send(_enhanced("ENH-1", "AL", "AL")))
        app = segments(await c.receive())
        # the sender acknowledges our application ACK; an ACK is never answered, and the
        # connection goes on serving
        await c.send_only(b"MSH|^~\\&|LIS|GHH_LAB|REMS|PSYCH|20260304||ACK^R01^ACK|X1|P|2.5.1\rMSA|CA|" + app[0][9].encode() + b"\r")
        nxt = segments(await c.send(_enhanced("ENH-2", "AL", "NE")))
    assert (["MSA", "CA", "ENH-1"], ["MSA", "AA", "ENH-1"]) == (commit[1][:3], app[1][:3])
    assert commit[0][9] != app[0][9]  # each acknowledgement is its own message
    assert ["MSA", "CA", "ENH-2"] == nxt[1][:3]
    assert 1 == count(daemon, inbound_message, inbound_message.c.control_id == "ENH-1")


@pytest.mark.parametrize(
    ("accept", "app", "processing", "expected"),
    [
        ("NE", "AL", "P", ["AA"]),  # no commit ACK wanted, the application ACK only
        ("AL", "ER", "P", ["CA"]),  # application ACK on error only: none on success
        ("AL", "SU", "P", ["CA", "AA"]),
        ("AL", "AL", "T", ["CR", "AR"]),  # rejected: the application ACK MSH-16 asked for says so too
        ("NE", "AL", "T", ["AR"]),  # the IHE analyzer convention: a rejection is not met with silence
        ("NE", "ER", "T", ["AR"]),
        ("ER", "AL", "P", ["AA"]),  # commit ACK on error only
    ],
)
async def test_msh15_and_msh16_decide_which_acknowledgements_are_sent(daemon: Daemon, accept: str, app: str, processing: str, expected: list[str]) -> None:
    cid = f"E-{accept}-{app}-{processing}"
    async with MllpClient("127.0.0.1", daemon.server.bound_port, timeout=1) as c:
        got = [segments(await c.send(_enhanced(cid, accept, app, processing)))[1][1]]
        try:
            while True:
                got.append(segments(await c.receive())[1][1])
        except TimeoutError:
            pass
    assert expected == got


async def test_results_for_patients_nobody_enrolled_are_acked_kept_and_counted(daemon: Daemon) -> None:
    from datetime import date

    from rems_ingest.demo import oru
    from rems_ingest.observability import metrics

    before = metrics.OBSERVATIONS.labels("stored_not_enrolled")._value.get()
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        reply = segments(await c.send(oru("NE-1", "NOBODY", date(2026, 3, 4), "1.9", "NE-1")))
    assert ["MSA", "AA", "NE-1"] == reply[1][:3]
    assert 1 == count(daemon, observation)
    assert 0 == count(daemon, outbox)  # no clinical alert for a patient nobody monitors
    assert 1 == metrics.OBSERVATIONS.labels("stored_not_enrolled")._value.get() - before


async def test_every_rules_decision_is_in_the_audit_trail(daemon: Daemon) -> None:
    from datetime import date, timedelta

    from rems_ingest.adapters.db.schema import audit
    from rems_ingest.demo import oru

    start = date(2026, 3, 2)
    async with MllpClient("127.0.0.1", daemon.server.bound_port) as c:
        await c.send(oru("AU-B", "AUD1", start - timedelta(days=1), "1.8", "AU-B"))
        await daemon.clinic.enroll(EnrollPatient.from_mapping({"id": "AUD1", "authority": "HOSP", "population": "general", "therapy_start": start.isoformat()}))
        await c.send(oru("AU-1", "AUD1", start + timedelta(days=7), "0.9", "AU-1"))
    rows = daemon.store.read(lambda conn: conn.execute(select(audit.c.actor, audit.c.detail).where(audit.c.action == "decision").order_by(audit.c.id)).all())
    details = [json.loads(d) for _, d in rows]
    assert ["Enroll", "AncResult"] == [d["type"] for d in details]  # the unenrolled baseline is no decision
    last = details[-1]
    assert ("moderate", "interrupt", "daily", "rules") == (last["category"], last["action"], last["frequency"], rows[-1][0])
    assert last["rules_profile"].startswith("us-label@") and len(last["alerts"]) >= 2 and last["why"]


async def test_with_no_broker_the_metrics_show_the_alerts_held_in_the_outbox(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import date, timedelta

    from rems_ingest.demo import oru
    from rems_ingest.observability import metrics
    from tests.conftest import make_settings

    d = Daemon(make_settings(tmp_path))
    d.relay.poll_interval = 0.02
    await d.start()
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            await c.send(oru("HB-B", "HELD1", date(2026, 3, 1), "1.8", "HB-B"))
        await d.clinic.enroll(EnrollPatient.from_mapping({"id": "HELD1", "authority": "HOSP", "population": "general", "therapy_start": "2026-03-02"}))
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            await c.send(oru("HB-1", "HELD1", date(2026, 3, 2) + timedelta(days=7), "0.9", "HB-1"))
        held = count(d, outbox)
        for _ in range(100):
            if metrics.OUTBOX_BACKLOG._value.get() == held:
                break
            await asyncio.sleep(0.05)
        assert held >= 3 and held == metrics.OUTBOX_BACKLOG._value.get()
        assert 0 == metrics.BROKER_CONNECTED._value.get()
    finally:
        await d.shutdown()
