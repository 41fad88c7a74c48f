"""What an alert becomes in the outbox: the versioned envelope ``rems.alert/1`` (contract.md;
identifiers only, no PHI) and the typed entry the store writes in the same transaction as the
decision that raised it. The envelope is a contract of this service, not of the transport: the
relay publishes the stored bytes as they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from rems_ingest.core.model import Alert, PatientKey, PatientState, alert_id
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.observability import metrics

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


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert to publish, written with the decision that raised it (the db adapter
    serialises it; ``alert`` is kept so a later correction can diff against it)."""

    alert_id: str
    patient_pk: int | None
    alert: Alert
    routing_key: str
    payload: str
    state_version: int
    created_at: str
    sort_key: str | None = None  # where in the timeline the decision that raised it sits

    @property
    def kind(self) -> str:
        return self.alert.kind.value


def outbox_entry(
    patient: PatientKey,
    pk: int | None,
    alert: Alert,
    state: PatientState | None,
    version: int,
    cause: dict[str, str],
    policy: RulesPolicy,
    now: datetime,
    sort_key: str | None = None,
    aid: str | None = None,
) -> OutboxEntry:
    """``aid``: the id to raise it under (a later generation's, for an alert raised again)."""
    aid = aid or alert_id(patient, alert.kind.value, alert.cause)
    body = alert_payload(alert_id=aid, patient=patient, alert=alert, state=state, state_version=version, cause=cause, rules_profile=policy.label, created_at=now)
    metrics.count(metrics.ALERTS, alert.kind.value)
    return OutboxEntry(aid, pk, alert, f"alert.{alert.kind.value}", encode(body), version, now.isoformat(), sort_key)
