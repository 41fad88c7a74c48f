"""What one counted ANC does to a patient's episode: the transition tables of rules.md §7, as data.

Each row reads like the spec's table: in these phases, a result in this category moves the
patient to that phase and raises these alerts. The first row that matches wins; no row means
the episode drives monitoring and nothing changes. Hold the rows against docs/rules.md §7:
the conformance suite (tests/conformance) runs every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from rems_ingest.core.model import AlertKind, Category, PatientState, Phase
from rems_ingest.core.policy import RulesPolicy

Transition = tuple[Phase, tuple[AlertKind, ...]]
Guard = Callable[[RulesPolicy, PatientState, Decimal], bool]

# a low result in these phases is an *initial* report (rules.md 1.3): it needs a 24 h repeat
INITIAL_REPORT_PHASES = frozenset({Phase.NORMAL, Phase.DISC_MONITOR, Phase.POST_EPISODE_WEEKLY})

P, K, C = Phase, AlertKind, Category
EMERGENCY, INTERRUPT, CONFIRM = K.EMERGENCY, K.INTERRUPT_THERAPY, K.CONFIRM_REPEAT
INCREASE, RESUME, RESTORED, DECIDE = K.INCREASE_MONITORING, K.RESUME_THERAPY, K.ROUTINE_MONITORING_RESUMED, K.DECISION_REQUIRED


def ben_baseline(policy: RulesPolicy, state: PatientState) -> Decimal:
    return state.baseline_anc if state.baseline_anc is not None else policy.ben_normal


def _after_post_episode_dip(policy: RulesPolicy, s: PatientState, anc: Decimal) -> bool:
    return s.post_episode_dip


def _at_or_above_baseline(policy: RulesPolicy, s: PatientState, anc: Decimal) -> bool:
    return anc >= ben_baseline(policy, s)


@dataclass(frozen=True, slots=True)
class Row:
    category: Category
    phases: frozenset[Phase] | None  # None: any phase
    to: Phase
    alerts: tuple[AlertKind, ...] = ()
    when: Guard | None = None

    def matches(self, policy: RulesPolicy, s: PatientState, cat: Category, anc: Decimal) -> bool:
        return cat is self.category and (self.phases is None or s.phase in self.phases) and (self.when is None or self.when(policy, s, anc))


def _in(*phases: Phase) -> frozenset[Phase]:
    return frozenset(phases)


# General population (label Table 2), thresholds L1=1500, L2=1000, L3=500
GP_TABLE: tuple[Row, ...] = (
    Row(C.SEVERE, _in(P.GP_SEV_DAILY), P.GP_SEV_DAILY),  # already in the severe episode
    Row(C.SEVERE, INITIAL_REPORT_PHASES, P.GP_SEV_DAILY, (EMERGENCY, INTERRUPT, CONFIRM)),  # §1.3 / §8: initial report
    Row(C.SEVERE, None, P.GP_SEV_DAILY, (EMERGENCY, INTERRUPT)),  # any active / recovery state
    Row(C.MODERATE, _in(P.NORMAL, P.DISC_MONITOR, P.POST_EPISODE_WEEKLY), P.GP_MOD_DAILY, (INTERRUPT, CONFIRM)),
    Row(C.MODERATE, _in(P.GP_MILD, P.GP_MOD_RECOVERY), P.GP_MOD_DAILY, (INTERRUPT,)),
    Row(C.MODERATE, _in(P.GP_SEV_RECOVERY, P.SEV_RECOVERED_HOLD), P.GP_SEV_DAILY, (INCREASE,)),  # severe episode: daily again
    Row(C.MILD, _in(P.NORMAL, P.DISC_MONITOR), P.GP_MILD, (INCREASE, CONFIRM)),
    Row(C.MILD, _in(P.POST_EPISODE_WEEKLY), P.GP_MILD, (INCREASE, CONFIRM)),  # a dip in the weekly x4 block: +1 (§7, §2.3)
    Row(C.MILD, _in(P.GP_MOD_DAILY), P.GP_MOD_RECOVERY, (RESUME,)),  # moderate: resume once ANC >= 1000
    Row(C.MILD, _in(P.GP_SEV_DAILY), P.GP_SEV_RECOVERY),  # severe: 3x weekly, still held
    Row(C.MILD, _in(P.SEV_RECOVERED_HOLD), P.GP_SEV_RECOVERY, (INCREASE,)),
    Row(C.NORMAL, _in(P.GP_MILD), P.POST_EPISODE_WEEKLY, when=_after_post_episode_dip),  # the block restarts
    Row(C.NORMAL, _in(P.GP_MILD), P.NORMAL, (RESTORED,)),  # back to the last normal interval
    Row(C.NORMAL, _in(P.GP_MOD_DAILY), P.POST_EPISODE_WEEKLY, (RESUME,)),
    Row(C.NORMAL, _in(P.GP_MOD_RECOVERY), P.POST_EPISODE_WEEKLY),  # weekly x4
    Row(C.NORMAL, _in(P.GP_SEV_DAILY, P.GP_SEV_RECOVERY), P.SEV_RECOVERED_HOLD, (DECIDE,)),
)

# Benign ethnic neutropenia (label Table 3): no mild category
BEN_TABLE: tuple[Row, ...] = (
    Row(C.SEVERE, _in(P.BEN_SEV_DAILY), P.BEN_SEV_DAILY),
    Row(C.SEVERE, INITIAL_REPORT_PHASES, P.BEN_SEV_DAILY, (EMERGENCY, INTERRUPT, CONFIRM)),
    Row(C.SEVERE, None, P.BEN_SEV_DAILY, (EMERGENCY, INTERRUPT)),
    Row(C.BEN_NEUTROPENIA, _in(P.NORMAL, P.DISC_MONITOR), P.BEN_NEUT, (INCREASE, CONFIRM)),
    Row(C.BEN_NEUTROPENIA, _in(P.POST_EPISODE_WEEKLY), P.BEN_NEUT, (INCREASE, CONFIRM)),
    Row(C.BEN_NEUTROPENIA, _in(P.BEN_SEV_DAILY), P.BEN_SEV_RECOVERY),  # >= 500: 3x weekly, still held
    Row(C.BEN_NEUTROPENIA, _in(P.SEV_RECOVERED_HOLD), P.BEN_SEV_RECOVERY, (INCREASE,)),
    Row(C.NORMAL, _in(P.BEN_NEUT), P.POST_EPISODE_WEEKLY),  # >= 1000: weekly x4
    Row(C.NORMAL, _in(P.BEN_SEV_DAILY, P.BEN_SEV_RECOVERY), P.SEV_RECOVERED_HOLD, (DECIDE,), when=_at_or_above_baseline),
    Row(C.NORMAL, _in(P.BEN_SEV_DAILY, P.BEN_SEV_RECOVERY), P.BEN_SEV_RECOVERY),  # >= 1000 but below the patient's baseline
)


def _look_up(table: tuple[Row, ...], policy: RulesPolicy, s: PatientState, cat: Category, anc: Decimal) -> Transition:
    for row in table:
        if row.matches(policy, s, cat, anc):
            return row.to, row.alerts
    return s.phase, ()


def gp_transition(policy: RulesPolicy, s: PatientState, cat: Category, anc: Decimal = Decimal(0)) -> Transition:
    return _look_up(GP_TABLE, policy, s, cat, anc)


def ben_transition(policy: RulesPolicy, s: PatientState, cat: Category, anc: Decimal) -> Transition:
    return _look_up(BEN_TABLE, policy, s, cat, anc)


def uk_transition(policy: RulesPolicy, s: PatientState, cat: Category) -> tuple[Phase, tuple[AlertKind, ...], bool]:
    """rules.md 6.1: (phase, alerts, red confirmed now). Amber: twice weekly until green. Red:
    stop, daily counts, repeat on the following days to confirm; a confirmed red means no
    re-exposure (only an exceptional, documented rechallenge). [D] Leaving red needs green;
    an amber while held stays held with daily counts; amber while awaiting the decision
    goes back to daily counts."""
    ph = s.phase
    K = AlertKind
    if cat is Category.RED:
        if ph is Phase.UK_RED:
            return ph, ((K.INTERRUPT_THERAPY,) if not s.rechallenge_restricted else ()), not s.rechallenge_restricted
        return Phase.UK_RED, (K.INTERRUPT_THERAPY, K.CONFIRM_REPEAT), False
    if cat is Category.AMBER:
        if ph in (Phase.NORMAL, Phase.DISC_MONITOR):
            return Phase.UK_AMBER, (K.INCREASE_MONITORING,), False
        if ph is Phase.SEV_RECOVERED_HOLD:
            return Phase.UK_RED, (K.INCREASE_MONITORING,), False
        return ph, (), False  # UK_AMBER, UK_RED
    if ph is Phase.UK_AMBER:
        return Phase.NORMAL, (K.ROUTINE_MONITORING_RESUMED,), False
    if ph is Phase.UK_RED:
        return Phase.SEV_RECOVERED_HOLD, (K.DECISION_REQUIRED,), False
    return ph, (), False
