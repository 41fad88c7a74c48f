"""rules.md sections 2 and 7: whole episodes, not single values."""

from rems_ingest.core.model import Frequency, Phase, TreatmentStatus

from .helpers import START, anc, event, kinds, run, started


class TestSeedWalkThrough:
    def test_1400_then_900_then_450(self) -> None:
        """The article: mild -> 3x weekly; moderate -> interrupt, daily; severe -> emergency."""
        f = run(started() + [anc(7, 1400), anc(14, 900), anc(15, 450)])
        mild, moderate, severe = f.decisions[-3:]

        assert ("continue_increased_monitoring", Frequency.THREE_WEEKLY) == (mild.action, mild.frequency)
        assert {"monitoring.increased", "monitoring.confirm_repeat"} <= set(kinds(mild))
        assert ("interrupt", Frequency.DAILY) == (moderate.action, moderate.frequency)
        assert "therapy.interrupt" in kinds(moderate) and "pharmacy.hold" in kinds(moderate)
        assert ("emergency", Frequency.DAILY) == (severe.action, severe.frequency)
        assert "therapy.emergency" in kinds(severe)
        assert f.state.rechallenge_restricted

    def test_ben_and_general_differ_at_900(self) -> None:
        """900: general -> interrupt; BEN -> continue with 3x weekly monitoring."""
        gp = run(started() + [anc(7, 900)]).decisions[-1]
        ben = run(started("ben") + [anc(7, 900)]).decisions[-1]

        assert "interrupt" == gp.action
        assert TreatmentStatus.HELD_HEME == gp.state.treatment
        assert "continue_increased_monitoring" == ben.action
        assert Frequency.THREE_WEEKLY == ben.frequency
        assert TreatmentStatus.ACTIVE == ben.state.treatment
        assert "therapy.interrupt" not in kinds(ben)


class TestMild:
    def test_mild_continues_three_weekly_with_confirm_repeat_due_next_day(self) -> None:
        d = run(started() + [anc(7, 1499)]).decisions[-1]

        assert Phase.GP_MILD == d.state.phase
        assert START.replace(day=START.day + 8) == d.next_due
        assert TreatmentStatus.ACTIVE == d.state.treatment

    def test_second_mild_is_due_in_two_days_without_new_alerts(self) -> None:
        d = run(started() + [anc(7, 1400), anc(8, 1300)]).decisions[-1]

        assert [] == kinds(d)
        assert (START.replace(day=START.day + 10)) == d.next_due

    def test_recovery_returns_to_last_normal_interval_without_weekly_block(self) -> None:
        f = run(started(freq="monthly") + [anc(3, 1800), anc(10, 1400), anc(12, 1600)])

        assert Phase.NORMAL == f.state.phase
        assert Frequency.MONTHLY == f.decisions[-1].frequency
        assert "monitoring.restored" in kinds(f.decisions[-1])


class TestModerate:
    def test_resume_at_1000_then_three_weekly_then_weekly_block_then_last_interval(self) -> None:
        f = run(started(freq="every_2_weeks") + [anc(3, 1700), anc(10, 800), anc(11, 1000), anc(13, 1500)] + [anc(13 + 7 * i, 1600) for i in range(1, 5)])
        d = f.decisions
        resume, block0 = d[-6], d[-5]

        assert "therapy.resume_eligible" in kinds(resume)
        assert Phase.GP_MOD_RECOVERY == resume.state.phase and Frequency.THREE_WEEKLY == resume.frequency
        assert TreatmentStatus.ACTIVE == resume.state.treatment
        assert Phase.POST_EPISODE_WEEKLY == block0.state.phase
        assert [Frequency.WEEKLY] * 3 == [x.frequency for x in d[-4:-1]]
        assert Frequency.EVERY_2_WEEKS == d[-1].frequency
        assert "monitoring.restored" in kinds(d[-1])

    def test_moderate_from_mild_is_not_an_initial_report(self) -> None:
        d = run(started() + [anc(7, 1400), anc(8, 900)]).decisions[-1]

        assert "therapy.interrupt" in kinds(d)
        assert "monitoring.confirm_repeat" not in kinds(d)

    def test_mild_dip_in_weekly_block_restarts_the_block(self) -> None:
        f = run(started() + [anc(7, 800), anc(8, 1600), anc(15, 1600), anc(22, 1400), anc(24, 1600)])

        assert Phase.POST_EPISODE_WEEKLY == f.state.phase
        assert 0 == f.state.weekly_block_count

    def test_moderate_dip_in_weekly_block_interrupts_again(self) -> None:
        f = run(started() + [anc(7, 800), anc(8, 1600), anc(15, 900)])

        assert Phase.GP_MOD_DAILY == f.state.phase
        assert "therapy.interrupt" in kinds(f.decisions[-1])

    def test_prescriber_cannot_resume_below_1000(self) -> None:
        import pytest

        from rems_ingest.core.errors import EventNotAllowed
        from rems_ingest.core.rules import step

        from .helpers import POLICY

        state = run(started() + [anc(7, 800)]).state
        with pytest.raises(EventNotAllowed, match="not recovered"):
            step(POLICY, state, event(8, "resume"))


