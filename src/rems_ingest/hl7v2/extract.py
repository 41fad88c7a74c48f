"""ORU^R01 -> typed ANC observations, or a typed rejection (pure; no sockets, no logging).

Per OBR group: blood only; LOINC first (both CE triplets), then local codes; unit checked
against the code's role; converted to cells/uL; derived from WBC x % when no absolute count;
comparators kept conservatively. What cannot be used becomes an ``Issue`` (data quality),
never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rems_ingest.core.model import PatientKey
from rems_ingest.hl7v2 import codes as codes_mod
from rems_ingest.hl7v2.codes import CodeMap
from rems_ingest.hl7v2.errors import (
    RequiredFieldMissing,
    UnsupportedEvent,
    UnsupportedMessageType,
    UnsupportedProcessingId,
    UnsupportedVersion,
)
from rems_ingest.hl7v2.message import Delimiters, delimiters_of, segments, unescape
from rems_ingest.hl7v2.order import Issue, Observation, ObxRow, Order, OrderReader, anc_not_read

# 2.2 reads ORU^R01 the same way (UK WinPath and Mirth test feeds still send it)
SUPPORTED_VERSIONS = frozenset({"2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1"})


class SegmentView(Protocol):
    """What extraction needs of a segment: its name and raw fields (HL7 numbering)."""

    name: str

    def __getitem__(self, n: int) -> str: ...


@dataclass(frozen=True, slots=True)
class Header:
    delimiters: Delimiters
    sending_app: str
    sending_facility: str
    receiving_app: str
    receiving_facility: str
    message_time: str
    message_type: str
    trigger: str
    control_id: str
    processing_id: str
    version: str
    accept_ack: str
    app_ack: str

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack or self.app_ack)


@dataclass(frozen=True, slots=True)
class Extraction:
    header: Header
    observations: tuple[Observation, ...] = ()
    issues: tuple[Issue, ...] = ()


def read_header(msh: SegmentView, d: Delimiters) -> Header:
    def comp(value: str, i: int) -> str:
        parts = value.split(d.component)
        return parts[i].strip() if i < len(parts) else ""

    return Header(
        delimiters=d,
        sending_app=msh[3],
        sending_facility=msh[4],
        receiving_app=msh[5],
        receiving_facility=msh[6],
        message_time=msh[7],
        message_type=comp(msh[9], 0).upper(),
        trigger=comp(msh[9], 1).upper(),
        control_id=msh[10].strip(),
        processing_id=comp(msh[11], 0).upper(),
        version=comp(msh[12], 0),
        accept_ack=msh[15].strip().upper(),
        app_ack=msh[16].strip().upper(),
    )


def check_header(h: Header, processing_ids: Iterable[str] = ("P",), versions: Iterable[str] = SUPPORTED_VERSIONS) -> None:
    """Original-mode order: MSH-9, MSH-12, MSH-11 first; AR for what we do not handle.
    ``versions``: the HL7 versions accepted (a feed may narrow the supported set)."""
    if not h.control_id:
        raise RequiredFieldMissing("MSH-10 message control id is empty", "MSH^1^10")
    if h.message_type != "ORU":
        raise UnsupportedMessageType(f"unsupported message type {h.message_type or '(empty)'}", "MSH^1^9")
    if h.trigger != "R01":
        raise UnsupportedEvent(f"unsupported event ORU^{h.trigger or '(empty)'}", "MSH^1^9")
    if h.version not in SUPPORTED_VERSIONS or h.version not in set(versions):
        raise UnsupportedVersion(f"unsupported HL7 version {h.version or '(empty)'}", "MSH^1^12")
    if h.processing_id not in set(processing_ids):
        raise UnsupportedProcessingId(f"processing id {h.processing_id or '(empty)'} is not accepted", "MSH^1^11")


# ---------------------------------------------------------------- extraction


def _patient(pid: SegmentView, d: Delimiters) -> tuple[PatientKey | None, str]:
    """PID-3: the MR repetition, else the first with an identifier. Never PID-2/4: no guessing."""
    reps = [r for r in pid[3].split(d.repetition) if r.strip()]
    chosen = None
    for r in reps:
        comps = r.split(d.component)
        if len(comps) > 4 and comps[4].strip().upper() == "MR" and comps[0].strip():
            chosen = comps
            break
    if chosen is None:
        for r in reps:
            comps = r.split(d.component)
            if comps[0].strip():
                chosen = comps
                break
    if chosen is None:
        return None, "PID-3 has no patient identifier"
    ident = unescape(chosen[0].strip(), d)
    authority = ""
    if len(chosen) > 3 and chosen[3].strip():
        hd = chosen[3].split(d.subcomponent)
        authority = unescape((hd[0] or (hd[1] if len(hd) > 1 else "")).strip(), d)
    return PatientKey(ident, authority), ""


_DEFAULT_CODES = CodeMap()


def extract_segments(segs: Sequence[SegmentView], d: Delimiters, code_map: CodeMap | None = None, header: Header | None = None, draw_time: str = "collection") -> Extraction:
    """Core of extraction over any tokenizer's segments (fast path or python-hl7 reference);
    ``header``: MSH already read from ``segs[0]`` by the caller. ``draw_time``: "collection"
    dates a result by SPM-17, then OBR-7, then OBX-14 (monitoring intervals count from the
    draw); "observation" by OBX-14 first (a feed whose OBR-7 is not the draw)."""
    cm = code_map or _DEFAULT_CODES
    classify_field = cm.field_classifier(d)
    header = header or read_header(segs[0], d)
    observations: list[Observation] = []
    issues: list[Issue] = []
    patient: PatientKey | None = None
    patient_issue = "no PID segment before the results"
    group: Order | None = None
    obr_count = 0
    obx_count = 0

    def flush() -> None:
        if group is not None and group.rows:
            OrderReader(group, header.message_time, header.control_id, d, observations, issues, draw_time).read()
        elif group is not None and group.blood_count_order and group.patient is not None:
            issues.append(anc_not_read(group))

    for seg in segs[1:]:
        name = seg.name
        if name == "PID":
            flush()
            group = None
            patient, patient_issue = _patient(seg, d)
        elif name == "OBR":
            flush()
            obr_count += 1
            filler = seg[3].split(d.component)[0].strip() or seg[2].split(d.component)[0].strip()
            group = Order(patient, patient_issue, unescape(filler, d), seg[7], seg[25].strip().upper(), obr_count, blood_count_order=codes_mod.is_blood_count_order(seg[4], d.component))
        elif name == "SPM":
            if group is not None and not group.spm_time:
                group.spm_time = seg[17]
        elif name == "OBX":
            obx_count += 1
            if group is None:  # OBX without an OBR (or after SPM in some feeds): keep it, key on MSH-10
                obr_count += 1
                group = Order(patient, patient_issue, "", "", "", obr_count)
            role, code, system, label = classify_field(seg[3])
            if role is None:
                continue
            unit = unescape(seg[6].split(d.repetition)[0], d)
            if not unit.strip() and cm.units:
                unit = cm.units.get(code.upper(), "")
            group.rows.append(
                ObxRow(
                    index=obx_count,
                    role=codes_mod.by_unit(role, unit, d.component),
                    code=code,
                    system=system,
                    label=label,
                    value_type=seg[2].strip().upper(),
                    value=seg[5].split(d.repetition)[0],
                    unit=unit,
                    status=seg[11].strip().upper(),
                    obs_time=seg[14],
                    sub_id=seg[4].strip(),
                )
            )
    flush()
    # WinPath sends the FBC and its differential as two orders: a WBC-only order is no missing
    # ANC when another order of the message gave that patient one
    read_for = {o.patient for o in observations}
    issues = [i for i in issues if not (i.code == 103 and i.enrolled_only and i.patient in read_for)]
    return Extraction(header, tuple(observations), tuple(issues))


# ---------------------------------------------------------------- entry points


def split_messages(text: str) -> list[str]:
    """One frame may hold several messages or an FHS/BHS batch: split at each MSH."""
    parts: list[str] = []
    current: list[str] = []
    for seg in text.split("\r"):
        tag = seg[:3]
        if tag in ("FHS", "BHS", "BTS", "FTS"):
            continue
        if tag == "MSH" and current:
            parts.append("\r".join(current))
            current = []
        if seg.strip():
            current.append(seg)
    if current:
        parts.append("\r".join(current))
    return parts


def extract(text: str, code_map: CodeMap | None = None, draw_time: str = "collection") -> Extraction:
    """Fast path: one normalised message text -> Extraction (header not yet checked)."""
    d = delimiters_of(text)
    return extract_segments(segments(text, d), d, code_map, draw_time=draw_time)


Extractor = Callable[[str], Extraction]
