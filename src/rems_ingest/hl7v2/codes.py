"""Which OBX is a blood ANC, a neutrophil %, a band count or a WBC (hl7.md section 5), and units.

Data, not logic: LOINC codes checked against hl7.md 5.1; local codes are configurable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from rems_ingest.hl7v2.memo import MAX_TEXT, remember_short
from rems_ingest.hl7v2.message import Delimiters, unescape


class Role(str, Enum):
    ANC = "anc"  # neutrophils #/volume, segs + bands
    SEGS_ABS = "segs_abs"  # segmented neutrophils #/volume (excludes bands)
    BANDS_ABS = "bands_abs"
    NEUT_PCT = "neut_pct"  # neutrophils % (automated: includes bands the analyzer counts)
    SEGS_PCT = "segs_pct"
    BANDS_PCT = "bands_pct"
    NEUT_FRACTION = "neut_fraction"  # 71676-1: decimal fraction, no unit
    WBC = "wbc"
    NOT_BLOOD = "not_blood"
    # a local neutrophil code labs use for the count and the percentage alike (WinPath NE,
    # SUPERLIS NEUT): the unit says which, and without a count or % unit it is not read
    NEUT_BY_UNIT = "neut_by_unit"


LOINC: dict[str, Role] = {
    "751-8": Role.ANC,
    "753-4": Role.ANC,
    "26499-4": Role.ANC,
    "752-6": Role.ANC,  # deprecated, still sent by old interfaces
    "768-2": Role.SEGS_ABS,
    "30451-9": Role.SEGS_ABS,
    "763-3": Role.BANDS_ABS,
    "26507-4": Role.BANDS_ABS,
    "30229-9": Role.BANDS_ABS,
    "770-8": Role.NEUT_PCT,
    "23761-0": Role.NEUT_PCT,
    "26511-6": Role.NEUT_PCT,
    "769-0": Role.SEGS_PCT,
    "26505-8": Role.SEGS_PCT,
    "764-1": Role.BANDS_PCT,
    "26508-2": Role.BANDS_PCT,
    "35332-6": Role.BANDS_PCT,
    "71676-1": Role.NEUT_FRACTION,
    "6690-2": Role.WBC,
    "26464-8": Role.WBC,
    "804-5": Role.WBC,
    "33256-9": Role.WBC,
    "12227-5": Role.WBC,
    "49498-9": Role.WBC,
    # body fluid / CSF neutrophils are not a blood ANC
    "32709-8": Role.NOT_BLOOD,
    "26502-5": Role.NOT_BLOOD,
    "754-2": Role.NOT_BLOOD,
    "758-3": Role.NOT_BLOOD,
    "35013-2": Role.NOT_BLOOD,
    "35014-0": Role.NOT_BLOOD,
    "35015-7": Role.NOT_BLOOD,
}

# Preferred WBC when several are reported: nRBC-corrected first (hl7.md 5.4).
WBC_PREFERENCE = ["33256-9", "12227-5", "6690-2", "26464-8", "804-5", "49498-9"]

DEFAULT_LOCAL_CODES: dict[str, Role] = {
    **{k: Role.ANC for k in ["ANC", "ABS NEUT", "ABSNEUT", "ABSNEU", "NEUTABS", "NEUT ABS", "NEUT#", "NEU#", "NE#", "NEUT #",
                              "NEUTRO ABS", "NEUTROPHILS, ABSOLUTE", "ABSOLUTE NEUTROPHILS", "ABSOLUTE NEUTROPHIL COUNT"]},
    **{k: Role.NEUT_PCT for k in ["NEUT%", "NEU%", "NE%", "NEUT %"]},
    **{k: Role.WBC for k in ["WBC", "WCC", "WBCC"]},
    # seen in UK WinPath and Queensland SUPERLIS feeds (interop corpus): a count when the unit is
    # one (x10^9/L), a percentage when it is %
    **{k: Role.NEUT_BY_UNIT for k in ["NEUT", "NE", "NEU", "NEUTROPHILS", "NEUTS"]},
}

# A neutrophil LOINC whose label names another cell type is suspect (3-part analyzers).
_OTHER_CELL = re.compile(r"\b(LYM|LYMPH|MON|MONO|EOS|BAS|BASO|MID|MXD|GRA|GRAN)", re.I)


@remember_short(1024)  # a feed repeats a handful of labels
def label_disagrees(label: str) -> bool:
    return bool(label) and bool(_OTHER_CELL.search(label)) and "NEUT" not in label.upper()


_MEMO_MAX = 4096


@dataclass(frozen=True, slots=True)
class CodeMap:
    """LOINC plus site-configured local codes."""

    local: dict[str, Role] = field(default_factory=lambda: dict(DEFAULT_LOCAL_CODES))
    # the unit a feed means for a local code when OBX-6 is empty (KCH sends NEUT "3.16" alone)
    units: dict[str, str] = field(default_factory=dict)
    # field_classifier() results by delimiter set, then by raw OBX-3 text: a feed repeats a few
    # dozen codes and every CBC carries ~10 OBX (bounded, emptied when full)
    memo: dict[Delimiters, dict[str, tuple[Role | None, str, str, str]]] = field(default_factory=dict, compare=False, repr=False)

    def field_classifier(self, d: Delimiters) -> Callable[[str], tuple[Role | None, str, str, str]]:
        """``classify`` of raw OBX-3 fields (first repetition, unescaped) under one delimiter set,
        remembered per text; looked up once per message, not hashed again for every OBX."""
        memo = self.memo.get(d)
        if memo is None:
            if len(self.memo) >= 16:  # a feed that changes its delimiters on every message
                self.memo.clear()
            memo = self.memo[d] = {}

        def classify_field(obx3: str) -> tuple[Role | None, str, str, str]:
            known = memo.get(obx3)
            if known is None:
                comps = [unescape(c, d) for c in obx3.split(d.repetition)[0].split(d.component)]
                # a bare '&' in a label splits sub-components: read the text back leniently
                known = self.classify([c.replace(d.subcomponent, "&") for c in comps])
                if len(obx3) <= MAX_TEXT:  # never pin an oversized field
                    if len(memo) >= _MEMO_MAX:
                        memo.clear()
                    memo[obx3] = known
            return known

        return classify_field

    def classify(self, comps: list[str]) -> tuple[Role | None, str, str, str]:
        """(role, code, coding system, label) from OBX-3's two CE triplets (LOINC may sit in either)."""
        c = comps + [""] * (6 - len(comps))
        for code, label, system in ((c[0], c[1], c[2]), (c[3], c[4], c[5])):
            if system.upper() in ("LN", "LOINC") and code.strip() in LOINC:
                return LOINC[code.strip()], code.strip(), "LN", label
        for code, label, system in ((c[0], c[1], c[2]), (c[3], c[4], c[5])):
            for candidate in (code, label):
                role = self.local.get(candidate.strip().upper())
                if role is not None:
                    return role, code.strip(), system or "L", label
        return None, c[0], c[2], c[1]


