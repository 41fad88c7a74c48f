"""What enrollment, a prescriber's clinical event and the passing of a day do to a patient.

Each clinical event type has its own handler, found in ``HANDLERS`` by the event's ``type``:
the refusals (``EventNotAllowed``) are the label's preconditions, stated where they apply.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

from rems_ingest.core.alerts import make_alert as _alert
from rems_ingest.core.categories import categorize
from rems_ingest.core.errors import EventNotAllowed, InvalidInput
from rems_ingest.core.model import (
    HEME_HELD_PHASES,
    Alert,
    AlertKind,
    AncResult,
    Category,
    ClinicalEvent,
    Enroll,
    Frequency,
    PatientState,
    Phase,
    Population,
    ResultStatus,
    Severity,
    Tick,
    TreatmentStatus,
    evolve,
)
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.core.results import Outcome, evaluate_baseline, on_anc, recovered

Handler = Callable[[RulesPolicy, PatientState, ClinicalEvent, str], Outcome]


def on_enroll(policy: RulesPolicy, s: PatientState, e: Enroll) -> Outcome:
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
    if e.monitoring_frequency is None:
        return evaluate_baseline(policy, s, e.on, f"enroll:{e.key}")
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


def on_clinical(policy: RulesPolicy, s: PatientState, e: ClinicalEvent) -> Outcome:
    if not s.enrolled:
        raise EventNotAllowed("patient is not enrolled")
    handler = HANDLERS.get(e.type)
    if handler is None:
        raise InvalidInput(f"unknown event type {e.type!r}")
    return handler(policy, s, e, f"event:{e.key}")


def _interrupt(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
    if s.treatment is not TreatmentStatus.ACTIVE:
        raise EventNotAllowed(f"therapy is not active (status {s.treatment.value}); nothing to interrupt")
    return evolve(s, held_other_since=e.on, pre_values=()), [], "therapy held for a non-hematologic reason; monitoring continues"


def _discontinue(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
    if s.treatment is TreatmentStatus.DISCONTINUED:
        raise EventNotAllowed("therapy is already discontinued")
    s = evolve(s, discontinued=True, discontinued_on=e.on, held_other_since=None, override_rationale="", pre_values=())
    if s.phase in (Phase.SEV_RECOVERED_HOLD, Phase.PRE):
        return evolve(s, phase=Phase.CLOSED, next_due=None, pending_confirm_until=None), [], "discontinued; ANC already recovered"
    monitoring = s.phase in (Phase.NORMAL, Phase.POST_EPISODE_WEEKLY)
    latest = s.latest
    if monitoring and latest is not None and recovered(policy, s, latest.value) and (not e.abrupt or latest.on >= e.on):
        # rules.md 3.4: after a planned stop with no neutropenia in progress nothing is left
        # to follow; an abrupt stop is followed until an ANC in the normal range, and one
        # drawn on the day of the stop is that ANC (it sorts before the same-day event).
        # The fever rule (section 4) still applies for 14 days.
        return evolve(s, phase=Phase.CLOSED, next_due=None, pending_confirm_until=None), [], "discontinued with the latest ANC in the normal range: monitoring ends"
    if monitoring:
        s = evolve(s, phase=Phase.DISC_MONITOR, interval=s.frequency)
    return s, [], "discontinued: keep monitoring until the ANC is in the normal range"


def _rechallenge(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
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


def _override(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
    if s.phase not in HEME_HELD_PHASES and s.phase is not Phase.SEV_RECOVERED_HOLD:
        raise EventNotAllowed("an override applies only while therapy is held for neutropenia")
    if not e.rationale.strip() or not e.by.strip():
        raise EventNotAllowed("an override must name the prescriber and give a treatment rationale")
    return evolve(s, override_rationale=e.rationale), [], "prescriber override: continue despite neutropenia"


def _stepdown_confirmed(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
    if s.stepdown_offered is None or s.phase is not Phase.NORMAL or s.interval is s.stepdown_offered:
        raise EventNotAllowed("no step-down has been suggested for this patient")
    new_int = s.stepdown_offered
    base = s.latest.on if s.latest else e.on
    s = evolve(s, interval=new_int, last_normal_interval=new_int, next_due=base + timedelta(days=policy.interval_days(new_int)))
    return s, [], f"step-down confirmed: {new_int.value}"


def _resume(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
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
        return _restart_as_new_patient(policy, s, e, cause, gap, drawn_off_therapy)
    more: list[Alert] = []
    if s.phase in (Phase.CLOSED, Phase.DISC_MONITOR):
        s, more = _reopen_monitoring(policy, s, e)
    retitrate = {"retitration_required": "true"} if gap >= policy.retitration_after_days else {}
    return s, [_alert(AlertKind.RESUME_THERAPY, cause, e.on, reason=f"Therapy resumed after {gap} days; monitoring as before", details=retitrate), *more], "resumed"


def _restart_as_new_patient(
    policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str, gap: int, drawn_off_therapy: tuple[tuple[date, Decimal], ...]
) -> Outcome:
    """rules.md 3.3 / section 7: a new patient. A baseline drawn since the stop (within the
    baseline window) counts at once, so a same-day baseline starts weekly monitoring."""
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
    s, baseline_alerts, why = evaluate_baseline(policy, s, e.on, cause)
    return s, [a, *baseline_alerts], f"gap {gap} days >= {policy.interruption_new_patient_days}: new patient; {why}"


def _reopen_monitoring(policy: RulesPolicy, s: PatientState, e: ClinicalEvent) -> tuple[PatientState, list[Alert]]:
    s = evolve(s, phase=Phase.NORMAL)
    if s.next_due is None:
        s = evolve(s, next_due=e.on + timedelta(days=policy.interval_days(s.interval)))
    latest = s.latest
    if latest is None or latest.category in (Category.NORMAL, Category.GREEN):
        return s, []
    # a count outside the normal range drawn while stopped (or on the restart day, which
    # sorts before this event) applies now: never resume over a severe ANC in silence
    drawn = latest.observed_at or datetime(latest.on.year, latest.on.month, latest.on.day)
    s, more, _ = on_anc(policy, s, AncResult(latest.key, latest.value, drawn, ResultStatus.FINAL, wbc=latest.wbc))
    return s, more


def _fever(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
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


def _unenroll(policy: RulesPolicy, s: PatientState, e: ClinicalEvent, cause: str) -> Outcome:
    """Leaving the monitoring programme (a clinic's action): only once there is nothing left to
    monitor — before therapy starts, or after a discontinuation whose monitoring has ended."""
    if s.phase not in (Phase.PRE, Phase.CLOSED):
        raise EventNotAllowed("a patient leaves monitoring only before therapy starts or once monitoring has ended after a discontinuation: record the discontinuation first")
    s = evolve(s, enrolled=False, next_due=None, pending_confirm_until=None, overdue_alerted_for=None, held_other_since=None)
    return s, [], "un-enrolled: ANC monitoring ended"


HANDLERS: dict[str, Handler] = {
    "interrupt": _interrupt,
    "resume": _resume,
    "discontinue": _discontinue,
    "rechallenge": _rechallenge,
    "override": _override,
    "stepdown_confirmed": _stepdown_confirmed,
    "fever": _fever,
    "unenroll": _unenroll,  # not a prescriber event (not in CLINICAL_EVENT_TYPES): the clinic's DELETE builds it
}


def on_tick(policy: RulesPolicy, s: PatientState, e: Tick) -> Outcome:
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
