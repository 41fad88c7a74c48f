"""A minimal, fast ER7 tokenizer: segments and fields split once, components on demand.

This is the hot path (~µs per message); python-hl7 remains the reference it is tested
against (tests/unit/hl7v2/test_differential.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rems_ingest.hl7v2.errors import Unparseable


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


def delimiters_of(text: str) -> Delimiters:
    if len(text) < 8 or not text.startswith("MSH"):
        raise Unparseable("no MSH segment", "MSH^1")
    fs = text[3]
    enc = text[4:].split(fs, 1)[0]
    if len(enc) < 4 or fs.isalnum() or len(set(enc[:4] + fs)) != 5 or any(c.isalnum() or c in "\r\n " for c in enc[:4]):
        raise Unparseable("invalid MSH-1/MSH-2 encoding characters", "MSH^1^2")
    return _delimiters(fs + enc[:4])


@functools.lru_cache(maxsize=64)
def _delimiters(chars: str) -> Delimiters:
    """One shared instance per delimiter set: memo keys holding it compare by identity."""
    return Delimiters(*chars)


class Segment:
    """Fields of one segment, numbered as HL7 numbers them (``seg[3]`` is PID-3 / MSH-3)."""

    __slots__ = ("_d", "_fields", "name")

    def __init__(self, raw: str, d: Delimiters) -> None:
        parts = raw.split(d.field)
        self.name = parts[0].strip()
        if self.name == "MSH":
            # MSH-1 is the field separator itself: shift so seg[n] is MSH-n.
            parts = [parts[0], d.field] + parts[1:]
        self._fields = parts
        self._d = d

    def __getitem__(self, n: int) -> str:
        f = self._fields
        return f[n] if n < len(f) else ""

    def repetitions(self, n: int) -> list[str]:
        return self[n].split(self._d.repetition)

    def component(self, n: int, c: int, value: str | None = None) -> str:
        """Component ``c`` (1-based) of field ``n``'s first repetition (or of ``value``)."""
        v = self[n].split(self._d.repetition, 1)[0] if value is None else value
        comps = v.split(self._d.component)
        return comps[c - 1] if c - 1 < len(comps) else ""

    def components(self, value: str) -> list[str]:
        return value.split(self._d.component)


def segments(text: str, d: Delimiters) -> list[Segment]:
    out = []
    for raw in text.split("\r"):
        raw = raw.strip("\n")
        if raw.strip():
            out.append(Segment(raw, d))
    return out


def unescape(value: str, d: Delimiters) -> str:
    """Delimiter escapes only (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\); other sequences are dropped safely."""
    e = d.escape
    if e not in value:
        return value
    out = []
    i = 0
    n = len(value)
    table = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": e}
    while i < n:
        ch = value[i]
        if ch == e:
            j = value.find(e, i + 1)
            if j == -1:  # a lone escape char at the end: keep it literally
                out.append(value[i:])
                break
            seq = value[i + 1 : j]
            if seq in table:
                out.append(table[seq])
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def escape(text: str, d: Delimiters = Delimiters()) -> str:
    """Escape free text for MSA-3 / ERR-8 so it cannot break the ACK's structure."""
    e = d.escape
    text = text.replace(e, f"{e}E{e}")
    for ch, code in ((d.field, "F"), (d.component, "S"), (d.subcomponent, "T"), (d.repetition, "R")):
        text = text.replace(ch, f"{e}{code}{e}")
    return text.replace("\r", " ").replace("\n", " ")
