"""Random patient histories as a lab feed and a prescriber produce them (issue #13): results
F/P/C/W arriving late and out of order, prescriber events, overdue ticks and dispense
queries, applied as the daemon applies them when they arrive (``core.timeline``). After
every step the clinical invariants must hold."""

from __future__ import annotations

import os
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rems_ingest import profiles
from rems_ingest.core import dispense, rules
from rems_ingest.core.errors import EventNotAllowed
from rems_ingest.core.model import AlertKind, AncResult, Category, ClinicalEvent, Enroll, Population, ResultStatus, Tick, TreatmentStatus, evolve
from rems_ingest.core.timeline import Timeline

POLICY = profiles.load("us-label")
START = date(2026, 1, 5)
VALUES = st.one_of(st.sampled_from([0, 300, 499, 500, 700, 999, 1000, 1100, 1200, 1499, 1500, 1800, 2500]), st.integers(0, 4000))
MUST_HAVE_A_DUE_DATE = (TreatmentStatus.ACTIVE, TreatmentStatus.HELD_HEME, TreatmentStatus.ON_HOLD_DECISION)
EXAMPLES = int(os.environ.get("REMS_STATE_MACHINE_EXAMPLES", "2000"))


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 8, 0)


class PatientFeed(RuleBasedStateMachine):
    @initialize(population=st.sampled_from(["general", "general", "ben"]))
    def enroll(self, population: str) -> None:
        self.t = Timeline(POLICY)
        self.day = START
        self.n = 0
        self.keys: list[str] = []
        self.version = 0
        self.emergencies: Counter[str] = Counter()
        pop = Population(population)
        for i, v in enumerate((1800, 1700) if pop is Population.GENERAL else (1200, 1100)):
            self._apply(AncResult(f"base{i}", Decimal(v), _at(START - timedelta(days=2 - i))))
        self._apply(Enroll("enroll", START, pop, START, Decimal(1100) if pop is Population.BEN else None))

    def _apply(self, event: object) -> None:
        try:
            applied = self.t.apply(event)  # type: ignore[arg-type]
        except EventNotAllowed:
            return
        # live emergency pages per specimen: a preliminary and its final page once; a page is
        # raised again only after a correction withdrew it (the on-call was told it was superseded)
        for a in applied.withdrawn:
            prefix, _, specimen = a.cause.partition(":")
            if a.kind is AlertKind.EMERGENCY and prefix in ("anc", "prelim"):
                self.emergencies[specimen] -= 1
        for a in applied.raised:
            prefix, _, specimen = a.cause.partition(":")
            if a.kind is AlertKind.EMERGENCY and prefix in ("anc", "prelim"):  # a preliminary or final result
                self.emergencies[specimen] += 1

    @rule(days=st.integers(0, 9))
    def time_passes(self, days: int) -> None:
        self.day += timedelta(days=days)

    @rule(value=VALUES, late=st.integers(0, 4), status=st.sampled_from("FFFFFFP"))
    def new_result(self, value: int, late: int, status: str) -> None:
        self.n += 1
        key = f"S{self.n}"
        self.keys.append(key)
        drawn = max(START, self.day - timedelta(days=late))
        self._apply(AncResult(key, Decimal(value), _at(drawn), ResultStatus(status)))

    @precondition(lambda self: bool(self.keys))
    @rule(pick=st.integers(0, 10_000), value=VALUES, status=st.sampled_from("FCCWP"))
    def same_specimen_again(self, pick: int, value: int, status: str) -> None:
        """A final after a preliminary, a correction, or a result posted as wrong."""
        key = self.keys[pick % len(self.keys)]
        old = next((e for e in self.t.history if e.key == key), None)
        drawn = old.on if isinstance(old, AncResult) else self.day
        self._apply(AncResult(key, Decimal(value), _at(drawn), ResultStatus(status)))

    @rule(kind=st.sampled_from(["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]),
          planned=st.booleans(), temperature=st.sampled_from(["37.5", "38.5", "39.5"]))
    def prescriber(self, kind: str, planned: bool, temperature: str) -> None:
        self.n += 1
        self._apply(ClinicalEvent(f"E{self.n}", kind, self.day, by="DR1", rationale="documented", abrupt=not planned, temperature_c=Decimal(temperature)))

    @rule()
    def overdue_sweep(self) -> None:
        self._apply(Tick(f"tick:{self.day.isoformat()}", self.day))

    # ------------------------------------------------------------ invariants

    @invariant()
    def on_therapy_means_a_due_date(self) -> None:
        s = self.t.state
        if s.treatment in MUST_HAVE_A_DUE_DATE:
            assert s.next_due is not None, (s.phase, s.treatment)

    @invariant()
    def authorized_means_a_current_acceptable_anc(self) -> None:
        s = self.t.state
        check = dispense.check(POLICY, s, self.day)
        if check.authorized:
            assert s.latest is not None and s.treatment is TreatmentStatus.ACTIVE
            assert 0 <= (self.day - s.latest.on).days <= POLICY.currency_window(s.frequency)
            assert dispense._acceptable(s, s.latest.category) or s.override_rationale

    @invariant()
    def never_active_on_an_interrupting_count(self) -> None:
        """Moderate or severe (general) or severe (BEN) as the latest count: clozapine is not
        active unless a prescriber documented a rationale to continue."""
        s = self.t.state
        if s.treatment is TreatmentStatus.ACTIVE and s.latest is not None:
            stop = {Category.MODERATE, Category.SEVERE} if s.population is Population.GENERAL else {Category.SEVERE}
            assert s.latest.category not in stop or s.override_rationale, (s.phase, s.latest)

    @invariant()
    def one_specimen_pages_once(self) -> None:
        """At most one live emergency page per specimen (a double page), and never fewer than
        none (a withdrawal without a page)."""
        assert all(n in (0, 1) for n in self.emergencies.values()), self.emergencies

    @invariant()
    def state_version_only_grows(self) -> None:
        assert self.t.state.version >= self.version
        self.version = self.t.state.version

    @invariant()
    def arrival_order_does_not_matter(self) -> None:
        """What the daemon holds after events arrived in this order equals the fold of the
        same set of events in specimen order."""
        folded = rules.fold(POLICY, self.t.history).state
        assert evolve(folded, version=0) == evolve(self.t.state, version=0)


PatientFeed.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
test_patient_feed = PatientFeed.TestCase
