"""HL7 rejections, each carrying what the NAK needs: ACK code, table 0357 code, location, text.

Policy (documented in the README): permanent problems a resend cannot fix (unparseable,
unsupported type/version/processing id) get AR so senders stop resending; AE is reserved
for what a resend can fix (the store was unavailable).
"""

from __future__ import annotations


class Hl7Error(Exception):
    """A message we cannot accept. ``text`` never contains message content (PHI)."""

    ack_code = "AR"
    err_code = 207
    err_text = "Application internal error"

    def __init__(self, text: str, location: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.location = location


class Unparseable(Hl7Error):
    err_code = 100
    err_text = "Segment sequence error"


class RequiredFieldMissing(Hl7Error):
    err_code = 101
    err_text = "Required field missing"


class DataTypeError(Hl7Error):
    err_code = 102
    err_text = "Data type error"


class UnsupportedMessageType(Hl7Error):
    err_code = 200
    err_text = "Unsupported message type"


class UnsupportedEvent(Hl7Error):
    err_code = 201
    err_text = "Unsupported event code"


class UnsupportedProcessingId(Hl7Error):
    err_code = 202
    err_text = "Unsupported processing id"


class UnsupportedVersion(Hl7Error):
    err_code = 203
    err_text = "Unsupported version id"


class ReadFailed(Hl7Error):
    """A defect met while reading this message (not a fault of the message we can name): AR
    with ERR 207, and the message is kept so a replay can take it once the defect is fixed."""

    err_code = 207


class TooLarge(Hl7Error):
    err_code = 100
    err_text = "Message too large"


class StoreUnavailable(Hl7Error):
    """The message was fine but could not be stored: a resend can succeed."""

    ack_code = "AE"
    err_code = 207
    err_text = "Application internal error"
