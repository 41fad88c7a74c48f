"""The stored patient state and events round-trip exactly: the store (and its decode cache)
must hand the rules the very state they produced."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from rems_ingest.adapters.db import codec
from rems_ingest.core.model import PatientState
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
