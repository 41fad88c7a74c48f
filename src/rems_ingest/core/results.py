"""What one ANC result does to a patient (rules.md sections 3 and 7), as named steps.

``on_anc`` reads top to bottom like the spec: a preliminary result pages but changes nothing;
before therapy a result is a possible baseline; after a stop it may end monitoring; otherwise
the transition tables (core/transitions.py) move the episode, and the changes that follow
from the move (weekly block, intervals, rechallenge restriction) are gathered in one place.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from rems_ingest.core.alerts import make_alert as _alert
from rems_ingest.core.categories import categorize, uk_haematology, validate_anc
from rems_ingest.core.model import (
    HEME_HELD_PHASES,
    Alert,
    AlertKind,
    AncResult,
    Category,
    Frequency,
    LatestAnc,
    PatientState,
    Phase,
    Population,
    ResultStatus,
    TreatmentStatus,
    evolve,
)
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.core.transitions import ben_transition, gp_transition, uk_transition

Outcome = tuple[PatientState, list[Alert], str]
_NORMAL_CATEGORIES = (Category.NORMAL, Category.GREEN)
_MONITORING_PHASES = (Phase.NORMAL, Phase.DISC_MONITOR)


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def recovered(policy: RulesPolicy, state: PatientState, anc: Decimal) -> bool:
    """Discontinuation monitoring ends at ANC >= 1500 (general) or >= 1000 / baseline (BEN)."""
    if state.population is Population.BEN and not policy.uk:
        return anc >= policy.ben_normal
    return anc >= policy.gp_normal


def next_due(policy: RulesPolicy, state: PatientState, on: date, confirm: bool) -> date | None:
    freq = state.frequency
    if freq is Frequency.NONE:
        return None
    if confirm:
        return on + timedelta(days=policy.days_confirm_repeat)
    return on + timedelta(days=policy.interval_days(freq))


def on_anc(policy: RulesPolicy, s: PatientState, e: AncResult) -> Outcome:
    validate_anc(e)
    cat = categorize(policy, s.population, e.value, e.wbc)
    if e.status is ResultStatus.PRELIMINARY:
        return s, _preliminary_page(s, e, cat), f"preliminary {cat.value} result: state unchanged"
    if not e.status.counts:
        return s, [], f"result status {e.status.value} does not count"

    latest = LatestAnc(value=e.value, on=e.on, category=cat, key=e.key, observed_at=e.observed_at, wbc=e.wbc)
    alerts: list[Alert] = []
    if s.overdue_alerted_for is not None:
        alerts.append(_alert(AlertKind.OVERDUE_RESOLVED, f"overdue_resolved:{s.overdue_alerted_for}", e.on))
        s = evolve(s, overdue_alerted_for=None)

    if not s.enrolled or s.phase is Phase.PRE:
        s, more, why = _possible_baseline(policy, s, e, cat, latest)
        return s, alerts + more, why

    if s.held_other_since is not None or s.discontinued:
        # a restart after >= 30 days needs a fresh baseline, often drawn on the restart day
        # (which sorts before the resume event): keep what was drawn while off therapy
        s = evolve(s, pre_values=(s.pre_values + ((e.on, e.value),))[-10:])
    if s.phase is Phase.CLOSED:
        return evolve(s, latest=latest, next_due=None), alerts, f"{cat.value}; monitoring closed"
    if s.discontinued and recovered(policy, s, e.value) and s.phase is not Phase.SEV_RECOVERED_HOLD:
        s = evolve(s, phase=Phase.CLOSED, latest=latest, next_due=None, pending_confirm_until=None)
        return s, alerts, f"{cat.value} after discontinuation: monitoring may end"

    new, more = _move_episode(policy, s, e, cat, latest)
    why = f"{cat.value} ({e.value}/uL): {s.phase.value} -> {new.phase.value}"
    return new, alerts + more, why


def _preliminary_page(s: PatientState, e: AncResult, cat: Category) -> list[Alert]:
    if cat not in (Category.SEVERE, Category.RED) or not s.enrolled:
        return []
    # the final result for this specimen raises the same identity (one page, one alert id):
    # a consumer de-duplicating by id sees one emergency
    return [
        _alert(
            AlertKind.EMERGENCY,
            f"anc:{e.key}",
            e.on,
            reason="PRELIMINARY severe neutropenia result: verify now; state changes only on the final result",
            provisional="true",
        )
    ]


def _possible_baseline(policy: RulesPolicy, s: PatientState, e: AncResult, cat: Category, latest: LatestAnc) -> Outcome:
    s = evolve(s, pre_values=(s.pre_values + ((e.on, e.value),))[-10:], latest=latest)
    if not s.enrolled:
        return s, [], f"{cat.value}; patient not enrolled: kept as a possible baseline"
    return evaluate_baseline(policy, s, e.on, f"anc:{e.key}")


def _transition(policy: RulesPolicy, s: PatientState, e: AncResult, cat: Category) -> tuple[Phase, tuple[AlertKind, ...], bool]:
    """The transition-table row for this result: (next phase, alerts, a confirmed UK red)."""
    if policy.uk:
        phase, kinds, confirmed_red = uk_transition(policy, s, cat)
        already = s.phase is Phase.UK_RED and s.latest is not None and uk_haematology(policy, s.latest.value, s.latest.wbc)
        if cat is Category.RED and uk_haematology(policy, e.value, e.wbc) and not already:
            kinds = (AlertKind.EMERGENCY,) + kinds  # first count below the haematology limits in this episode
        return phase, kinds, confirmed_red
    if s.population is Population.BEN:
        return (*ben_transition(policy, s, cat, e.value), False)
    return (*gp_transition(policy, s, cat), False)


def _move_episode(policy: RulesPolicy, s: PatientState, e: AncResult, cat: Category, latest: LatestAnc) -> tuple[PatientState, list[Alert]]:
    phase, kinds, confirmed_red = _transition(policy, s, e, cat)
    ch = _episode_changes(s, e, cat, phase, confirmed_red)
    kinds = _weekly_block(policy, s, phase, ch, kinds)
    if phase is Phase.NORMAL and s.phase is not Phase.NORMAL:
        ch.update(interval=s.last_normal_interval, post_episode_dip=False)
    if s.override_rationale and ch["phase"] not in HEME_HELD_PHASES and ch["phase"] is not Phase.SEV_RECOVERED_HOLD:
        ch["override_rationale"] = ""  # the episode is over; a new one needs a new rationale
    confirm = AlertKind.CONFIRM_REPEAT in kinds
    if confirm:
        ch["pending_confirm_until"] = e.on + timedelta(days=policy.days_confirm_repeat)
    ch["latest"] = latest
    new = evolve(s, **ch)
    new = evolve(new, next_due=next_due(policy, new, e.on, confirm))

    cause = f"anc:{e.key}"
    alerts = [_alert(kind, cause, e.on, details=_details(policy, kind, phase, cat, e, confirmed_red)) for kind in kinds]
    if new.phase is Phase.NORMAL:
        step_alert, new = stepdown(policy, new, e.on, cause)
        if step_alert:
            alerts.append(step_alert)
    return new, alerts


def _episode_changes(s: PatientState, e: AncResult, cat: Category, phase: Phase, confirmed_red: bool) -> dict[str, Any]:
    """The state changes a move implies, gathered to apply in one copy (later entries win)."""
    ch: dict[str, Any] = {"phase": phase, "pending_confirm_until": None}
    if s.phase in _MONITORING_PHASES and phase not in _MONITORING_PHASES:
        ch["last_normal_interval"] = s.interval  # entering an episode: remember where to return
    if cat not in _NORMAL_CATEGORIES:
        ch["last_abnormal_on"] = e.on
    if phase in (Phase.GP_SEV_DAILY, Phase.BEN_SEV_DAILY) or confirmed_red:
        ch["rechallenge_restricted"] = True
    if phase is Phase.GP_MILD and s.phase is Phase.POST_EPISODE_WEEKLY:
        ch["post_episode_dip"] = True
    return ch


def _weekly_block(policy: RulesPolicy, s: PatientState, phase: Phase, ch: dict[str, Any], kinds: tuple[AlertKind, ...]) -> tuple[AlertKind, ...]:
    """Weekly x4 after an episode: entering starts the count at 0; each further normal result counts."""
    if phase is not Phase.POST_EPISODE_WEEKLY:
        return kinds
    if s.phase is not Phase.POST_EPISODE_WEEKLY:
        ch.update(weekly_block_count=0, post_episode_dip=False)
        return kinds
    n = s.weekly_block_count + 1
    if n < policy.post_episode_weeks:
        ch["weekly_block_count"] = n
        return kinds
    ch.update(phase=Phase.NORMAL, interval=s.last_normal_interval, weekly_block_count=0)
    return kinds + (AlertKind.ROUTINE_MONITORING_RESUMED,)


def _details(policy: RulesPolicy, kind: AlertKind, phase: Phase, cat: Category, e: AncResult, confirmed_red: bool) -> dict[str, str]:
    detail: dict[str, str] = {}
    if kind in (AlertKind.INTERRUPT_THERAPY, AlertKind.EMERGENCY) or (kind is AlertKind.INCREASE_MONITORING and phase is Phase.BEN_NEUT):
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
    return detail


def evaluate_baseline(policy: RulesPolicy, s: PatientState, on: date, cause: str) -> Outcome:
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


def stepdown(policy: RulesPolicy, s: PatientState, on: date, cause: str) -> tuple[Alert | None, PatientState]:
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
