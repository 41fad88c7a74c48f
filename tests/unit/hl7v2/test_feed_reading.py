"""Reading real messages right (issue #25), on small messages built here: the ERR location names
the OBX as it stands in the message, a 2.3 ACK's warning says why, the draw is the collection
time, and a local neutrophil code is read as the count or the percentage its unit says."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from rems_ingest.feeds.registry import ConnectionRouter, Origin
from rems_ingest.feeds.settings import FeedSettings, registry
from rems_ingest.hl7v2.ack import ErrDetail, build_ack
from rems_ingest.hl7v2.parse import parse_frame


def _msg(*obx: str, version: str = "2.5.1", obr_time: str = "20260304070000", spm: str = "") -> bytes:
    segs = [f"MSH|^~\\&|LIS|LAB|REMS|PSYCH|20260304120000||ORU^R01|C1|P|{version}", "PID|1||P1^^^HOSP^MR", f"OBR|1||ACC1|CBC^Full blood count^L|||{obr_time}"]
    segs += [f"OBX|{n}|NM|{o}" for n, o in enumerate(obx, 1)]
    if spm:
        segs.append(f"SPM|1|||BLD|||||||P||||||{spm}")
    return ("\r".join(segs) + "\r").encode()


def _read(raw: bytes, **feed: object):  # type: ignore[no-untyped-def]
    reg = registry({"lab": FeedSettings(networks=["127.0.0.0/8"], facilities=["*"], authorities=["*"], **feed)} if feed else {}, {})  # type: ignore[arg-type]
    [m] = parse_frame(raw, router=ConnectionRouter(reg, Origin("127.0.0.1")))
    assert m.extraction is not None, m.error
    return m.extraction


def test_the_err_location_is_the_obx_as_it_stands_in_the_message() -> None:
    ex = _read(_msg("718-7^Hemoglobin^LN||13.5|g/dL|||||F", "777-3^Platelets^LN||250|10*3/uL|||||F", "751-8^Neutrophils^LN||2.1|furlongs|||||F"))
    assert [i.location for i in ex.issues] == ["OBX^3^6"]  # the third OBX, not the first ANC-related one


def test_a_v23_warning_says_why_in_err_1() -> None:
    [m] = parse_frame(_msg(version="2.3"))
    assert m.header is not None
    ack = build_ack(m.header, "AA", control_id="X", now=datetime(2026, 3, 4), errors=[ErrDetail(103, "Table value not found", "OBR^1^4", "W", "blood count without a recognised neutrophil count")])
    err = next(s for s in ack.split("\r") if s.startswith("ERR"))
    assert "Table value not found: blood count without a recognised neutrophil count" in err


def test_the_draw_is_spm17_then_obr7_and_the_result_time_is_kept() -> None:
    obx = "751-8^Neutrophils^LN||2.1|10*3/uL|||||F|||20260305093000"
    assert _read(_msg(obx, spm="20260304063000")).observations[0].observed_at == datetime(2026, 3, 4, 6, 30)
    o = _read(_msg(obx)).observations[0]
    assert (o.observed_at, o.resulted_at) == (datetime(2026, 3, 4, 7, 0), datetime(2026, 3, 5, 9, 30))
    assert _read(_msg(obx, obr_time="")).observations[0].observed_at == datetime(2026, 3, 5, 9, 30)  # only when both are empty
    assert _read(_msg(obx), draw_time="observation").observations[0].observed_at == datetime(2026, 3, 5, 9, 30)


def test_a_local_neutrophil_code_is_a_count_or_a_percentage_by_its_unit() -> None:
    count = _read(_msg("NEUT^Neutrophils^L||2.72|x 10\\S\\9/L|||||F")).observations[0]
    assert count.anc == Decimal("2720.00") and not count.derived
    pct = _read(_msg("WCC^White cell count^L||8.0|10*9/L|||||F", "NE^Neutrophils^L||55|%|||||F")).observations[0]
    assert pct.anc == Decimal("4400.0") and pct.derived
    unitless = _read(_msg("NEUT^Neutrophils^L||3.16||||||F"))
    assert not unitless.observations and unitless.issues[0].location == "OBX^1^6"  # never guessed
    assert _read(_msg("NEUT^Neutrophils^L||3.16||||||F"), units={"NEUT": "10*9/L"}).observations[0].anc == Decimal("3160.00")