# ---------------------------------------------------------------- units

_UNIT_FACTORS: dict[str, Decimal] = {}
for _u in ["10*3/ul", "10^3/ul", "10e3/ul", "10(3)/ul", "10x3/ul", "10s3/ul", "k/ul", "k/mm3", "k/cumm", "thou/ul",
           "thousand/ul", "th/ul", "th/cumm", "th/mm3", "thou/mm3", "thous/ul", "1000/ul", "10^3/mm3", "10**3/mm**3",
           "10*3/mm3", "10*9/l", "10^9/l", "10e9/l", "10e+09/l", "10e+9/l", "10(9)/l", "g/l", "/nl", "10*9/1", "e9/l"]:
    _UNIT_FACTORS[_u] = Decimal(1000)
for _u in ["/ul", "/mm3", "/cumm", "/cmm", "ul", "mm3", "10*6/l", "10^6/l"]:
    _UNIT_FACTORS[_u] = Decimal(1)

PERCENT = "%"


def by_unit(role: Role, unit_field: str, component_sep: str = "^") -> Role:
    """A NEUT_BY_UNIT code read as the count or the percentage its unit says it is."""
    if role is not Role.NEUT_BY_UNIT:
        return role
    factor = resolve_unit(unit_field, component_sep)[0]
    if factor == PERCENT:
        return Role.NEUT_PCT
    return Role.ANC if factor is not None else role


def normalise_unit(unit: str) -> str:
    u = unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("mcl", "ul").replace(" ", "")
    u = u.replace("cells", "").replace("cell", "").replace("#", "")
    if u.startswith("x"):
        u = u[1:]
    return u


def unit_factor(unit: str) -> Decimal | str | None:
    """Multiplier to cells/uL, the string '%' for a percentage, or None if unknown."""
    u = normalise_unit(unit)
    if u in ("%", "percent", "pct"):
        return PERCENT
    return _UNIT_FACTORS.get(u)


@remember_short(1024)  # a feed sends a handful of unit spellings, on every OBX
def resolve_unit(field_value: str, component_sep: str = "^") -> tuple[Decimal | str | None, str]:
    """(factor, unit text) from OBX-6, leniently: senders write ``10^9/L`` unescaped, which
    splits into components, so try the whole field before its CE components."""
    comps = field_value.split(component_sep)
    for candidate in [field_value, *comps[:2]]:
        f = unit_factor(candidate)
        if f is not None:
            return f, candidate.strip()
    return None, comps[0].strip()


# OBR-4 orders that are a blood count: LOINC panels, and the words labs put in local codes
_CBC_LOINC = frozenset({"58410-2", "57021-8", "57782-5", "69742-5", "55429-5", "24317-0", "24318-8", "24359-2", "57022-6", "33255-1"})
_CBC_WORDS = ("CBC", "FBC", "BLOOD COUNT", "HEMOGRAM", "HAEMOGRAM", "DIFFERENTIAL")


def is_blood_count_order(field: str, component: str = "^") -> bool:
    """True when OBR-4 (universal service id) names a full blood count or a differential."""
    comps = [c.strip().upper() for c in field.split(component)[:6]]
    if any(c in _CBC_LOINC for c in comps):
        return True
    return any(w in c for c in comps for w in _CBC_WORDS)
