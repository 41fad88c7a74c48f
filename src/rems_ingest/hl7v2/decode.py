"""Bytes -> normalised HL7 text: MSH-18 charset, tolerant segment separators, size guards.

Never ASCII-strict (python-hl7's reader default hangs senders on a UTF-8 name, #54).
"""

from __future__ import annotations

from dataclasses import dataclass

from rems_ingest.hl7v2.errors import TooLarge, Unparseable

# HL7 table 0211 -> Python codec. "UNICODE" is UTF-8 in practice (analyzers, nHapi).
CHARSETS = {
    "": None,
    "ASCII": "utf-8",
    "ISO IR6": "utf-8",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "ISO IR100": "latin-1",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "WINDOWS-1252": "cp1252",
}

DEFAULT_MAX_SEGMENTS = 2000


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    charset: str  # the codec actually used, so the ACK can answer in it


def _msh18(raw: bytes) -> str:
    """Read MSH-18 from the first segment decoded as Latin-1 (round-trips every byte)."""
    at = raw.find(b"MSH", 0, 8192)
    head = raw[at : at + 4096].decode("latin-1") if at >= 0 else ""
    if not head.startswith("MSH") or len(head) < 5:
        return ""
    first = head.replace("\n", "\r").split("\r", 1)[0]
    fields = first.split(head[3])
    return fields[17].split(head[4] if len(head) > 4 else "~")[0].strip().upper() if len(fields) > 17 else ""


def decode(raw: bytes, default_charset: str = "utf-8", max_segments: int = DEFAULT_MAX_SEGMENTS) -> Decoded:
    """Decode one message's bytes and normalise separators to CR."""
    raw = raw.lstrip(b"\xef\xbb\xbf \t\r\n\x00")
    if not raw.startswith((b"MSH", b"FHS", b"BHS")):
        raise Unparseable("message does not start with an MSH segment", "MSH^1")
    declared = _msh18(raw)
    codec = CHARSETS.get(declared, default_charset if declared == "" else None)
    if codec is None:
        codec = default_charset
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        # Undeclared or mis-declared: UTF-8 failed, Windows-1252/Latin-1 never fails.
        codec = "latin-1"
        text = raw.decode(codec)
    if "\r" in text:
        text = text.replace("\r\n", "\r")
    else:
        text = text.replace("\n", "\r")  # only when there is no CR at all: NTE text may hold LF
    if text.count("\r") > max_segments:
        raise TooLarge(f"message has more than {max_segments} segments")
    return Decoded(text=text, charset=codec)
