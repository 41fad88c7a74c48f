"""The typed requests the clinic use cases take: parsed once at the edge, checked here.

The HTTP handlers build them from JSON with ``from_mapping`` (a CSV import uses the same),
the CLI from its typed options; either way the rules of a valid request (required fields,
lengths, which event needs what) are checked in ``__post_init__``, so no edge can skip them
and a use case never sees a transport-shaped dict.
"""

from __future__ import annotations

import csv
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from rems_ingest.core.errors import InvalidInput
from rems_ingest.core.model import CLINICAL_EVENT_TYPES, Frequency, PatientKey, Population

TEXT_LIMIT = 200
RATIONALE_LIMIT = 2000
# clinical ranges (issue #15): outside them a number is a typo or an attack, never a reading
TEMPERATURE_RANGE = (Decimal(30), Decimal(45))  # degrees C
BASELINE_MAX = Decimal(50_000)  # cells/uL
EARLIEST_THERAPY_START = date(1970, 1, 1)
MAX_DAYS_AHEAD = 1  # a therapy start, like an event, is at most tomorrow (issue #26: no year 9999)
_PRESCRIBER_DECISIONS = ("rechallenge", "override")
# decisions only the patient's care team records (anyone else breaks glass), issue #26
CARE_TEAM_DECISIONS = frozenset({"override", "rechallenge", "resume", "interrupt", "discontinue", "stepdown_confirmed"})
MAX_DESIGNEES = 20


