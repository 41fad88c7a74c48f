"""Core values <-> JSON for the store (Decimal and dates as strings, enums by value).

Encoding runs on every message (state, event, alerts), so it uses orjson, which walks the
frozen dataclasses natively; ``_plain`` is the readable definition of the same mapping and the
tests hold the two equal (tests/unit/adapters/test_codec.py).
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, get_type_hints

import orjson

from rems_ingest.core import model

_EVENT_TYPES: dict[str, type] = {
    "anc": model.AncResult,
    "enroll": model.Enroll,
    "clinical": model.ClinicalEvent,
    "tick": model.Tick,
}
_TYPE_NAMES = {v: k for k, v in _EVENT_TYPES.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _default(v: Any) -> Any:
    """What orjson is not asked to encode itself: Decimal (its exact text) and dates/times
    (``isoformat``: orjson drops the seconds of an offset such as LMT's -00:16:08)."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    raise TypeError(f"not JSON-encodable: {type(v).__name__}")


def dumps(value: Any) -> str:
    """Compact JSON of core values, equal to ``json.dumps(_plain(value), separators=(",", ":"),
    ensure_ascii=False)``."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


def _typed(tp: Any, v: Any) -> Any:
    if v is None:
        return None
    origin = getattr(tp, "__args__", None)
    if origin and type(None) in origin:  # X | None
        tp = next(a for a in origin if a is not type(None))
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return tp(v)
        if tp is Decimal:
            return Decimal(v)
        if tp is datetime:
            return datetime.fromisoformat(v)
        if tp is date:
            return date.fromisoformat(v)
        if dataclasses.is_dataclass(tp):
            return _from(tp, v)
    if getattr(tp, "__origin__", None) is tuple:
        args = tp.__args__
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], x) for x in v)
        return tuple(_typed(a, x) for a, x in zip(args, v))
    return v


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, vars(model))  # costly (~50 µs); computed once per class


def _from(cls: type, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    return cls(**{k: _typed(hints[k], v) for k, v in data.items() if k in hints})


# The state a message just wrote is, almost always, the state the next message for that patient
# reads: remember the decoded (immutable) state by its exact stored text, so the hot path skips a
# JSON decode and dataclass rebuild. Keyed by the text itself, it can never serve a stale state,
# whoever else wrote the row. Bounded; oldest entries go first.
_STATE_CACHE: dict[str, model.PatientState] = {}
_STATE_CACHE_MAX = 4096


def _remember(text: str, state: model.PatientState) -> None:
    if len(_STATE_CACHE) >= _STATE_CACHE_MAX:
        try:
            del _STATE_CACHE[next(iter(_STATE_CACHE))]
        except (KeyError, StopIteration, RuntimeError):  # another thread evicted first
            pass
    _STATE_CACHE[text] = state


def dump_state(state: model.PatientState) -> str:
    text = dumps(state)
    _remember(text, state)
    return text


def load_state(text: str | None) -> model.PatientState:
    if not text:
        return model.PatientState()
    state = _STATE_CACHE.get(text)
    if state is None:
        state = _from(model.PatientState, orjson.loads(text))
        _remember(text, state)
    return state


def dump_event(event: model.Event) -> str:
    return '{"t":"' + _TYPE_NAMES[type(event)] + '",' + dumps(event)[1:]


def load_event(text: str) -> model.Event:
    data = orjson.loads(text)
    return _from(_EVENT_TYPES[data.pop("t")], data)  # type: ignore[no-any-return]


def dump_alert(alert: model.Alert) -> str:
    return dumps(alert)


def load_alert(text: str) -> model.Alert:
    return _from(model.Alert, orjson.loads(text))  # type: ignore[no-any-return]
