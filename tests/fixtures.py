"""The fixture corpus and its expected-results table (fixtures/hl7/expected.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HL7_DIR = ROOT / "fixtures" / "hl7"


@dataclass(frozen=True)
class Expected:
    file: str
    acks: list[str]  # e.g. ["AA"], ["AR:200"], ["AA", "AA"], [] for "no reply"
    observations: list[tuple[str, Decimal, str, bool, str]]  # (patient, anc, status, derived, censored)
    issue_codes: list[int]

    @property
    def raw(self) -> bytes:
        return (HL7_DIR / self.file).read_bytes()


def expected_table() -> list[Expected]:
    out = []
    with open(HL7_DIR / "expected.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            obs = []
            for item in filter(None, row["observations"].split(";")):
                patient, rest = item.split("=")
                parts = rest.split("/")
                obs.append((patient, Decimal(parts[0]), parts[1], "derived" in parts[2:], "<" if "<" in parts[2:] else ""))
            acks = [] if row["ack"] == "none" else row["ack"].split(",")
            out.append(Expected(row["file"], acks, obs, [int(c) for c in filter(None, row["issue_codes"].split(";"))]))
    return out
