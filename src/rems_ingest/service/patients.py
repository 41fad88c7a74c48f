"""Apply one event to one patient inside the caller's transaction.

The cheap path (a new event that sorts last) calls ``rules.step``; anything else (a
correction, a deletion, a late older result, a back-dated prescriber event) re-folds the
history and withdraws alerts no longer justified with ``alert.superseded``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rems_ingest.core import rules
from rems_ingest.core.errors import CoreError, EventNotAllowed
from rems_ingest.core.history import merge
from rems_ingest.core.model import (
    Alert,
    AlertKind,
    AncResult,
    Event,
    PatientKey,
    PatientState,
    ResultStatus,
    alert_id,
    event_sort_key,
    evolve,
)
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.outbox import outbox_entry
from rems_ingest.service.ports import PatientRow, Repositories

UNENROLLED_KEEP = 10
DUPLICATE = "duplicate event: nothing changed"


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
    overdue_detail: tuple[tuple[str, str], ...] = (),
) -> Applied:
    """Record ``event`` for ``key`` and write the alerts it raises. ``strict``: a prescriber
    event the state does not allow raises EventNotAllowed (HTTP 409) instead of being kept."""
    stamp = now.isoformat()
    row = row or repo.patient(key, create=True, lock=True, now=stamp)
    assert row is not None
    skey = sort_key_text(event)
    removal = isinstance(event, AncResult) and event.status in (ResultStatus.DELETED, ResultStatus.WRONG)
    version = row.version + 1
    outcome = _append(repo, policy, row, event, skey, stamp, version) if not removal and skey >= row.last_sort_key else None
    if outcome is None:
        refolded = _refold(repo, policy, row, event, skey, stamp, strict, removal)
        if isinstance(refolded, Applied):
            return refolded
        outcome = refolded
    new_state = outcome.state
    # a new patient's snapshots are whole from its first event; a re-fold from the beginning wrote them all
    trusted = policy.label if row.version == 0 or outcome.from_scratch else None
    if not new_state.enrolled and version % UNENROLLED_KEEP == 0:
        # keep only what a later enrollment needs: the most recent results (bounded growth);
        # the snapshots then describe a history that is no longer stored: re-fold from scratch
        repo.prune_events(row.pk, UNENROLLED_KEEP)
        repo.set_snapshot_profile(row.pk, None)
        trusted = None
    if new_state.version != version:
        new_state = evolve(new_state, version=version)
    rows = [outbox_entry(key, row.pk, _annotated(a, overdue_detail), new_state, version, cause, policy, now, sk, aid) for a, sk, aid in outcome.alerts]
    repo.add_alerts(rows)
    repo.save_patient(row.pk, new_state, version, outcome.last_sort_key, stamp, snapshot_profile=trusted, **(extra or {}))
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


def _annotated(a: Alert, overdue_detail: tuple[tuple[str, str], ...]) -> Alert:
    """An overdue alert that also says the patient's lab feed is silent (the test may be done)."""
    if not overdue_detail or a.kind is not AlertKind.OVERDUE_LAB:
        return a
    return Alert(a.kind, a.cause, a.on, a.severity, a.reason, (*a.detail, *overdue_detail))


@dataclass
class _Outcome:
    state: PatientState
    alerts: list[tuple[Alert, str, str]]  # each with the timeline position of the decision that raised it, and its id
    explanation: str
    action: str
    frequency: str
    last_sort_key: str
    from_scratch: bool = False  # a re-fold of the whole history (it wrote every snapshot)


def _append(repo: Repositories, policy: RulesPolicy, row: PatientRow, event: Event, skey: str, stamp: str, version: int) -> _Outcome | None:
    """The cheap path: a new event that sorts after everything stored is one ``rules.step``,
    stored with the state after it (its snapshot). None: the key is already stored (a resend or
    a correction), or the state refuses it; the re-fold path decides those."""
    try:
        d = rules.step(policy, row.state, event)
    except CoreError:
        return None
    state = evolve(d.state, version=version)  # the same object is saved on the patient row
    if not repo.add_event(row.pk, event, stamp, skey, state):
        return None
    return _Outcome(state, [(a, skey, aid) for a, aid in new_ids(repo, row.key, d.alerts)], d.explanation, d.action, d.frequency.value, skey)


def _refold(repo: Repositories, policy: RulesPolicy, row: PatientRow, event: Event, skey: str, stamp: str, strict: bool, removal: bool) -> _Outcome | Applied:
    """A correction, a deletion, a late result or a back-dated event: fold again from the
    snapshot just before the earliest point it touches, and withdraw (with ``alert.superseded``)
    what that part of the timeline no longer justifies. The cost follows what comes after that
    point, not the whole history (issue #18); a patient without trusted snapshots (stored before
    them, pruned, or another rules profile) is folded from the beginning once, which writes them."""
    old = repo.event(row.pk, event.key)
    if old == event:
        return Applied(row, row.state, row.version, [], False, DUPLICATE)
    window = _window(repo, policy, row, min(skey, sort_key_text(old)) if old is not None else skey)
    merged, changed = merge(window.events, event)
    if not changed:
        return Applied(row, row.state, row.version, [], False, "nothing to change")
    ordered = sorted(merged, key=event_sort_key)
    folded = rules.fold(policy, ordered, start=window.start)
    if strict and event in ordered:
        d = folded.decisions[ordered.index(event)]
        if d.explanation.startswith("ignored:"):
            raise EventNotAllowed(d.explanation.removeprefix("ignored: "))
    keys = [sort_key_text(e) for e in ordered]
    new_alerts = _diff_alerts(repo, policy, row, event, skey, keys, folded, window)
    _store_snapshots(repo, row, event, skey, stamp, removal, ordered, keys, folded, window)
    new_state = folded.state
    last = keys[-1] if keys else window.start_key
    return _Outcome(new_state, new_alerts, "history re-folded", new_state.action, new_state.frequency.value, last, window.since is None)


