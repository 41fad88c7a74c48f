"""Every fixture gives its expected extraction; the fast path equals python-hl7's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rems_ingest.hl7v2.parse import parse_frame
from rems_ingest.hl7v2.reference import extract_reference
from tests.fixtures import Expected, expected_table

TABLE = expected_table()


def _observed(e: Expected) -> tuple[list, list[int], list[str]]:
    msgs = parse_frame(e.raw)
    obs, issues, acks = [], [], []
    for m in msgs:
        if m.is_ack:
            continue
        if m.error is not None:
            acks.append(f"{m.error.ack_code}:{m.error.err_code}")
            continue
        assert m.extraction is not None
        acks.append("CA" if m.header and m.header.enhanced else "AA")
        obs += [(str(o.patient), o.anc, o.status.value, o.derived, o.censored) for o in m.extraction.observations]
        issues += [i.code for i in m.extraction.issues]
    return obs, issues, acks


def test_the_corpus_has_at_least_25_messages() -> None:
    assert len(TABLE) >= 25


@pytest.mark.parametrize("e", TABLE, ids=[e.file for e in TABLE])
def test_fixture_extraction(e: Expected) -> None:
    obs, issues, acks = _observed(e)

    assert e.observations == obs
    assert e.issue_codes == issues
    assert e.acks == acks


@pytest.mark.parametrize("e", [e for e in TABLE if e.acks and all(a in ("AA", "CA") for a in e.acks)], ids=lambda e: e.file)
def test_fast_extraction_equals_python_hl7_reference(e: Expected) -> None:
    for m in parse_frame(e.raw):
        fast = m.extraction
        assert fast is not None

        assert fast == extract_reference(m.text)


def test_no_phi_in_rejection_text() -> None:
    """Error texts go into logs and NAKs: they must never carry names or values."""
    for e in TABLE:
        for m in parse_frame(e.raw):
            texts = [m.error.text] if m.error else [i.reason for i in (m.extraction.issues if m.extraction else ())]
            for t in texts:
                for phi in ("DOE", "JANE", "MÜLLER", "PEÑA", "19800101", "Smith"):
                    assert phi not in t


def test_the_orders_wbc_travels_with_the_anc_for_rules_that_use_it() -> None:
    from pathlib import Path

    from rems_ingest.hl7v2.extract import extract as fast
    from rems_ingest.hl7v2.reference import extract_reference

    text = (Path(__file__).resolve().parents[3] / "fixtures" / "hl7" / "oru_251_anc_normal.hl7").read_bytes().decode().replace("\n", "\r")
    (obs,) = fast(text).observations
    assert Decimal(6100) == obs.wbc  # 6.1 x10^3/uL
    assert obs == extract_reference(text).observations[0]


def test_an_unusable_wbc_is_left_out_quietly() -> None:
    from pathlib import Path

    from rems_ingest.hl7v2.extract import extract as fast

    text = (Path(__file__).resolve().parents[3] / "fixtures" / "hl7" / "oru_251_anc_normal.hl7").read_bytes().decode().replace("||6.1|10*3/uL|", "||6.1|furlongs|")
    (obs,) = fast(text).observations
    assert obs.wbc is None


def test_remembered_code_and_unit_readings_never_cross_delimiter_sets() -> None:
    """OBX-3/OBX-6 readings are memoised per delimiter set: the same field text read under
    another component separator is read afresh, in either order, on a shared code map."""
    from pathlib import Path

    from rems_ingest.hl7v2.codes import CodeMap
    from rems_ingest.hl7v2.extract import extract as fast
    from rems_ingest.hl7v2.reference import extract_reference

    text = (Path(__file__).resolve().parents[3] / "fixtures" / "hl7" / "oru_251_anc_normal.hl7").read_bytes().decode().replace("\n", "\r")
    # MSH-2 with ':' as the component separator: the same OBX-3 text is one component, not
    # a LOINC triplet, so no ANC may be read from it (the unit is made readable either way)
    other = text.replace("MSH|^~\\&|", "MSH|:~\\&|", 1).replace("|10*3/uL^10*3/uL^UCUM|", "|10*3/uL|")
    assert extract_reference(other).observations == ()
    cm = CodeMap()
    for _ in range(2):
        assert fast(text, cm).observations == extract_reference(text).observations != ()
        assert fast(other, cm).observations == ()


def test_memoised_readings_never_hold_oversized_field_text() -> None:
    """Units, timestamps, labels and OBX-3 codes are remembered only when short: a sender
    filling those fields with a megabyte each cannot pin thousands of them in memory."""
    from rems_ingest.hl7v2.codes import CodeMap, label_disagrees, resolve_unit
    from rems_ingest.hl7v2.memo import MAX_TEXT
    from rems_ingest.hl7v2.message import delimiters_of
    from rems_ingest.hl7v2.values import parse_ts

    huge = "9" * (MAX_TEXT + 1)
    for fn, short in ((parse_ts, "20260304081500"), (resolve_unit, "10*3/uL"), (label_disagrees, "Lymphocytes")):
        before = fn.cache_info().currsize  # type: ignore[attr-defined]
        fn(huge + "x")
        assert before == fn.cache_info().currsize  # type: ignore[attr-defined]
        fn(short)
        assert fn(short) == fn(short) and fn.cache_info().hits > 0  # type: ignore[attr-defined]
    assert parse_ts("20260304081500" + " " * MAX_TEXT) == parse_ts("20260304081500")  # same reading either way

    cm = CodeMap()
    classify = cm.field_classifier(delimiters_of("MSH|^~\\&|"))
    long_label = "751-8^Neutrophils" + " " * MAX_TEXT + "^LN"
    assert classify(long_label) == classify("751-8^Neutrophils^LN")[:3] + (long_label.split("^")[1],)
    assert [["751-8^Neutrophils^LN"]] == [list(m) for m in cm.memo.values()]  # the long one was read, not kept
