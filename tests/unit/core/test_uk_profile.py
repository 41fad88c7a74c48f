"""rules.md 6.1: the UK green/amber/red profile, a second rule family on the same engine."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rems_ingest import profiles
from rems_ingest.core import dispense
from rems_ingest.core.errors import InvalidInput, PolicyError
from rems_ingest.core.model import AncResult, Category, ClinicalEvent, Frequency, Phase, ResultStatus, TreatmentStatus
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.core.rules import fold, step, uk_colour

from .helpers import START, enroll

UK = profiles.load("uk-cpms")


def fbc(day: int, neut: int | str, wbc: int | str | None = 6000, key: str | None = None, status: str = "F") -> AncResult:
    d = START + timedelta(days=day)
    return AncResult(key or f"fbc{day}-{neut}", Decimal(str(neut)), datetime(d.year, d.month, d.day, 8), ResultStatus(status), wbc=Decimal(str(wbc)) if wbc is not None else None)


def started() -> list:
    return [fbc(-1, 4200, 7000), enroll()]


def run(events: list):  # type: ignore[no-untyped-def]
    return fold(UK, events)


def kinds(decision) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.kind.value for a in decision.alerts]


@pytest.mark.parametrize(
    ("neut", "wbc", "colour"),
    [
        (2000, 3500, Category.GREEN),  # both exactly at the green limit
        (1999.9, 9000, Category.AMBER),  # neutrophils just below green
        (5000, 3499.9, Category.AMBER),  # WBC just below green: "and/or"
        (1500, 3000, Category.AMBER),  # exactly at the red limits is amber
        (1499.9, 9000, Category.RED),
        (5000, 2999.9, Category.RED),  # WBC alone can make it red
        (1800, None, Category.AMBER),  # no WBC reported: neutrophils decide alone
        (2500, None, Category.GREEN),
    ],
)
def test_colour_boundaries_use_wbc_and_neutrophils(neut: float, wbc: float | None, colour: Category) -> None:
    assert colour == uk_colour(UK, Decimal(str(neut)), Decimal(str(wbc)) if wbc is not None else None)


def test_every_decision_carries_the_uk_profile_label() -> None:
    f = run(started() + [fbc(7, 3000)])
    assert {"uk-cpms@2026.11.1"} == {d.profile for d in f.decisions}


def test_baseline_must_be_green_including_the_wbc() -> None:
    blocked = run([fbc(-1, 4200, 3200), enroll()])
    assert Phase.PRE == blocked.state.phase
    assert ["baseline.ineligible"] == kinds(blocked.decisions[-1])
    assert Phase.NORMAL == run(started()).state.phase


def test_amber_means_twice_weekly_until_green_then_the_previous_interval() -> None:
    f = run(started() + [fbc(7, 1800)])
    assert (Phase.UK_AMBER, Frequency.TWICE_WEEKLY, TreatmentStatus.ACTIVE) == (f.state.phase, f.decisions[-1].frequency, f.state.treatment)
    assert START + timedelta(days=7 + UK.days_twice_weekly) == f.state.next_due
    assert ["monitoring.increased"] == kinds(f.decisions[-1])
    back = run(started() + [fbc(7, 1800), fbc(10, 2100, 3400), fbc(13, 2600)])
    assert Phase.UK_AMBER == back.decisions[-2].state.phase  # WBC 3.4 keeps it amber
    assert (Phase.NORMAL, Frequency.WEEKLY) == (back.state.phase, back.decisions[-1].frequency)
    assert ["monitoring.restored"] == kinds(back.decisions[-1])


def test_red_stops_treatment_and_asks_for_confirmation_counts() -> None:
    f = run(started() + [fbc(7, 1400)])
    assert (Phase.UK_RED, TreatmentStatus.HELD_HEME, Frequency.DAILY) == (f.state.phase, f.state.treatment, f.decisions[-1].frequency)
    assert {"therapy.interrupt", "monitoring.confirm_repeat", "pharmacy.hold"} == set(kinds(f.decisions[-1]))
    assert not f.state.rechallenge_restricted  # one red is not yet confirmed
    assert not dispense.check(UK, f.state, START + timedelta(days=7)).authorized


def test_a_second_red_confirms_it_and_blocks_re_exposure() -> None:
    f = run(started() + [fbc(7, 1400), fbc(8, 1300)])
    assert f.state.rechallenge_restricted
    (interrupt,) = [a for a in f.decisions[-1].alerts if a.kind.value == "therapy.interrupt"]
    assert ("non_rechallenge", "true") in interrupt.detail and ("red_confirmed", "true") in interrupt.detail
    assert [] == kinds(run(started() + [fbc(7, 1400), fbc(8, 1300), fbc(9, 1200)]).decisions[-1])  # no repeat alert


@pytest.mark.parametrize(("neut", "wbc"), [(999, 6000), (1400, 1999)])
def test_red_below_the_haematology_limits_is_an_emergency(neut: int, wbc: int) -> None:
    f = run(started() + [fbc(7, neut, wbc)])
    assert "therapy.emergency" == kinds(f.decisions[-1])[0]


def test_red_at_the_haematology_limits_is_not_an_emergency() -> None:
    assert "therapy.emergency" not in kinds(run(started() + [fbc(7, 1000, 2000)]).decisions[-1])


def test_leaving_red_needs_green_then_a_prescriber_decision() -> None:
    amber = run(started() + [fbc(7, 1400), fbc(8, 1700)])
    assert (Phase.UK_RED, TreatmentStatus.HELD_HEME) == (amber.state.phase, amber.state.treatment)
    green = run(started() + [fbc(7, 1400), fbc(8, 1700), fbc(9, 2400)])
    assert (Phase.SEV_RECOVERED_HOLD, TreatmentStatus.ON_HOLD_DECISION) == (green.state.phase, green.state.treatment)
    assert ["therapy.decision_required"] == kinds(green.decisions[-1])
    rechallenged = step(UK, green.state, ClinicalEvent("rc", "rechallenge", START + timedelta(days=10), by="DR1", rationale="exceptional: CPMS consultant agreed"))
    assert TreatmentStatus.ACTIVE == rechallenged.state.treatment


def test_cadence_weekly_18_weeks_then_fortnightly_then_four_weekly_offered_not_imposed() -> None:
    events = started() + [fbc(7 * w, 4000, key=f"w{w}") for w in range(1, 19)]
    f = run(events)
    assert ["monitoring.stepdown_eligible"] == [k for k in kinds(f.decisions[-1]) if k.startswith("monitoring")]
    assert Frequency.WEEKLY == f.state.interval  # suggested, not imposed
    before = run(started() + [fbc(7 * w, 4000, key=f"w{w}") for w in range(1, 18)])
    assert "monitoring.stepdown_eligible" not in [k for d in before.decisions for k in kinds(d)]
    confirmed = step(UK, f.state, ClinicalEvent("sd", "stepdown_confirmed", START + timedelta(weeks=18, days=1)))
    assert Frequency.EVERY_2_WEEKS == confirmed.state.interval
    late = [fbc(7 * 18 + 14 * n, 4000, key=f"f{n}") for n in range(1, 18)]
    g = fold(UK, [*events, ClinicalEvent("sd", "stepdown_confirmed", START + timedelta(weeks=18, days=1)), *late])
    offered = [(d.state.latest.on, a.detail) for d in g.decisions for a in d.alerts if a.kind.value == "monitoring.stepdown_eligible"]
    assert offered[-1][0] >= START + timedelta(weeks=52) and ("suggested", "monthly") in offered[-1][1]


def test_ben_patients_are_refused_because_uk_ben_limits_are_not_verified() -> None:
    with pytest.raises(InvalidInput, match="benign ethnic neutropenia"):
        step(UK, fold(UK, [fbc(-1, 4200)]).state, enroll("ben", baseline=1100))


def test_a_uk_profile_with_inverted_limits_is_refused() -> None:
    import tomllib

    data = tomllib.loads((profiles.rules_dirs()[-2] / "uk-cpms.toml").read_text())
    data["thresholds"]["uk"]["red_below_neutrophils"] = 2500
    with pytest.raises(PolicyError, match="green > red"):
        RulesPolicy.from_mapping(data)


@given(st.integers(0, 8000), st.integers(0, 8000), st.one_of(st.none(), st.integers(0, 20000)))
def test_a_lower_count_is_never_a_milder_colour(a: int, b: int, wbc: int | None) -> None:
    order = {Category.GREEN: 0, Category.AMBER: 1, Category.RED: 2}
    lo, hi = sorted((a, b))
    w = Decimal(wbc) if wbc is not None else None
    assert order[uk_colour(UK, Decimal(lo), w)] >= order[uk_colour(UK, Decimal(hi), w)]


def test_a_fall_below_the_haematology_limits_during_red_is_an_emergency_once() -> None:
    f = run(started() + [fbc(7, 1400), fbc(8, 1300), fbc(9, 900), fbc(10, 800)])
    assert "therapy.emergency" not in kinds(f.decisions[-3])  # confirmed red, above the limits
    assert "therapy.emergency" in kinds(f.decisions[-2])  # first count below 1.0
    assert "therapy.emergency" not in kinds(f.decisions[-1])  # still below: no repeat page
