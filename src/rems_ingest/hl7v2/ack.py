"""ACK/NAK building (hl7.md section 3): swap sender/receiver, MSA-2 = MSH-10, ERR by version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rems_ingest.hl7v2.extract import Header
from rems_ingest.hl7v2.message import Delimiters, escape

_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


@dataclass(frozen=True, slots=True)
class ErrDetail:
    code: int  # HL7 table 0357
    text: str  # table text, e.g. "Required field missing"
    location: str = ""  # "PID^1^3"
    severity: str = "E"  # E error, W warning, I information
    message: str = ""  # ERR-8 user message (never PHI)


def commit_code(code: str) -> str:
    """The enhanced-mode accept (commit) code for an original-mode code: AA -> CA, ..."""
    return _ENHANCED.get(code, code)


def wants(ack_type: str, code: str, default: bool = True) -> bool:
    """HL7 table 0155 for MSH-15/16: AL always, NE never, ER only on error/reject, SU only on success."""
    t = ack_type.strip().upper()
    if t == "NE":
        return False
    if t == "ER":
        return code not in ("AA", "CA")
    if t == "SU":
        return code in ("AA", "CA")
    if t == "AL":
        return True
    return default


_last_ts: tuple[tuple[int, object], str] = ((0, None), "")


def _ts(now: datetime) -> str:
    """HL7 TS with offset; formatted once per second (strftime showed up in the profile)."""
    global _last_ts
    key = (int(now.timestamp()), now.utcoffset())
    cached_key, text = _last_ts
    if key != cached_key:
        text = now.strftime("%Y%m%d%H%M%S") + now.strftime("%z")
        _last_ts = (key, text)
    return text


def build_ack(
    header: Header | None,
    code: str,
    *,
    control_id: str,
    now: datetime,
    text: str = "",
    errors: Sequence[ErrDetail] = (),
    application: str = "REMS_INGEST",
    facility: str = "",
    commit: bool = True,
) -> str:
    """One ACK message (segments joined by CR, no MLLP framing).

    Enhanced mode (MSH-15/16 valued) answers with the commit codes CA/CE/CR; ``commit=False``
    builds the enhanced-mode application acknowledgement (AA/AE/AR) instead.
    """
    d = header.delimiters if header else Delimiters()
    if header and header.enhanced and commit:
        code = commit_code(code)
    version = header.version if header and header.version else "2.5.1"
    segs = [_msh(header, d, version, control_id, now, application, facility)]
    msa = ["MSA", code, header.control_id if header else ""]
    if text:
        msa.append(escape(text, d))
    segs.append(d.field.join(msa))
    modern = version not in ("2.3", "2.3.1", "2.4")
    segs += [_err(e, d, modern) for e in errors]
    return "\r".join(segs) + "\r"


def _msh(header: Header | None, d: Delimiters, version: str, control_id: str, now: datetime, application: str, facility: str) -> str:
    """The ACK's MSH: sender and receiver swapped, the sender's version and processing id."""
    cs = d.component
    trigger = header.trigger if header and header.trigger else "R01"
    msg_type = f"ACK{cs}{trigger}" if version.startswith("2.3") else f"ACK{cs}{trigger}{cs}ACK"
    if header is None:
        sender = (application, facility, "", "", "P")
    else:
        sender = (
            header.receiving_app or application,
            header.receiving_facility or facility,
            header.sending_app,
            header.sending_facility,
            header.processing_id or "P",
        )
    enc = f"{d.component}{d.repetition}{d.escape}{d.subcomponent}"
    msh = ["MSH", enc, *sender[:4], _ts(now), "", msg_type, control_id, sender[4], version]
    return d.field.join(msh)


def _err(e: ErrDetail, d: Delimiters, modern: bool) -> str:
    """ERR in the v2.5 layout (location, code, severity, text), or the v2.3/2.4 ERR-1."""
    cs = d.component
    if modern:
        table = f"{e.code}{cs}{escape(e.text, d)}{cs}HL70357"
        err = ["ERR", "", e.location.replace("^", cs), table, e.severity, "", "", "", escape(e.message, d)]
    else:
        loc = e.location.split("^") + ["", "", ""]
        sub = d.subcomponent
        # 2.3/2.4 have no ERR-8: the reason rides in the coded element's text ("Table value not
        # found" alone does not tell a lab which code to map)
        words = f"{e.text}: {e.message}"[:200] if e.message else e.text
        eld = cs.join(loc[:3] + [f"{e.code}{sub}{escape(words, d)}{sub}HL70357"])
        err = ["ERR", eld]
    return d.field.join(err).rstrip(d.field)
