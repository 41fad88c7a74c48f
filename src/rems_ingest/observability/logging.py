"""structlog setup: JSON lines in production, readable console in a terminal.

Our own events carry identifiers only (control ids, hashed patient refs). Library loggers
go through the same pipeline; exception text from parsers is never logged (it can carry a
whole message).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from structlog.types import Processor

_REDACT = ("raw", "message_text", "payload", "name", "dob")


def _redact(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _REDACT:
        if key in event:
            event[key] = "[redacted]"
    return event


def _dumps(event: dict[str, object], **_: object) -> str:
    """One log line per message is on the hot path: orjson, with str() for anything exotic."""
    return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure(fmt: str = "json", level: str = "INFO") -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer = structlog.processors.JSONRenderer(serializer=_dumps) if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=shared))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for noisy in ("aio_pika", "aiormq", "sqlalchemy", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
_DATE_SHAPE = re.compile(r"(1[89]|20)\d\d-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])")


def loggable_id(value: str) -> str:
    """An identifier taken from a message that did not parse, fit to log: the fields of such a
    message may be shifted, so what sits in MSH-10 can be a birth date or a name. Only an
    id-shaped value (letters, digits, ``._-``, with a digit, at most 40) that is not a date is
    kept; anything else is logged as ``"<withheld>"``."""
    v = value.strip()
    if _ID_SHAPE.fullmatch(v) and any(c.isdigit() for c in v) and not _DATE_SHAPE.fullmatch(v):
        return v
    return "<withheld>" if v else ""
