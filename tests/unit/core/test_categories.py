"""rules.md section 1: half-open category boundaries for both populations."""

from decimal import Decimal

import pytest

from rems_ingest.core.model import Category, Population
from rems_ingest.core.rules import categorize

from .helpers import POLICY

GP = Population.GENERAL
BEN = Population.BEN


@pytest.mark.parametrize(
    ("anc", "expected"),
    [
        ("100000", Category.NORMAL),
        ("1500", Category.NORMAL),
        ("1499.6", Category.MILD),  # never rounded up into the normal range
        ("1499", Category.MILD),
        ("1000", Category.MILD),
        ("999.9", Category.MODERATE),
        ("999", Category.MODERATE),
        ("500", Category.MODERATE),
        ("499.9", Category.SEVERE),
        ("499", Category.SEVERE),
        ("0", Category.SEVERE),
    ],
)
def test_general_population_boundaries(anc: str, expected: Category) -> None:
    assert expected == categorize(POLICY, GP, Decimal(anc))


@pytest.mark.parametrize(
    ("anc", "expected"),
    [
        ("1500", Category.NORMAL),
        ("1200", Category.NORMAL),  # normal for BEN, mild for general
        ("1000", Category.NORMAL),
        ("999.9", Category.BEN_NEUTROPENIA),
        ("500", Category.BEN_NEUTROPENIA),
        ("499.9", Category.SEVERE),
        ("0", Category.SEVERE),
    ],
)
def test_ben_boundaries_have_no_mild_category(anc: str, expected: Category) -> None:
    assert expected == categorize(POLICY, BEN, Decimal(anc))
