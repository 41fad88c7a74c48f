"""One order's OBX rows -> at most one ANC observation, or the issues that stopped it (pure).

Within an order the ANC is read in this order of preference: an absolute neutrophil count;
else absolute segmented (+ band) neutrophils; else WBC x a neutrophil percentage or fraction
of the same order. ``OrderReader`` holds the order while its rows are turned into counts,
percentages and the observation, so each step is a short method with a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from rems_ingest.core.model import PatientKey, ResultStatus
from rems_ingest.hl7v2 import codes as codes_mod
from rems_ingest.hl7v2.codes import PERCENT, Role, label_disagrees, resolve_unit
from rems_ingest.hl7v2.errors import DataTypeError
from rems_ingest.hl7v2.message import Delimiters
from rems_ingest.hl7v2.values import count_after_percent, parse_numeric, parse_ts

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
    resulted_at: datetime | None = None  # OBX-14: when the analyzer or lab produced the value


@dataclass(frozen=True, slots=True)
class Issue:
    """An ANC-related OBX that could not be used (becomes a data.quality alert, ERR severity W)."""

    patient: PatientKey | None
    code: int  # HL7 table 0357
    location: str
    reason: str
    enrolled_only: bool = False  # raise a data.quality alert only for an enrolled patient (ERR W always)


@dataclass
class ObxRow:
    """One OBX of an order that may bear on the ANC, as read off the wire."""

    index: int  # the OBX's occurrence in the message (ERR-2 segment sequence)
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
class Order:
    """One OBR (or OBX run without one) of one patient: where an ANC is looked for."""

    patient: PatientKey | None
    patient_issue: str
    filler: str
    obr_time: str
    obr_status: str
    obr_index: int
    rows: list[ObxRow] = field(default_factory=list)
    blood_count_order: bool = False  # OBR-4 names a CBC / differential
    spm_time: str = ""  # SPM-17 specimen collection time (2.5+), when the group has an SPM


def result_status(row: ObxRow, group: Order) -> ResultStatus | None:
    code = row.status or (group.obr_status if group.obr_status in _STATUS else "F")
    return _STATUS.get(code)


_NEUTROPHIL_ROLES = frozenset({Role.ANC, Role.SEGS_ABS, Role.NEUT_PCT, Role.SEGS_PCT, Role.NEUT_FRACTION, Role.NEUT_BY_UNIT})
_BLOOD_COUNT_ROLES = frozenset({Role.WBC, Role.BANDS_ABS, Role.BANDS_PCT})


def anc_not_read(g: Order) -> Issue:
    return Issue(
        g.patient,
        103,
        f"OBR^{g.obr_index}^4",
        "blood count without a recognised neutrophil count: ANC not read (unknown code? map it in mllp.local_codes)",
        enrolled_only=True,
    )


def check_limits(g: Order) -> None:
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


def _wbc_preference(w: ObxRow) -> int:
    return codes_mod.WBC_PREFERENCE.index(w.code) if w.code in codes_mod.WBC_PREFERENCE else 99


_DERIVING_ROLES = (Role.ANC, Role.SEGS_ABS, Role.NEUT_PCT)


class OrderReader:
    """Reads one order of one message; appends what it finds to ``out`` and ``issues``."""

    def __init__(self, g: Order, message_time: str, control_id: str, d: Delimiters, out: list[Observation], issues: list[Issue], draw_time: str = "collection") -> None:
        self.g, self.d, self.out, self.issues = g, d, out, issues
        self.message_time, self.control_id = message_time, control_id
        self.draw_time = draw_time  # "collection": SPM-17, OBR-7, then OBX-14; "observation": OBX-14 first
        self.by_role: dict[Role, list[ObxRow]] = {}

    def read(self) -> None:
        rows = self._usable_rows()
        if rows is None:
            return
        g = self.g
        self.collected = parse_ts(g.spm_time) or parse_ts(g.obr_time)
        self.filler = g.filler or f"{self.control_id}/{g.obr_index}"
        if len(self.filler) > MAX_ID_CHARS + 8:
            raise DataTypeError(f"message control id longer than {MAX_ID_CHARS} characters (it keys results without a filler order number)", "MSH^1^10")
        for r in rows:
            self.by_role.setdefault(r.role, []).append(r)
        if Role.ANC in self.by_role:
            self._from_anc()
        elif Role.SEGS_ABS in self.by_role:
            self._from_segs_and_bands()
        else:
            self._from_percentage()

    def _usable_rows(self) -> list[ObxRow] | None:
        """The blood rows an ANC may be read from; an issue for each reason one cannot be."""
        g = self.g
        rows = [r for r in g.rows if r.role is not Role.NOT_BLOOD]
        if not rows:
            return None
        if g.patient is None:
            self.issues.append(Issue(None, 101, "PID^1^3", f"{g.patient_issue}: results not attached to any patient"))
            return None
        check_limits(g)
        if not any(r.role in _NEUTROPHIL_ROLES for r in rows):
            # a blood count (WBC or a differential, or a CBC order) whose ANC we could not read:
            # tell the lab in the ACK rather than file it silently (issue #13)
            if g.blood_count_order or any(r.role in _BLOOD_COUNT_ROLES for r in rows):
                self.issues.append(anc_not_read(g))
            return None
        return self._without_suspect(rows)

    def _without_suspect(self, rows: list[ObxRow]) -> list[ObxRow]:
        """Drop (with an issue each) neutrophil rows whose label names another cell type, and
        local neutrophil codes whose unit says neither a count nor a percentage."""
        g = self.g
        mislabelled = [r for r in rows if r.role in _DERIVING_ROLES and label_disagrees(r.label)]
        for r in mislabelled:
            self.issues.append(Issue(g.patient, 103, f"OBX^{r.index}^3", f"code {r.code} is a neutrophil code but its label names another cell type"))
        unread = [r for r in rows if r.role is Role.NEUT_BY_UNIT]
        for r in unread:
            said = f"unit {r.unit.strip()[:20]!r}" if r.unit.strip() else "no unit"
            self.issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code}: {said}, so it cannot be told a count from a percentage (declare its unit in the feed's units)"))
        return [r for r in rows if r not in mislabelled and r not in unread]

    # ------------------------------------------------------------ the three ways to an ANC

    def _from_anc(self) -> None:
        r = self.by_role[Role.ANC][0]
        got = self._count(r)
        if got is not None:
            self._make(r, got[0], censored=got[1])

    def _from_segs_and_bands(self) -> None:
        r = self.by_role[Role.SEGS_ABS][0]
        segs = self._count(r)
        if segs is None:
            return
        total = segs[0]
        if Role.BANDS_ABS in self.by_role:
            bands = self._count(self.by_role[Role.BANDS_ABS][0])
            total += bands[0] if bands else 0
        self._make(r, total, derived=True, censored=segs[1], code="SEGS+BANDS")

    def _from_percentage(self) -> None:
        by_role, g = self.by_role, self.g
        pct_rows = by_role.get(Role.NEUT_PCT) or by_role.get(Role.SEGS_PCT) or by_role.get(Role.NEUT_FRACTION)
        if not pct_rows:
            return
        pr = pct_rows[0]
        if Role.WBC not in by_role:
            self.issues.append(Issue(g.patient, 101, _loc(pr), f"{pr.code} is a neutrophil percentage and no WBC was reported in the same order"))
            return
        wbc_row = sorted(by_role[Role.WBC], key=_wbc_preference)[0]
        wbc = self._count(wbc_row)
        pct = self._percent(pr, fraction=pr.role is Role.NEUT_FRACTION)
        if wbc is None or pct is None:
            return
        if pr.role is Role.SEGS_PCT and Role.BANDS_PCT in by_role:
            band_pct = self._percent(by_role[Role.BANDS_PCT][0])
            pct += band_pct or 0
        statuses = {result_status(x, g) for x in (pr, wbc_row)}
        status = ResultStatus.PRELIMINARY if ResultStatus.PRELIMINARY in statuses else result_status(pr, g)
        self._make(pr, (wbc[0] * pct / 100).quantize(Decimal("0.1")), derived=True, status=status, code="DERIVED")

    # ------------------------------------------------------------ values

    def _count(self, r: ObxRow) -> tuple[Decimal, str] | None:
        """A #/volume value in cells/uL, or None with an issue recorded."""
        g, d = self.g, self.d
        st = result_status(r, g)
        if st in (ResultStatus.DELETED, ResultStatus.WRONG) and not r.value.strip():
            return Decimal(0), ""
        num = parse_numeric(r.value, r.value_type, d.component)
        if num is None and (count := count_after_percent(r.value)) is not None:
            num = parse_numeric(count, r.value_type, d.component)
        if num is None:
            if st not in (ResultStatus.CANNOT_OBTAIN, None):
                self.issues.append(Issue(g.patient, 102, _loc(r), f"{r.code} value is not a number"))
            return None
        factor, unit_text = resolve_unit(r.unit, d.component)
        if factor is None:
            self.issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code}: unknown unit {unit_text[:20]!r}" if unit_text else f"{r.code}: no unit"))
            return None
        if factor == PERCENT:
            self.issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code} is an absolute-count code but the unit is %"))
            return None
        assert isinstance(factor, Decimal)
        value = num.value * factor
        if num.comparator == "<":
            value -= Decimal("0.1")  # strictly below the bound: never rounds into a milder category
        if not (0 <= value <= MAX_ANC) and r.role is not Role.WBC:
            self.issues.append(Issue(g.patient, 102, _loc(r), f"{r.code}: {value} cells/uL is not a plausible blood count"))
            return None
        if value < 0:
            return None
        return value, num.comparator

    def _percent(self, r: ObxRow, fraction: bool = False) -> Decimal | None:
        g, d = self.g, self.d
        num = parse_numeric(r.value, r.value_type, d.component)
        if num is None or num.comparator:
            if result_status(r, g) not in (ResultStatus.CANNOT_OBTAIN, None):
                self.issues.append(Issue(g.patient, 102, _loc(r), f"{r.code} percentage is not a plain number"))
            return None
        if fraction:
            return num.value * 100 if 0 <= num.value <= 1 else None
        if resolve_unit(r.unit, d.component)[0] != PERCENT:
            self.issues.append(Issue(g.patient, 103, f"OBX^{r.index}^6", f"{r.code} is a percentage code but the unit is not %"))
            return None
        return num.value if 0 <= num.value <= 100 else None

    def _order_wbc(self) -> Decimal | None:
        """The order's WBC in cells/uL for rules that use it (UK colours); silent when unusable."""
        d = self.d
        for w in sorted(self.by_role.get(Role.WBC, ()), key=_wbc_preference):
            if result_status(w, self.g) not in (ResultStatus.FINAL, ResultStatus.CORRECTED, ResultStatus.PRELIMINARY):
                continue
            num = parse_numeric(w.value, w.value_type, d.component)
            factor = resolve_unit(w.unit, d.component)[0] if num is not None else None
            if num is not None and isinstance(factor, Decimal) and not num.comparator:
                return num.value * factor
        return None

    def _make(self, r: ObxRow, value: Decimal, derived: bool = False, censored: str = "", status: ResultStatus | None = None, code: str | None = None) -> None:
        g = self.g
        st = status or result_status(r, g)
        resulted = parse_ts(r.obs_time)
        if self.draw_time == "observation":
            t = resulted or self.collected or parse_ts(self.message_time)
        else:
            t = self.collected or resulted or parse_ts(self.message_time)
        if st is None or st is ResultStatus.CANNOT_OBTAIN:
            return
        if t is None:
            self.issues.append(Issue(g.patient, 101, f"OBX^{r.index}^14", "no specimen time in SPM-17, OBR-7, OBX-14 or MSH-7"))
            return
        assert g.patient is not None  # read() returns early without one
        c = code or r.code
        self.out.append(
            Observation(
                patient=g.patient,
                result_key=f"{self.filler}|{c}|{r.sub_id}",
                anc=value,
                status=st,
                observed_at=t,
                code=c,
                code_system=r.system,
                original_value=r.value.strip(),
                original_unit=resolve_unit(r.unit, self.d.component)[1],
                derived=derived,
                censored=censored,
                filler_order=g.filler,
                wbc=self._order_wbc(),
                resulted_at=resulted,
            )
        )


def _loc(r: ObxRow) -> str:
    return f"OBX^{r.index}^5"
