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
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/phi.db", "REMS_LOG__LEVEL": "DEBUG"}).start()
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
