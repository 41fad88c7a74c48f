"""OBX-5 numbers (NM/SN/ST with comparators, decimal commas) and HL7 TS/DTM timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from rems_ingest.hl7v2.memo import remember_short

_NUM = re.compile(r"^\s*(<=|>=|<|>|=)?\s*([+-]?\d+(?:[.,]\d+)?|[+-]?[.,]\d+)\s*(?:[HL*]{1,2}|[HL]{2})?\s*$")


# WinPath sends a differential as "55.0%  4.40" under a count unit: the percentage, then the count
_PCT_THEN_COUNT = re.compile(r"^\s*[+-]?\d+(?:[.,]\d+)?\s*%\s+(\S+)\s*$")


def count_after_percent(value: str) -> str | None:
    """The count of a "55.0%  4.40" value (None for any other shape)."""
    m = _PCT_THEN_COUNT.match(value)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class Numeric:
    value: Decimal
    comparator: str  # "", "<", "<=", ">", ">="


def parse_numeric(value: str, value_type: str, component_sep: str = "^") -> Numeric | None:
    """A number from OBX-5, or None when it is text (DNR, TNP, SEE COMMENT, ----)."""
    v = value.strip()
    if not v or v == '""':
        return None
    if value_type.upper() == "SN" or component_sep in v:
        parts = v.split(component_sep)
        comparator = parts[0].strip()
        if len(parts) > 2 and parts[2].strip():
            return None  # ranges and ratios (^100^-^200, ^1^:^128) are not one ANC
        v = comparator + (parts[1] if len(parts) > 1 else "")
    m = _NUM.match(v)
    if not m:
        return None
    comparator = m.group(1) or ""
    try:
        number = Decimal(m.group(2).replace(",", "."))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return Numeric(number, "" if comparator == "=" else comparator)


_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?\s*([+-]\d{4})?$")


@remember_short(1024)  # one order repeats its times on every OBX; the result is immutable
def parse_ts(value: str) -> datetime | None:
    """HL7 TS/DTM ``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``; also ISO-like ``2022-06-15 15:52:41``.

    Without an offset the time is the sender's local time and stays naive.
    """
    v = value.strip().split("^", 1)[0]
    if not v:
        return None
    if "-" in v[:8] or "T" in v or ":" in v:
        try:
            return datetime.fromisoformat(v.replace(" ", "T"))
        except ValueError:
            return None
    m = _TS.match(v)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        dt = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), int((frac or "0").ljust(6, "0")[:6]))
    except ValueError:
        return None
    if off:
        sign = 1 if off[0] == "+" else -1
        dt = dt.replace(tzinfo=timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))))
    return dt
