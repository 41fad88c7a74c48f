"""The clozapine ANC monitoring state machine (rules.md section 7, US-label profile).

``step(policy, state, event)`` is the only way a patient's state changes; ``fold`` replays a
whole history in specimen order. Both are pure: the date comes in with the event.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rems_ingest.core import dispense
from rems_ingest.core.alerts import make_alert as _alert
from rems_ingest.core.alerts import superseded_alert, withdrawal_notice
from rems_ingest.core.categories import MAX_PLAUSIBLE_ANC, categorize, uk_colour, uk_haematology, validate_anc
from rems_ingest.core.errors import EventNotAllowed, InvalidInput
from rems_ingest.core.model import (
    HEME_HELD_PHASES,
    Alert,
    AlertKind,
    AncResult,
    Category,
    ClinicalEvent,
    Decision,
    Enroll,
    Event,
    Frequency,
    LatestAnc,
    PatientState,
    Phase,
    Population,
    ResultStatus,
    Severity,
    Tick,
    TreatmentStatus,
    event_sort_key,
    evolve,
)
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.core.transitions import INITIAL_REPORT_PHASES, ben_transition, gp_transition, uk_transition


@dataclass(frozen=True, slots=True)
class Folded:
    state: PatientState
    decisions: tuple[Decision, ...]

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(a for d in self.decisions for a in d.alerts)


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _recovered(policy: RulesPolicy, state: PatientState, anc: Decimal) -> bool:
    """Discontinuation monitoring ends at ANC >= 1500 (general) or >= 1000 / baseline (BEN)."""
    if state.population is Population.BEN and not policy.uk:
        return anc >= policy.ben_normal
    return anc >= policy.gp_normal


def _next_due(policy: RulesPolicy, state: PatientState, on: date, confirm: bool) -> date | None:
    freq = state.frequency
    if freq is Frequency.NONE:
        return None
    if confirm:
        return on + timedelta(days=policy.days_confirm_repeat)
    return on + timedelta(days=policy.interval_days(freq))


def _on_anc(policy: RulesPolicy, s: PatientState, e: AncResult) -> tuple[PatientState, list[Alert], str]:
    validate_anc(e)
    cat = categorize(policy, s.population, e.value, e.wbc)
    if e.status is ResultStatus.PRELIMINARY:
        provisional: list[Alert] = []
        if cat in (Category.SEVERE, Category.RED) and s.enrolled:
            provisional.append(
                _alert(
                    AlertKind.EMERGENCY,
                    # the final result for this specimen raises the same identity (one page,
                    # one alert id): a consumer de-duplicating by id sees one emergency
                    f"anc:{e.key}",
                    e.on,
                    reason="PRELIMINARY severe neutropenia result: verify now; state changes only on the final result",
                    provisional="true",
                )
            )
        return s, provisional, f"preliminary {cat.value} result: state unchanged"
    if not e.status.counts:
        return s, [], f"result status {e.status.value} does not count"

    latest = LatestAnc(value=e.value, on=e.on, category=cat, key=e.key, observed_at=e.observed_at, wbc=e.wbc)
    alerts: list[Alert] = []
    cause = f"anc:{e.key}"

    if s.overdue_alerted_for is not None:
        alerts.append(_alert(AlertKind.OVERDUE_RESOLVED, f"overdue_resolved:{s.overdue_alerted_for}", e.on))
        s = evolve(s, overdue_alerted_for=None)

    if not s.enrolled or s.phase is Phase.PRE:
        pre = (s.pre_values + ((e.on, e.value),))[-10:]
        s = evolve(s, pre_values=pre, latest=latest)
        if not s.enrolled:
            return s, alerts, f"{cat.value}; patient not enrolled: kept as a possible baseline"
        s, more, why = _evaluate_baseline(policy, s, e.on, cause)
        return s, alerts + more, why

    if s.held_other_since is not None or s.discontinued:
        # a restart after >= 30 days needs a fresh baseline, often drawn on the restart day
        # (which sorts before the resume event): keep what was drawn while off therapy
        s = evolve(s, pre_values=(s.pre_values + ((e.on, e.value),))[-10:])

    if s.phase is Phase.CLOSED:
        return evolve(s, latest=latest, next_due=None), alerts, f"{cat.value}; monitoring closed"

    if s.discontinued and _recovered(policy, s, e.value) and s.phase is not Phase.SEV_RECOVERED_HOLD:
        s = evolve(s, phase=Phase.CLOSED, latest=latest, next_due=None, pending_confirm_until=None)
        return s, alerts, f"{cat.value} after discontinuation: monitoring may end"

    confirmed_red = False
    if policy.uk:
        phase, kinds, confirmed_red = uk_transition(policy, s, cat)
        already = s.phase is Phase.UK_RED and s.latest is not None and uk_haematology(policy, s.latest.value, s.latest.wbc)
        if cat is Category.RED and uk_haematology(policy, e.value, e.wbc) and not already:
            kinds = (AlertKind.EMERGENCY,) + kinds  # first count below the haematology limits in this episode
    elif s.population is Population.BEN:
        phase, kinds = ben_transition(policy, s, cat, e.value)
    else:
        phase, kinds = gp_transition(policy, s, cat)

    # the changes are gathered and applied in one copy (later entries override earlier ones)
    ch: dict[str, Any] = {"phase": phase, "latest": latest, "pending_confirm_until": None}
    entering_episode = s.phase in (Phase.NORMAL, Phase.DISC_MONITOR) and phase not in (Phase.NORMAL, Phase.DISC_MONITOR)
    if entering_episode:
        ch["last_normal_interval"] = s.interval
    if cat not in (Category.NORMAL, Category.GREEN):
        ch["last_abnormal_on"] = e.on
    if phase in (Phase.GP_SEV_DAILY, Phase.BEN_SEV_DAILY) or confirmed_red:
        ch["rechallenge_restricted"] = True
    if phase is Phase.GP_MILD and s.phase is Phase.POST_EPISODE_WEEKLY:
        ch["post_episode_dip"] = True
    # weekly x4 block: entering starts at 0; each further normal result counts
    if phase is Phase.POST_EPISODE_WEEKLY:
        if s.phase is Phase.POST_EPISODE_WEEKLY:
            n = s.weekly_block_count + 1
            if n >= policy.post_episode_weeks:
                ch.update(phase=Phase.NORMAL, interval=s.last_normal_interval, weekly_block_count=0)
                kinds = kinds + (AlertKind.ROUTINE_MONITORING_RESUMED,)
            else:
                ch["weekly_block_count"] = n
        else:
            ch.update(weekly_block_count=0, post_episode_dip=False)
    if phase is Phase.NORMAL and s.phase is not Phase.NORMAL:
        ch.update(interval=s.last_normal_interval, post_episode_dip=False)
    if s.override_rationale and ch["phase"] not in HEME_HELD_PHASES and ch["phase"] is not Phase.SEV_RECOVERED_HOLD:
        ch["override_rationale"] = ""  # the episode is over; a new one needs a new rationale

    confirm = AlertKind.CONFIRM_REPEAT in kinds
    if confirm:
        ch["pending_confirm_until"] = e.on + timedelta(days=policy.days_confirm_repeat)
    new = evolve(s, **ch)
    new = evolve(new, next_due=_next_due(policy, new, e.on, confirm))

    for kind in kinds:
        detail: dict[str, str] = {}
        if kind in (AlertKind.INTERRUPT_THERAPY, AlertKind.EMERGENCY) or (
            kind is AlertKind.INCREASE_MONITORING and phase is Phase.BEN_NEUT
        ):
            detail["hematology_consult"] = "recommended"
        if kind is AlertKind.RESUME_THERAPY:
            detail["resume_when"] = "ANC >= 1000"
        if policy.uk:
            detail["colour"] = cat.value
            if e.wbc is not None:
                detail["wbc_per_ul"] = str(e.wbc)
            if kind is AlertKind.INTERRUPT_THERAPY and confirmed_red:
                detail["red_confirmed"] = "true"
                detail["non_rechallenge"] = "true"
        alerts.append(_alert(kind, cause, e.on, details=detail))

    if new.phase is Phase.NORMAL:
        step_alert, new = _stepdown(policy, new, e.on, cause)
        if step_alert:
            alerts.append(step_alert)
    why = f"{cat.value} ({e.value}/uL): {s.phase.value} -> {new.phase.value}"
    return new, alerts, why


def _evaluate_baseline(policy: RulesPolicy, s: PatientState, on: date, cause: str) -> tuple[PatientState, list[Alert], str]:
    """rules.md section 3.2: GP baseline >= 1500; BEN >= 2 baselines, each >= 1000."""
    start = on - timedelta(days=policy.baseline_window_days)
    values = [v for d, v in s.pre_values if start <= d <= on]
    if s.population is Population.BEN:
        if any(v < policy.ben_normal for v in values):
            low = min(values)
            return s, [_alert(AlertKind.INITIATION_BLOCKED, cause, on, baseline=str(low), threshold=str(policy.ben_normal))], (
                f"BEN baseline {low} below {policy.ben_normal}: initiation blocked"
            )
        if len(values) < 2:
            return s, [], f"BEN needs 2 baseline ANCs within {policy.baseline_window_days} days; have {len(values)}"
        baseline = s.baseline_anc if s.baseline_anc is not None else min(values)
        s = evolve(s, baseline_anc=baseline)
    else:
        if not values:
            return s, [], "no baseline ANC yet"
        if policy.uk and s.latest is not None and s.latest.category is not Category.GREEN and s.latest.on >= start:
            return s, [_alert(AlertKind.INITIATION_BLOCKED, cause, on, baseline=str(s.latest.value), colour=s.latest.category.value)], (
                f"baseline count is {s.latest.category.value}, not green: initiation blocked"
            )
        if values[-1] < policy.gp_normal:
            return s, [_alert(AlertKind.INITIATION_BLOCKED, cause, on, baseline=str(values[-1]), threshold=str(policy.gp_normal))], (
                f"baseline {values[-1]} below {policy.gp_normal}: initiation blocked"
            )
    s = evolve(
        s,
        phase=Phase.NORMAL,
        interval=Frequency.WEEKLY,
        last_normal_interval=Frequency.WEEKLY,
        next_due=on + timedelta(days=policy.days_weekly),
        pre_values=(),
    )
    return s, [], "baseline eligible: start clozapine, weekly ANC"


def _stepdown(policy: RulesPolicy, s: PatientState, on: date, cause: str) -> tuple[Alert | None, PatientState]:
    """Suggest (never impose) weekly -> every 2 weeks -> monthly (rules.md 3.1)."""
    if s.therapy_start is None or s.treatment is not TreatmentStatus.ACTIVE:
        return None, s
    if policy.uk:  # weekly 18 weeks, fortnightly to 52 weeks, then four-weekly; clean since the last step
        if s.interval is Frequency.WEEKLY:
            target, due, clean_since = Frequency.EVERY_2_WEEKS, s.therapy_start + timedelta(weeks=policy.stepdown_weeks_q2w), s.therapy_start
        elif s.interval is Frequency.EVERY_2_WEEKS:
            target, due = Frequency.MONTHLY, s.therapy_start + timedelta(weeks=policy.stepdown_weeks_monthly)
            clean_since = s.therapy_start + timedelta(weeks=policy.stepdown_weeks_q2w)
        else:
            return None, s
    elif s.interval is Frequency.WEEKLY:
        target, months = Frequency.EVERY_2_WEEKS, policy.stepdown_months_q2w
        due, clean_since = add_months(s.therapy_start, months), add_months(s.therapy_start, months - 6)
    elif s.interval is Frequency.EVERY_2_WEEKS:
        target, months = Frequency.MONTHLY, policy.stepdown_months_monthly
        due, clean_since = add_months(s.therapy_start, months), add_months(s.therapy_start, months - 6)
    else:
        return None, s
    if s.stepdown_offered is target or on < due:
        return None, s
    if s.last_abnormal_on is not None and s.last_abnormal_on >= clean_since:
        return None, s
    a = _alert(AlertKind.STEPDOWN_ELIGIBLE, f"stepdown:{target.value}:{s.therapy_start}", on, suggested=target.value)
    return a, evolve(s, stepdown_offered=target)


def _on_enroll(policy: RulesPolicy, s: PatientState, e: Enroll) -> tuple[PatientState, list[Alert], str]:
    if s.enrolled:
        raise EventNotAllowed("patient is already enrolled")
    if policy.uk and e.population is Population.BEN:
        raise InvalidInput(
            f"profile {policy.label} has no verified limits for benign ethnic neutropenia (rules.md 6.1): "
            "register the patient's lower limits with the monitoring service and use a profile that carries them"
        )
    if e.population is Population.BEN and e.baseline_anc is not None and e.baseline_anc < policy.ben_normal:
        raise InvalidInput(f"BEN baseline ANC {e.baseline_anc} is below {policy.ben_normal}")
    s = evolve(s, enrolled=True, population=e.population, therapy_start=e.therapy_start, baseline_anc=e.baseline_anc)
    if s.latest is not None:  # results seen before enrollment were categorized without a population
        s = evolve(s, latest=evolve(s.latest, category=categorize(policy, e.population, s.latest.value, s.latest.wbc)))
    if e.monitoring_frequency is not None:
        if e.monitoring_frequency not in (Frequency.WEEKLY, Frequency.EVERY_2_WEEKS, Frequency.MONTHLY):
            raise InvalidInput("monitoring_frequency must be weekly, every_2_weeks or monthly")
        last = s.latest.on if s.latest else e.on
        s = evolve(
            s,
            phase=Phase.NORMAL,
            interval=e.monitoring_frequency,
            last_normal_interval=e.monitoring_frequency,
            next_due=last + timedelta(days=policy.interval_days(e.monitoring_frequency)),
            stepdown_offered=e.monitoring_frequency if e.monitoring_frequency is not Frequency.WEEKLY else None,
            pre_values=(),
        )
        return s, [], f"transferred on {e.monitoring_frequency.value} monitoring"
    return _evaluate_baseline(policy, s, e.on, f"enroll:{e.key}")


def _on_clinical(policy: RulesPolicy, s: PatientState, e: ClinicalEvent) -> tuple[PatientState, list[Alert], str]:
    if not s.enrolled:
        raise EventNotAllowed("patient is not enrolled")
    cause = f"event:{e.key}"
    t = s.treatment
    if e.type == "interrupt":
        if t is not TreatmentStatus.ACTIVE:
            raise EventNotAllowed(f"therapy is not active (status {t.value}); nothing to interrupt")
        return evolve(s, held_other_since=e.on, pre_values=()), [], "therapy held for a non-hematologic reason; monitoring continues"
    if e.type == "resume":
        return _resume(policy, s, e, cause)
    if e.type == "discontinue":
        if t is TreatmentStatus.DISCONTINUED:
            raise EventNotAllowed("therapy is already discontinued")
        s = evolve(s, discontinued=True, discontinued_on=e.on, held_other_since=None, override_rationale="", pre_values=())
        if s.phase in (Phase.SEV_RECOVERED_HOLD, Phase.PRE):
            return evolve(s, phase=Phase.CLOSED, next_due=None, pending_confirm_until=None), [], "discontinued; ANC already recovered"
        recovered = s.latest is not None and _recovered(policy, s, s.latest.value)
        if s.phase in (Phase.NORMAL, Phase.POST_EPISODE_WEEKLY) and recovered and s.latest is not None and (not e.abrupt or s.latest.on >= e.on):
            # rules.md 3.4: after a planned stop with no neutropenia in progress nothing is left
            # to follow; an abrupt stop is followed until an ANC in the normal range, and one
            # drawn on the day of the stop is that ANC (it sorts before the same-day event).
            # The fever rule (section 4) still applies for 14 days.
            return evolve(s, phase=Phase.CLOSED, next_due=None, pending_confirm_until=None), [], "discontinued with the latest ANC in the normal range: monitoring ends"
        if s.phase in (Phase.NORMAL, Phase.POST_EPISODE_WEEKLY):
            s = evolve(s, phase=Phase.DISC_MONITOR, interval=s.frequency)
        return s, [], "discontinued: keep monitoring until the ANC is in the normal range"
    if e.type == "rechallenge":
        if s.phase is not Phase.SEV_RECOVERED_HOLD:
            raise EventNotAllowed("rechallenge is only possible after recovery from severe neutropenia, awaiting a decision")
        if not e.rationale.strip() or not e.by.strip():
            raise EventNotAllowed("a rechallenge must name the prescriber and give a rationale")
        need = policy.ben_normal if s.population is Population.BEN else policy.gp_normal
        if s.latest is None or s.latest.value < need:
            raise EventNotAllowed(f"rechallenge blocked: latest ANC must be >= {need}")
        s = evolve(
            s,
            phase=Phase.NORMAL,
            therapy_start=e.on,
            interval=Frequency.WEEKLY,
            last_normal_interval=Frequency.WEEKLY,
            stepdown_offered=None,
            last_abnormal_on=None,
            weekly_block_count=0,
            next_due=e.on + timedelta(days=policy.days_weekly),
        )
        a = _alert(AlertKind.RESUME_THERAPY, cause, e.on, reason="Rechallenge: restart as a new patient, weekly ANC", retitration_required="true", by=e.by)
        return s, [a], "rechallenged as a new patient"
    if e.type == "override":
        if s.phase not in HEME_HELD_PHASES and s.phase is not Phase.SEV_RECOVERED_HOLD:
            raise EventNotAllowed("an override applies only while therapy is held for neutropenia")
        if not e.rationale.strip() or not e.by.strip():
            raise EventNotAllowed("an override must name the prescriber and give a treatment rationale")
        return evolve(s, override_rationale=e.rationale), [], "prescriber override: continue despite neutropenia"
    if e.type == "stepdown_confirmed":
        if s.stepdown_offered is None or s.phase is not Phase.NORMAL or s.interval is s.stepdown_offered:
            raise EventNotAllowed("no step-down has been suggested for this patient")
        new_int = s.stepdown_offered
        base = s.latest.on if s.latest else e.on
        s = evolve(s, interval=new_int, last_normal_interval=new_int, next_due=base + timedelta(days=policy.interval_days(new_int)))
        return s, [], f"step-down confirmed: {new_int.value}"
    if e.type == "fever":
        return _fever(policy, s, e, cause)
    raise InvalidInput(f"unknown event type {e.type!r}")


def _resume(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> tuple[PatientState, list[Alert], str]:
    if s.phase in HEME_HELD_PHASES and not s.override_rationale:
        if s.phase is Phase.GP_MOD_DAILY:
            raise EventNotAllowed(f"cannot resume: ANC has not recovered to {policy.gp_mild}")
        raise EventNotAllowed("cannot resume after severe neutropenia: only a rechallenge decision can restart therapy")
    if s.phase is Phase.SEV_RECOVERED_HOLD:
        raise EventNotAllowed("after severe neutropenia only a rechallenge decision can restart therapy")
    since = s.held_other_since or (s.discontinued_on if s.discontinued else None)
    if since is None:
        raise EventNotAllowed("therapy is not interrupted")
    gap = (e.on - since).days
    if gap < 0:
        raise EventNotAllowed("resume date is before the interruption")
    drawn_off_therapy = tuple(p for p in s.pre_values if p[0] >= since)
    s = evolve(s, held_other_since=None, discontinued=False, discontinued_on=None, pre_values=())
    if gap >= policy.interruption_new_patient_days:
        # rules.md 3.3 / section 7: a new patient. A baseline drawn since the stop (within the
        # baseline window) counts at once, so a same-day baseline starts weekly monitoring.
        s = evolve(
            s,
            phase=Phase.PRE,
            therapy_start=e.on,
            pre_values=drawn_off_therapy,
            next_due=None,
            pending_confirm_until=None,
            stepdown_offered=None,
            last_abnormal_on=None,
            weekly_block_count=0,
            post_episode_dip=False,
        )
        detail = {"new_patient": "true"}
        if gap >= policy.retitration_after_days:
            detail["retitration_required"] = "true"
        a = _alert(
            AlertKind.INCREASE_MONITORING,
            cause,
            e.on,
            reason=f"Restart after {gap} days: monitor as a new patient; a new baseline ANC is required",
            details=detail,
        )
        s, baseline_alerts, why = _evaluate_baseline(policy, s, e.on, cause)
        return s, [a, *baseline_alerts], f"gap {gap} days >= {policy.interruption_new_patient_days}: new patient; {why}"
    more: list[Alert] = []
    if s.phase in (Phase.CLOSED, Phase.DISC_MONITOR):
        s = evolve(s, phase=Phase.NORMAL)
        if s.next_due is None:
            s = evolve(s, next_due=e.on + timedelta(days=policy.interval_days(s.interval)))
        latest = s.latest
        if latest is not None and latest.category not in (Category.NORMAL, Category.GREEN):
            # a count outside the normal range drawn while stopped (or on the restart day, which
            # sorts before this event) applies now: never resume over a severe ANC in silence
            redo = AncResult(latest.key, latest.value, latest.observed_at or datetime(latest.on.year, latest.on.month, latest.on.day), ResultStatus.FINAL, wbc=latest.wbc)
            s, more, _ = _on_anc(policy, s, redo)
    retitrate = {"retitration_required": "true"} if gap >= policy.retitration_after_days else {}
    return s, [_alert(AlertKind.RESUME_THERAPY, cause, e.on, reason=f"Therapy resumed after {gap} days; monitoring as before", details=retitrate), *more], "resumed"


def _fever(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> tuple[PatientState, list[Alert], str]:
    if e.temperature_c is None:
        raise InvalidInput("a fever event needs temperature_c")
    if e.temperature_c < policy.fever_threshold_c:
        return s, [], f"temperature {e.temperature_c} below {policy.fever_threshold_c}: no action"
    if s.discontinued or s.phase is Phase.CLOSED:
        if s.discontinued_on is None or (e.on - s.discontinued_on).days > policy.fever_after_discontinuation_days:
            return s, [], "fever more than 14 days after discontinuation: no ANC rule applies"
    alerts = [_alert(AlertKind.CONFIRM_REPEAT, cause, e.on, reason=f"Fever {e.temperature_c} C: ANC required within 24 hours", fever_c=str(e.temperature_c))]
    if s.latest is not None and s.latest.value < policy.gp_mild:
        alerts.append(_alert(AlertKind.EMERGENCY, cause, e.on, reason=f"Fever with ANC {s.latest.value}/uL: medical emergency", fever_c=str(e.temperature_c)))
    due = e.on + timedelta(days=1)
    s = evolve(s, next_due=min(due, s.next_due) if s.next_due else due)
    return s, alerts, "fever: stat ANC"


def _on_tick(policy: RulesPolicy, s: PatientState, e: Tick) -> tuple[PatientState, list[Alert], str]:
    if not s.enrolled or s.next_due is None or s.phase in (Phase.PRE, Phase.CLOSED):
        return s, [], "no ANC due"
    tolerance = policy.three_weekly_overdue_tolerance_days if s.frequency is Frequency.THREE_WEEKLY else 0
    if e.on <= s.next_due + timedelta(days=tolerance) or s.overdue_alerted_for == s.next_due:
        return s, [], "not overdue"
    urgent = s.frequency is Frequency.DAILY or s.treatment is not TreatmentStatus.ACTIVE
    a = _alert(
        AlertKind.OVERDUE_LAB,
        f"overdue:{s.next_due}",
        e.on,
        severity=Severity.HIGH if urgent else Severity.NORMAL,
        reason=f"No ANC since it was due on {s.next_due}",
        due=s.next_due.isoformat(),
    )
    return evolve(s, overdue_alerted_for=s.next_due), [a], f"overdue since {s.next_due}"


# ---------------------------------------------------------------- public API


def step(policy: RulesPolicy, state: PatientState, event: Event) -> Decision:
    """Apply one event; raises EventNotAllowed / InvalidInput for what the state refuses."""
    if isinstance(event, AncResult):
        new, alerts, why = _on_anc(policy, state, event)
    elif isinstance(event, Enroll):
        new, alerts, why = _on_enroll(policy, state, event)
    elif isinstance(event, ClinicalEvent):
        new, alerts, why = _on_clinical(policy, state, event)
    elif isinstance(event, Tick):
        new, alerts, why = _on_tick(policy, state, event)
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


def fold(policy: RulesPolicy, events: Iterable[Event]) -> Folded:
    """Replay a history in specimen order; events a correction made impossible become no-ops."""
    state = PatientState()
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
    # refold notices are not part of any fold: they stay true for the moment they were raised
    withdrawn = [x for k, x in b.items() if k not in a_ and x.kind is not AlertKind.ALERT_SUPERSEDED and not x.cause.startswith(REFOLD_CAUSE)]
    new = [x for k, x in a_.items() if k not in b]
    return withdrawn, new


REFOLD_CAUSE = "pharmacy-refold:"


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
    "pharmacy_after_refold",
    "step",
    "superseded_alert",
    "uk_colour",
    "withdrawal_notice",
]
