"""Builders that keep rule tests short and readable."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from rems_ingest import profiles
from rems_ingest.core import rules
from rems_ingest.core.model import AncResult, ClinicalEvent, Enroll, Frequency, Population, ResultStatus

POLICY = profiles.load("us-label")
START = date(2026, 1, 5)


def anc(day: int | date, value: float | int | str, key: str | None = None, status: str = "F") -> AncResult:
    d = START + timedelta(days=day) if isinstance(day, int) else day
    return AncResult(
        key=key or f"r{d.isoformat()}-{value}",
        value=Decimal(str(value)),
        observed_at=datetime(d.year, d.month, d.day, 8, 0),
        status=ResultStatus(status),
    )


def enroll(population: str = "general", baseline: int | None = None, freq: str | None = None, day: int = 0) -> Enroll:
    return Enroll(
        key="enroll",
        on=START + timedelta(days=day),
        population=Population(population),
        therapy_start=START + timedelta(days=day),
        baseline_anc=Decimal(baseline) if baseline is not None else None,
        monitoring_frequency=Frequency(freq) if freq else None,
    )


def event(day: int, type_: str, **kw: object) -> ClinicalEvent:
    return ClinicalEvent(key=f"ev{day}{type_}", type=type_, on=START + timedelta(days=day), by=str(kw.pop("by", "DrX")), rationale=str(kw.pop("rationale", "reason")), **kw)  # type: ignore[arg-type]


def started(population: str = "general", freq: str | None = None) -> list:
    """A patient with a valid baseline, started on day 0."""
    if population == "ben":
        return [anc(-3, 1200), anc(-1, 1100), enroll("ben", baseline=1100)]
    if freq:
        return [enroll(freq=freq)]
    return [anc(-1, 1800), enroll()]


def run(events: list) -> rules.Folded:
    return rules.fold(POLICY, events)


def kinds(decision) -> list[str]:
    return [a.kind.value for a in decision.alerts]
