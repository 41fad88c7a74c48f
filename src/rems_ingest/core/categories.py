"""ANC categories (rules.md section 1): half-open intervals on the real value, never rounded (pure)."""

from __future__ import annotations

from decimal import Decimal

from rems_ingest.core.errors import InvalidInput
from rems_ingest.core.model import AncResult, Category, Population
from rems_ingest.core.policy import RulesPolicy

MAX_PLAUSIBLE_ANC = Decimal(100_000)


def categorize(policy: RulesPolicy, population: Population, anc: Decimal, wbc: Decimal | None = None) -> Category:
    """Half-open intervals on the real value: 1499.6 is mild, never rounded up."""
    if policy.uk:
        return uk_colour(policy, anc, wbc)
    if population is Population.BEN:
        if anc >= policy.ben_normal:
            return Category.NORMAL
        if anc >= policy.ben_severe:
            return Category.BEN_NEUTROPENIA
        return Category.SEVERE
    if anc >= policy.gp_normal:
        return Category.NORMAL
    if anc >= policy.gp_mild:
        return Category.MILD
    if anc >= policy.gp_moderate:
        return Category.MODERATE
    return Category.SEVERE


def uk_colour(policy: RulesPolicy, neut: Decimal, wbc: Decimal | None) -> Category:
    """rules.md 6.1: red if WBC or neutrophils are in the red range, amber if either is amber,
    green only when both are green. Without a WBC the neutrophils decide alone."""
    if neut < policy.uk_red_neut or (wbc is not None and wbc < policy.uk_red_wbc):
        return Category.RED
    if neut < policy.uk_green_neut or (wbc is not None and wbc < policy.uk_green_wbc):
        return Category.AMBER
    return Category.GREEN


def uk_haematology(policy: RulesPolicy, neut: Decimal, wbc: Decimal | None) -> bool:
    """Neutrophils < 1.0 or WBC < 2.0 x10^9/L: contact a haematologist urgently (S19)."""
    return neut < policy.uk_haematology_neut or (wbc is not None and wbc < policy.uk_haematology_wbc)


def validate_anc(event: AncResult) -> None:
    if not isinstance(event.value, Decimal) or not event.value.is_finite():
        raise InvalidInput(f"ANC {event.value!r} is not a number")
    if event.value < 0:
        raise InvalidInput(f"ANC {event.value} is negative")
    if event.value > MAX_PLAUSIBLE_ANC:
        raise InvalidInput(f"ANC {event.value} cells/uL is not a plausible blood ANC")
