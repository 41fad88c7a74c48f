"""The clozapine ANC monitoring state machine (rules.md section 7): one step, a whole fold.

``step(policy, state, event)`` is the only way a patient's state changes; ``fold`` replays a
whole history in specimen order. Both are pure: the date comes in with the event. What each
kind of event does lives next door: results (core/results.py), enrollment, clinical events
and ticks (core/events.py), the transition tables as data (core/transitions.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rems_ingest.core import dispense
from rems_ingest.core.alerts import make_alert as _alert
from rems_ingest.core.alerts import superseded_alert, withdrawal_notice
from rems_ingest.core.categories import MAX_PLAUSIBLE_ANC, categorize, uk_colour
from rems_ingest.core.errors import EventNotAllowed, InvalidInput
from rems_ingest.core.events import on_clinical, on_enroll, on_tick
from rems_ingest.core.model import (
    Alert,
    AlertKind,
    AncResult,
    ClinicalEvent,
    Decision,
    Enroll,
    Event,
    PatientState,
    Tick,
    event_sort_key,
    evolve,
)
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.core.results import add_months, on_anc
from rems_ingest.core.transitions import INITIAL_REPORT_PHASES


@dataclass(frozen=True, slots=True)
class Folded:
    state: PatientState
    decisions: tuple[Decision, ...]

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(a for d in self.decisions for a in d.alerts)


# ---------------------------------------------------------------- public API


def step(policy: RulesPolicy, state: PatientState, event: Event) -> Decision:
    """Apply one event; raises EventNotAllowed / InvalidInput for what the state refuses."""
    if isinstance(event, ClinicalEvent) and event.voided:  # entered in error: as if never recorded
        return Decision(state=state, alerts=(), category=state.latest.category if state.latest else None, action=state.action,
                        frequency=state.frequency, next_due=state.next_due, explanation="voided: entered in error", profile=policy.label)
    if isinstance(event, AncResult):
        new, alerts, why = on_anc(policy, state, event)
    elif isinstance(event, Enroll):
        new, alerts, why = on_enroll(policy, state, event)
    elif isinstance(event, ClinicalEvent):
        new, alerts, why = on_clinical(policy, state, event)
    elif isinstance(event, Tick):
        new, alerts, why = on_tick(policy, state, event)
    else:  # pragma: no cover - typing guard
        raise InvalidInput(f"unknown event {event!r}")
    if new.enrolled:
        new, more = _pharmacy(policy, new, event)
        alerts = alerts + more
    if new != state:
        new = evolve(new, version=state.version + 1)
    category = new.latest.category if new.latest else None
    return Decision(
        state=new,
        alerts=tuple(alerts),
        category=category,
        action=new.action,
        frequency=new.frequency,
        next_due=new.next_due,
        explanation=why,
        profile=policy.label,
    )


def _pharmacy(policy: RulesPolicy, s: PatientState, event: Event) -> tuple[PatientState, list[Alert]]:
    """Raise pharmacy.hold / pharmacy.release whenever dispense eligibility flips."""
    check = dispense.check(policy, s, event.on)
    if check.authorized == (not s.dispense_hold):
        return s, []
    kind = AlertKind.DISPENSE_RELEASE if check.authorized else AlertKind.DISPENSE_HOLD
    cause = f"pharmacy:{event.key}"
    a = _alert(kind, cause, event.on, reason=check.reason, code=check.code, max_days_supply=str(check.max_days_supply))
    return evolve(s, dispense_hold=not check.authorized), [a]


def fold(policy: RulesPolicy, events: Iterable[Event], start: PatientState | None = None) -> Folded:
    """Replay a history in specimen order; events a correction made impossible become no-ops.

    ``start``: the folded state just before the first of ``events`` (a snapshot), so a late
    result re-folds only what comes after its draw time; the result is the same as folding the
    whole history from the beginning."""
    state = start if start is not None else PatientState()
    decisions: list[Decision] = []
    for ev in sorted(events, key=event_sort_key):
        try:
            d = step(policy, state, ev)
        except EventNotAllowed as exc:
            if isinstance(ev, Enroll):
                raise
            d = Decision(state, (), state.latest.category if state.latest else None, state.action, state.frequency, state.next_due, f"ignored: {exc}", policy.label)
        decisions.append(d)
        state = d.state
    return Folded(state=state, decisions=tuple(decisions))


def diff_alerts(before: Sequence[Alert], after: Sequence[Alert]) -> tuple[list[Alert], list[Alert]]:
    """(withdrawn, new) between two folds, by alert identity (kind, cause)."""
    b = {a.identity: a for a in before}
    a_ = {a.identity: a for a in after}
    withdrawn = [x for k, x in b.items() if k not in a_ and not is_notice(x)]
    new = [x for k, x in a_.items() if k not in b]
    return withdrawn, new


REFOLD_CAUSE = "pharmacy-refold:"


def is_notice(alert: Alert) -> bool:
    """What a re-fold said about the moment it ran (a withdrawal, the overdue it resolved, the
    pharmacy told of a flip) is part of no fold: it stays true, and a later re-fold never
    withdraws it (a resolved overdue superseded by the next late result read as overdue again)."""
    return alert.kind is AlertKind.ALERT_SUPERSEDED or alert.cause.startswith(REFOLD_CAUSE) or any(k == "superseded_alert_id" for k, _ in alert.detail)


def pharmacy_after_refold(policy: RulesPolicy, before: PatientState, after: PatientState, new: Sequence[Alert], event: Event) -> list[Alert]:
    """A correction that flips dispense eligibility must say so to the pharmacy in its own
    words: withdrawing a ``pharmacy.release`` is not, by itself, a hold a pharmacy system acts on."""
    if before.dispense_hold == after.dispense_hold:
        return []
    kind = AlertKind.DISPENSE_HOLD if after.dispense_hold else AlertKind.DISPENSE_RELEASE
    if any(a.kind is kind for a in new):
        return []
    check = dispense.check(policy, after, event.on)
    return [_alert(kind, f"{REFOLD_CAUSE}{event.key}", event.on, reason=check.reason, code=check.code, max_days_supply=str(check.max_days_supply))]


__all__ = [
    "INITIAL_REPORT_PHASES",
    "MAX_PLAUSIBLE_ANC",
    "REFOLD_CAUSE",
    "Folded",
    "add_months",
    "categorize",
    "diff_alerts",
    "fold",
    "is_notice",
    "pharmacy_after_refold",
    "step",
    "superseded_alert",
    "uk_colour",
    "withdrawal_notice",
]
