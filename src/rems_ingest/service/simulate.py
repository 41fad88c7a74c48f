"""``simulate``: a patient's history as a script in, the decision timeline out (no store).

A script line is ``date,anc[,status[,wbc[,specimen]]]`` or ``date,event[,args]``. Lines apply
in file order, as the daemon applies messages in arrival order (core/timeline.py): a result
naming its specimen may be dated earlier and re-folds the history. Used by the CLI and the
conformance suite; a prescriber asks "what would the rules have said" without a daemon.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rems_ingest.core import dispense
from rems_ingest.core.errors import CoreError, EventNotAllowed, InvalidInput
from rems_ingest.core.model import CLINICAL_EVENT_TYPES, AncResult, ClinicalEvent, Enroll, Event, Frequency, Population, ResultStatus, Tick
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.core.timeline import Timeline

_DECISIONS = ("rechallenge", "override")


class ScriptError(InvalidInput):
    """A script line that cannot be read (or applied): ``line`` is its number in the file."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


@dataclass(frozen=True)
class DispenseQuery:
    """A ``date,dispense`` line: the pharmacy's question on that date (changes nothing)."""

    on: date


@dataclass(frozen=True)
class Patient:
    """Who the script is about: enrolled at therapy start, as on the enrollment form."""

    population: Population
    therapy_start: date
    baseline_anc: Decimal | None = None
    transferred_on: Frequency | None = None


Step = tuple[int, str, Event | DispenseQuery]


def read_script(rows: Iterable[list[str]], patient: Patient) -> list[Step]:
    """CSV rows -> (line number, label, event) in file order, with the enrollment inserted at
    therapy start (earlier lines are pre-treatment, baseline, results)."""
    steps: list[Step] = []
    last: date | None = None
    for n, row in enumerate(rows, 1):
        if not row or row[0].strip().startswith("#") or row[0].strip() == "date":
            continue
        try:
            on = date.fromisoformat(row[0].strip())
        except ValueError:
            raise ScriptError(n, f"{row[0]!r} is not a date YYYY-MM-DD") from None
        what = row[1].strip() if len(row) > 1 else ""
        args = [a.strip() for a in row[2:]]
        keyed = len(args) > 2 and bool(args[2])  # a result with its specimen id may arrive late (corrections)
        if last and on < last and not keyed:
            raise ScriptError(n, f"date {on} is before the previous line ({last}); lines must be in date order (a late or corrected result names its specimen)")
        last = max(on, last) if last else on
        steps.append(_step(n, on, what, args, keyed))
    at = next((i for i, (_, _, e) in enumerate(steps) if e.on >= patient.therapy_start), len(steps))
    enroll = Enroll("enroll", patient.therapy_start, patient.population, patient.therapy_start, patient.baseline_anc, patient.transferred_on)
    steps.insert(at, (0, "enroll", enroll))
    return steps


def _step(n: int, on: date, what: str, args: list[str], keyed: bool) -> Step:
    value = _decimal(what)
    if value is not None:
        return _result(n, on, what, value, args, keyed)
    if what == "tick":
        return n, "overdue check", Tick(f"tick{n}", on)
    if what == "dispense":
        return n, "dispense check", DispenseQuery(on)
    if what in CLINICAL_EVENT_TYPES:
        return n, what, _clinical(n, on, what, args)
    raise ScriptError(n, f"{what!r} is neither an ANC value nor a known event")


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None


def _result(n: int, on: date, what: str, value: Decimal, args: list[str], keyed: bool) -> Step:
    try:
        status = ResultStatus(args[0]) if args and args[0] else ResultStatus.FINAL
        wbc = Decimal(args[1].replace(",", ".")) if len(args) > 1 and args[1] else None
    except (ValueError, InvalidOperation):
        raise ScriptError(n, "expected date,anc[,status F/C/P/X/D/W[,wbc per uL[,specimen id]]]") from None
    label = f"ANC {what}" + (f" ({status.value}, ignored)" if not status.counts else (" (C)" if status is ResultStatus.CORRECTED else ""))
    return n, label, AncResult(args[2] if keyed else f"line{n}", value, datetime(on.year, on.month, on.day, 8), status, wbc=wbc)


def _clinical(n: int, on: date, what: str, args: list[str]) -> ClinicalEvent:
    temp = None
    if what == "fever" and args:
        temp = _decimal(args[0])
        if temp is None or not temp.is_finite():
            raise ScriptError(n, f"fever needs a temperature in degrees C, not {args[0]!r}")
    by = args[0] if what in _DECISIONS and args else ""
    rationale = args[1] if what in _DECISIONS and len(args) > 1 else ""
    abrupt = not (what == "discontinue" and args and args[0] in ("planned", "taper"))
    return ClinicalEvent(f"line{n}", what, on, by=by, rationale=rationale, abrupt=abrupt, temperature_c=temp)


def run(policy: RulesPolicy, steps: Iterable[Step]) -> list[dict[str, Any]]:
    """One row per step: the decision, a refusal (``error``) or a dispense answer."""
    timeline = Timeline(policy)  # events applied as the daemon applies them when they arrive in this order
    rows: list[dict[str, Any]] = []
    for line, label, ev in steps:
        base = {"line": line, "date": ev.on.isoformat(), "input": label}
        if isinstance(ev, DispenseQuery):
            check = dispense.check(policy, timeline.state, ev.on)
            rows.append({**base, "dispense": {"authorized": check.authorized, "code": check.code, "reason": check.reason, "max_days_supply": check.max_days_supply}})
            continue
        try:
            d = timeline.apply(ev)
        except EventNotAllowed as exc:
            rows.append({**base, "error": f"not allowed: {exc}"})
            continue
        except CoreError as exc:
            raise ScriptError(line, str(exc)) from None
        state = d.state
        latest = state.latest
        rows.append(
            {
                **base,
                # pre-enrollment results are baselines, not yet categorized for this patient's population
                "category": latest.category.value if latest and state.enrolled else "",
                "phase": state.phase.value,
                "action": state.action,
                "treatment": state.treatment.value,
                "frequency": state.frequency.value,
                "next_due": state.next_due.isoformat() if state.next_due else "",
                "alerts": [a.kind.value for a in d.raised],
                "severity": {a.kind.value: a.severity.value for a in d.raised},
                "state_version": state.version,
            }
        )
    return rows


def table(policy: RulesPolicy, population: str, rows: list[dict[str, Any]]) -> list[str]:
    """The timeline as the fixed-width text a clinician reads (``simulate`` without --json)."""
    header = f"{'date':<10}  {'input':<20}  {'category':<15}  {'action':<30}  {'treatment':<16}  {'frequency':<18}  {'next due':<10}  alerts"
    out = [f"profile {policy.label}, population {population}, dispense profile {policy.dispense_profile}", header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            out.append(f"{r['date']:<10}  {r['input']:<20}  {r['error']}")
        elif "dispense" in r:
            ok = r["dispense"]
            out.append(f"{r['date']:<10}  {r['input']:<20}  {'authorized' if ok['authorized'] else 'NOT authorized'} ({ok['code']}): {ok['reason']}")
        else:
            out.append(f"{r['date']:<10}  {r['input']:<20}  {r['category']:<15}  {r['action']:<30}  {r['treatment']:<16}  {r['frequency']:<18}  {r['next_due']:<10}  {', '.join(r['alerts'])}")
    return out
