"""Who may send results, and how each lab feed is read (issue #25). Pure: no sockets, no clock.

A message is accepted only from a connection that matches a registered feed (its networks
and/or its TLS client-certificate identity), only with an MSH-3/MSH-4 that feed declares, and
only for patients of the identifier authorities it reports for. Anything else is a
``SenderRefused`` (AR, stored as REJECTED, never a state change): a certificate signed by the
hospital CA for the pharmacy, or a laptop on the lab network, cannot lift a hold.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from rems_ingest.hl7v2.codes import CodeMap
from rems_ingest.hl7v2.errors import Hl7Error
from rems_ingest.hl7v2.extract import SUPPORTED_VERSIONS, Header
from rems_ingest.hl7v2.parse import FeedReading

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ANY = "*"
LOOPBACK = ("127.0.0.0/8", "::1/128")


class SenderRefused(Hl7Error):
    """Not from a registered feed, or outside what the feed may send: AR, kept as REJECTED."""

    err_code = 207
    err_text = "Sender not authorized"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who is on the other end of an MLLP connection, as the listener saw it."""

    ip: str
    tls: bool = False
    certificate_names: tuple[str, ...] = ()  # subject CN and subjectAltName values of a verified client certificate
    fingerprint: str = ""  # sha256 of the client certificate (DER), lower-case hex

    @classmethod
    def from_peer(cls, peer: str) -> Origin:
        """A plain-TCP origin from "ip:port" (or "[v6]:port")."""
        host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 or peer.startswith("[") else peer
        return cls(host.strip("[]"))

    def describe(self) -> str:
        who = f"certificate {self.certificate_names[0]}" if self.certificate_names else ("TLS without a client certificate" if self.tls else "plain TCP")
        return f"{self.ip} ({who})"


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _matches(allowed: tuple[str, ...], value: str) -> bool:
    """An HD field (MSH-3/MSH-4, "NS^UID^TYPE") against a feed's list: the whole field or its
    namespace id, case-insensitively; "*" is any value, "" an empty field."""
    v = value.strip().upper()
    ns = v.split("^", 1)[0].strip()
    return any(a == ANY or a.upper() in (v, ns) for a in allowed)


@dataclass(frozen=True)
class Feed:
    """One registered lab feed: who it is, what it may send, how it is read, when it sleeps."""

    name: str
    networks: tuple[Network, ...] = ()
    certificate_names: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    applications: tuple[str, ...] = (ANY,)  # MSH-3
    facilities: tuple[str, ...] = (ANY,)  # MSH-4
    authorities: tuple[str, ...] = (ANY,)  # PID-3 CX.4 assigning authority ("" = none sent)
    code_map: CodeMap = field(default_factory=CodeMap)
    draw_time: str = "collection"  # or "observation" (OBX-14 first)
    versions: frozenset[str] = SUPPORTED_VERSIONS
    lab_hours: tuple[time, time] | None = None  # when the lab normally sends (site time zone)
    silent_after: timedelta = timedelta(hours=1)  # in lab hours (or always, without lab hours)
    silent_after_off_hours: timedelta = timedelta(hours=8)

    def accepts_connection(self, o: Origin) -> bool:
        if self.networks:
            addr = _address(o.ip)
            if addr is None or not any(addr in n for n in self.networks if n.version == addr.version):
                return False
        if self.certificate_names and not set(self.certificate_names) & set(o.certificate_names):
            return False
        return not (self.fingerprints and o.fingerprint.lower() not in self.fingerprints)

    def accepts_sender(self, h: Header) -> bool:
        return _matches(self.applications, h.sending_app) and _matches(self.facilities, h.sending_facility)

    def accepts_authority(self, authority: str) -> bool:
        return any(a == ANY or a.upper() == authority.strip().upper() for a in self.authorities)

    def silence_threshold(self, local_now: datetime) -> timedelta:
        """How long this feed may be quiet at ``local_now`` (site time) before it is silent."""
        if self.lab_hours is None:
            return self.silent_after
        start, end = self.lab_hours
        t = local_now.time()
        inside = start <= t < end if start <= end else (t >= start or t < end)
        return self.silent_after if inside else self.silent_after_off_hours


def loopback_feed(code_map: CodeMap | None = None) -> Feed:
    """What a daemon with no registered feed accepts: this host only, any facility."""
    return Feed("local", tuple(ipaddress.ip_network(n) for n in LOOPBACK), code_map=code_map or CodeMap())


@dataclass(frozen=True)
class Registry:
    feeds: tuple[Feed, ...]

    def by_name(self, name: str) -> Feed | None:
        return next((f for f in self.feeds if f.name == name), None)

    def resolve(self, origin: Origin | None, h: Header) -> Feed | SenderRefused:
        """The feed this message comes through. ``origin`` None: an operator's replay of a
        message stored before origins were kept (the sender is judged by MSH-3/MSH-4 alone)."""
        candidates = [f for f in self.feeds if origin is None or f.accepts_connection(origin)]
        if not candidates:
            return SenderRefused(f"sender not registered: no feed accepts connections from {origin.describe() if origin else '?'}", "MSH^1^4")
        for f in candidates:
            if f.accepts_sender(h):
                return f
        names = ", ".join(f.name for f in candidates)
        return SenderRefused(f"sending application/facility {h.sending_app or '(empty)'}/{h.sending_facility or '(empty)'} is not registered for feed {names}", "MSH^1^4")

    def check_authorities(self, feed: Feed, authorities: Iterable[str]) -> SenderRefused | None:
        for a in authorities:
            if not feed.accepts_authority(a):
                return SenderRefused(f"feed {feed.name} may not report for patients of authority {a or '(none)'}", "PID^1^3")
        return None


@dataclass(frozen=True)
class ConnectionRouter:
    """The registry as one connection sees it (what hl7v2.parse calls for each message)."""

    registry: Registry
    origin: Origin | None

    def __call__(self, header: Header) -> Feed | SenderRefused:
        return self.registry.resolve(self.origin, header)

    def authorities(self, feed: FeedReading, authorities: Iterable[str]) -> SenderRefused | None:
        known = self.registry.by_name(feed.name)
        if known is None:
            return SenderRefused(f"feed {feed.name} is not registered", "MSH^1^4")
        return self.registry.check_authorities(known, authorities)