def designees_of(value: Any) -> tuple[str, ...]:
    """A care team list: strings (a CSV cell or a form field separates them with ';' or ','), each checked."""
    if value is None or value == "":
        return ()
    items = [i for i in value.replace(",", ";").split(";") if i.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise InvalidInput("designees must be a list of prescriber or clinic staff ids")
    out = tuple(dict.fromkeys(_checked(i, "designee", required=True) for i in items))
    if len(out) > MAX_DESIGNEES or any("," in d for d in out):
        raise InvalidInput(f"designees: at most {MAX_DESIGNEES} ids, none with a comma")
    return out


def clinic_csv_rows(lines: Iterable[str]) -> list[dict[str, str | None]]:
    """A clinic's CSV (header row, ``#`` comment lines) as dicts of stripped values, '' as None:
    what ``EnrollPatient.from_mapping`` reads, for the CLI import and the console's upload."""
    reader = csv.DictReader(line for line in lines if not line.lstrip().startswith("#"))
    missing = {"id", "population", "therapy_start"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidInput(f"header lacks {', '.join(sorted(missing))}")
    return [{k: (v.strip() if isinstance(v, str) else v) or None for k, v in r.items() if k} for r in reader]


def parse_date(value: Any, name: str) -> date:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a date YYYY-MM-DD") from None


def _text(body: Mapping[str, Any], name: str) -> str:
    v = body.get(name, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidInput(f"{name} must be a string")
    return v


def _number(value: Any, message: str) -> Decimal:
    if isinstance(value, bool):
        raise InvalidInput(message)
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(message) from None
    if not d.is_finite() or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidInput(message)
    return d


def _checked(value: str, name: str, *, required: bool = False, limit: int = TEXT_LIMIT) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{name} is required")
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return value


def _event_type(value: str) -> str:
    etype = _checked(value, "type", required=True)
    if etype not in CLINICAL_EVENT_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(sorted(CLINICAL_EVENT_TYPES))}")
    return etype


@dataclass(frozen=True)
class EnrollPatient:
    """Put a patient on clozapine monitoring (rules.md section 3)."""

    patient: PatientKey
    population: Population
    therapy_start: date
    baseline_anc: Decimal | None = None
    monitoring_frequency: Frequency | None = None
    prescriber_id: str = ""
    pharmacy_id: str = ""
    designees: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "patient", PatientKey(_checked(self.patient.id, "id", required=True), _checked(self.patient.authority, "authority")))
        object.__setattr__(self, "designees", designees_of(list(self.designees)))
        object.__setattr__(self, "prescriber_id", _checked(self.prescriber_id, "prescriber_id"))
        object.__setattr__(self, "pharmacy_id", _checked(self.pharmacy_id, "pharmacy_id"))
        if not EARLIEST_THERAPY_START <= self.therapy_start <= date.today() + timedelta(days=MAX_DAYS_AHEAD):
            raise InvalidInput(f"therapy_start {self.therapy_start} is not plausible (from {EARLIEST_THERAPY_START} to tomorrow)")
        if self.baseline_anc is not None:
            if not self.baseline_anc.is_finite():
                raise InvalidInput("baseline_anc must be a number (cells/uL)")
            if not 0 <= self.baseline_anc <= BASELINE_MAX:
                raise InvalidInput(f"baseline_anc {self.baseline_anc} is outside 0 to {BASELINE_MAX} cells/uL")
            if self.population is not Population.BEN:
                raise InvalidInput("baseline_anc is only for BEN patients")

    @classmethod
    def from_mapping(cls, body: Mapping[str, Any]) -> EnrollPatient:
        key = PatientKey(_text(body, "id"), _text(body, "authority"))
        try:
            population = Population(body.get("population"))
        except ValueError:
            raise InvalidInput("population must be 'general' or 'ben'") from None
        start = parse_date(body.get("therapy_start"), "therapy_start")
        baseline = None
        if body.get("baseline_anc") is not None:
            baseline = _number(body["baseline_anc"], "baseline_anc must be a number (cells/uL)")
        freq = None
        if body.get("monitoring_frequency"):
            try:
                freq = Frequency(body["monitoring_frequency"])
            except ValueError:
                raise InvalidInput("monitoring_frequency must be weekly, every_2_weeks or monthly") from None
        return cls(key, population, start, baseline, freq, _text(body, "prescriber_id"), _text(body, "pharmacy_id"), designees_of(body.get("designees")))


@dataclass(frozen=True)
class RecordEvent:
    """A prescriber's clinical event for one patient (contract.md, rules.md section 7)."""

    type: str
    on: date
    by: str = ""
    rationale: str = ""
    abrupt: bool = True
    temperature_c: Decimal | None = None
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    break_glass: bool = False  # someone outside the care team acts anyway: needs break_glass_reason
    break_glass_reason: str = ""

    def __post_init__(self) -> None:
        etype = _event_type(self.type)
        object.__setattr__(self, "break_glass_reason", _checked(self.break_glass_reason, "break_glass_reason", required=self.break_glass, limit=RATIONALE_LIMIT))
        object.__setattr__(self, "type", etype)
        decision = etype in _PRESCRIBER_DECISIONS
        object.__setattr__(self, "by", _checked(self.by, "by", required=decision))
        object.__setattr__(self, "rationale", _checked(self.rationale, "rationale", required=decision, limit=RATIONALE_LIMIT))
        object.__setattr__(self, "event_id", _checked(self.event_id, "event_id") or uuid.uuid4().hex)
        if etype == "fever" and (self.temperature_c is None or not self.temperature_c.is_finite()):
            raise InvalidInput("a fever event needs temperature_c (a number)")
        if self.temperature_c is not None and self.temperature_c.is_finite() and not TEMPERATURE_RANGE[0] <= self.temperature_c <= TEMPERATURE_RANGE[1]:
            raise InvalidInput(f"temperature_c {self.temperature_c} is outside {TEMPERATURE_RANGE[0]} to {TEMPERATURE_RANGE[1]} C")

    @classmethod
    def from_mapping(cls, body: Mapping[str, Any]) -> RecordEvent:
        etype = _event_type(_text(body, "type"))
        on = parse_date(body.get("on"), "on")
        temp = None
        if etype == "fever":
            temp = _number(body.get("temperature_c"), "a fever event needs temperature_c (a number)")
        return cls(etype, on, _text(body, "by"), _text(body, "rationale"), bool(body.get("abrupt", True)), temp, _text(body, "event_id"), bool(body.get("break_glass", False)), _text(body, "break_glass_reason"))
