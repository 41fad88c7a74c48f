"""Alerts as the rules raise them: severity and the words a clinician reads, by kind (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from rems_ingest.core.model import Alert, AlertKind, Severity

_SEVERITY = {
    AlertKind.EMERGENCY: Severity.CRITICAL,
    AlertKind.INTERRUPT_THERAPY: Severity.CRITICAL,
    AlertKind.DECISION_REQUIRED: Severity.HIGH,
    AlertKind.INCREASE_MONITORING: Severity.HIGH,
    AlertKind.CONFIRM_REPEAT: Severity.HIGH,
    AlertKind.INITIATION_BLOCKED: Severity.HIGH,
    AlertKind.DISPENSE_HOLD: Severity.HIGH,
    AlertKind.RESUME_THERAPY: Severity.NORMAL,
    AlertKind.ROUTINE_MONITORING_RESUMED: Severity.NORMAL,
    AlertKind.DISPENSE_RELEASE: Severity.NORMAL,
    AlertKind.OVERDUE_RESOLVED: Severity.NORMAL,
    AlertKind.STEPDOWN_ELIGIBLE: Severity.INFO,
    AlertKind.ALERT_SUPERSEDED: Severity.NORMAL,
    AlertKind.DATA_QUALITY: Severity.NORMAL,
    AlertKind.OVERDUE_LAB: Severity.NORMAL,
}

_REASONS = {
    AlertKind.EMERGENCY: "Severe neutropenia: stop clozapine, urgent evaluation, hematology consult, daily ANC",
    AlertKind.INTERRUPT_THERAPY: "Interrupt clozapine, recommend hematology consult, daily ANC",
    AlertKind.INCREASE_MONITORING: "Increase ANC monitoring",
    AlertKind.CONFIRM_REPEAT: "Initial low ANC: repeat ANC within 24 hours",
    AlertKind.ROUTINE_MONITORING_RESUMED: "ANC back in the normal range: routine monitoring interval resumes",
    AlertKind.STEPDOWN_ELIGIBLE: "Normal ANCs through the phase: monitoring may step down (needs confirmation)",
    AlertKind.RESUME_THERAPY: "ANC recovered: clozapine may resume",
    AlertKind.DECISION_REQUIRED: "Recovered after severe neutropenia: prescriber must rechallenge or discontinue",
    AlertKind.INITIATION_BLOCKED: "Baseline ANC below the start threshold: clozapine may not be started",
    AlertKind.OVERDUE_LAB: "No ANC by the due date",
    AlertKind.OVERDUE_RESOLVED: "A result arrived for the overdue ANC",
    AlertKind.DISPENSE_HOLD: "Dispensing must stop",
    AlertKind.DISPENSE_RELEASE: "Dispensing may start again",
}


def make_alert(kind: AlertKind, cause: str, on: date, reason: str = "", severity: Severity | None = None, details: Mapping[str, str] | None = None, **detail: str) -> Alert:
    """``cause`` names what raised the alert (stable across re-folds: it makes the alert id)."""
    return Alert(
        kind=kind,
        cause=cause,
        on=on,
        severity=severity or _SEVERITY[kind],
        reason=reason or _REASONS.get(kind, kind.value),
        detail=tuple(sorted({**(details or {}), **detail}.items())),
    )


def withdrawal_notice(old: Alert, old_id: str, on: date) -> Alert:
    """What consumers hear when a re-fold withdraws ``old``. An overdue alert withdrawn by a
    late result drawn by its due date is *resolved* (rules.md 7: OVERDUE_RESOLVED), in the
    same words as when the result arrives in order; anything else is superseded."""
    if old.kind is AlertKind.OVERDUE_LAB:
        due = dict(old.detail).get("due", old.cause.removeprefix("overdue:"))
        return make_alert(AlertKind.OVERDUE_RESOLVED, f"overdue_resolved:{due}", on, superseded_alert_id=old_id)
    return superseded_alert(old, old_id, on)


def superseded_alert(old: Alert, old_id: str, on: date) -> Alert:
    return make_alert(
        AlertKind.ALERT_SUPERSEDED,
        f"superseded:{old_id}",
        on,
        reason=f"A corrected result withdrew the earlier {old.kind.value} alert",
        superseded_alert_id=old_id,
        superseded_kind=old.kind.value,
    )
