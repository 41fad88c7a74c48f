"""Hypothesis properties over random histories (issue #2 'Done when')."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rems_ingest.core.history import merge
from rems_ingest.core.model import ClinicalEvent, Decision, Enroll, Population, TreatmentStatus
from rems_ingest.core.rules import fold, step

from .helpers import POLICY, START, anc

BOUNDARIES = [0, 499, 500, 999, 1000, 1499, 1500, 1800, 2500]
anc_values = st.one_of(st.sampled_from(BOUNDARIES), st.integers(min_value=0, max_value=4000))
EVENT_TYPES = ["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]


@st.composite
def histories(draw: st.DrawFn, with_events: bool = True, population: str = "general") -> list:
    evs: list = [anc(-2, 1800, key="b1"), anc(-1, 1800, key="b2")]
    evs.append(Enroll("enroll", START, Population(population), START, Decimal(1000) if population == "ben" else None))
    day = 0
    for i in range(draw(st.integers(min_value=0, max_value=25))):
        day += draw(st.integers(min_value=1, max_value=10))
        if with_events and draw(st.integers(0, 9)) == 0:
            t = draw(st.sampled_from(EVENT_TYPES))
            evs.append(ClinicalEvent(f"e{i}", t, START + timedelta(days=day), by="DrX", rationale="r", temperature_c=Decimal("39")))
        else:
            status = draw(st.sampled_from("FFFFFFFP"))
            evs.append(anc(day, draw(anc_values), key=f"k{i}", status=status))
    return evs


def strictness(d: Decision) -> tuple[int, int]:
    return (int(d.state.treatment is not TreatmentStatus.ACTIVE), d.frequency.rank)


COMMON = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(histories(), anc_values, anc_values)
def test_lower_anc_never_yields_a_less_severe_action(history: list, a: int, b: int) -> None:
    state = fold(POLICY, history).state
    last = max(e.on for e in history)
    lo, hi = sorted((a, b))

    d_lo = step(POLICY, state, anc(last + timedelta(days=1), lo, key="x"))
    d_hi = step(POLICY, state, anc(last + timedelta(days=1), hi, key="x"))

    assert strictness(d_lo) >= strictness(d_hi)


@COMMON
@given(st.data())
def test_ben_patient_is_never_treated_more_strictly_than_general(data: st.DataObject) -> None:
    gp_history = data.draw(histories(with_events=False))
    ben_history = [Enroll("enroll", START, Population.BEN, START, Decimal(1000)) if isinstance(e, Enroll) else e for e in gp_history]

    gp = fold(POLICY, gp_history).decisions
    ben = fold(POLICY, ben_history).decisions

    assert all(strictness(b) <= strictness(g) for b, g in zip(ben, gp))


@COMMON
@given(histories())
def test_next_due_is_never_before_the_specimen_date(history: list) -> None:
    from rems_ingest.core.model import AncResult

    ordered = sorted(history, key=__import__("rems_ingest.core.model", fromlist=["event_sort_key"]).event_sort_key)
    for ev, d in zip(ordered, fold(POLICY, history).decisions):
        if isinstance(ev, AncResult) and ev.status.counts and d.next_due is not None:
            assert d.next_due >= ev.on


@COMMON
@given(histories())
def test_the_same_event_applied_twice_changes_nothing(history: list) -> None:
    once = fold(POLICY, history)
    again, changed = merge(history, history[-1])

    assert not changed
    assert once == fold(POLICY, again)


@COMMON
@given(histories(), st.integers(min_value=0, max_value=30))
def test_a_decision_does_not_depend_on_later_events(history: list, cut: int) -> None:
    full = fold(POLICY, history).decisions
    k = min(cut, len(history))
    from rems_ingest.core.model import event_sort_key

    prefix = sorted(history, key=event_sort_key)[:k]

    assert full[:k] == fold(POLICY, prefix).decisions


@COMMON
@given(histories(), st.randoms(use_true_random=False))
def test_folding_a_shuffled_history_gives_the_same_state(history: list, rnd: random.Random) -> None:
    shuffled = list(history)
    rnd.shuffle(shuffled)

    assert fold(POLICY, history).state == fold(POLICY, shuffled).state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_evolve_is_dataclasses_replace(evs: list, data: st.DataObject) -> None:
    """The rules' fast copy-with-changes gives exactly what dataclasses.replace gives, for every
    field the rules change, and refuses an unknown field the same way."""
    import dataclasses

    import pytest

    from rems_ingest.core.model import evolve

    state = fold(POLICY, evs).state
    names = [f.name for f in dataclasses.fields(state)]
    donor = fold(POLICY, evs[: data.draw(st.integers(0, len(evs)))]).state  # values of the right types
    changes = {n: getattr(donor, n) for n in data.draw(st.lists(st.sampled_from(names), unique=True))}
    assert evolve(state, **changes) == dataclasses.replace(state, **changes)
    assert evolve(state) == state and evolve(state) is not state
    with pytest.raises(TypeError):
        evolve(state, no_such_field=1)
