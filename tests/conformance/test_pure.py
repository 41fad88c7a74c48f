"""Every rules.md row, through the pure ``simulate`` path."""

from __future__ import annotations

import pytest

from tests.conformance.cases import CASES, Case
from tests.conformance.pure import compare, observe


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    wrong = compare(case, observe(case))
    assert not wrong, f"{case.section} {case.rule}: " + "; ".join(wrong)
