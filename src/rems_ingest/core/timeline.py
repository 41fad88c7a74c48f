"""One patient's events applied the way the daemon applies them as they arrive (pure).

A new event that sorts after everything seen is one ``rules.step``; anything else (a
correction, a deletion, a late older result, a back-dated event) re-folds the whole history
and diffs the alert set: what is no longer justified is withdrawn with ``alert.superseded``,
what is newly justified is raised. Alerts are identified as the outbox identifies them (the
same cause never raises twice). ``simulate`` and the rules' property tests use this; the
store-backed use case (service/patients.py) does the same with its repositories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rems_ingest.core import rules
from rems_ingest.core.errors import EventNotAllowed
from rems_ingest.core.history import is_append, merge
from rems_ingest.core.model import Alert, AlertKind, AncResult, Event, PatientKey, PatientState, ResultStatus, alert_id, event_sort_key, evolve
from rems_ingest.core.policy import RulesPolicy

_NOT_DIFFED = (AlertKind.ALERT_SUPERSEDED, AlertKind.DATA_QUALITY)


@dataclass(frozen=True, slots=True)
class Applied:
    state: PatientState
    raised: tuple[Alert, ...]  # new alerts (superseded notices included), in the order raised
    withdrawn: tuple[Alert, ...]
    explanation: str
    changed: bool


@dataclass
class Timeline:
    policy: RulesPolicy
    patient: PatientKey = field(default_factory=lambda: PatientKey("SIMULATED"))
    history: list[Event] = field(default_factory=list)
    state: PatientState = field(default_factory=PatientState)
    outbox: dict[str, tuple[Alert, bool]] = field(default_factory=dict)  # alert id -> (alert, withdrawn)

    def active(self) -> list[tuple[str, Alert]]:
        return [(i, a) for i, (a, gone) in self.outbox.items() if not gone and a.kind not in _NOT_DIFFED]

    def new_id(self, alert: Alert) -> str | None:
        """The id ``alert`` is raised under, or None while an alert for the same cause is
        active. One that was withdrawn is raised again under the next generation's id (a
        correction back to a severe count pages again)."""
        generation = 1
        while True:
            aid = alert_id(self.patient, alert.kind.value, alert.cause, generation)
            held = self.outbox.get(aid)
            if held is None:
                return aid
            if not held[1]:
                return None
            generation += 1

    def apply(self, event: Event, *, strict: bool = True) -> Applied:
        """Raises EventNotAllowed for a prescriber event the state refuses (``strict``)."""
        removal = isinstance(event, AncResult) and event.status in (ResultStatus.DELETED, ResultStatus.WRONG)
        before = self.state
        if not removal and is_append(self.history, event):
            d = rules.step(self.policy, before, event)
            self.history.append(event)
            withdrawn: list[Alert] = []
            new_state, raised, why = d.state, list(d.alerts), d.explanation
        else:
            merged, changed = merge(self.history, event)
            if not changed:
                return Applied(before, (), (), "nothing to change", False)
            folded = rules.fold(self.policy, merged)
            if strict and event in merged:
                d = folded.decisions[sorted(merged, key=event_sort_key).index(event)]
                if d.explanation.startswith("ignored:"):
                    raise EventNotAllowed(d.explanation.removeprefix("ignored: "))
            active = self.active()
            withdrawn, raised = rules.diff_alerts([a for _, a in active], folded.alerts)
            # one cause, one alert: an alert the outbox already holds (even withdrawn) is not new,
            # and must not stand in for the pharmacy notice below
            raised = [a for a in raised if self.new_id(a) is not None]
            ids = {a.identity: i for i, a in active}
            for w in withdrawn:
                self.outbox[ids[w.identity]] = (w, True)
            raised += [rules.withdrawal_notice(w, ids[w.identity], event.on) for w in withdrawn]
            raised += rules.pharmacy_after_refold(self.policy, before, folded.state, raised, event)
            self.history = merged
            new_state, why = folded.state, "history re-folded"
        new_state = evolve(new_state, version=before.version + 1)
        fresh = []
        for a in raised:
            aid = self.new_id(a)
            if aid is not None:  # one cause, one alert at a time
                self.outbox[aid] = (a, False)
                fresh.append(a)
        self.state = new_state
        return Applied(new_state, tuple(fresh), tuple(withdrawn), why, True)
