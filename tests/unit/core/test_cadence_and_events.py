"""rules.md sections 3, 4 and the overdue timer of section 7."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from rems_ingest.core.errors import EventNotAllowed, InvalidInput
from rems_ingest.core.model import Frequency, Phase, Tick, TreatmentStatus
from rems_ingest.core.rules import add_months, step

from .helpers import POLICY, START, anc, event, kinds, run, started


def weekly_normals(weeks: int, value: int = 1800, start: int = 7) -> list:
    return [anc(start + 7 * i, value) for i in range(weeks)]


class TestStepDown:
    def test_weekly_to_every_2_weeks_is_suggested_at_6_months_not_imposed(self) -> None:
        six_months = (add_months(START, 6) - START).days
        f = run(started() + weekly_normals(six_months // 7 + 1))

        assert "monitoring.stepdown_eligible" in [k for d in f.decisions for k in kinds(d)]
        assert Frequency.WEEKLY == f.state.interval

    def test_no_suggestion_before_6_calendar_months(self) -> None:
        days = (add_months(START, 6) - START).days - 1
        f = run(started() + [anc(d, 1800) for d in range(7, days + 1, 7)] + [anc(days, 1800)])

        assert all("monitoring.stepdown_eligible" not in kinds(d) for d in f.decisions)

    def test_a_mild_result_in_the_phase_blocks_the_suggestion(self) -> None:
        f = run(started() + [anc(30, 1400), anc(32, 1600)] + weekly_normals(26, start=39))

        assert all("monitoring.stepdown_eligible" not in kinds(d) for d in f.decisions)

    def test_confirmed_stepdown_changes_the_interval(self) -> None:
        f = run(started() + weekly_normals(27) + [event(200, "stepdown_confirmed")])

        assert Frequency.EVERY_2_WEEKS == f.state.interval
        assert f.state.latest is not None
        assert f.state.latest.on + timedelta(days=14) == f.state.next_due

    def test_unsuggested_stepdown_is_refused(self) -> None:
        with pytest.raises(EventNotAllowed):
            step(POLICY, run(started()).state, event(3, "stepdown_confirmed"))


class TestInterruption:
    def test_gap_under_30_days_continues_as_before_with_retitration(self) -> None:
        f = run(started() + [anc(7, 1800), event(8, "interrupt"), event(37, "resume")])

        assert TreatmentStatus.ACTIVE == f.state.treatment
        assert Phase.NORMAL == f.state.phase
        assert ("retitration_required", "true") in f.decisions[-1].alerts[0].detail

    def test_gap_of_exactly_30_days_means_new_patient(self) -> None:
        f = run(started() + [anc(7, 1800), event(8, "interrupt"), event(38, "resume")])

        assert Phase.PRE == f.state.phase
        assert START + timedelta(days=38) == f.state.therapy_start

    def test_gap_of_one_day_needs_no_retitration(self) -> None:
        f = run(started() + [event(8, "interrupt"), event(9, "resume")])

        assert () == f.decisions[-1].alerts[0].detail

    def test_monitoring_continues_while_held(self) -> None:
        f = run(started() + [event(8, "interrupt"), anc(14, 1400)])

        assert TreatmentStatus.HELD_OTHER == f.state.treatment
        assert Phase.GP_MILD == f.state.phase

    def test_cannot_interrupt_twice(self) -> None:
        s = run(started() + [event(8, "interrupt")]).state
        with pytest.raises(EventNotAllowed):
            step(POLICY, s, event(9, "interrupt"))


class TestDiscontinuation:
    def test_abrupt_discontinuation_monitors_until_normal(self) -> None:
        f = run(started() + [anc(7, 1800), event(8, "discontinue"), anc(14, 1400), anc(16, 1500)])

        assert Phase.GP_MILD == f.decisions[-2].state.phase
        assert Phase.CLOSED == f.state.phase
        assert TreatmentStatus.DISCONTINUED == f.state.treatment

    def test_ben_discontinuation_closes_at_1000(self) -> None:
        f = run(started("ben") + [event(8, "discontinue"), anc(14, 1000)])

        assert Phase.CLOSED == f.state.phase


class TestFever:
    def test_fever_on_therapy_needs_stat_anc(self) -> None:
        f = run(started() + [anc(7, 1800), event(9, "fever", temperature_c=Decimal("38.5"))])

        assert ["monitoring.confirm_repeat"] == kinds(f.decisions[-1])[:1]
        assert START + timedelta(days=10) == f.state.next_due

    def test_fever_below_threshold_does_nothing(self) -> None:
        f = run(started() + [anc(7, 1800), event(9, "fever", temperature_c=Decimal("38.4"))])

        assert [] == kinds(f.decisions[-1])

    def test_fever_with_anc_below_1000_is_an_emergency(self) -> None:
        f = run(started() + [anc(7, 1400), anc(8, 1200), anc(9, 900), event(10, "fever", temperature_c=Decimal("39"))])

        assert "therapy.emergency" in kinds(f.decisions[-1])

    def test_fever_within_14_days_after_discontinuation(self) -> None:
        within = run(started() + [event(8, "discontinue"), event(22, "fever", temperature_c=Decimal("38.6"))])
        after = run(started() + [event(8, "discontinue"), event(23, "fever", temperature_c=Decimal("38.6"))])

        assert "monitoring.confirm_repeat" in kinds(within.decisions[-1])
        assert [] == kinds(after.decisions[-1])


class TestOverdue:
    def tick(self, day: int) -> Tick:
        return Tick(key=f"tick{day}", on=START + timedelta(days=day))

    def test_overdue_only_after_the_due_day_and_once_per_due_date(self) -> None:
        base = started() + [anc(7, 1800)]  # due day 14
        on_due = run(base + [self.tick(14)])
        late = run(base + [self.tick(15), self.tick(16), self.tick(20)])

        assert [] == kinds(on_due.decisions[-1])
        assert ["lab.overdue"] == [k for d in late.decisions for k in kinds(d) if k == "lab.overdue"]

    def test_three_weekly_has_one_day_tolerance(self) -> None:
        base = started() + [anc(7, 1400), anc(8, 1300)]  # due day 10
        assert "lab.overdue" not in kinds(run(base + [self.tick(11)]).decisions[-1])
        assert "lab.overdue" in kinds(run(base + [self.tick(12)]).decisions[-1])

    def test_overdue_in_daily_monitoring_is_high_priority(self) -> None:
        d = run(started() + [anc(7, 800), self.tick(9)]).decisions[-1]

        assert "high" == next(a for a in d.alerts if a.kind.value == "lab.overdue").severity.value

    def test_a_late_result_resolves_the_overdue_alert(self) -> None:
        f = run(started() + [anc(7, 1800), self.tick(15), anc(16, 1800)])

        assert "lab.overdue_resolved" in kinds(f.decisions[-1])

    def test_overdue_weekly_patient_loses_dispense_eligibility_when_window_ends(self) -> None:
        f = run(started() + [anc(7, 1800), self.tick(14), self.tick(15)])

        assert "pharmacy.hold" in kinds(f.decisions[-1])


class TestInvalidInput:
    @pytest.mark.parametrize("value", ["-1", "NaN", "100001"])
    def test_implausible_anc_is_a_typed_error(self, value: str) -> None:
        with pytest.raises(InvalidInput):
            step(POLICY, run(started()).state, anc(7, value))

    def test_unknown_event_type(self) -> None:
        with pytest.raises(InvalidInput):
            step(POLICY, run(started()).state, event(7, "teleport"))

    def test_events_before_enrollment_are_refused(self) -> None:
        from rems_ingest.core.model import PatientState

        with pytest.raises(EventNotAllowed):
            step(POLICY, PatientState(), event(1, "interrupt"))


def test_override_lets_a_moderate_patient_continue_with_monitoring_unchanged() -> None:
    f = run(started() + [anc(7, 800), event(8, "override", rationale="benefit outweighs risk")])

    assert TreatmentStatus.ACTIVE == f.state.treatment
    assert Frequency.DAILY == f.decisions[-1].frequency
    assert "pharmacy.release" in kinds(f.decisions[-1])


def test_transfer_enrollment_keeps_the_clinic_interval() -> None:
    f = run(started(freq="monthly") + [anc(3, 1700)])

    assert Frequency.MONTHLY == f.state.interval
    assert date(2026, 1, 8) + timedelta(days=28) == f.state.next_due
