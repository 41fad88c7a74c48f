"""What the console says before a decision is recorded, and whose record a raw message is: kept
apart from the routes (adapters/web/console.py)."""

from __future__ import annotations

from typing import Any

from rems_ingest.core.model import PatientKey
from rems_ingest.service.commands import RecordEvent

CONFIRMED = ("discontinue", "override", "rechallenge")  # decisions the console asks to confirm, naming what follows


def consequence(cmd: RecordEvent, view: dict[str, Any]) -> str:
    """What the decision does, in the words a prescriber checks before confirming it."""
    latest = view.get("latest_anc") or {}
    anc = f"ANC {latest['per_ul']:,.0f}/uL ({latest['category']}, drawn {latest['drawn_on']})" if latest else "no ANC on record"
    if cmd.type == "discontinue":
        how = "an abrupt stop" if cmd.abrupt else "a planned taper"
        return f"This stops clozapine from {cmd.on} as {how}: the pharmacy may no longer dispense it. The latest result is {anc}."
    if cmd.type == "override":
        return f"This lets the pharmacy dispense clozapine while the latest result is {anc}, under your rationale."
    return f"This restarts clozapine after severe neutropenia (latest result {anc}): the pharmacy may dispense again and monitoring restarts."


def patient_named(raw: str) -> PatientKey | None:
    """The first patient a stored message names (PID-3), for one no result was read from."""
    from rems_ingest.hl7v2.extract import _patient
    from rems_ingest.hl7v2.message import delimiters_of, segments

    try:
        d = delimiters_of(raw)
        pid = next((seg for seg in segments(raw, d) if seg.name == "PID"), None)
        return _patient(pid, d)[0] if pid is not None else None
    except Exception:  # noqa: BLE001 - a message that cannot be read names no one
        return None
