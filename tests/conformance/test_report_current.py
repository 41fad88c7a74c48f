"""docs/conformance.md lists every case of the suite, each with its passing tests: a reviewer
reading it reads what CI runs (regenerate with ``python -m tests.conformance.report``)."""

from __future__ import annotations

from tests.conformance.cases import CASES, by_id
from tests.conformance.report import DOC, SUITES, render


def _without_date(text: str) -> list[str]:
    return [line for line in text.splitlines() if "run of the suite on" not in line]


def test_the_conformance_document_is_current_and_every_row_passed() -> None:
    by_id()  # ids are unique
    all_passed = {f"{s.removesuffix('.py')}::test_rule[{c.id}]": "passed" for c in CASES for s in SUITES.values()}
    all_passed["test_patient_feed::runTest"] = "passed"
    assert _without_date(DOC.read_text()) == _without_date(render(all_passed, "")), "docs/conformance.md is stale or has a row that did not pass: run python -m tests.conformance.report"
