"""The patient page's chart with draw times as labs send them (issue #26): with a UTC offset,
without, and both in one history, for an interrupted patient (a held span shaded): it was a
500 for every interrupted patient whose results carried an offset."""

from __future__ import annotations

from datetime import date

import pytest

from rems_ingest import profiles
from rems_ingest.adapters.web.chart import svg
from rems_ingest.core.model import Population
from rems_ingest.service.worklists import Episode

POLICY = profiles.load("us-label")
HELD = [Episode(date(2026, 3, 16), None, "therapy interrupted for neutropenia")]


@pytest.mark.parametrize("times", [
    ["2026-03-04T07:00:00-05:00", "2026-03-16T08:00:00-05:00"],
    ["2026-03-04T07:00:00", "2026-03-16T08:00:00"],
    ["2026-03-04T07:00:00", "2026-03-16T08:00:00-05:00", "2026-03-17T06:00:00+00:00"],
], ids=["with offsets", "without", "mixed"])
def test_an_interrupted_patients_chart_draws_whatever_the_offsets(times: list[str]) -> None:
    values = ["2100", "900", "450"]
    results = [{"observed_at": t, "anc_per_ul": v, "status": "F"} for t, v in zip(times, values)]
    out = svg(POLICY, Population.GENERAL, results, HELD)
    assert out.count('class="point point-final"') == len(times)
    assert 'class="episode"' in out and "therapy interrupted" in out
