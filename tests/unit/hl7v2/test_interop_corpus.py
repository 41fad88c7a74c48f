"""Every blood count in ../shared/interop-corpus/ (real messages from public repositories, never
copied here) read the way a lab's feed registration says, against the ANC and draw time worked
out by hand from each message (issue #25). The draw is the collection time: SPM-17, then OBR-7,
then OBX-14 only when both are empty (then MSH-7); the result time (OBX-14) is kept beside it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from rems_ingest.feeds.settings import FeedSettings, registry
from rems_ingest.hl7v2.parse import parse_frame

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "interop-corpus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/interop-corpus/ is not here")

# (file, patient id, authority, ANC cells/uL, draw time as the message states it, status).
# Worked out from the OBX/OBR/SPM lines: e.g. L01 Quest: 751-8 "4083 cells/uL", OBR-7
# 20220104104200 (OBX-14 20220106011000 is when it was resulted, 38 h later); L05 WinPath:
# NE "55.0%  4.40" x10^9/L -> 4,400, OBR-7 201411121600; L11 KCH: NEUT "3.16" with no unit
# (the feed declares 10*9/L), OBR-7 200911111841 (OBX-14 is the next afternoon).
EXPECTED = [
    ("A07_humacount5d_interface_manual_format.hl7", "TEST-0001", "", "4250", "2026-09-07T11:55:00", "F"),
    ("A08_mindray_5part_capture_cyrillic.hl7", "ppid", "", "3940", "2024-05-29T13:33:28", "F"),
    ("L01_quest_cbc_with_diff_5_orders.hl7", "HL136672P", "", "4083", "2022-01-04T10:42:00", "F"),
    ("L02_mirth_v22_cbc_cmp_many_orders.hl7", "1424589", "URMC", "3800", "2010-06-04T11:44:00", "F"),
    ("L03_mirth_batch_adt_a40_then_oru.hl7", "12345", "MIE", "4760", "2012-04-10T16:02:27", "F"),
    ("L04_mirth_oru_wbc_per_nl_neut_pct.hl7", "12345", "MIE", "4760", "2012-04-10T16:02:27", "F"),
    ("L05_uclh_winpath_fbc_and_differential.hl7", "50031772", "", "4400", "2014-11-12T16:00:00", "F"),
    ("L06_uclh_winpath_differential_plus_chemistry.hl7", "40803204", "", "3020", "2013-07-24T16:41:00", "F"),
    ("L09_rfh_winpath_fbc_neut_local_code.hl7", "20403706", "REFHOSP", "5500", "2016-09-20T14:56:00", "F"),
    ("L11_kch_fbc_tx_values_no_units.hl7", "Z999990", "PAS Number", "3160", "2009-11-11T18:41:00", "F"),
    ("L12_qld_superlis_fbc_cab.hl7", "123456", "PCH", "2720", "2014-03-02T22:40:00", "F"),
    ("L13_qld_superlis_fbc_preliminary_R.hl7", "123456", "PCH", "8670", "2014-03-02T23:10:00", "P"),
    ("L14_qld_superlis_fbc_leukocytosis_comment.hl7", "123456", "PCH", "36570", "2014-03-02T22:30:00", "F"),
    ("L15_qld_superlis_fbc_tgh.hl7", "123456", "PCH", "8590", "2014-03-02T22:50:00", "F"),
    ("L16_qld_superlis_fbc_redl.hl7", "123456", "PCH", "4030", "2014-03-02T22:15:00", "F"),
    ("L18_qld_superlis_fbc_rbwh.hl7", "123456", "PCH", "7090", "2014-03-02T23:20:00", "F"),
    ("L19_qld_superlis_fbc_rbwh_resent_with_troponin.hl7", "123456", "PCH", "7090", "2014-03-02T23:20:00", "F"),
    ("L20_qld_superlis_fbc_ips_high.hl7", "123456", "PCH", "8390", "2014-03-02T23:30:00", "F"),
    ("L21_qld_superlis_fbc_gch_crp.hl7", "123456", "PCH", "2890", "2014-03-02T22:55:00", "F"),
    ("L22_qld_superlis_fbc_redl_duplicate.hl7", "123456", "PCH", "4030", "2014-03-02T22:15:00", "F"),
    ("L23_qld_superlis_fbc_preliminary_resent.hl7", "123456", "PCH", "8670", "2014-03-02T23:10:00", "P"),
    ("L24_qld_superlis_fbc_nam_resent.hl7", "123456", "PCH", "36570", "2014-03-02T22:30:00", "F"),
    ("L25_qld_superlis_fbc_with_blood_culture_prelim.hl7", "123456", "PCH", "3550", "2014-03-02T23:00:00", "F"),
    ("S01_nist_lri_ng_cbc_fhirconverter.hl7", "PATID1234", "NIST MPI", "58000", "2011-01-03T14:34:28-08:00", "F"),
    # OBR-7 empty (the time sits one field late, in OBR-8), no SPM, no OBX-14: MSH-7
    ("S09_openelis_sysmex_xn_fixture.hl7", "PAT004", "HOSPITAL", "5382", "2026-02-01T15:00:00", "F"),
]
# the one thing a site declares for its lab in the corpus: KCH sends its NEUT count without a unit
KCH = FeedSettings(networks=["127.0.0.0/8"], facilities=["*"], authorities=["*"], units={"NEUT": "10*9/L"})


def _read(name: str, feed: FeedSettings | None) -> list:  # type: ignore[type-arg]
    from rems_ingest.feeds.registry import ConnectionRouter, Origin

    reg = registry({"lab": feed} if feed else {}, {})
    router = ConnectionRouter(reg, Origin("127.0.0.1"))
    # the NIST sample is sent with processing id T (a test system): read as a site accepting T would
    return [o for m in parse_frame((CORPUS / name).read_bytes(), router=router, processing_ids=("P", "T")) if m.extraction for o in m.extraction.observations]


@pytest.mark.parametrize(("name", "pid", "authority", "anc", "drawn", "status"), EXPECTED, ids=[e[0][:3] for e in EXPECTED])
def test_each_corpus_blood_count_yields_the_anc_and_draw_time_read_by_hand(name: str, pid: str, authority: str, anc: str, drawn: str, status: str) -> None:
    obs = _read(name, KCH)
    assert len(obs) == 1, [(o.patient, o.anc) for o in obs]
    o = obs[0]
    assert (o.patient.id, o.patient.authority) == (pid, authority)
    assert o.anc == Decimal(anc)
    assert o.observed_at == datetime.fromisoformat(drawn)
    assert o.status.value == status


def test_out_of_the_box_every_named_blood_count_but_one_unitless_local_code_is_read() -> None:
    """With no site configuration at all (the loopback feed): 24 of 25. KCH's NEUT has no unit,
    so it could be a count or a percentage: it is reported (ERR 103), never guessed."""
    read = [e for e in EXPECTED if len(_read(e[0], None)) == 1]
    assert len(read) == 24 and {e[0] for e in EXPECTED} - {e[0] for e in read} == {"L11_kch_fbc_tx_values_no_units.hl7"}


def test_messages_without_a_named_patient_or_a_neutrophil_count_yield_no_anc() -> None:
    """Analyzer captures with an empty PID-3, WBC-only counts, a cancelled FBC, percentages
    whose WBC is in another order, orders and queries: nothing is invented."""
    listed = {e[0] for e in EXPECTED}
    for f in sorted(CORPUS.glob("*.hl7")):
        if f.name not in listed:
            assert _read(f.name, KCH) == [], f.name


def test_the_result_time_is_kept_beside_the_draw_time() -> None:
    o = _read("L01_quest_cbc_with_diff_5_orders.hl7", KCH)[0]
    assert o.resulted_at == datetime(2022, 1, 6, 1, 10)
