"""Anchors of the access trail outside the store (issue #26): a hash chain alone shows an edit in
the middle, but not a deleted tail, a chain wiped whole, or one recomputed after an edit.

The chain head (its sequence number and hash) is written, periodically and on every
state-changing request, to the log and as a ``rems.audit`` message on the broker: places a
database administrator cannot rewrite. Optionally signed with Ed25519 (a key file the store never
sees), so an anchor cannot be forged either. ``check`` holds the store's chain against the
anchors a site kept: a deleted tail (an anchor beyond the chain's end), rewritten rows (the row
at an anchored sequence number has another hash), rows appended that claim to be older than the
last anchor yet lie beyond it (forged), and anchors whose signature does not hold.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rems_ingest.service.outbox import OutboxEntry

SCHEMA = "rems.audit.anchor/1"
ROUTING_KEY = "audit.anchor"  # bound to the rems.audit queue only (not an alert: rems.clinic takes alert.#) (adapters/amqp/topology.py)


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int  # how many entries the chain had (the head's position, 1-based)
    hash: str  # the head entry's hash
    at: str  # when the anchor was taken (ISO, UTC)
    signature: str = ""  # base64 Ed25519 over signed_bytes(), when a key is configured

    def signed_bytes(self) -> bytes:
        return f"{SCHEMA}|{self.seq}|{self.hash}|{self.at}".encode()

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": SCHEMA, "seq": self.seq, "hash": self.hash, "at": self.at}
        if self.signature:
            d["signature"] = self.signature
        return d


class Signer:
    """Ed25519 from a PEM private key file (``audit.anchor_signing_key_file``)."""

    def __init__(self, key_file: Path) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{key_file} is not an Ed25519 private key")
        self._key = key

    def sign(self, anchor: Anchor) -> Anchor:
        sig = base64.b64encode(self._key.sign(anchor.signed_bytes())).decode()
        return Anchor(anchor.seq, anchor.hash, anchor.at, sig)


def signature_holds(anchor: Anchor, public_key_file: Path) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(public_key_file.read_bytes())
    if not isinstance(key, Ed25519PublicKey) or not anchor.signature:
        return False
    try:
        key.verify(base64.b64decode(anchor.signature), anchor.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


def read_anchors(lines: Iterable[str]) -> list[Anchor]:
    """Anchors from JSON lines as they were kept: the anchor itself, the daemon's log line
    (event ``audit_anchor``), or the broker message's body; other lines are skipped."""
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        inner = obj.get("anchor")
        body: dict[str, Any] = inner if isinstance(inner, dict) else obj
        if body.get("schema") == SCHEMA and isinstance(body.get("seq"), int) and isinstance(body.get("hash"), str):
            out.append(Anchor(body["seq"], body["hash"], str(body.get("at", "")), str(body.get("signature", ""))))
    return out


@dataclass
class Findings:
    entries: int
    anchors: int
    broken_at: int | None = None  # the chain's own link breaks at this position
    deleted_tail: str = ""
    rewritten: list[int] = field(default_factory=list)
    forged: list[int] = field(default_factory=list)
    bad_signatures: int = 0
    unanchored: int = 0  # entries after the last anchor, written since it (not a finding)

    @property
    def holds(self) -> bool:
        return self.broken_at is None and not self.deleted_tail and not self.rewritten and not self.forged and not self.bad_signatures

    def lines(self) -> list[str]:
        out = []
        if self.broken_at is not None:
            out.append(f"the chain breaks at entry {self.broken_at}: an entry was changed or removed")
        if self.deleted_tail:
            out.append(self.deleted_tail)
        if self.rewritten:
            out.append(f"rewritten: the entries at {', '.join(map(str, self.rewritten[:10]))} differ from their anchors (edited and the chain recomputed)")
        if self.forged:
            out.append(f"forged appends: {len(self.forged)} entries after the last anchor claim to be older than it (from entry {self.forged[0]})")
        if self.bad_signatures:
            out.append(f"{self.bad_signatures} anchors whose signature does not hold (ignored)")
        return out


def check(chain: Sequence[tuple[str, str]], broken_at: int | None, anchors: Sequence[Anchor], public_key_file: Path | None = None) -> Findings:
    """``chain``: (hash, at) of every entry in order; ``broken_at``: where its own links break."""
    f = Findings(len(chain), len(anchors), broken_at)
    if public_key_file is not None:
        good = [a for a in anchors if signature_holds(a, public_key_file)]
        f.bad_signatures = len(anchors) - len(good)
        anchors = good
    if not anchors:
        return f
    last = max(anchors, key=lambda a: a.seq)
    if last.seq > len(chain):
        f.deleted_tail = f"deleted tail: the store holds {len(chain)} entries, an anchor of {last.at} saw {last.seq}"
    for a in anchors:
        if 0 < a.seq <= len(chain) and chain[a.seq - 1][0] != a.hash:
            f.rewritten.append(a.seq)
    after = list(range(last.seq + 1, len(chain) + 1))
    f.forged = [n for n in after if chain[n - 1][1] and chain[n - 1][1] < last.at]
    f.unanchored = len(after) - len(f.forged)
    f.rewritten.sort()
    return f


def anchor_entry(a: Anchor) -> OutboxEntry:
    """The anchor as an outbox row: published (with confirms, retried) as the message body
    itself, under a stable id, so a consumer keeping anchors de-duplicates a republish."""
    from datetime import datetime

    from rems_ingest.core.model import Alert, AlertKind, Severity
    from rems_ingest.service.outbox import OutboxEntry, encode

    aid = hashlib.sha256(a.signed_bytes()).hexdigest()
    alert = Alert(AlertKind.AUDIT_ANCHOR, f"anchor:{a.seq}:{a.at}", datetime.fromisoformat(a.at).date(), Severity.INFO, f"access trail head at entry {a.seq}")
    return OutboxEntry(aid, None, alert, ROUTING_KEY, encode(a.as_dict()), 0, a.at)
