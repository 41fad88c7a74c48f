"""Optional strict structural validation with hl7apy (~18 ms a message: never on the hot path).

For an integration engineer onboarding a new feed: does the sender's ORU follow the standard's
structure for its version? The daemon itself accepts what real feeds send (hl7.md quirks).
"""

from __future__ import annotations

from dataclasses import dataclass

from rems_ingest.hl7v2.decode import decode
from rems_ingest.hl7v2.errors import Hl7Error
from rems_ingest.hl7v2.extract import split_messages


@dataclass(frozen=True, slots=True)
class Verdict:
    index: int  # message number in the file (1-based)
    valid: bool
    detail: str


def validate_strict(raw: bytes, default_charset: str = "utf-8") -> list[Verdict]:
    from hl7apy.consts import VALIDATION_LEVEL  # type: ignore[import-untyped]  # hl7apy ships no types
    from hl7apy.parser import parse_message  # type: ignore[import-untyped]

    try:
        text = decode(raw, default_charset).text
    except Hl7Error as exc:
        return [Verdict(1, False, exc.text)]
    out = []
    for n, message in enumerate(split_messages(text), 1):
        try:
            m = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
            m.validate()
            out.append(Verdict(n, True, f"{m.msh.msh_9.to_er7()} v{m.msh.msh_12.to_er7()}"))
        except Exception as exc:  # noqa: BLE001 - hl7apy raises many types; all mean "not valid"
            out.append(Verdict(n, False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))
    return out or [Verdict(1, False, "no MSH segment")]
