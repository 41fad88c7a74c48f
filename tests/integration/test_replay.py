"""``rems-ingest replay``: a result missed because its local code was not configured is found
and acted on after the mapping is added — once, however often the replay runs."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.cli import cli
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient
from tests.conftest import make_settings

START = date(2026, 3, 2)


def site_coded(control_id: str, on: date, value: str) -> bytes:
    """The lab's own code for ANC, unknown to the default mapping."""
    return oru(control_id, "RP1", on, value, control_id).replace(b"751-8^Neutrophils [#/volume] in Blood by Automated count^LN", b"NEUTA^Neutrophils abs^L")


async def _feed(tmp_path: Path) -> list[bytes]:
    d = Daemon(make_settings(tmp_path))
    await d.start()
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            await c.send(oru("RP-B", "RP1", START - timedelta(days=1), "1.8", "RP-B"))
            await d.clinic.enroll(EnrollPatient.from_mapping({"id": "RP1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}))
            return [await c.send(site_coded("RP-1", START + timedelta(days=7), "0.9"))]
    finally:
        await d.shutdown()


def _db(tmp_path: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(tmp_path / "rems.db") as conn:
        return conn.execute(sql).fetchall()


def test_replay_applies_a_result_missed_for_an_unmapped_code_exactly_once(tmp_path: Path) -> None:
    (ack,) = asyncio.run(_feed(tmp_path))
    assert b"MSA|AA|RP-1" in ack
    assert [("FILTERED",)] == _db(tmp_path, "SELECT status FROM inbound_message WHERE control_id = 'RP-1'")
    assert [] == _db(tmp_path, "SELECT kind FROM outbox WHERE kind = 'therapy.interrupt'")  # the danger: silence

    env = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/rems.db", "REMS_MLLP__LOCAL_CODES": '{"NEUTA": "anc"}', "REMS_LOG__LEVEL": "WARNING"}
    runner = CliRunner()
    dry = runner.invoke(cli, ["replay", "--status", "FILTERED", "--dry-run"], env=env)
    assert 0 == dry.exit_code, dry.output
    assert "RP-1 FILTERED" in dry.output and [("FILTERED",)] == _db(tmp_path, "SELECT status FROM inbound_message WHERE control_id = 'RP-1'")

    first = runner.invoke(cli, ["replay", "--status", "FILTERED", "--actor", "integration-eng"], env=env)
    assert 0 == first.exit_code, first.output
    assert "FILTERED -> REPLAYED, observations 0 -> 1" in first.output
    kinds = {k for (k,) in _db(tmp_path, "SELECT kind FROM outbox")}
    assert {"therapy.interrupt", "pharmacy.hold"} <= kinds
    version = _db(tmp_path, "SELECT version FROM patient WHERE patient_id = 'RP1'")
    alerts = _db(tmp_path, "SELECT count(*) FROM outbox")
    assert [("integration-eng", "replay")] == _db(tmp_path, "SELECT actor, action FROM audit WHERE action = 'replay'")

    (mid,) = _db(tmp_path, "SELECT id FROM inbound_message WHERE control_id = 'RP-1'")[0]
    again = runner.invoke(cli, ["replay", "--id", str(mid)], env=env)
    assert 0 == again.exit_code, again.output
    assert version == _db(tmp_path, "SELECT version FROM patient WHERE patient_id = 'RP1'")  # nothing changed
    assert alerts == _db(tmp_path, "SELECT count(*) FROM outbox")  # no alert twice
    assert 1 == _db(tmp_path, "SELECT count(*) FROM observation o JOIN inbound_message m ON o.message_id = m.id WHERE m.control_id = 'RP-1'")[0][0]


def test_replay_needs_a_selection_and_reports_unknown_ids(tmp_path: Path) -> None:
    env = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/rems.db"}
    assert 0 == CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code  # replay never creates a store
    none = CliRunner().invoke(cli, ["replay"], env=env)
    assert 2 == none.exit_code and "say which messages" in none.stderr
    missing = CliRunner().invoke(cli, ["replay", "--id", "424242"], env=env)
    assert 1 == missing.exit_code and "#424242: no such stored message" in missing.stderr


def test_bulk_import_enrolls_a_clinic_all_or_nothing_and_is_safe_to_rerun(tmp_path: Path) -> None:
    env = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/rems.db", "REMS_LOG__LEVEL": "WARNING"}
    good = Path(__file__).resolve().parents[2] / "fixtures" / "import" / "clinic_transfer.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text() + "MRN2004,HOSP,martian,2026-01-01,,weekly,DR1,RX1\n")

    refused = CliRunner().invoke(cli, ["import-patients", str(bad)], env=env)
    assert 2 == refused.exit_code and "row 4: population must be" in refused.stderr and "nothing was imported" in refused.stderr
    assert [] == _db(tmp_path, "SELECT patient_id FROM patient WHERE enrolled")

    first = CliRunner().invoke(cli, ["import-patients", str(good), "--actor", "clinic-lead"], env=env)
    assert 0 == first.exit_code, first.output
    assert "3 enrolled, 0 already enrolled" in first.output
    states = dict(_db(tmp_path, "SELECT patient_id, state FROM patient WHERE enrolled"))
    assert '"interval":"monthly"' in states["MRN2001"] and '"interval":"every_2_weeks"' in states["MRN2002"]
    again = CliRunner().invoke(cli, ["import-patients", str(good)], env=env)
    assert "0 enrolled, 3 already enrolled" in again.output
    assert 3 == len(_db(tmp_path, "SELECT * FROM audit WHERE action = 'enroll' AND actor = 'clinic-lead'"))


def test_prune_blanks_old_raw_messages_but_keeps_results_and_duplicate_detection(tmp_path: Path) -> None:
    asyncio.run(_feed(tmp_path))
    env = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/rems.db", "REMS_LOG__LEVEL": "WARNING"}
    with sqlite3.connect(tmp_path / "rems.db") as conn:
        conn.execute("UPDATE inbound_message SET received_at = '2020-01-01T00:00:00+00:00' WHERE control_id = 'RP-B'")
    dry = CliRunner().invoke(cli, ["prune", "--older-than", "365", "--dry-run"], env=env)
    assert "1 message(s)" in dry.output and "would be" in dry.output
    done = CliRunner().invoke(cli, ["prune", "--older-than", "365", "--actor", "records-office"], env=env)
    assert 0 == done.exit_code, done.output
    assert [(0,), (1,)] == sorted(_db(tmp_path, "SELECT length(raw) > 0 FROM inbound_message"))
    assert 1 == _db(tmp_path, "SELECT count(*) FROM observation o JOIN inbound_message m ON o.message_id = m.id WHERE m.control_id = 'RP-B'")[0][0]
    assert [("records-office", "prune_raw")] == _db(tmp_path, "SELECT actor, action FROM audit WHERE action = 'prune_raw'")
    (mid,) = _db(tmp_path, "SELECT id FROM inbound_message WHERE control_id = 'RP-B'")[0]
    again = CliRunner().invoke(cli, ["replay", "--id", str(mid)], env=env)
    assert "raw message was pruned" in again.output
    assert 2 == CliRunner().invoke(cli, ["prune", "--older-than", "0"], env=env).exit_code


def test_a_replay_before_the_code_is_mapped_leaves_the_message_findable(tmp_path: Path) -> None:
    asyncio.run(_feed(tmp_path))
    runner = CliRunner()
    base = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/rems.db", "REMS_LOG__LEVEL": "WARNING"}
    early = runner.invoke(cli, ["replay", "--status", "FILTERED"], env=base)
    assert 0 == early.exit_code, early.output
    assert "not replayed: no ANC extracted" in early.output
    assert [("FILTERED",)] == _db(tmp_path, "SELECT status FROM inbound_message WHERE control_id = 'RP-1'")
    fixed = runner.invoke(cli, ["replay", "--status", "FILTERED"], env={**base, "REMS_MLLP__LOCAL_CODES": '{"NEUTA": "anc"}'})
    assert "FILTERED -> REPLAYED, observations 0 -> 1" in fixed.output


def test_import_refuses_a_patient_twice_reports_differences_and_can_dry_run(tmp_path: Path) -> None:
    """Issue #19: a second, conflicting row for the same patient is an error (not "already
    enrolled: skipped"); a row that differs from the stored enrollment says how; --dry-run
    shows the plan and writes nothing."""
    env = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/rems.db", "REMS_LOG__LEVEL": "WARNING"}
    good = Path(__file__).resolve().parents[2] / "fixtures" / "import" / "clinic_transfer.csv"
    lines = good.read_text().splitlines()
    twice = tmp_path / "twice.csv"
    first_row = next(line for line in lines if line and not line.startswith(("#", "id,")))
    pid, authority = first_row.split(",")[:2]
    twice.write_text(good.read_text() + f"{pid},{authority},ben,2026-01-01,1200,,DR9,RX9\n")
    refused = CliRunner().invoke(cli, ["import-patients", str(twice)], env=env)
    assert 2 == refused.exit_code and "are the same patient" in refused.stderr and "nothing was imported" in refused.stderr

    plan = CliRunner().invoke(cli, ["import-patients", str(good), "--dry-run"], env=env)
    assert 0 == plan.exit_code, plan.output
    assert "dry run: 3 would be enrolled, 0 already enrolled; nothing was changed" in plan.output
    assert [] == _db(tmp_path, "SELECT patient_id FROM patient WHERE enrolled")

    assert 0 == CliRunner().invoke(cli, ["import-patients", str(good)], env=env).exit_code
    changed = tmp_path / "changed.csv"
    fields = first_row.split(",")
    fields[-1] = "RX-ELSEWHERE"
    header = next(line for line in lines if line.startswith("id,"))
    changed.write_text(header + "\n" + ",".join(fields) + "\n")
    again = CliRunner().invoke(cli, ["import-patients", str(changed)], env=env)
    assert 0 == again.exit_code, again.output
    assert f"pharmacy_id RX-ELSEWHERE here, {first_row.split(',')[-1]} stored" in again.output
    assert "(1 differ from this file: see above)" in again.output
    assert [("RX-ELSEWHERE",)] != _db(tmp_path, f"SELECT pharmacy_id FROM patient WHERE patient_id = '{pid}'")
