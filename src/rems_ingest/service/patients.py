"""Apply one event to one patient inside the caller's transaction.

The cheap path (a new event that sorts last) calls ``rules.step``; anything else (a
correction, a deletion, a late older result, a back-dated prescriber event) re-folds the
history and withdraws alerts no longer justified with ``alert.superseded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rems_ingest.core import rules
from rems_ingest.core.errors import EventNotAllowed
from rems_ingest.core.history import merge
from rems_ingest.core.model import (
    Alert,
    AncResult,
    Event,
    PatientKey,
    PatientState,
    ResultStatus,
    event_sort_key,
    evolve,
)
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.outbox import outbox_entry
from rems_ingest.service.ports import PatientRow, Repositories

UNENROLLED_KEEP = 10


def sort_key_text(event: Event) -> str:
    d, rank, iso, key = event_sort_key(event)
    return f"{d.isoformat()}|{rank}|{iso}|{key}"


@dataclass
class Applied:
    row: PatientRow
    state: PatientState
    version: int
    alerts: list[str]  # alert ids written
    changed: bool
    explanation: str = ""
    kinds: list[str] = field(default_factory=list)


def apply_event(
    repo: Repositories,
    policy: RulesPolicy,
    key: PatientKey,
    event: Event,
    *,
    cause: dict[str, str],
    now: datetime,
    strict: bool = False,
    row: PatientRow | None = None,
    extra: dict[str, Any] | None = None,
) -> Applied:
    """Record ``event`` for ``key`` and write the alerts it raises. ``strict``: a prescriber
    event the state does not allow raises EventNotAllowed (HTTP 409) instead of being kept."""
    stamp = now.isoformat()
    row = row or repo.patient(key, create=True, lock=True, now=stamp)
    assert row is not None
    skey = sort_key_text(event)
    removal = isinstance(event, AncResult) and event.status in (ResultStatus.DELETED, ResultStatus.WRONG)
    # fast path: a new event that sorts after everything stored (one INSERT decides)
    if not removal and skey >= row.last_sort_key and repo.add_event(row.pk, event, stamp):
        d = rules.step(policy, row.state, event)
        outcome = _Outcome(d.state, list(d.alerts), d.explanation, d.action, d.frequency.value, skey)
    else:
        refolded = _refold(repo, policy, row, event, stamp, strict, removal)
        if isinstance(refolded, Applied):
            return refolded
        outcome = refolded
    version = row.version + 1
    new_state = outcome.state
    if not new_state.enrolled and version % UNENROLLED_KEEP == 0:
        # keep only what a later enrollment needs: the most recent results (bounded growth)
        repo.prune_events(row.pk, UNENROLLED_KEEP)
    new_state = evolve(new_state, version=version)
    rows = [outbox_entry(key, row.pk, a, new_state, version, cause, policy, now) for a in outcome.alerts]
    repo.add_alerts(rows)
    repo.save_patient(row.pk, new_state, version, outcome.last_sort_key, stamp, **(extra or {}))
    alert_ids = [r.alert_id for r in rows]
    if new_state.enrolled or row.state.enrolled:  # the audit trail of every decision (issue #4)
        repo.audit_decision(stamp, row.pk, {
            "event": event.key[:200],
            "type": type(event).__name__,
            "category": new_state.latest.category.value if new_state.latest else None,
            "action": outcome.action,
            "treatment": new_state.treatment.value,
            "frequency": outcome.frequency,
            "next_due": new_state.next_due,
            "why": outcome.explanation,
            "rules_profile": policy.label,
            "state_version": version,
            "alerts": alert_ids,
        })
    return Applied(row, new_state, version, alert_ids, True, outcome.explanation, [r.kind for r in rows])


@dataclass
class _Outcome:
    state: PatientState
    alerts: list[Alert]
    explanation: str
    action: str
    frequency: str
    last_sort_key: str


def _refold(repo: Repositories, policy: RulesPolicy, row: PatientRow, event: Event, stamp: str, strict: bool, removal: bool) -> _Outcome | Applied:
    """A correction, a deletion, a late result or a back-dated event: fold the merged history
    again and withdraw (with ``alert.superseded``) what it no longer justifies."""
    if repo.event(row.pk, event.key) == event:
        return Applied(row, row.state, row.version, [], False, "duplicate event: nothing changed")
    history = repo.events(row.pk)
    merged, changed = merge(history, event)
    if not changed:
        return Applied(row, row.state, row.version, [], False, "nothing to change")
    folded = rules.fold(policy, merged)
    ordered = sorted(merged, key=event_sort_key)
    if strict and event in ordered:
        d = folded.decisions[ordered.index(event)]
        if d.explanation.startswith("ignored:"):
            raise EventNotAllowed(d.explanation.removeprefix("ignored: "))
    before = repo.active_alerts(row.pk)
    withdrawn, new_alerts = rules.diff_alerts([a for _, a in before], folded.alerts)
    ids = {a.identity: i for i, a in before}
    repo.withdraw([ids[w.identity] for w in withdrawn])
    new_alerts += [rules.withdrawal_notice(w, ids[w.identity], event.on) for w in withdrawn]
    new_alerts += rules.pharmacy_after_refold(policy, row.state, folded.state, new_alerts, event)
    new_state = folded.state
    if removal:
        repo.delete_event(row.pk, event.key)
    else:
        repo.put_event(row.pk, event, stamp)
    last = max((sort_key_text(e) for e in merged), default="")
    return _Outcome(new_state, new_alerts, "history re-folded", new_state.action, new_state.frequency.value, last)


def tick(repo: Repositories, policy: RulesPolicy, key: PatientKey, now: datetime, today: Any) -> list[tuple[str, str]]:
    """Overdue sweep for one patient; the Tick is stored only when it raised something."""
    from rems_ingest.core.model import Tick

    row = repo.patient(key, create=False, lock=True)
    if row is None:
        return []
    ev = Tick(key=f"tick:{today.isoformat()}", on=today)
    if repo.event(row.pk, ev.key) is not None:
        return []
    decision = rules.step(policy, row.state, ev)
    if not decision.alerts:
        return []
    applied = apply_event(repo, policy, key, ev, cause={"source": "overdue_sweep"}, now=now, row=row)
    return list(zip(applied.alerts, applied.kinds))

