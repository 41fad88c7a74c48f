"""ORU^R01 -> typed ANC observations, or a typed rejection (pure; no sockets, no logging).

Per OBR group: blood only; LOINC first (both CE triplets), then local codes; unit checked
against the code's role; converted to cells/uL; derived from WBC x % when no absolute count;
comparators kept conservatively. What cannot be used becomes an ``Issue`` (data quality),
never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from rems_ingest.core.model import PatientKey, ResultStatus
from rems_ingest.hl7v2 import codes as codes_mod
from rems_ingest.hl7v2.codes import PERCENT, CodeMap, Role, label_disagrees, resolve_unit
from rems_ingest.hl7v2.errors import (
    DataTypeError,
    RequiredFieldMissing,
    UnsupportedEvent,
    UnsupportedMessageType,
    UnsupportedProcessingId,
    UnsupportedVersion,
)
from rems_ingest.hl7v2.message import Delimiters, delimiters_of, segments, unescape
from rems_ingest.hl7v2.values import parse_numeric, parse_ts

SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
# Longest identifiers the store holds (the same on SQLite and PostgreSQL): a longer one is
# rejected at parse time (AR naming the field), never a store error answered AE for ever.
MAX_ID_CHARS = 199  # PID-3 CX.1 and CX.4, OBR-3/2 EI.1
MAX_CODE_CHARS = 80  # OBX-3 CE.1
MAX_SUB_ID_CHARS = 20  # OBX-4
MAX_ANC = Decimal(100_000)
_STATUS = {
    "F": ResultStatus.FINAL,
    "U": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "P": ResultStatus.PRELIMINARY,
    "R": ResultStatus.PRELIMINARY,
    "S": ResultStatus.PRELIMINARY,
    "I": ResultStatus.PRELIMINARY,
    "A": ResultStatus.CORRECTED,
    "V": ResultStatus.FINAL,
    "X": ResultStatus.CANNOT_OBTAIN,
    "D": ResultStatus.DELETED,
    "W": ResultStatus.WRONG,
}


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
class Observation:
    patient: PatientKey
    result_key: str
    anc: Decimal  # cells/uL
    status: ResultStatus
    observed_at: datetime
    code: str
    code_system: str
    original_value: str
    original_unit: str
    derived: bool = False
    censored: str = ""
    filler_order: str = ""
    wbc: Decimal | None = None  # WBC of the same order in cells/uL, if reported and usable


@dataclass(frozen=True, slots=True)
class Issue:
    """An ANC-related OBX that could not be used (becomes a data.quality alert, ERR severity W)."""

    patient: PatientKey | None
    code: int  # HL7 table 0357
    location: str
    reason: str
    enrolled_only: bool = False  # raise a data.quality alert only for an enrolled patient (ERR W always)


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


def check_header(h: Header, processing_ids: Iterable[str] = ("P",)) -> None:
    """Original-mode order: MSH-9, MSH-12, MSH-11 first; AR for what we do not handle."""
    if not h.control_id:
        raise RequiredFieldMissing("MSH-10 message control id is empty", "MSH^1^10")
    if h.message_type != "ORU":
        raise UnsupportedMessageType(f"unsupported message type {h.message_type or '(empty)'}", "MSH^1^9")
    if h.trigger != "R01":
        raise UnsupportedEvent(f"unsupported event ORU^{h.trigger or '(empty)'}", "MSH^1^9")
    if h.version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(f"unsupported HL7 version {h.version or '(empty)'}", "MSH^1^12")
    if h.processing_id not in set(processing_ids):
        raise UnsupportedProcessingId(f"processing id {h.processing_id or '(empty)'} is not accepted", "MSH^1^11")


# ---------------------------------------------------------------- extraction


@dataclass
class _Row:
    index: int
    role: Role
    code: str
    system: str
    label: str
    value_type: str
    value: str
    unit: str
    status: str
    obs_time: str
    sub_id: str


@dataclass
class _Group:
    patient: PatientKey | None
    patient_issue: str
    filler: str
    obr_time: str
    obr_status: str
    obr_index: int
    rows: list[_Row] = field(default_factory=list)
    blood_count_order: bool = False  # OBR-4 names a CBC / differential


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


def extract_segments(segs: Sequence[SegmentView], d: Delimiters, code_map: CodeMap | None = None, header: Header | None = None) -> Extraction:
    """Core of extraction over any tokenizer's segments (fast path or python-hl7 reference);
    ``header``: MSH already read from ``segs[0]`` by the caller."""
    cm = code_map or _DEFAULT_CODES
    classify_field = cm.field_classifier(d)
    header = header or read_header(segs[0], d)
    observations: list[Observation] = []
    issues: list[Issue] = []
    patient: PatientKey | None = None
    patient_issue = "no PID segment before the results"
    group: _Group | None = None
    obr_count = 0

    def flush() -> None:
        if group is not None and group.rows:
            _finish_group(group, header, d, observations, issues)
        elif group is not None and group.blood_count_order and group.patient is not None:
            issues.append(_anc_not_read(group))

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
            group = _Group(patient, patient_issue, unescape(filler, d), seg[7], seg[25].strip().upper(), obr_count, blood_count_order=codes_mod.is_blood_count_order(seg[4], d.component))
        elif name == "OBX":
            if group is None:  # OBX without an OBR (or after SPM in some feeds): keep it, key on MSH-10
                obr_count += 1
                group = _Group(patient, patient_issue, "", "", "", obr_count)
            role, code, system, label = classify_field(seg[3])
            if role is None:
                continue
            group.rows.append(
                _Row(
                    index=len(group.rows) + 1,
                    role=role,
                    code=code,
                    system=system,
                    label=label,
                    value_type=seg[2].strip().upper(),
                    value=seg[5].split(d.repetition)[0],
                    unit=unescape(seg[6].split(d.repetition)[0], d),
                    status=seg[11].strip().upper(),
                    obs_time=seg[14],
                    sub_id=seg[4].strip(),
                )
            )
    flush()
    return Extraction(header, tuple(observations), tuple(issues))


def _status(row: _Row, group: _Group) -> ResultStatus | None:
    code = row.status or (group.obr_status if group.obr_status in _STATUS else "F")
    return _STATUS.get(code)


_NEUTROPHIL_ROLES = frozenset({Role.ANC, Role.SEGS_ABS, Role.NEUT_PCT, Role.SEGS_PCT, Role.NEUT_FRACTION})
_BLOOD_COUNT_ROLES = frozenset({Role.WBC, Role.BANDS_ABS, Role.BANDS_PCT})


def _anc_not_read(g: _Group) -> Issue:
    return Issue(
        g.patient,
        103,
        f"OBR^{g.obr_index}^4",
        "blood count without a recognised neutrophil count: ANC not read (unknown code? map it in mllp.local_codes)",
        enrolled_only=True,
    )


def _check_limits(g: _Group) -> None:
    """Identifiers longer than the store holds: a permanent problem of this message (AR)."""
    p = g.patient
    if p is not None and (len(p.id) > MAX_ID_CHARS or len(p.authority) > MAX_ID_CHARS):
        raise DataTypeError(f"patient identifier or authority longer than {MAX_ID_CHARS} characters", "PID^1^3")
    if len(g.filler) > MAX_ID_CHARS:
        raise DataTypeError(f"filler order number longer than {MAX_ID_CHARS} characters", f"OBR^{g.obr_index}^3")
    for r in g.rows:
        if len(r.code) > MAX_CODE_CHARS:
            raise DataTypeError(f"observation code longer than {MAX_CODE_CHARS} characters", f"OBX^{r.index}^3")
        if len(r.sub_id) > MAX_SUB_ID_CHARS:
            raise DataTypeError(f"observation sub-id longer than {MAX_SUB_ID_CHARS} characters", f"OBX^{r.index}^4")


def _finish_group(g: _Group, h: Header, d: Delimiters, out: list[Observation], issues: list[Issue]) -> None:
    def loc(r: _Row) -> str:
        return f"OBX^{r.index}^5"

    rows = [r for r in g.rows if r.role is not Role.NOT_BLOOD]
    if not rows:
        return
    if g.patient is None:
        issues.append(Issue(None, 101, "PID^1^3", f"{g.patient_issue}: results not attached to any patient"))
        return
    _check_limits(g)
    if not any(r.role in _NEUTROPHIL_ROLES for r in rows):
        # a blood count (WBC or a differential, or a CBC order) whose ANC we could not read:
        # tell the lab in the ACK rather than file it silently (issue #13)
        if g.blood_count_order or any(r.role in _BLOOD_COUNT_ROLES for r in rows):
            issues.append(_anc_not_read(g))
        return
    for r in rows:
        if r.role in (Role.ANC, Role.SEGS_ABS, Role.NEUT_PCT) and label_disagrees(r.label):
            issues.append(Issue(g.patient, 103, f"OBX^{r.index}^3", f"code {r.code} is a neutrophil code but its label names another cell type"))
    rows = [r for r in rows if not (r.role in (Role.ANC, Role.SEGS_ABS, Role.NEUT_PCT) and label_disagrees(r.label))]
    observed = parse_ts(g.obr_time) or parse_ts(h.message_time)
    filler = g.filler or f"{h.control_id}/{g.obr_index}"
    if len(filler) > MAX_ID_CHARS + 8:
        raise DataTypeError(f"message control id longer than {MAX_ID_CHARS} characters (it keys results without a filler order number)", "MSH^1^10")

    def when(r: _Row) -> datetime | None:
        return parse_ts(r.obs_time) or observed

    def make(r: _Row, value: Decimal, derived: bool = False, censored: str = "", status: ResultStatus | None = None, code: str | None = None) -> None:
        st = status or _status(r, g)
        t = when(r)
        if st is None or st is ResultStatus.CANNOT_OBTAIN:
            return
        if t is None:
            issues.append(Issue(g.patient, 101, f"OBX^{r.index}^14", "no observation time in OBX-14, OBR-7 or MSH-7"))
            return
        c = code or r.code
        out.append(
            Observation(
                patient=g.patient,  # type: ignore[arg-type]
                result_key=f"{filler}|{c}|{r.sub_id}",
                anc=value,
                status=st,
                observed_at=t,
                code=c,
                code_system=r.system,
                original_value=r.value.strip(),
                original_unit=resolve_unit(r.unit, d.component)[1],
                derived=derived,
                censored=censored,
                filler_order=g.filler,
                wbc=order_wbc(),
            )
        )

    def order_wbc() -> Decimal | None:
        """The order's WBC in cells/uL for rules that use it (UK colours); silent when unusable."""
        for w in sorted(by_role.get(Role.WBC, ()), key=lambda w: codes_mod.WBC_PREFERENCE.index(w.code) if w.code in codes_mod.WBC_PREFERENCE else 99):
            if _status(w, g) not in (ResultStatus.FINAL, ResultStatus.CORRECTED, ResultStatus.PRELIMINARY):
                continue
            num = parse_numeric(w.value, w.value_type, d.component)
            factor = resolve_unit(w.unit, d.component)[0] if num is not None else None
            if num is not None and isinstance(factor, Decimal) and not num.comparator:
                return num.value * factor
        return None

    def count(r: _Row) -> tuple[Decimal, str] | None:
        """A #/volume value in cells/uL, or None with an issue recorded."""
        st = _status(r, g)
        if st in (ResultStatus.DELETED, ResultStatus.WRONG) and not r.value.strip():
            return Decimal(0), ""
        num = parse_numeric(r.value, r.value_type, d.component)
        if num is None:
            if st not in (ResultStatus.CANNOT_OBTAIN, None):
                issues.append(Issue(g.patient, 102, loc(r), f"{r.code} value is not a number"))
            return None
        factor, unit_text = resolve_unit(r.unit, d.component)
        if factor is None:
            issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code}: unknown unit {unit_text[:20]!r}" if unit_text else f"{r.code}: no unit"))
            return None
        if factor == PERCENT:
            issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code} is an absolute-count code but the unit is %"))
            return None
        assert isinstance(factor, Decimal)
        value = num.value * factor
        if num.comparator == "<":
            value -= Decimal("0.1")  # strictly below the bound: never rounds into a milder category
        if not (0 <= value <= MAX_ANC) and r.role is not Role.WBC:
            issues.append(Issue(g.patient, 102, loc(r), f"{r.code}: {value} cells/uL is not a plausible blood count"))
            return None
        if value < 0:
            return None
        return value, num.comparator

    def percent(r: _Row, fraction: bool = False) -> Decimal | None:
        num = parse_numeric(r.value, r.value_type, d.component)
        if num is None or num.comparator:
            if _status(r, g) not in (ResultStatus.CANNOT_OBTAIN, None):
                issues.append(Issue(g.patient, 102, loc(r), f"{r.code} percentage is not a plain number"))
            return None
        if fraction:
            return num.value * 100 if 0 <= num.value <= 1 else None
        if resolve_unit(r.unit, d.component)[0] != PERCENT:
            issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code} is a percentage code but the unit is not %"))
            return None
        return num.value if 0 <= num.value <= 100 else None

    by_role: dict[Role, list[_Row]] = {}
    for r in rows:
        by_role.setdefault(r.role, []).append(r)

    if Role.ANC in by_role:
        r = by_role[Role.ANC][0]
        got = count(r)
        if got is not None:
            make(r, got[0], censored=got[1])
        return
    if Role.SEGS_ABS in by_role:
        r = by_role[Role.SEGS_ABS][0]
        segs = count(r)
        if segs is None:
            return
        total = segs[0]
        if Role.BANDS_ABS in by_role:
            bands = count(by_role[Role.BANDS_ABS][0])
            total += bands[0] if bands else 0
        make(r, total, derived=True, censored=segs[1], code="SEGS+BANDS")
        return
    pct_rows = by_role.get(Role.NEUT_PCT) or by_role.get(Role.SEGS_PCT) or by_role.get(Role.NEUT_FRACTION)
    if not pct_rows:
        return
    pr = pct_rows[0]
    if Role.WBC not in by_role:
        issues.append(Issue(g.patient, 101, loc(pr), f"{pr.code} is a neutrophil percentage and no WBC was reported in the same order"))
        return
    wbc_rows = sorted(by_role[Role.WBC], key=lambda w: codes_mod.WBC_PREFERENCE.index(w.code) if w.code in codes_mod.WBC_PREFERENCE else 99)
    wbc = count(wbc_rows[0])
    pct = percent(pr, fraction=pr.role is Role.NEUT_FRACTION)
    if wbc is None or pct is None:
        return
    if pr.role is Role.SEGS_PCT and Role.BANDS_PCT in by_role:
        band_pct = percent(by_role[Role.BANDS_PCT][0])
        pct += band_pct or 0
    statuses = {_status(x, g) for x in (pr, wbc_rows[0])}
    status = ResultStatus.PRELIMINARY if ResultStatus.PRELIMINARY in statuses else _status(pr, g)
    make(pr, (wbc[0] * pct / 100).quantize(Decimal("0.1")), derived=True, status=status, code="DERIVED")


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


def extract(text: str, code_map: CodeMap | None = None) -> Extraction:
    """Fast path: one normalised message text -> Extraction (header not yet checked)."""
    d = delimiters_of(text)
    return extract_segments(segments(text, d), d, code_map)


Extractor = Callable[[str], Extraction]
