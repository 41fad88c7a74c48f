"""``rems-ingest validate``: hl7apy's strict structural check, kept off the hot path."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rems_ingest.cli import cli

HL7 = Path(__file__).resolve().parents[3] / "fixtures" / "hl7"


def test_a_standard_oru_is_valid_and_each_batch_message_is_checked() -> None:
    r = CliRunner().invoke(cli, ["validate", str(HL7 / "oru_251_anc_normal.hl7"), str(HL7 / "batch_two_messages.hl7")])
    assert 0 == r.exit_code, r.output
    assert ["valid", "valid", "valid"] == [line.split()[2] for line in r.output.splitlines()]
    assert "ORU^R01^ORU_R01 v2.5.1" in r.output


def test_structural_problems_are_named_and_exit_1() -> None:
    r = CliRunner().invoke(cli, ["validate", str(HL7 / "oru_231_latin1_name.hl7"), str(HL7 / "malformed_no_msh.hl7")])
    assert 1 == r.exit_code
    assert "INVALID  ValidationError: Missing required child OBX.OBX_4" in r.output
    assert "does not start with an MSH segment" in r.output


def test_a_missing_file_is_a_usage_error() -> None:
    r = CliRunner().invoke(cli, ["validate", "/nonexistent.hl7"])
    assert 2 == r.exit_code
