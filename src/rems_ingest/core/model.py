"""Frozen domain values for the clozapine ANC rules.

Everything here is a plain value: no I/O, no clock, no globals. Clinical numbers are
``Decimal`` cells/uL so that 1499.6 is never rounded into the normal range.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

_T = TypeVar("_T")
_FIELDS: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}


def evolve(obj: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace`` for these frozen, slotted records, three times faster.

    The rules derive several states per result and ``replace`` re-reads the field list and
    runs ``__init__`` on every call; this copies the slots straight across. Same contract:
    an unknown field name raises TypeError. A class with ``__post_init__`` (none here today)
    falls back to ``dataclasses.replace`` so its checks still run.
    """
    cls = type(obj)
    known = _FIELDS.get(cls)
    if known is None:
        if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
            return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
        names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        known = _FIELDS[cls] = (frozenset(names), names)
    if not known[0].issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(set(changes) - known[0])}")
    new = object.__new__(cls)
    put = object.__setattr__
    for name in known[1]:
        put(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


class Population(str, Enum):
    GENERAL = "general"
    BEN = "ben"


class Category(str, Enum):
    """ANC category for the patient's population (rules.md section 1)."""

    NORMAL = "normal"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"
    BEN_NEUTROPENIA = "ben_neutropenia"
    # UK monitoring-service colours (rules.md 6.1), from WBC and neutrophils together
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


class Frequency(str, Enum):
    DAILY = "daily"
    THREE_WEEKLY = "three_times_weekly"
    TWICE_WEEKLY = "twice_weekly"  # UK amber
    WEEKLY = "weekly"
    EVERY_2_WEEKS = "every_2_weeks"
    MONTHLY = "monthly"
    NONE = "none"

    @property
    def rank(self) -> int:
        """Higher means more intensive monitoring."""
        return _FREQ_RANK[self]


_FREQ_RANK = {
    Frequency.NONE: 0,
    Frequency.MONTHLY: 1,
    Frequency.EVERY_2_WEEKS: 2,
    Frequency.WEEKLY: 3,
    Frequency.TWICE_WEEKLY: 4,
    Frequency.THREE_WEEKLY: 5,
    Frequency.DAILY: 6,
}

ROUTINE_INTERVALS = (Frequency.WEEKLY, Frequency.EVERY_2_WEEKS, Frequency.MONTHLY)


class Phase(str, Enum):
    """Monitoring episode state (rules.md section 7)."""

    PRE = "pre"
    NORMAL = "normal"
    GP_MILD = "gp_mild"
    GP_MOD_DAILY = "gp_moderate_daily"
    GP_MOD_RECOVERY = "gp_moderate_recovery"
    GP_SEV_DAILY = "gp_severe_daily"
    GP_SEV_RECOVERY = "gp_severe_recovery"
    POST_EPISODE_WEEKLY = "post_episode_weekly"
    BEN_NEUT = "ben_neutropenia"
    BEN_SEV_DAILY = "ben_severe_daily"
    BEN_SEV_RECOVERY = "ben_severe_recovery"
    SEV_RECOVERED_HOLD = "severe_recovered_hold"
    UK_AMBER = "uk_amber"
    UK_RED = "uk_red"
    DISC_MONITOR = "discontinued_monitoring"
    CLOSED = "closed"


HEME_HELD_PHASES = frozenset(
    {
        Phase.GP_MOD_DAILY,
        Phase.GP_SEV_DAILY,
        Phase.GP_SEV_RECOVERY,
        Phase.BEN_SEV_DAILY,
        Phase.BEN_SEV_RECOVERY,
        Phase.UK_RED,
    }
)


class TreatmentStatus(str, Enum):
    NOT_STARTED = "not_started"
    ACTIVE = "active"
    HELD_HEME = "held_heme"
    HELD_OTHER = "held_other"
    ON_HOLD_DECISION = "on_hold_decision"
    DISCONTINUED = "discontinued"


class ResultStatus(str, Enum):
    """HL7 table 0085 (OBX-11) codes that matter to the rules."""

    FINAL = "F"
    CORRECTED = "C"
    PRELIMINARY = "P"
    CANNOT_OBTAIN = "X"
    DELETED = "D"
    WRONG = "W"

    @property
    def counts(self) -> bool:
        """Only final and corrected results move a patient's state."""
        return self in (ResultStatus.FINAL, ResultStatus.CORRECTED)


class AlertKind(str, Enum):
    """Public alert kinds (contract.md); value = routing key suffix."""

    INCREASE_MONITORING = "monitoring.increased"
    CONFIRM_REPEAT = "monitoring.confirm_repeat"
    ROUTINE_MONITORING_RESUMED = "monitoring.restored"
    STEPDOWN_ELIGIBLE = "monitoring.stepdown_eligible"
    INTERRUPT_THERAPY = "therapy.interrupt"
    EMERGENCY = "therapy.emergency"
    RESUME_THERAPY = "therapy.resume_eligible"
    DECISION_REQUIRED = "therapy.decision_required"
    INITIATION_BLOCKED = "baseline.ineligible"
    OVERDUE_LAB = "lab.overdue"
    OVERDUE_RESOLVED = "lab.overdue_resolved"
    DISPENSE_HOLD = "pharmacy.hold"
    DISPENSE_RELEASE = "pharmacy.release"
    ALERT_SUPERSEDED = "alert.superseded"
    DATA_QUALITY = "data.quality"
    FEED_SILENT = "feed.silent"  # a lab feed sent nothing for longer than its threshold (integration on-call)
    FEED_RESUMED = "feed.resumed"  # traffic came back on a silent feed
    BREAK_GLASS = "access.break_glass"  # a decision recorded by someone outside the patient's care team (clinic)
    AUDIT_ANCHOR = "audit.anchor"  # the access trail's head, kept outside the store (rems.audit queue)


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class PatientKey:
    """PID-3 identifier (CX.1) plus assigning authority (CX.4, may be empty)."""

    id: str
    authority: str = ""

    def __str__(self) -> str:
        return f"{self.id}^{self.authority}" if self.authority else self.id


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class AncResult:
    """One ANC in cells/uL for a specimen; ``key`` identifies it across corrections."""

    key: str
    value: Decimal
    observed_at: datetime
    status: ResultStatus = ResultStatus.FINAL
    censored: str = ""  # "<" or ">" when the lab reported a bound, e.g. "<0.1"
    derived: bool = False
    wbc: Decimal | None = None  # cells/uL from the same order, when reported (UK colour rules)

    @property
    def on(self) -> date:
        return self.observed_at.date()


@dataclass(frozen=True, slots=True)
class Enroll:
    """Patient enrolled on clozapine monitoring (prescriber-set population)."""

    key: str
    on: date
    population: Population
    therapy_start: date
    baseline_anc: Decimal | None = None
    monitoring_frequency: Frequency | None = None  # transfer from an existing clinic


@dataclass(frozen=True, slots=True)
class ClinicalEvent:
    """Prescriber or clinical event (contract.md events endpoint)."""

    key: str
    type: str  # interrupt|resume|discontinue|rechallenge|override|stepdown_confirmed|fever
    on: date
    by: str = ""
    rationale: str = ""
    abrupt: bool = True
    temperature_c: Decimal | None = None
    break_glass: str = ""  # why someone outside the patient's care team recorded it ("" = the care team did)
    voided: str = ""  # "entered in error": who voided it and why ("" = in force); the rules skip it


@dataclass(frozen=True, slots=True)
class Tick:
    """The overdue sweep looked at this patient on ``on`` (kept so refolds replay it)."""

    key: str
    on: date


Event = AncResult | Enroll | ClinicalEvent | Tick

CLINICAL_EVENT_TYPES = frozenset(
    {"interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"}
)


def event_day(event: Event) -> date:
    return event.on


def event_sort_key(event: Event) -> tuple[date, int, str, str]:
    """Total specimen/effective order: same-day enrollment first, ticks last, key breaks ties."""
    if isinstance(event, AncResult):
        return (event.on, 1, event.observed_at.isoformat(), event.key)
    if isinstance(event, Enroll):
        return (event.on, 0, "", event.key)
    if isinstance(event, Tick):
        return (event.on, 3, "", event.key)
    return (event.on, 2, "", event.key)


# ---------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class LatestAnc:
    value: Decimal
    on: date
    category: Category
    key: str
    observed_at: datetime | None = None  # specimen time with the lab's offset, for consumers
    wbc: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PatientState:
    """Everything the rules need to decide on the next event."""

    enrolled: bool = False
    population: Population = Population.GENERAL
    baseline_anc: Decimal | None = None
    therapy_start: date | None = None
    phase: Phase = Phase.PRE
    interval: Frequency = Frequency.WEEKLY
    last_normal_interval: Frequency = Frequency.WEEKLY
    weekly_block_count: int = 0
    post_episode_dip: bool = False
    pending_confirm_until: date | None = None
    rechallenge_restricted: bool = False
    override_rationale: str = ""
    held_other_since: date | None = None
    discontinued: bool = False
    discontinued_on: date | None = None
    next_due: date | None = None
    latest: LatestAnc | None = None
    pre_values: tuple[tuple[date, Decimal], ...] = ()
    last_abnormal_on: date | None = None
    stepdown_offered: Frequency | None = None
    overdue_alerted_for: date | None = None
    dispense_hold: bool = True  # nobody may dispense until the rules say so
    version: int = 0

    @property
    def frequency(self) -> Frequency:
        """Monitoring frequency implied by the episode, not only by the latest value."""
        ph = self.phase
        if ph in (Phase.PRE, Phase.CLOSED):
            return Frequency.NONE
        if ph in (Phase.GP_MOD_DAILY, Phase.GP_SEV_DAILY, Phase.BEN_SEV_DAILY, Phase.UK_RED):
            return Frequency.DAILY
        if ph is Phase.UK_AMBER:
            return Frequency.TWICE_WEEKLY
        if ph in (Phase.GP_MILD, Phase.GP_MOD_RECOVERY, Phase.GP_SEV_RECOVERY, Phase.BEN_NEUT, Phase.BEN_SEV_RECOVERY):
            return Frequency.THREE_WEEKLY
        if ph in (Phase.POST_EPISODE_WEEKLY, Phase.SEV_RECOVERED_HOLD):
            return Frequency.WEEKLY
        return self.interval  # NORMAL, DISC_MONITOR: the routine schedule

    @property
    def action(self) -> str:
        """Short verb for the contract's ``action`` field."""
        t = self.treatment
        if self.phase is Phase.PRE:
            return "baseline_required"
        if self.phase is Phase.CLOSED:
            return "monitoring_closed"
        if t is TreatmentStatus.DISCONTINUED:
            return "discontinued"
        if t is TreatmentStatus.ON_HOLD_DECISION:
            return "decision_required"
        if t is TreatmentStatus.HELD_HEME:
            return "emergency" if self.phase in (Phase.GP_SEV_DAILY, Phase.BEN_SEV_DAILY) else "interrupt"  # UK red: stop
        if t is TreatmentStatus.HELD_OTHER:
            return "held"
        if self.override_rationale and self.phase in HEME_HELD_PHASES:
            return "continue_with_override"
        if self.phase is Phase.GP_MOD_RECOVERY:
            return "resume"
        if self.phase in (Phase.GP_MILD, Phase.BEN_NEUT, Phase.UK_AMBER):
            return "continue_increased_monitoring"
        return "continue"

    @property
    def treatment(self) -> TreatmentStatus:
        if not self.enrolled or self.phase is Phase.PRE:
            return TreatmentStatus.NOT_STARTED
        if self.discontinued or self.phase in (Phase.DISC_MONITOR, Phase.CLOSED):
            return TreatmentStatus.DISCONTINUED
        if self.phase is Phase.SEV_RECOVERED_HOLD and not self.override_rationale:
            return TreatmentStatus.ON_HOLD_DECISION
        if self.phase in HEME_HELD_PHASES and not self.override_rationale:
            return TreatmentStatus.HELD_HEME
        if self.held_other_since is not None:
            return TreatmentStatus.HELD_OTHER
        return TreatmentStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert the rules raise; ``cause`` names what raised it (stable across refolds)."""

    kind: AlertKind
    cause: str
    on: date
    severity: Severity
    reason: str
    detail: tuple[tuple[str, str], ...] = field(default=())

    @property
    def identity(self) -> tuple[str, str]:
        return (self.kind.value, self.cause)


def alert_id(patient: PatientKey, kind: str, cause: str, generation: int = 1) -> str:
    """Deterministic id: the same cause always yields the same id (consumer dedupe). An alert
    withdrawn and later justified again is raised anew as the next ``generation``: consumers
    dropped the old id when they were told it was superseded."""
    raw = f"{patient.id}\x1f{patient.authority}\x1f{kind}\x1f{cause}" + (f"\x1f{generation}" if generation > 1 else "")
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decided for one event."""

    state: PatientState
    alerts: tuple[Alert, ...]
    category: Category | None
    action: str
    frequency: Frequency
    next_due: date | None
    explanation: str
    profile: str
