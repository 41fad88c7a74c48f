"""One case per row of docs/rules.md (US-label profile), in the words of the spec.

Each case is a patient's feed in ``rems-ingest simulate`` lines (``date,anc[,status[,wbc[,
specimen]]]`` or ``date,event[,args]``, counts in cells/uL, lines in arrival order) plus what
a clinician expects after the last line. ``tests/conformance`` runs every case twice: pure,
through the ``simulate`` command, and end to end (ORU^R01 over MLLP, events over HTTP, alerts
read from RabbitMQ, status and dispense check from the HTTP API). ``docs/conformance.md`` is
generated from this table and the last run (``python -m tests.conformance.report``).

Expectations (all optional): ``phase``, ``cat`` (category), ``tx`` (treatment status),
``freq`` (monitoring frequency), ``due`` (next ANC due, None = no date), ``action``,
``alerts`` (exactly the non-pharmacy alert kinds the last line raised), ``pharmacy`` (exactly
its pharmacy kinds), ``severity`` ({kind: severity}), ``refused`` (the last line is not
allowed), ``dispense`` ((date, authorized)).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

S = date(2026, 3, 2)  # a Monday; therapy start of most cases


def d(n: int, base: date = S) -> str:
    return (base + timedelta(days=n)).isoformat()


GP = (f"{d(-1)},1800",)  # an eligible general-population baseline, drawn the day before the start
BEN = (f"{d(-3)},1200", f"{d(-1)},1100")  # two BEN baselines, established baseline 1100


@dataclass(frozen=True)
class Case:
    id: str
    section: str
    rule: str
    lines: tuple[str, ...]
    expect: dict[str, Any]
    population: str = "general"
    baseline: int | None = None
    start: date = S
    transfer: str | None = None  # monitoring_frequency at enrollment (a patient moved from a clinic)
    notes: str = ""

    @property
    def slug(self) -> str:
        return self.id


def gp(*lines: str) -> tuple[str, ...]:
    return GP + lines


def ben(*lines: str) -> tuple[str, ...]:
    return BEN + lines


INC, CONF, INT, EMER = "monitoring.increased", "monitoring.confirm_repeat", "therapy.interrupt", "therapy.emergency"
RESUME, DECIDE, RESTORED, STEP = "therapy.resume_eligible", "therapy.decision_required", "monitoring.restored", "monitoring.stepdown_eligible"
BLOCKED, OVERDUE, RESOLVED, SUPER = "baseline.ineligible", "lab.overdue", "lab.overdue_resolved", "alert.superseded"
HOLD, RELEASE = "pharmacy.hold", "pharmacy.release"

CASES: list[Case] = [
    # ------------------------------------------------------------ section 1: categories and boundaries
    Case("1.1-normal-1500", "§1.1", "General population: ANC 1500 is normal (lower bound inclusive)",
         gp(f"{d(7)},1500"), dict(cat="normal", phase="normal", freq="weekly", tx="active", due=d(14), alerts=set())),
    Case("1.1-mild-1499.6", "§1 / §1.1", "1499.6 is mild: half-open intervals, never rounded up to 1500",
         gp(f"{d(7)},1499.6"), dict(cat="mild", phase="gp_mild", freq="three_times_weekly", tx="active", due=d(8), alerts={INC, CONF})),
    Case("1.1-mild-1000", "§1.1", "1000 is mild (lower bound inclusive)",
         gp(f"{d(7)},1000"), dict(cat="mild", phase="gp_mild", alerts={INC, CONF})),
    Case("1.1-moderate-999.9", "§1.1", "999.9 is moderate",
         gp(f"{d(7)},999.9"), dict(cat="moderate", phase="gp_moderate_daily", freq="daily", tx="held_heme", due=d(8), alerts={INT, CONF})),
    Case("1.1-moderate-500", "§1.1", "500 is moderate (lower bound inclusive)",
         gp(f"{d(7)},500"), dict(cat="moderate", phase="gp_moderate_daily")),
    Case("1.1-severe-499.9", "§1.1 / §8", "499.9 is severe: emergency, interrupt; an initial severe report also asks for the 24 h repeat",
         gp(f"{d(7)},499.9"), dict(cat="severe", phase="gp_severe_daily", freq="daily", tx="held_heme", due=d(8), action="emergency", alerts={EMER, INT, CONF},
                                   severity={EMER: "critical", INT: "critical"})),
    Case("1.1-severe-0", "§1.1", "An ANC of 0 is severe",
         gp(f"{d(7)},0"), dict(cat="severe", phase="gp_severe_daily")),
    Case("1.2-ben-normal-1000", "§1.2", "BEN: 1000 is the normal BEN range",
         ben(f"{d(7)},1000"), dict(cat="normal", phase="normal", freq="weekly", alerts=set()), population="ben", baseline=1100),
    Case("1.2-ben-1200-not-mild", "§1.2", "BEN has no mild category: 1200 is normal for a BEN patient",
         ben(f"{d(7)},1200"), dict(cat="normal", phase="normal", alerts=set()), population="ben", baseline=1100),
    Case("1.2-ben-neutropenia-999.9", "§1.2", "BEN: 999.9 is BEN neutropenia",
         ben(f"{d(7)},999.9"), dict(cat="ben_neutropenia", phase="ben_neutropenia", freq="three_times_weekly", tx="active", due=d(8), alerts={INC, CONF}),
         population="ben", baseline=1100),
    Case("1.2-ben-neutropenia-500", "§1.2", "BEN: 500 is BEN neutropenia (lower bound inclusive)",
         ben(f"{d(7)},500"), dict(cat="ben_neutropenia"), population="ben", baseline=1100),
    Case("1.2-ben-severe-499.9", "§1.2", "BEN: 499.9 is BEN severe neutropenia",
         ben(f"{d(7)},499.9"), dict(cat="severe", phase="ben_severe_daily", freq="daily", tx="held_heme", alerts={EMER, INT, CONF}), population="ben", baseline=1100),
    Case("1.3-confirm-gp", "§1.3", "An initial report below 1500 asks for a repeat ANC within 24 h (next due +1 day)",
         gp(f"{d(7)},1200"), dict(due=d(8), alerts={INC, CONF})),
    Case("1.3-confirmed-gp", "§1.3", "Once the repeat has arrived the episode's own cadence applies (3x weekly: +2)",
         gp(f"{d(7)},1200", f"{d(8)},1300"), dict(due=d(10), alerts=set(), phase="gp_mild")),
    Case("1.3-confirm-ben", "§1.3", "BEN: an initial report below 1000 asks for the 24 h repeat",
         ben(f"{d(7)},900"), dict(due=d(8), alerts={INC, CONF}), population="ben", baseline=1100),

    # ------------------------------------------------------------ section 2.1: general population actions
    Case("2.1-mild-continue", "§2.1", "Mild: continue treatment, monitor three times weekly",
         gp(f"{d(7)},1200", f"{d(8)},1250"), dict(tx="active", freq="three_times_weekly", action="continue_increased_monitoring", dispense=(d(8), True))),
    Case("2.1-mild-exit-last-interval", "§2.1 / §7", "Mild ending at >= 1500 returns to the last normal-range interval (every 2 weeks), no weekly x4 block",
         (f"{d(7)},1200", f"{d(9)},1600"), dict(phase="normal", freq="every_2_weeks", due=d(23), alerts={RESTORED}), transfer="every_2_weeks"),
    Case("2.1-moderate-interrupt", "§2.1", "Moderate: interrupt, hematology consult, daily ANC; no dispensing",
         gp(f"{d(7)},800"), dict(tx="held_heme", freq="daily", action="interrupt", alerts={INT, CONF}, pharmacy={HOLD}, dispense=(d(7), False))),
    Case("2.1-moderate-resume-1000", "§2.1 / §7", "Moderate: treatment may resume once ANC >= 1000; then three times weekly",
         gp(f"{d(7)},800", f"{d(8)},1000"), dict(phase="gp_moderate_recovery", tx="active", freq="three_times_weekly", due=d(10), action="resume", alerts={RESUME})),
    Case("2.1-moderate-1500-weekly4", "§2.1 / §7", "Moderate recovered to >= 1500: weekly for 4 weeks",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600"), dict(phase="post_episode_weekly", freq="weekly", due=d(17), alerts=set())),
    Case("2.1-moderate-back-to-monthly", "§2.1 / §2.3", "After the weekly x4 block: back to the last normal interval (monthly, +28 d)",
         (f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600", f"{d(17)},1700", f"{d(24)},1700", f"{d(31)},1700", f"{d(38)},1700"),
         dict(phase="normal", freq="monthly", due=d(66), alerts={RESTORED}), transfer="monthly"),
    Case("2.1-severe-interrupt", "§2.1", "Severe: interrupt, hematology consult, daily ANC, rechallenge restricted",
         gp(f"{d(7)},300"), dict(tx="held_heme", freq="daily", action="emergency", alerts={EMER, INT, CONF}, pharmacy={HOLD}, dispense=(d(7), False))),
    Case("2.1-severe-episode-drives", "§2.1", "During a severe episode an ANC of 700 still means daily monitoring with treatment held",
         gp(f"{d(7)},300", f"{d(8)},700"), dict(phase="gp_severe_daily", tx="held_heme", freq="daily", due=d(9), alerts=set())),
    Case("2.1-severe-1000-held", "§2.1 / §7", "Severe recovering to >= 1000: three times weekly, treatment stays interrupted",
         gp(f"{d(7)},300", f"{d(8)},1100"), dict(phase="gp_severe_recovery", tx="held_heme", freq="three_times_weekly", due=d(10), alerts=set(), dispense=(d(8), False))),
    Case("2.1-severe-1500-decision", "§2.1 / §2.3 / §7", "Severe recovered to >= 1500 with no decision: on hold, decision required, weekly ANC",
         gp(f"{d(7)},300", f"{d(8)},1100", f"{d(10)},1600"), dict(phase="severe_recovered_hold", tx="on_hold_decision", freq="weekly", due=d(17), alerts={DECIDE}, dispense=(d(10), False))),
    Case("2.1-rechallenge", "§2.1 / §3.2 / §7", "Rechallenge after severe: restart as a new patient, weekly, therapy start = the decision date",
         gp(f"{d(7)},300", f"{d(8)},1100", f"{d(10)},1600", f"{d(12)},rechallenge,DR1,benefit outweighs risk"),
         dict(phase="normal", tx="active", freq="weekly", due=d(19), alerts={RESUME})),
    Case("2.1-override", "§2.3", "Prescriber override with a rationale: continue despite moderate neutropenia; monitoring still follows the table",
         gp(f"{d(7)},800", f"{d(7)},override,DR1,refractory illness"), dict(phase="gp_moderate_daily", freq="daily", action="continue_with_override", alerts=set())),

    # ------------------------------------------------------------ section 2.2: BEN
    Case("2.2-ben-neutropenia-continue", "§2.2", "BEN neutropenia: continue treatment, three times weekly, hematology consult",
         ben(f"{d(7)},800", f"{d(8)},850"), dict(tx="active", freq="three_times_weekly", action="continue_increased_monitoring", dispense=(d(8), True)),
         population="ben", baseline=1100),
    Case("2.2-ben-neutropenia-exit", "§2.2 / §7", "BEN neutropenia ending at >= 1000: weekly for 4 weeks",
         ben(f"{d(7)},800", f"{d(9)},1000"), dict(phase="post_episode_weekly", freq="weekly", due=d(16), alerts=set()), population="ben", baseline=1100),
    Case("2.2-ben-severe-500", "§2.2 / §7", "BEN severe recovering to >= 500: three times weekly, treatment stays interrupted",
         ben(f"{d(7)},400", f"{d(8)},600"), dict(phase="ben_severe_recovery", tx="held_heme", freq="three_times_weekly", due=d(10), alerts=set()),
         population="ben", baseline=1100),
    Case("2.2-ben-severe-below-baseline", "§2.2", "BEN severe: 1000 is not yet the patient's baseline (1100): still three times weekly, held",
         ben(f"{d(7)},400", f"{d(8)},600", f"{d(10)},1000"), dict(phase="ben_severe_recovery", tx="held_heme", alerts=set()), population="ben", baseline=1100),
    Case("2.2-ben-severe-baseline-decision", "§2.2 / §7 / §8", "BEN severe back to baseline: decision required (weekly while on hold, the safer reading)",
         ben(f"{d(7)},400", f"{d(8)},600", f"{d(10)},1100"), dict(phase="severe_recovered_hold", tx="on_hold_decision", freq="weekly", due=d(17), alerts={DECIDE}),
         population="ben", baseline=1100),

    # ------------------------------------------------------------ section 2.3: interpretations
    Case("2.3-weekly4-dates", "§2.3", "Weekly x4 means four further weekly ANCs: next due +7 after the 3rd",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600", f"{d(17)},1700", f"{d(24)},1700", f"{d(31)},1700"),
         dict(phase="post_episode_weekly", freq="weekly", due=d(38), alerts=set())),
    Case("2.3-weekly4-exit", "§2.3", "After the 4th normal result: back to the last normal interval (weekly for a new patient)",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600", f"{d(17)},1700", f"{d(24)},1700", f"{d(31)},1700", f"{d(38)},1700"),
         dict(phase="normal", freq="weekly", due=d(45), alerts={RESTORED})),
    Case("2.3-dip-in-block-mild", "§2.3 / §7", "A mild dip inside the weekly x4 block: three times weekly, the 24 h repeat first (+1)",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600", f"{d(17)},1200"), dict(phase="gp_mild", freq="three_times_weekly", due=d(18), alerts={INC, CONF})),
    Case("2.3-dip-in-block-restarts", "§2.3", "After a dip inside the block recovers, the weekly x4 block restarts",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600", f"{d(17)},1200", f"{d(18)},1600"), dict(phase="post_episode_weekly", freq="weekly", due=d(25), alerts=set())),
    Case("2.3-dip-in-block-moderate", "§2.3 / §7", "A moderate dip inside the block: daily, treatment interrupted",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},1600", f"{d(17)},900"), dict(phase="gp_moderate_daily", tx="held_heme", freq="daily", due=d(18), alerts={INT, CONF})),

    # ------------------------------------------------------------ section 3.1: routine cadence
    Case("3.1-no-stepdown-before-6m", "§3.1", "No step-down suggestion before 6 calendar months (start on a month end)",
         ("2026-01-30,1800", "2026-07-30,1800"), dict(freq="weekly", alerts=set()), start=date(2026, 1, 31)),
    Case("3.1-stepdown-6m", "§3.1", "At 6 calendar months with normal ANCs: step-down to every 2 weeks is suggested, not imposed",
         ("2026-01-30,1800", "2026-07-31,1800"), dict(freq="weekly", due="2026-08-07", alerts={STEP}), start=date(2026, 1, 31)),
    Case("3.1-stepdown-confirmed", "§3.1", "A confirmed step-down changes the interval: every 2 weeks from the latest ANC",
         ("2026-01-30,1800", "2026-07-31,1800", "2026-08-01,stepdown_confirmed"), dict(freq="every_2_weeks", due="2026-08-14", alerts=set()), start=date(2026, 1, 31)),
    Case("3.1-stepdown-blocked-by-mild", "§3.1", "A non-normal ANC in the phase blocks the step-down suggestion",
         ("2026-01-30,1800", "2026-05-04,1200", "2026-05-05,1700", "2026-07-31,1800"), dict(freq="weekly", alerts=set()), start=date(2026, 1, 31)),
    Case("3.1-stepdown-month-end", "§3.1", "6 months from 31 August is 28 February (calendar months, clamped to the month's end)",
         ("2025-08-30,1800", "2026-02-28,1800"), dict(freq="weekly", alerts={STEP}), start=date(2025, 8, 31)),
    Case("3.1-stepdown-12m-monthly", "§3.1 / §8", "At 12 months on every-2-weeks: monthly is suggested; confirmed monthly is +28 days",
         ("2025-05-30,1800", "2026-05-31,1800", "2026-06-01,stepdown_confirmed"), dict(freq="monthly", due="2026-06-28", alerts=set()),
         start=date(2025, 5, 31), transfer="every_2_weeks"),

    # ------------------------------------------------------------ section 3.2: baseline and initiation
    Case("3.2-gp-baseline-eligible", "§3.2 / §7", "PRE: a baseline >= 1500 starts therapy on weekly monitoring (+7)",
         (f"{d(0)},1600",), dict(phase="normal", tx="active", freq="weekly", due=d(7), alerts=set(), pharmacy={RELEASE})),
    Case("3.2-gp-baseline-low", "§3.2 / §7", "PRE: a baseline below 1500 blocks initiation",
         (f"{d(0)},1400",), dict(phase="pre", tx="not_started", due=None, alerts={BLOCKED}, dispense=(d(0), False))),
    Case("3.2-ben-one-baseline", "§3.2", "BEN: one baseline is not enough; treatment waits for a second",
         (f"{d(-1)},1200",), dict(phase="pre", tx="not_started", alerts=set()), population="ben"),
    Case("3.2-ben-two-baselines", "§3.2", "BEN: two baselines >= 1000 start therapy; the lowest is the established baseline",
         (f"{d(-1)},1200", f"{d(0)},1100"), dict(phase="normal", tx="active", due=d(7), alerts=set()), population="ben"),
    Case("3.2-ben-every-value", "§3.2 [D]", "BEN: every baseline value must be >= 1000 (conservative reading)",
         (f"{d(-1)},1200", f"{d(0)},950"), dict(phase="pre", tx="not_started", alerts={BLOCKED}), population="ben"),
    Case("3.2-rechallenge-guard", "§3.2 / §7", "A rechallenge before the ANC has recovered to >= 1500 is refused",
         gp(f"{d(7)},300", f"{d(8)},1100", f"{d(9)},rechallenge,DR1,benefit outweighs risk"), dict(refused=True, phase="gp_severe_recovery")),
    Case("3.2-rechallenge-needs-rationale", "§7", "A rechallenge without a prescriber rationale is refused",
         gp(f"{d(7)},300", f"{d(8)},1100", f"{d(10)},1600", f"{d(12)},rechallenge,DR1,"), dict(refused=True, phase="severe_recovered_hold")),

    # ------------------------------------------------------------ section 3.3: interruption
    Case("3.3-gap-29-continue", "§3.3 / §7", "Restart after 29 days: monitoring continues as before; re-titration (gap >= 2 days)",
         gp(f"{d(7)},1800", f"{d(10)},interrupt", f"{d(14)},1800", f"{d(39)},resume"), dict(phase="normal", tx="active", freq="weekly", due=d(21), alerts={RESUME})),
    Case("3.3-schedule-runs-while-held", "§3.3", "During a non-hematologic interruption the ANC schedule keeps running",
         gp(f"{d(7)},1800", f"{d(10)},interrupt", f"{d(14)},1800"), dict(tx="held_other", freq="weekly", due=d(21), action="held", dispense=(d(14), False))),
    Case("3.3-gap-30-new-patient", "§3.3 / §8", "Restart after exactly 30 days: a new patient, a fresh baseline is required",
         gp(f"{d(7)},1800", f"{d(10)},interrupt", f"{d(40)},resume"), dict(phase="pre", tx="not_started", due=None, alerts={INC})),
    Case("3.3-restart-same-day-baseline", "§3.3 / §7", "Restart after >= 30 days with a baseline >= 1500 drawn that day: weekly from the restart (+7)",
         gp(f"{d(7)},1800", f"{d(10)},interrupt", f"{d(50)},1800", f"{d(50)},resume"), dict(phase="normal", tx="active", freq="weekly", due=d(57), alerts={INC})),
    Case("3.3-restart-low-baseline", "§3.3 / §7", "Restart after 45 days with a baseline below 1500: initiation blocked",
         gp(f"{d(7)},1800", f"{d(10)},interrupt", f"{d(55)},1200", f"{d(55)},resume"), dict(phase="pre", tx="not_started", due=None, alerts={INC, BLOCKED})),

    # ------------------------------------------------------------ section 3.4: discontinuation
    Case("3.4-planned-stop-closes", "§3.4", "A planned stop with no neutropenia (latest ANC >= 1500): monitoring ends",
         gp(f"{d(7)},1800", f"{d(8)},discontinue,planned"), dict(phase="closed", tx="discontinued", due=None, dispense=(d(8), False))),
    Case("3.4-abrupt-stop-monitors", "§3.4 / §7", "An abrupt stop keeps the existing schedule until an ANC in the normal range",
         gp(f"{d(7)},1800", f"{d(8)},discontinue"), dict(phase="discontinued_monitoring", tx="discontinued", freq="weekly", due=d(14))),
    Case("3.4-abrupt-stop-closes-at-1500", "§3.4 / §7", "After an abrupt stop, ANC >= 1500 ends monitoring",
         gp(f"{d(7)},1800", f"{d(8)},discontinue", f"{d(14)},1600"), dict(phase="closed", due=None)),
    Case("3.4-abrupt-stop-in-mild", "§3.4", "An abrupt stop during a mild dip: monitoring ends when the ANC reaches >= 1500",
         gp(f"{d(7)},1200", f"{d(8)},discontinue", f"{d(9)},1600"), dict(phase="closed", due=None)),
    Case("3.4-stop-for-neutropenia", "§3.4", "A stop during moderate neutropenia keeps following the table (daily)",
         gp(f"{d(7)},800", f"{d(8)},discontinue"), dict(tx="discontinued", freq="daily", due=d(8))),
    Case("3.4-ben-stop-closes-at-1000", "§3.4", "BEN: after an abrupt stop, ANC >= 1000 ends monitoring",
         ben(f"{d(7)},800", f"{d(8)},discontinue", f"{d(9)},1050"), dict(phase="closed", due=None), population="ben", baseline=1100),

    Case("3.4-resume-over-a-severe-count", "§3.4 / §7 / §8", "Resuming after a stop while the count on file (drawn that day) is severe: emergency, therapy interrupted, never silently active",
         gp(f"{d(7)},1800", f"{d(8)},discontinue,planned", f"{d(9)},0", f"{d(9)},resume"),
         dict(phase="gp_severe_daily", tx="held_heme", freq="daily", due=d(10), alerts={RESUME, EMER, INT, CONF}, dispense=(d(9), False)),
         notes="Found by the state machine: the resume used to leave the patient active on a severe ANC."),

    # ------------------------------------------------------------ section 4: fever
    Case("4-fever-on-therapy", "§4", "Fever >= 38.5 C on therapy: a stat ANC within 24 h",
         gp(f"{d(7)},1800", f"{d(9)},fever,38.5"), dict(due=d(10), alerts={CONF})),
    Case("4-fever-below-threshold", "§4", "38.4 C is not a fever for these rules",
         gp(f"{d(7)},1800", f"{d(9)},fever,38.4"), dict(due=d(14), alerts=set())),
    Case("4-fever-low-anc-emergency", "§4", "Fever with the last ANC below 1000: medical emergency",
         gp(f"{d(7)},800", f"{d(7)},fever,39.0"), dict(alerts={CONF, EMER})),
    Case("4-fever-14d-after-stop", "§3.4 / §4 / §7", "Fever within 14 days after discontinuation: additional ANC monitoring",
         gp(f"{d(7)},1800", f"{d(8)},discontinue,planned", f"{d(22)},fever,38.6"), dict(alerts={CONF})),
    Case("4-fever-15d-after-stop", "§4", "Fever 15 days after discontinuation: no ANC rule applies",
         gp(f"{d(7)},1800", f"{d(8)},discontinue,planned", f"{d(23)},fever,38.6"), dict(alerts=set())),

    # ------------------------------------------------------------ section 7: remaining transition rows
    Case("7-mild-to-moderate", "§7", "GP_MILD + moderate: interrupt (not an initial report: no repeat request)",
         gp(f"{d(7)},1200", f"{d(8)},800"), dict(phase="gp_moderate_daily", alerts={INT})),
    Case("7-recovery-to-moderate", "§7", "GP_MOD_RECOVERY + moderate: back to daily with treatment interrupted",
         gp(f"{d(7)},800", f"{d(8)},1000", f"{d(10)},900"), dict(phase="gp_moderate_daily", tx="held_heme", alerts={INT})),
    Case("7-mild-to-severe", "§7", "Any active state + severe: emergency",
         gp(f"{d(7)},1200", f"{d(8)},400"), dict(phase="gp_severe_daily", alerts={EMER, INT})),
    Case("7-moderate-to-severe", "§7", "GP_MOD_DAILY + severe: emergency",
         gp(f"{d(7)},800", f"{d(8)},400"), dict(phase="gp_severe_daily", alerts={EMER, INT})),
    Case("7-sev-recovery-relapse", "§7", "GP_SEV_RECOVERY + ANC < 1000: back to daily",
         gp(f"{d(7)},300", f"{d(8)},1100", f"{d(10)},900"), dict(phase="gp_severe_daily", freq="daily", due=d(11))),
    Case("7-ben-any-severe", "§7", "BEN, any state + < 500: BEN severe, emergency",
         ben(f"{d(7)},800", f"{d(8)},450"), dict(phase="ben_severe_daily", alerts={EMER, INT}), population="ben", baseline=1100),
    Case("7-ben-sev-recovery-relapse", "§7", "BEN_SEV_RECOVERY + < 500: back to daily",
         ben(f"{d(7)},400", f"{d(8)},600", f"{d(10)},450"), dict(phase="ben_severe_daily", freq="daily", due=d(11)), population="ben", baseline=1100),
    Case("7-decision-discontinue", "§7", "SEV_RECOVERED_HOLD + discontinue: monitoring closed (ANC already recovered)",
         gp(f"{d(7)},300", f"{d(8)},1100", f"{d(10)},1600", f"{d(12)},discontinue"), dict(phase="closed", due=None)),

    # ------------------------------------------------------------ section 7: overdue timer
    Case("7-overdue", "§7 overdue", "No ANC by the end of the due day: lab.overdue (normal priority on routine monitoring)",
         gp(f"{d(7)},1800", f"{d(15)},tick"), dict(alerts={OVERDUE}, severity={OVERDUE: "normal"})),
    Case("7-not-yet-overdue", "§7 overdue", "On the due day itself nothing is overdue",
         gp(f"{d(7)},1800", f"{d(14)},tick"), dict(alerts=set())),
    Case("7-overdue-3x-tolerance", "§7 overdue", "Three times weekly: +1 day of tolerance before overdue",
         gp(f"{d(7)},1200", f"{d(8)},1250", f"{d(11)},tick"), dict(alerts=set())),
    Case("7-overdue-3x-after-tolerance", "§7 overdue", "Three times weekly: overdue after the tolerance day",
         gp(f"{d(7)},1200", f"{d(8)},1250", f"{d(12)},tick"), dict(alerts={OVERDUE})),
    Case("7-overdue-high-when-held", "§7 overdue", "Overdue while held for neutropenia (daily): high priority",
         gp(f"{d(7)},800", f"{d(9)},tick"), dict(alerts={OVERDUE}, severity={OVERDUE: "high"})),
    Case("7-overdue-resolved", "§7 overdue", "A late result drawn by the due date resolves the overdue alert",
         gp(f"{d(7)},1800", f"{d(15)},tick", f"{d(14)},1700,F,,LATE-1"), dict(alerts={RESOLVED, SUPER}, pharmacy={RELEASE}, due=d(21)),
         notes="The pharmacy hold the missed date raised is superseded and a release follows."),

    # ------------------------------------------------------------ section 7: corrections and preliminary results
    Case("7-preliminary-severe", "§7 corrections", "A preliminary severe result raises a provisional emergency and never moves the state",
         gp(f"{d(7)},400,P,,SPEC-P"), dict(phase="normal", tx="active", alerts={EMER})),
    Case("7-preliminary-then-final", "§7 corrections", "The final result for the same specimen moves the state without a second emergency page",
         gp(f"{d(7)},400,P,,SPEC-PF", f"{d(7)},400,F,,SPEC-PF"), dict(phase="gp_severe_daily", tx="held_heme", alerts={INT, CONF})),
    Case("7-correction-replaces", "§7 corrections", "A corrected result (C) replaces the value; alerts no longer justified are superseded",
         gp(f"{d(7)},1200,F,,SPEC-C", f"{d(7)},1600,C,,SPEC-C"), dict(phase="normal", cat="normal", due=d(14), alerts={SUPER})),
    Case("7-wrong-removes", "§7 corrections", "A result posted as wrong (W) is removed and its emergency withdrawn",
         gp(f"{d(6)},1700", f"{d(7)},400,F,,SPEC-W", f"{d(7)},400,W,,SPEC-W"), dict(phase="normal", tx="active", due=d(13), alerts={SUPER})),
    Case("7-specimen-order", "§7 corrections", "Results are ordered by specimen time, not arrival: a late older mild result does not override a newer normal one",
         gp(f"{d(9)},1600", f"{d(8)},1200,F,,LATE-M"), dict(phase="normal", cat="normal", due=d(16))),
]


def by_id() -> dict[str, Case]:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return {c.id: c for c in CASES}
