"""Hypothesis: generated and mutated ORU^R01 never crash the parser; fast == reference."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rems_ingest.hl7v2.parse import parse_frame
from rems_ingest.hl7v2.reference import extract_reference
from tests.fixtures import expected_table

CODES = ["751-8^Neutrophils^LN", "ANC^ANC^L", "x^y^L^751-8^Neut^LN", "770-8^Neut%^LN", "6690-2^WBC^LN", "718-7^Hgb^LN", "751-8^LYM#^LN", "NEUT#^^L"]
UNITS = ["10*3/uL", "K/uL", "x10E3/uL", "10*9/L", "/uL", "cells/uL", "/mm3", "%", "", "mg", "10^9/L"]
VALUES = st.one_of(
    st.decimals(min_value=0, max_value=20, places=2, allow_nan=False).map(str),
    st.integers(0, 9000).map(str),
    st.sampled_from(["<0.1", "<^0.5", ">100", "1,25", "DNR", "", "----", '""', "1.2 L", "^1^:^2"]),
)
STATUS = st.sampled_from(["F", "C", "P", "X", "D", "W", "U", "", "R"])
SEPS = st.sampled_from(["\r", "\n", "\r\n"])


@st.composite
def oru(draw: st.DrawFn) -> bytes:
    sep = draw(SEPS)
    version = draw(st.sampled_from(["2.3", "2.3.1", "2.4", "2.5.1"]))
    segs = [f"MSH|^~\\&|LIS|LAB|REMS|PSY|20260301080000||ORU^R01|C{draw(st.integers(0, 10**6))}|P|{version}"]
    for p in range(draw(st.integers(1, 2))):
        pid = draw(st.sampled_from([f"P{p}^^^HOSP^MR", f"P{p}", "", f"A1^^^H^AN~P{p}^^^H^MR", f"P\\S\\{p}"]))
        segs.append(f"PID|1||{pid}||NAME^X")
        for o in range(draw(st.integers(1, 2))):
            segs.append(f"OBR|{o + 1}||F{p}{o}|CBC^CBC^L|||2026030{draw(st.integers(1, 9))}0700")
            for i in range(draw(st.integers(0, 4))):
                vt = draw(st.sampled_from(["NM", "SN", "ST"]))
                segs.append(f"OBX|{i + 1}|{vt}|{draw(st.sampled_from(CODES))}||{draw(VALUES)}|{draw(st.sampled_from(UNITS))}|||||{draw(STATUS)}|||{draw(st.sampled_from(['', '20260301', '202603010800+0100']))}")
    return sep.join(segs).encode() + sep.encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oru())
def test_generated_messages_parse_and_match_the_reference(raw: bytes) -> None:
    for m in parse_frame(raw):
        assert m.error is None
        assert m.extraction is not None

        assert m.extraction == extract_reference(m.text)
        for o in m.extraction.observations:
            assert 0 <= o.anc <= 100_000 or o.status.value in "DW"


SEEDS = [e.raw for e in expected_table() if e.raw]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=4)), max_size=6), st.integers(0, 5000))
def test_mutated_messages_never_raise(seed: bytes, edits: list, cut: int) -> None:
    data = bytearray(seed)
    for pos, blob in edits:
        p = pos % (len(data) + 1)
        data[p : p + len(blob)] = blob
    data = data[: max(1, cut % (len(data) + 1))] if cut % 3 == 0 else data

    results = parse_frame(bytes(data))

    assert results, "every frame yields at least one answer"
    for m in results:
        assert (m.error is None) != (m.extraction is None) or m.is_ack
