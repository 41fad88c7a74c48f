"""Pharmacy dispense eligibility on a date (rules.md section 5, institutional profiles).

Fail safe: whenever the rules cannot prove the patient is clear, the answer is "no" with
the reason in words a pharmacist reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from rems_ingest.core.model import Category, LatestAnc, PatientState, Population, TreatmentStatus

if TYPE_CHECKING:
    from rems_ingest.core.policy import RulesPolicy


@dataclass(frozen=True, slots=True)
class DispenseDecision:
    authorized: bool
    code: str
    reason: str
    max_days_supply: int
    latest: LatestAnc | None
    window_days: int | None = None
    warning: str = ""


# every code a dispense check answers (contract.md, README, OpenAPI): a pharmacy system may act on
# the code; the reason is for the pharmacist to read
DISPENSE_CODES = {
    "ANC_CURRENT": "may dispense: the latest final ANC is acceptable and within the window",
    "NO_PHARMACY_GATE": "may dispense: therapy is active and this profile has no pharmacy ANC gate",
    "WARN_ANC_NOT_CURRENT": "may dispense with pharmacist judgment (US_REMS_LEGACY): the ANC is older than the window",
    "DISPENSE_HOLD_ANC_NOT_CURRENT": "do not dispense: the latest ANC is older than the window",
    "ANC_UNACCEPTABLE": "do not dispense: the latest ANC is below the dispensing threshold and no prescriber rationale is on file",
    "NO_ANC": "do not dispense: no final ANC on file",
    "DATE_BEFORE_ANC": "do not dispense: the dispense date is before the latest ANC",
    "PATIENT_NOT_ENROLLED": "do not dispense: the patient is not enrolled",
    "TREATMENT_NOT_STARTED": "do not dispense: no eligible baseline ANC yet",
    "TREATMENT_HELD_HEME": "do not dispense: interrupted for neutropenia",
    "TREATMENT_HELD_OTHER": "do not dispense: interrupted by the prescriber",
    "TREATMENT_ON_HOLD_DECISION": "do not dispense: after severe neutropenia the prescriber must decide on rechallenge",
    "TREATMENT_DISCONTINUED": "do not dispense: clozapine is discontinued",
    "STORE_UNAVAILABLE": "do not dispense: the patient's status could not be read",
}

_TREATMENT_WORDS = {
    TreatmentStatus.NOT_STARTED: "clozapine has not been started: no eligible baseline ANC on file",
    TreatmentStatus.HELD_HEME: "clozapine is interrupted for neutropenia",
    TreatmentStatus.HELD_OTHER: "clozapine is interrupted by the prescriber",
    TreatmentStatus.ON_HOLD_DECISION: "after severe neutropenia the prescriber must decide on rechallenge",
    TreatmentStatus.DISCONTINUED: "clozapine is discontinued",
}


def _acceptable(state: PatientState, cat: Category) -> bool:
    if cat in (Category.GREEN, Category.AMBER, Category.RED):  # UK colours: amber continues, red stops
        return cat is not Category.RED
    if state.population is Population.BEN:
        return cat in (Category.NORMAL, Category.BEN_NEUTROPENIA)
    return cat in (Category.NORMAL, Category.MILD)


def check(policy: RulesPolicy, state: PatientState | None, on: date) -> DispenseDecision:
    """May clozapine be dispensed on ``on``? Order of checks: rules.md 5.2."""
    if state is None or not state.enrolled:
        return DispenseDecision(False, "PATIENT_NOT_ENROLLED", "Do not dispense: patient is not enrolled in ANC monitoring", 0, None)
    freq = state.frequency
    supply = policy.max_supply(freq)
    window = policy.currency_window(freq)
    latest = state.latest
    treatment = state.treatment
    if treatment is not TreatmentStatus.ACTIVE:
        return DispenseDecision(False, f"TREATMENT_{treatment.name}", f"Do not dispense: {_TREATMENT_WORDS[treatment]}", 0, latest, window)
    if policy.dispense_profile == "US_2025_NONE":
        return DispenseDecision(True, "NO_PHARMACY_GATE", "May dispense: therapy is active (no pharmacy ANC gate in this profile)", supply, latest, window)
    if latest is None:
        return DispenseDecision(False, "NO_ANC", "Do not dispense: no final ANC result on file", 0, None, window)
    days = (on - latest.on).days
    anc = f"ANC {latest.value:,}/uL drawn {latest.on.isoformat()}"
    if days < 0:
        return DispenseDecision(False, "DATE_BEFORE_ANC", f"Do not dispense: the dispense date is before the latest {anc}", 0, latest, window)
    if not _acceptable(state, latest.category) and not state.override_rationale:
        return DispenseDecision(
            False, "ANC_UNACCEPTABLE", f"Do not dispense: {anc} is {latest.category.value.replace('_', ' ')} and no prescriber rationale is on file", 0, latest, window
        )
    if days > window:
        words = f"{anc} is {days} days old; {freq.value.replace('_', ' ')} monitoring needs one within {window} days"
        if policy.dispense_profile == "US_REMS_LEGACY":
            return DispenseDecision(True, "WARN_ANC_NOT_CURRENT", f"May dispense with pharmacist judgment: {words}", supply, latest, window, warning=words)
        return DispenseDecision(False, "DISPENSE_HOLD_ANC_NOT_CURRENT", f"Do not dispense: {words}", 0, latest, window)
    rationale = " under a prescriber rationale" if state.override_rationale else ""
    return DispenseDecision(
        True,
        "ANC_CURRENT",
        f"May dispense{rationale}: {anc} ({days} {'day' if days == 1 else 'days'} ago) is within the {window}-day window; supply at most {supply} days",
        supply,
        latest,
        window,
    )
