"""Deviations a clinical walk-through of rules.md found (issue #13); each failed before its fix."""

from __future__ import annotations

from datetime import timedelta

from rems_ingest.core.model import ClinicalEvent, Phase, TreatmentStatus

from .helpers import START, anc, event, kinds, run, started


def _stop(day: int, abrupt: bool) -> ClinicalEvent:
    return ClinicalEvent(key=f"stop{day}", type="discontinue", on=START + timedelta(days=day), by="DrX", abrupt=abrupt)


class TestRestartAfterLongInterruption:
    def test_same_day_baseline_starts_a_new_patient_on_weekly_monitoring(self) -> None:
        f = run(started() + [anc(7, 1800), event(10, "interrupt"), event(50, "resume"), anc(50, 1800)])
        s = f.state
        assert (s.phase, s.treatment) == (Phase.NORMAL, TreatmentStatus.ACTIVE)
        assert s.therapy_start == START + timedelta(days=50)
        assert s.next_due == START + timedelta(days=57)

    def test_low_restart_baseline_blocks_initiation(self) -> None:
        f = run(started() + [anc(7, 1800), event(10, "interrupt"), event(55, "resume"), anc(55, 1200)])
        assert f.state.phase is Phase.PRE
        assert "baseline.ineligible" in kinds(f.decisions[-1])

    def test_baseline_after_the_restart_day_still_counts(self) -> None:
        f = run(started() + [anc(7, 1800), event(10, "interrupt"), event(50, "resume"), anc(51, 1700)])
        assert f.state.phase is Phase.NORMAL and f.state.next_due == START + timedelta(days=58)

    def test_a_count_from_before_the_interruption_is_not_a_fresh_baseline(self) -> None:
        f = run(started() + [anc(9, 1800), event(10, "interrupt"), event(50, "resume")])
        assert f.state.phase is Phase.PRE and f.state.next_due is None


class TestPreliminaryThenFinal:
    def test_one_specimen_pages_emergency_once(self) -> None:
        f = run(started() + [anc(7, 400, key="SPEC1", status="P"), anc(7, 400, key="SPEC1")])
        emergencies = {a.identity for a in f.alerts if a.kind.value == "therapy.emergency"}
        assert len(emergencies) == 1
        assert f.state.phase is Phase.GP_SEV_DAILY  # the final still moves the state


class TestPostEpisodeDip:
    def test_mild_dip_in_weekly_block_is_repeated_within_24_hours(self) -> None:
        f = run(started() + [anc(7, 900), anc(8, 1200), anc(10, 1600), anc(17, 1200)])
        assert f.state.phase is Phase.GP_MILD
        assert f.state.next_due == START + timedelta(days=18)
        assert "monitoring.confirm_repeat" in kinds(f.decisions[-1])

    def test_ben_dip_in_weekly_block_is_repeated_within_24_hours(self) -> None:
        f = run(started("ben") + [anc(7, 800), anc(9, 1100), anc(16, 900)])
        assert f.state.phase is Phase.BEN_NEUT
        assert f.state.next_due == START + timedelta(days=17)


class TestDiscontinuation:
    def test_planned_stop_with_normal_anc_closes_monitoring(self) -> None:
        f = run(started() + [anc(7, 1800), _stop(8, abrupt=False)])
        assert f.state.phase is Phase.CLOSED and f.state.next_due is None

    def test_abrupt_stop_on_the_day_of_a_recovering_anc_closes(self) -> None:
        f = run(started() + [anc(7, 1200), anc(9, 1600), _stop(9, abrupt=True)])
        assert f.state.phase is Phase.CLOSED and f.state.next_due is None

    def test_abrupt_stop_during_mild_dip_closes_when_anc_recovers(self) -> None:
        f = run(started() + [anc(7, 1200), _stop(8, abrupt=True), anc(9, 1600)])
        assert f.state.phase is Phase.CLOSED and f.state.next_due is None

    def test_planned_stop_during_a_dip_keeps_monitoring(self) -> None:
        f = run(started() + [anc(7, 1200), _stop(8, abrupt=False)])
        assert f.state.next_due is not None

    def test_fever_after_closing_still_asks_for_an_anc(self) -> None:
        f = run(started() + [anc(7, 1800), _stop(8, abrupt=False), event(12, "fever", temperature_c=__import__("decimal").Decimal("38.9"))])
        assert "monitoring.confirm_repeat" in kinds(f.decisions[-1])
