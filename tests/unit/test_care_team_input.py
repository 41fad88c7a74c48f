"""The care team as clinics write it (issue #26): a list, a CSV cell or a form field."""

from __future__ import annotations

import pytest

from rems_ingest.core.errors import InvalidInput
from rems_ingest.service.commands import designees_of


@pytest.mark.parametrize("value", [["DR2", "DR3"], "DR2;DR3", "DR2, DR3", " DR2 ;; DR3 ;", ["DR2", "DR3", "DR2"]])
def test_designees_are_read_from_a_list_a_csv_cell_or_a_form(value: object) -> None:
    assert designees_of(value) == ("DR2", "DR3")


@pytest.mark.parametrize("value", [[1, 2], [f"DR{n}" for n in range(21)], ["x" * 201], {"DR2": 1}])
def test_a_care_team_that_is_not_a_list_of_ids_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        designees_of(value)
