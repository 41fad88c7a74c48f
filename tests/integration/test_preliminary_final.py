"""Preliminary then final for one specimen pages the on-call psychiatrist once (issue #13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.core.model import PatientKey
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
from tests.conftest import make_settings

TODAY = datetime.now(UTC).date()


def _status(raw: bytes, code: str) -> bytes:
    return raw.replace(b"1.50-7.80||||F\r", f"1.50-7.80||||{code}\r".encode())


async def test_final_after_a_preliminary_severe_result_moves_the_state_without_a_second_page(tmp_path: Path) -> None:
    d = Daemon(make_settings(tmp_path))
    await d.start()
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            await c.send(oru("PF-B", "PF1", TODAY - timedelta(days=8), "1.8", "PF-B"))
            await d.clinic.enroll(EnrollPatient.from_mapping({"id": "PF1", "authority": "HOSP", "population": "general", "therapy_start": (TODAY - timedelta(days=7)).isoformat()}))
            assert b"MSA|AA" in await c.send(_status(oru("PF-P", "PF1", TODAY, "0.3", "ACC-9"), "P"))
            prelim = await d.clinic.status(PatientKey("PF1", "HOSP"))
            assert b"MSA|AA" in await c.send(oru("PF-F", "PF1", TODAY, "0.3", "ACC-9"))
        final = await d.clinic.status(PatientKey("PF1", "HOSP"))
        rows = await d.store.aread(lambda c: Repository(c).alerts_for(1, 100))
    finally:
        await d.shutdown()
    assert prelim["treatment_status"] == "active"  # a P result never moves the state
    assert final["treatment_status"] == "held_heme" and final["monitoring"]["frequency"] == "daily"
    emergencies = [r for r in rows if r.kind == "therapy.emergency"]
    assert len(emergencies) == 1, [r.kind for r in rows]
    assert not any(r.kind == "alert.superseded" for r in rows)
    assert any(r.kind == "therapy.interrupt" for r in rows)