class TestSevere:
    def test_severe_stays_held_through_recovery_and_requires_decision(self) -> None:
        f = run(started() + [anc(7, 400), anc(8, 700), anc(9, 1100), anc(11, 1500)])
        d = f.decisions

        assert (Phase.GP_SEV_DAILY, Frequency.DAILY) == (d[-3].state.phase, d[-3].frequency)  # 700 in a severe episode: still daily
        assert (Phase.GP_SEV_RECOVERY, TreatmentStatus.HELD_HEME) == (d[-2].state.phase, d[-2].state.treatment)
        assert "therapy.decision_required" in kinds(d[-1])
        assert TreatmentStatus.ON_HOLD_DECISION == f.state.treatment
        assert Frequency.WEEKLY == d[-1].frequency

    def test_dip_during_severe_recovery_goes_back_to_daily(self) -> None:
        f = run(started() + [anc(7, 400), anc(9, 1100), anc(11, 900)])

        assert (Phase.GP_SEV_DAILY, Frequency.DAILY) == (f.state.phase, f.decisions[-1].frequency)

    def test_rechallenge_restarts_as_new_patient(self) -> None:
        f = run(started() + [anc(7, 400), anc(9, 1600), event(10, "rechallenge")])

        assert Phase.NORMAL == f.state.phase
        assert START.replace(day=START.day + 10) == f.state.therapy_start
        assert Frequency.WEEKLY == f.state.interval
        assert "therapy.resume_eligible" in kinds(f.decisions[-1])

    def test_rechallenge_without_rationale_is_refused(self) -> None:
        import pytest

        from rems_ingest.core.errors import EventNotAllowed
        from rems_ingest.core.rules import step

        from .helpers import POLICY

        state = run(started() + [anc(7, 400), anc(9, 1600)]).state
        with pytest.raises(EventNotAllowed, match="rationale"):
            step(POLICY, state, event(10, "rechallenge", rationale=" "))

    def test_discontinue_after_recovery_closes(self) -> None:
        f = run(started() + [anc(7, 400), anc(9, 1600), event(10, "discontinue")])

        assert Phase.CLOSED == f.state.phase


class TestBen:
    def test_ben_neutropenia_continues_with_heme_consult_then_weekly_block(self) -> None:
        f = run(started("ben") + [anc(7, 700), anc(9, 1000)])

        first = f.decisions[-2]
        assert ("hematology_consult", "recommended") in first.alerts[0].detail
        assert Phase.POST_EPISODE_WEEKLY == f.state.phase

    def test_ben_severe_recovers_at_500_to_three_weekly_then_needs_baseline(self) -> None:
        from .helpers import enroll

        f = run([anc(-3, 1300), anc(-1, 1250), enroll("ben", baseline=1250), anc(7, 400), anc(8, 600), anc(10, 1100), anc(12, 1250)])
        d = f.decisions

        assert "therapy.emergency" in kinds(d[-4])
        assert (Phase.BEN_SEV_RECOVERY, Frequency.THREE_WEEKLY) == (d[-3].state.phase, d[-3].frequency)
        assert Phase.BEN_SEV_RECOVERY == d[-2].state.phase  # 1100 is normal BEN range but below baseline 1250
        assert Phase.SEV_RECOVERED_HOLD == f.state.phase
        assert "therapy.decision_required" in kinds(d[-1])

    def test_ben_severe_exit_uses_baseline_not_1000(self) -> None:
        from dataclasses import replace

        evs = started("ben")
        evs[2] = replace(evs[2], baseline_anc=__import__("decimal").Decimal(1300))
        f = run(evs + [anc(7, 400), anc(8, 1200)])

        assert Phase.BEN_SEV_RECOVERY == f.state.phase
        assert Frequency.THREE_WEEKLY == f.decisions[-1].frequency


class TestBaseline:
    def test_general_baseline_below_1500_blocks_initiation(self) -> None:
        d = run([anc(-1, 1499), __import__("tests.unit.core.helpers", fromlist=["enroll"]).enroll()]).decisions[-1]

        assert "baseline.ineligible" in kinds(d)
        assert Phase.PRE == d.state.phase

    def test_general_baseline_arriving_after_enrollment_starts_therapy(self) -> None:
        from .helpers import enroll

        f = run([enroll(), anc(1, 1500)])

        assert Phase.NORMAL == f.state.phase
        assert "pharmacy.release" in kinds(f.decisions[-1])

    def test_ben_needs_two_baselines_each_at_least_1000(self) -> None:
        from .helpers import enroll

        one = run([anc(-1, 1200), enroll("ben")])
        low = run([anc(-2, 1200), anc(-1, 990), enroll("ben")])
        two = run([anc(-2, 1200), anc(-1, 1000), enroll("ben")])

        assert Phase.PRE == one.state.phase and [] == kinds(one.decisions[-1])
        assert "baseline.ineligible" in kinds(low.decisions[-1])
        assert Phase.NORMAL == two.state.phase
        assert 1000 == two.state.baseline_anc  # lowest of the baselines when the prescriber gave none

    def test_baseline_older_than_window_does_not_count(self) -> None:
        from .helpers import enroll

        f = run([anc(-31, 1800), enroll()])

        assert Phase.PRE == f.state.phase
