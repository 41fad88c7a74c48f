"""Typed errors of the rules core; each says what is wrong in words a user can act on."""


class CoreError(Exception):
    """Base of every rules-core error."""


class PolicyError(CoreError):
    """A rules profile is missing a setting or has an impossible value."""


class InvalidInput(CoreError):
    """An ANC or event value the rules cannot use (negative, not a number, unknown population)."""


class EventNotAllowed(CoreError):
    """A prescriber/clinical event the patient's current state does not allow (HTTP 409)."""
