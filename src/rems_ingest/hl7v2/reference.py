"""Reference extraction through python-hl7's parser (slow, ~0.7 ms/message, but the standard).

The fast tokenizer in ``message.py`` must produce exactly what this produces; the
differential test runs both over every fixture and over generated messages.
"""

from __future__ import annotations

import hl7  # type: ignore[import-untyped]  # python-hl7 ships no types

from rems_ingest.hl7v2.codes import CodeMap
from rems_ingest.hl7v2.errors import Unparseable
from rems_ingest.hl7v2.extract import Extraction, extract_segments
from rems_ingest.hl7v2.message import Delimiters


class _Seg:
    __slots__ = ("_seg", "name")

    def __init__(self, seg: hl7.Segment) -> None:
        self._seg = seg
        self.name = str(seg[0]).strip()

    def __getitem__(self, n: int) -> str:
        return str(self._seg[n]) if n < len(self._seg) else ""


def extract_reference(text: str, code_map: CodeMap | None = None) -> Extraction:
    try:
        msg = hl7.parse(text)
    except Exception as exc:  # noqa: BLE001 - python-hl7 raises bare AssertionError/IndexError on hostile input
        raise Unparseable(f"python-hl7 could not parse the message ({type(exc).__name__})") from None
    segs = [_Seg(s) for s in msg if str(s[0]).strip()]
    seps = msg.separators if hasattr(msg, "separators") else "\r|~^&"
    enc = str(msg.segments("MSH")[0][2])
    d = Delimiters(field=seps[1] if len(seps) > 1 else "|", component=enc[0], repetition=enc[1], escape=enc[2], subcomponent=enc[3])
    return extract_segments(segs, d, code_map)
