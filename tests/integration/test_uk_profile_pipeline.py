"""The UK profile end to end: MLLP in (WBC and neutrophils in one order), colour, alert, dispense."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.core.model import PatientKey
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
from tests.conftest import make_settings

START = date(2026, 3, 2)
KEY = PatientKey("UK1", "HOSP")


def fbc(cid: str, on: date, neut_k: str, wbc_k: str) -> bytes:
    t = on.strftime("%Y%m%d") + "0800"
    wbc = f"OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||{wbc_k}|10*9/L|4.0-11.0||||F|||{t}\r"
    return oru(cid, "UK1", on, neut_k, cid).replace(b"OBX|1|", wbc.encode() + b"OBX|2|").replace(b"|10*3/uL|", b"|10*9/L|")


async def test_a_red_count_from_a_uk_lab_stops_dispensing_and_says_why(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    s.rules.profile = "uk-cpms"
    d = Daemon(s)
    await d.start()
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            assert b"MSA|AA" in await c.send(fbc("UK-B", START, "4.2", "7.0"))
            await d.clinic.enroll(EnrollPatient.from_mapping({"id": "UK1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
            assert (await d.clinic.dispense_check(KEY, START + timedelta(days=1)))["authorized"]
            assert b"MSA|AA" in await c.send(fbc("UK-1", START + timedelta(days=7), "2.6", "2.8"))  # neutrophils fine, WBC red
        status = await d.clinic.status(KEY)
        check = await d.clinic.dispense_check(KEY, START + timedelta(days=7))
        payloads = d.store.read(lambda conn: [json.loads(r.payload) for r in Repository(conn).alerts_for(1, 20)])
    finally:
        await d.shutdown()
    assert ("red", "interrupt", "held_heme", "daily") == (status["category"], status["action"], status["treatment_status"], status["monitoring"]["frequency"])
    assert not check["authorized"] and "interrupted" in check["reason"]
    assert {a["kind"] for a in status["recent_alerts"]} >= {"therapy.interrupt", "monitoring.confirm_repeat", "pharmacy.hold"}
    assert payloads and all(p["rules_profile"].startswith("uk-cpms@") for p in payloads)
    interrupt = next(p for p in payloads if p["kind"] == "therapy.interrupt")
    assert ("red", "2800") == (interrupt["detail"]["colour"], interrupt["detail"]["wbc_per_ul"].split(".")[0])
