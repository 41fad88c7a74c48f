"""rules.md section 7 corrections: C replaces, D/W remove, P never moves state."""

from rems_ingest.core.history import is_append, merge
from rems_ingest.core.model import Phase
from rems_ingest.core.rules import REFOLD_CAUSE, diff_alerts, fold, pharmacy_after_refold

from .helpers import POLICY, anc, enroll, run, started


def test_preliminary_severe_raises_provisional_emergency_without_moving_state() -> None:
    f = run(started() + [anc(5, 300, key="k1", status="P")])

    assert Phase.NORMAL == f.state.phase
    assert [("therapy.emergency", (("provisional", "true"),))] == [(a.kind.value, a.detail) for a in f.decisions[-1].alerts]


def test_correction_replaces_value_and_withdraws_alerts() -> None:
    history = started() + [anc(7, 900, key="k1")]
    before = fold(POLICY, history)
    corrected, changed = merge(history, anc(7, 1600, key="k1", status="C"))
    after = fold(POLICY, corrected)

    withdrawn, new = diff_alerts(before.alerts, after.alerts)
    assert changed
    assert Phase.NORMAL == after.state.phase
    assert {"therapy.interrupt", "pharmacy.hold", "monitoring.confirm_repeat"} == {a.kind.value for a in withdrawn}
    assert [] == new


def test_wrong_patient_removes_the_result() -> None:
    history = started() + [anc(7, 400, key="k1")]
    removed, changed = merge(history, anc(7, 400, key="k1", status="W"))

    assert changed
    assert Phase.NORMAL == fold(POLICY, removed).state.phase


def test_same_event_twice_changes_nothing() -> None:
    history = started() + [anc(7, 900, key="k1")]

    assert (history, False) == merge(history, anc(7, 900, key="k1"))


def test_late_older_result_does_not_undo_a_newer_one() -> None:
    f = run(started() + [anc(14, 1800, key="new")] + [anc(7, 1400, key="old")])

    assert Phase.GP_MILD != f.state.phase or f.state.latest.key == "old"
    assert "new" == f.state.latest.key


def test_incremental_path_only_for_new_latest_events() -> None:
    history = started() + [anc(7, 1800, key="k1")]

    assert is_append(history, anc(8, 1800, key="k2"))
    assert not is_append(history, anc(6, 1800, key="k0"))
    assert not is_append(history, anc(9, 1800, key="k1"))


def test_correction_that_lifts_an_interruption_tells_the_pharmacy_to_release() -> None:
    history = started() + [anc(7, 900, key="k1")]
    before = fold(POLICY, history)
    correction = anc(7, 1600, key="k1", status="C")
    after = fold(POLICY, merge(history, correction)[0])
    _, new = diff_alerts(before.alerts, after.alerts)

    notices = pharmacy_after_refold(POLICY, before.state, after.state, new, correction)

    assert ["pharmacy.release"] == [a.kind.value for a in notices]
    assert notices[0].cause.startswith(REFOLD_CAUSE)


def test_correction_that_invalidates_the_baseline_tells_the_pharmacy_to_hold() -> None:
    history = [anc(-1, 2100, key="base"), enroll()]
    before = fold(POLICY, history)
    correction = anc(-1, 800, key="base", status="C")
    after = fold(POLICY, merge(history, correction)[0])
    withdrawn, new = diff_alerts(before.alerts, after.alerts)

    assert ["pharmacy.release"] == [a.kind.value for a in withdrawn]
    assert ["pharmacy.hold"] == [a.kind.value for a in pharmacy_after_refold(POLICY, before.state, after.state, new, correction)]


def test_a_correction_that_keeps_eligibility_adds_no_pharmacy_notice() -> None:
    history = started() + [anc(7, 1800, key="k1")]
    before = fold(POLICY, history)
    correction = anc(7, 1900, key="k1", status="C")
    after = fold(POLICY, merge(history, correction)[0])

    assert [] == pharmacy_after_refold(POLICY, before.state, after.state, [], correction)


def test_a_refold_notice_is_never_withdrawn_by_a_later_refold() -> None:
    history = [anc(-1, 2100, key="base"), enroll()]
    before = fold(POLICY, history)
    correction = anc(-1, 800, key="base", status="C")
    after = fold(POLICY, merge(history, correction)[0])
    notice = pharmacy_after_refold(POLICY, before.state, after.state, [], correction)

    withdrawn, _ = diff_alerts([*after.alerts, *notice], after.alerts)

    assert [] == withdrawn
