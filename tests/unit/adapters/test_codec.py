"""The stored patient state and events round-trip exactly: the store (and its decode cache)
must hand the rules the very state they produced."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rems_ingest.adapters.db import codec
from rems_ingest.core.model import Category, LatestAnc, PatientState
from rems_ingest.core.rules import fold
from tests.unit.core.helpers import POLICY
from tests.unit.core.test_properties import histories


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_every_state_and_event_of_a_random_history_round_trips(history: list) -> None:
    for d in fold(POLICY, history).decisions:
        text = codec.dump_state(d.state)
        assert d.state == codec._from(PatientState, json.loads(text))  # decoded, not from the cache
        assert d.state == codec.load_state(text)
    for event in history:
        assert event == codec.load_event(codec.dump_event(event))


def test_the_decode_cache_is_bounded() -> None:
    for n in range(codec._STATE_CACHE_MAX + 50):
        codec.dump_state(PatientState(version=n))
    assert len(codec._STATE_CACHE) <= codec._STATE_CACHE_MAX


def _reference(value: object) -> str:
    """The stdlib definition of the stored JSON that the fast encoder must reproduce."""
    return json.dumps(codec._plain(value), separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_the_fast_encoder_writes_exactly_the_reference_json(history: list) -> None:
    folded = fold(POLICY, history)
    for d in folded.decisions:
        assert codec.dump_state(d.state) == _reference(d.state)
    for alert in folded.alerts:
        assert codec.dump_alert(alert) == _reference(alert)
    for event in history:
        assert json.loads(codec.dump_event(event)) == {"t": codec._TYPE_NAMES[type(event)], **codec._plain(event)}


@given(
    st.datetimes(timezones=st.one_of(st.none(), st.timezones(), st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))))),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(),
)
def test_the_fast_encoder_agrees_on_offsets_microseconds_decimals_and_text(at: datetime, value: Decimal, text: str) -> None:
    latest = LatestAnc(value=value, on=at.date(), category=Category.NORMAL, key=text, observed_at=at)
    state = PatientState(latest=latest, override_rationale=text)
    assert codec.dump_state(state) == _reference(state)
    if at.tzinfo is None or isinstance(at.tzinfo, timezone):  # what the HL7 timestamp parser produces
        assert codec._from(PatientState, json.loads(codec.dump_state(state))) == state
