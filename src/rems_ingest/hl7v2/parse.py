"""One MLLP frame's payload -> per-message HL7 parse results (pure; the service decides and stores).

Not MLLP framing itself: that is ``adapters/mllp/framing.py`` (the VT ... FS CR envelope)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from rems_ingest.core.model import PatientKey
from rems_ingest.hl7v2.codes import CodeMap
from rems_ingest.hl7v2.decode import DEFAULT_MAX_SEGMENTS, decode
from rems_ingest.hl7v2.errors import Hl7Error, ReadFailed, Unparseable
from rems_ingest.hl7v2.extract import Extraction, Header, check_header, extract, extract_segments, read_header, split_messages
from rems_ingest.hl7v2.message import delimiters_of, segments


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A message ready for the service (``extraction``), or rejected (``error``), or an ACK to drop."""

    text: str
    charset: str
    header: Header | None
    extraction: Extraction | None = None
    error: Hl7Error | None = None
    is_ack: bool = False
    feed: str = ""  # the registered feed it came through ("" when refused before one was found)


class FeedReading(Protocol):
    """How a registered feed is read (feeds.registry.Feed): codes, draw time, versions."""

    @property
    def name(self) -> str: ...
    @property
    def code_map(self) -> CodeMap: ...
    @property
    def draw_time(self) -> str: ...
    @property
    def versions(self) -> frozenset[str]: ...


class FeedRouter(Protocol):
    """The feed a message comes through, or the rejection of its sender (feeds.registry)."""

    def __call__(self, header: Header) -> FeedReading | Hl7Error: ...

    def authorities(self, feed: FeedReading, authorities: Iterable[str]) -> Hl7Error | None: ...


def _header_only(text: str) -> Header | None:
    try:
        d = delimiters_of(text)
        first = segments(text.split("\r", 1)[0], d)
        return read_header(first[0], d) if first else None
    except Hl7Error:
        return None


def parse_frame(
    raw: bytes,
    *,
    default_charset: str = "utf-8",
    processing_ids: Iterable[str] = ("P",),
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    code_map: CodeMap | None = None,
    extractor: Callable[[str, CodeMap | None], Extraction] = extract,
    router: FeedRouter | None = None,
) -> list[ParsedMessage]:
    """Never raises for bad input: every problem becomes a ``ParsedMessage.error``."""
    try:
        decoded = decode(raw, default_charset, max_segments)
    except Hl7Error as exc:
        text = raw[:2048].decode("latin-1")
        return [ParsedMessage(text="", charset=default_charset, header=_header_only(text), error=exc)]
    texts = split_messages(decoded.text)
    if not texts:  # e.g. a batch envelope with no message in it: still answer
        return [ParsedMessage(text="", charset=decoded.charset, header=None, error=Unparseable("frame holds no MSH segment", "MSH^1"))]
    return [parse_text(t, decoded.charset, processing_ids=processing_ids, code_map=code_map, extractor=extractor, router=router) for t in texts]


def parse_text(
    text: str,
    charset: str,
    *,
    processing_ids: Iterable[str] = ("P",),
    code_map: CodeMap | None = None,
    extractor: Callable[[str, CodeMap | None], Extraction] = extract,
    router: FeedRouter | None = None,
) -> ParsedMessage:
    """One decoded message (live traffic, or a stored one being replayed); never raises.
    ``router``: the registered feeds; a message no feed may send is refused, and one that a
    feed may send is read the feed's way (its codes, draw time and versions)."""
    try:  # tokenized once: the header comes from the same segments the fast extractor reads
        d = delimiters_of(text)
        segs = segments(text, d)
        header = read_header(segs[0], d) if segs else None
    except Hl7Error:
        header = None
    if header is None:
        return ParsedMessage(text, charset, None, error=Unparseable("invalid or missing MSH segment", "MSH^1"))
    if header.message_type == "ACK":
        return ParsedMessage(text, charset, header, is_ack=True)
    feed: FeedReading | None = None
    if router is not None:
        routed = router(header)
        if isinstance(routed, Hl7Error):
            return ParsedMessage(text, charset, header, error=routed)
        feed, code_map = routed, routed.code_map
    try:
        if feed is None:
            check_header(header, processing_ids)
            extraction = extract_segments(segs, header.delimiters, code_map, header) if extractor is extract else extractor(text, code_map)
        else:
            check_header(header, processing_ids, feed.versions)
            extraction = extract_segments(segs, header.delimiters, code_map, header, feed.draw_time)
            refused = router.authorities(feed, {p.authority for p in _patients(extraction)}) if router is not None else None
            if refused is not None:
                return ParsedMessage(text, charset, header, error=refused, feed=feed.name)
    except Hl7Error as exc:
        return ParsedMessage(text, charset, header, error=exc, feed=feed.name if feed else "")
    except (RecursionError, ValueError, IndexError, ArithmeticError) as exc:
        return ParsedMessage(text, charset, header, error=Unparseable(f"message could not be read ({type(exc).__name__})"))
    except Exception as exc:  # noqa: BLE001 - a defect must still get an answer, never a dropped connection
        return ParsedMessage(text, charset, header, error=ReadFailed(f"message could not be processed ({type(exc).__name__}); kept for replay"))
    return ParsedMessage(text, charset, header, extraction=extraction, feed=feed.name if feed else "")


def _patients(ex: Extraction) -> set[PatientKey]:
    return {o.patient for o in ex.observations} | {i.patient for i in ex.issues if i.patient is not None}
