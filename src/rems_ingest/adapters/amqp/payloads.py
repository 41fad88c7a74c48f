"""The versioned alert envelope ``rems.alert/1`` (contract.md); identifiers only, no PHI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from rems_ingest.core.model import Alert, PatientKey, PatientState

SCHEMA = "rems.alert/1"


def alert_payload(
    *,
    alert_id: str,
    patient: PatientKey,
    alert: Alert,
    state: PatientState | None,
    state_version: int,
    cause: dict[str, str],
    rules_profile: str,
    created_at: datetime,
) -> dict[str, Any]:
    latest = state.latest if state else None
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "alert_id": alert_id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "reason": alert.reason,
        "patient": {"id": patient.id, "authority": patient.authority},
        "anc": (
            {
                "per_ul": float(latest.value),
                "observed_at": (latest.observed_at or datetime.combine(latest.on, datetime.min.time())).isoformat(),
                "observed_on": latest.on.isoformat(),
                "category": latest.category.value,
            }
            if latest
            else None
        ),
        "population": state.population.value if state else None,
        "action": state.action if state else None,
        "treatment_status": state.treatment.value if state else None,
        "monitoring": (
            {"frequency": state.frequency.value, "next_due": state.next_due.isoformat() if state.next_due else None} if state else None
        ),
        "cause": cause,
        "rules_profile": rules_profile,
        "state_version": state_version,
        "effective_on": alert.on.isoformat(),
        "detail": dict(alert.detail),
        "created_at": created_at.isoformat(),
    }
    return body


def encode(body: dict[str, Any]) -> str:
    """Compact, key-sorted JSON (stable bytes for the same alert); UTF-8, not \\u-escaped."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