def _diff_alerts(repo: Repositories, policy: RulesPolicy, row: PatientRow, event: Event, skey: str, keys: list[str], folded: rules.Folded, window: _Window) -> list[tuple[Alert, str, str]]:
    """Withdraw the alerts from the re-fold point on that the new fold no longer raises; raise
    those it raises that are not active (see ``new_ids``). Only that part of the outbox is read."""
    raised: dict[tuple[str, str], tuple[Alert, str]] = {}  # by identity: the first decision raising it
    for k, d in zip(keys, folded.decisions):
        for a in d.alerts:
            raised.setdefault(a.identity, (a, k))
    before = repo.active_alerts(row.pk, since=window.since)
    withdrawn, _ = rules.diff_alerts([a for _, a, _ in before], [a for a, _ in raised.values()])
    ids = {a.identity: i for i, a, _ in before}
    repo.withdraw([ids[w.identity] for w in withdrawn])
    # kept alerts move with the decision that now raises them (a correction can move a draw)
    repo.set_alert_sort_keys([(i, raised[a.identity][1]) for i, a, sk in before if a.identity in raised and raised[a.identity][1] != sk])
    kept = set(ids) - {w.identity for w in withdrawn}
    new_alerts = [(a, raised[a.identity][1], aid) for a, aid in new_ids(repo, row.key, [a for a, _ in raised.values() if a.identity not in kept])]
    notices = [rules.withdrawal_notice(w, ids[w.identity], event.on) for w in withdrawn]
    notices += rules.pharmacy_after_refold(policy, row.state, folded.state, [a for a, _, _ in new_alerts] + notices, event)
    return new_alerts + [(a, skey, aid) for a, aid in new_ids(repo, row.key, notices)]


def new_ids(repo: Repositories, key: PatientKey, alerts: Sequence[Alert]) -> list[tuple[Alert, str]]:
    """The alerts to raise, each with its id: one cause, one alert at a time. An alert still
    active for the same cause is not raised again (a final result after its preliminary); one
    withdrawn (superseded) is raised again under the next generation's id, because consumers
    dropped the old one (a count corrected up, then back down to severe, must page again)."""
    pending = {a.identity: a for a in alerts}
    out: dict[tuple[str, str], str] = {}
    generation = 1
    while pending:
        ids = {alert_id(key, a.kind.value, a.cause, generation): ident for ident, a in pending.items()}
        states = repo.alert_states(list(ids))
        for aid, ident in ids.items():
            if aid not in states:
                out[ident] = aid
            if states.get(aid) is not True:  # new, or active (nothing to raise)
                del pending[ident]
        generation += 1
    result = []
    for a in alerts:
        aid = out.pop(a.identity, "")
        if aid:
            result.append((a, aid))
    return result


@dataclass
class _Window:
    """The part of a patient's timeline a re-fold takes: the events from ``since`` on (None:
    the whole history) and the folded state just before them (``start_key`` is its position)."""

    since: str | None
    start: PatientState | None
    start_key: str
    events: list[Event]
    stored: dict[str, PatientState | None]  # event key -> its stored snapshot


def _window(repo: Repositories, policy: RulesPolicy, row: PatientRow, at: str) -> _Window:
    if row.snapshot_profile == policy.label:
        before = repo.snapshot_before(row.pk, at)
        if before is None or before[1] is not None:
            pairs = repo.events_from(row.pk, at)
            return _Window(at, before[1] if before else None, before[0] if before else "", [e for e, _ in pairs], {e.key: st for e, st in pairs})
    history = repo.events(row.pk)
    return _Window(None, None, "", history, {})


def _store_snapshots(
    repo: Repositories, row: PatientRow, event: Event, skey: str, stamp: str, removal: bool, ordered: list[Event], keys: list[str], folded: rules.Folded, window: _Window
) -> None:
    """Write the event itself and every snapshot after the re-fold point that changed."""
    changed: list[tuple[str, str, PatientState]] = []
    mine: PatientState | None = None
    for e, k, d in zip(ordered, keys, folded.decisions):
        if e.key == event.key:
            mine = d.state
        elif window.since is None or not _same(window.stored.get(e.key), d.state):
            changed.append((e.key, k, d.state))
    if removal:
        repo.delete_event(row.pk, event.key)
    else:
        repo.put_event(row.pk, event, stamp, skey, mine)
    repo.set_snapshots(row.pk, changed)


def _same(stored: PatientState | None, state: PatientState) -> bool:
    """The same snapshot, whatever version number each fold gave it."""
    return stored is not None and evolve(stored, version=0) == evolve(state, version=0)


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
    # the feed that brought the patient's latest result is silent: the blood test may have been
    # done and its result held upstream; the alert still goes out, and says so
    silence = repo.patient_feed_silence(row.pk)
    detail = (("feed", silence[0]), ("feed_silent_since", silence[1])) if silence else ()
    applied = apply_event(repo, policy, key, ev, cause={"source": "overdue_sweep"}, now=now, row=row, overdue_detail=detail)
    return list(zip(applied.alerts, applied.kinds))

