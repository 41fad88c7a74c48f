"""No names, dates of birth or free text in the logs: every fixture through a real daemon at DEBUG."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from rems_ingest.adapters.mllp.client import MllpClient
from tests.process import DaemonProcess

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
PHI_FIELDS = {"PID": (5, 6, 7, 9, 11, 13, 14, 19), "NK1": (2, 4, 5), "NTE": (3,), "PV1": (7, 8, 9, 17)}


def phi_values(raw: bytes) -> set[str]:
    """Every name, birth date, address, phone and comment component in a message."""
    text = raw.decode("latin-1")
    out: set[str] = set()
    for seg in re.split(r"\r\n|\r|\n", text):
        fields = seg.split("|")
        for n in PHI_FIELDS.get(fields[0], ()):
            if n < len(fields):
                out |= {c for c in re.split(r"[\^~&]", fields[n]) if (len(c) >= 3 and not c.isdigit()) or (len(c) == 8 and c.isdigit())}
    return out


def test_fixtures_hold_phi_to_look_for() -> None:
    found = set().union(*(phi_values(f.read_bytes()) for f in FIXTURES.glob("*.hl7")))
    assert {"DOE", "JANE", "19800101"} <= found


async def _send_all(port: int) -> int:
    n = 0
    for f in sorted(FIXTURES.glob("*.hl7")):
        # an incoming ACK is never acknowledged (no ACK storms): do not wait long for one
        async with MllpClient("127.0.0.1", port, timeout=2 if f.name.startswith("ack_") else 30) as c:
            try:
                await c.send(f.read_bytes())
                n += 1
            except (ConnectionError, TimeoutError):
                pass  # a frame the listener refuses outright still must not be logged
    return n


def test_no_fixture_puts_a_name_birth_date_or_comment_in_the_logs(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/phi.db", "REMS_LOG__LEVEL": "DEBUG", "REMS_HTTP__AUTH": "none"}).start()
    try:
        answered = asyncio.run(_send_all(d.mllp_port))
        assert 201 == d.http("POST", "/v1/patients", {"id": "MRN1001", "authority": "HOSP", "population": "general", "therapy_start": "2026-03-04"})[0]
        d.http("GET", "/v1/patients/MRN1001/dispense-check?authority=HOSP&on=2026-03-05")
    finally:
        d.stop()
    log = d.output()
    phi = set().union(*(phi_values(f.read_bytes()) for f in FIXTURES.glob("*.hl7")))
    leaked = sorted(v for v in phi if v in log)
    assert answered >= 35
    assert log.count("hl7_message_processed") >= 30  # the log does describe every message...
    assert [] == leaked  # ...by identifiers only


SHIFTED = [
    # a frame whose MSH fields slid by one: a birth date where MSH-10 (the control id) belongs
    b"MSH|^~\\&|LIS|LAB|REMS|PSYCH|20260305||DOE^JANE|19800101|P|2.5.1\rPID|1||MRN9^^^HOSP^MR||DOE^JANE||19800101|F\r",
    # a name in MSH-4 and MSH-10 of a message that cannot be read
    b"MSH|^~\\&|LIS|SMITH^JOHN|REMS|PSYCH|2026||XYZ|SMITH|P|9.9\r",
    # a birth date as the control id of a message that does parse
    b"MSH|^~\\&|LIS|LAB|REMS|PSYCH|20260305||ORU^R01|1975-04-02|P|2.5.1\rPID|1||MRN8^^^HOSP^MR||ROE^RICHARD\rOBX|x\r",
]


def test_a_message_with_shifted_fields_logs_no_birth_date_or_name(tmp_path: Path) -> None:
    """Fields taken from a message that did not parse are logged only when id-shaped (issue #19)."""
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/phi.db", "REMS_LOG__LEVEL": "DEBUG"}).start()

    async def go() -> list[bytes]:
        async with MllpClient("127.0.0.1", d.mllp_port) as c:
            return [await c.send(raw) for raw in SHIFTED]

    try:
        acks = asyncio.run(go())
    finally:
        d.stop()
    log = d.output()
    assert all(b"MSA|A" in a for a in acks)
    assert log.count("hl7_message_processed") >= 3  # each message is still described...
    for phi in ("19800101", "DOE", "JANE", "SMITH", "JOHN", "ROE", "RICHARD", "1975-04-02"):
        assert phi not in log, phi  # ...without what sat in the shifted fields
