"""rules.md section 5.2: dispense check around each window boundary, fail safe."""

from dataclasses import replace
from datetime import timedelta

import pytest

from rems_ingest.core import dispense
from rems_ingest.core.model import PatientState

from .helpers import POLICY, START, anc, event, run, started


@pytest.mark.parametrize(
    ("freq", "window", "supply"),
    [("weekly", 7, 7), ("every_2_weeks", 15, 14), ("monthly", 31, 30)],
)
def test_currency_window_boundaries(freq: str, window: int, supply: int) -> None:
    state = run(started(freq=freq) + [anc(1, 1800)]).state
    drawn = START + timedelta(days=1)

    on_edge = dispense.check(POLICY, state, drawn + timedelta(days=window))
    past = dispense.check(POLICY, state, drawn + timedelta(days=window + 1))

    assert (True, supply) == (on_edge.authorized, on_edge.max_days_supply)
    assert (False, "DISPENSE_HOLD_ANC_NOT_CURRENT") == (past.authorized, past.code)


def test_legacy_profile_warns_instead_of_holding() -> None:
    state = run(started() + [anc(1, 1800)]).state
    d = dispense.check(POLICY.with_dispense_profile("US_REMS_LEGACY"), state, START + timedelta(days=30))

    assert (True, "WARN_ANC_NOT_CURRENT") == (d.authorized, d.code)


def test_2025_profile_only_needs_active_therapy() -> None:
    state = run(started() + [anc(1, 1800)]).state

    assert dispense.check(POLICY.with_dispense_profile("US_2025_NONE"), state, START + timedelta(days=90)).authorized


def test_unknown_patient_is_never_authorized() -> None:
    assert not dispense.check(POLICY, None, START).authorized
    assert not dispense.check(POLICY, PatientState(), START).authorized


def test_interrupted_patient_is_blocked_with_a_reason() -> None:
    state = run(started() + [anc(7, 800)]).state
    d = dispense.check(POLICY, state, START + timedelta(days=7))

    assert (False, "TREATMENT_HELD_HEME") == (d.authorized, d.code)
    assert "interrupted for neutropenia" in d.reason


def test_mild_is_acceptable_and_intensified_monitoring_caps_supply_at_7_days() -> None:
    state = run(started(freq="monthly") + [anc(1, 1400)]).state
    d = dispense.check(POLICY, state, START + timedelta(days=2))

    assert (True, 7) == (d.authorized, d.max_days_supply)


def test_ben_neutropenia_is_acceptable_for_ben() -> None:
    state = run(started("ben") + [anc(7, 800)]).state

    assert dispense.check(POLICY, state, START + timedelta(days=8)).authorized


def test_preliminary_only_result_is_not_enough() -> None:
    from .helpers import enroll

    state = run([enroll(freq="weekly"), anc(1, 1800, status="P")]).state
    d = dispense.check(POLICY, state, START + timedelta(days=2))

    assert (False, "NO_ANC") == (d.authorized, d.code)


def test_unacceptable_category_without_rationale_is_blocked_even_if_active() -> None:
    state = run(started() + [anc(7, 800)]).state
    forced = replace(state, phase=__import__("rems_ingest.core.model", fromlist=["Phase"]).Phase.NORMAL)

    assert "ANC_UNACCEPTABLE" == dispense.check(POLICY, forced, START + timedelta(days=7)).code


def test_held_other_is_blocked() -> None:
    state = run(started() + [anc(7, 1800), event(8, "interrupt")]).state

    assert "TREATMENT_HELD_OTHER" == dispense.check(POLICY, state, START + timedelta(days=8)).code


def test_ben_baseline_between_1000_and_1500_is_dispensable_right_after_enrollment() -> None:
    """Regression: a pre-enrollment 1100 was categorized as general 'mild' and blocked BEN dispensing."""
    f = run(started("ben"))

    assert "pharmacy.release" in [a.kind.value for a in f.decisions[-1].alerts]
    assert dispense.check(POLICY, f.state, START).authorized
