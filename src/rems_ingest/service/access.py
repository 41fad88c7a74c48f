"""Who may do what (issue #15): identities, roles, the permissions each role grants, API tokens
and the tamper-evident access trail.

An ``Identity`` comes from an API token (this module) or an OIDC bearer JWT (adapters/http/
identity.py); both resolve to a subject, roles and an optional pharmacy scope. The HTTP edge
asks ``allowed(identity, permission)`` for each route; the table below is the whole policy.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from rems_ingest.core.errors import InvalidInput
from rems_ingest.core.model import PatientKey
from rems_ingest.service.audit_anchor import Anchor, Findings, Signer, anchor_entry, check
from rems_ingest.service.ports import Repositories, UnitOfWork

log = structlog.get_logger("rems_ingest.audit")

TOKEN_PREFIX = "rems_"
GENESIS = "0" * 64  # the "previous hash" of the first row of the access trail


class Role(StrEnum):
    PHARMACY = "pharmacy"  # dispense check and status (its own pharmacy's patients if scoped)
    PRESCRIBER = "prescriber"  # clinical events; override and rechallenge only by this role
    CLINIC = "clinic"  # enroll, import, read
    INTEGRATION = "integration"  # replay, reload rules, sweeps, message listing
    AUDITOR = "auditor"  # read the access trail


class Permission(StrEnum):
    READ_PATIENT = "patient.read"
    CHECK_DISPENSE = "dispense.check"
    ENROLL = "patient.enroll"
    RECORD_EVENT = "event.record"
    RUN_SWEEP = "sweep.run"
    RELOAD_RULES = "rules.reload"
    READ_AUDIT = "audit.read"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.PHARMACY: frozenset({Permission.READ_PATIENT, Permission.CHECK_DISPENSE}),
    Role.PRESCRIBER: frozenset({Permission.READ_PATIENT, Permission.CHECK_DISPENSE, Permission.RECORD_EVENT}),
    Role.CLINIC: frozenset({Permission.READ_PATIENT, Permission.CHECK_DISPENSE, Permission.ENROLL}),
    Role.INTEGRATION: frozenset({Permission.RUN_SWEEP, Permission.RELOAD_RULES}),
    Role.AUDITOR: frozenset({Permission.READ_AUDIT}),
}


@dataclass(frozen=True)
class Identity:
    subject: str  # the person or system: a token's name, a JWT's subject claim
    roles: frozenset[Role]
    pharmacy_id: str = ""  # "" = not limited to one pharmacy's patients
    via: str = "token"  # token | jwt

    def may(self, permission: Permission) -> bool:
        return any(permission in GRANTS[r] for r in self.roles)

    def sees(self, pharmacy_id: str) -> bool:
        """A pharmacy-scoped identity sees only the patients dispensed by that pharmacy."""
        return not self.pharmacy_id or self.pharmacy_id == pharmacy_id


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    roles = set()
    for name in names:
        try:
            roles.add(Role(name.strip().lower()))
        except ValueError:
            raise InvalidInput(f"unknown role {name!r}; roles are {', '.join(r.value for r in Role)}") from None
    if not roles:
        raise InvalidInput("a token needs at least one role")
    return frozenset(roles)


def token_hash(token: str) -> str:
    """Tokens are 256 random bits: a plain SHA-256 is enough to keep them out of the store."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class TokenService:
    store: UnitOfWork
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def create(self, name: str, roles: frozenset[Role], *, pharmacy_id: str = "", expires_in_days: int | None = None, created_by: str = "cli") -> str:
        """A new token, returned once; only its hash is stored."""
        name = name.strip()
        if not name or len(name) > 120:
            raise InvalidInput("a token needs a --name of 1 to 120 characters (who or what holds it)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        expires = (now + timedelta(days=expires_in_days)).isoformat() if expires_in_days else None
        record = {"name": name, "roles": ",".join(sorted(r.value for r in roles)), "pharmacy_id": pharmacy_id.strip(), "token_hash": token_hash(token), "created_at": now.isoformat(), "created_by": created_by, "expires_at": expires}

        def tx(repo: Repositories) -> None:
            repo.add_token(record)
            repo.audit(now, created_by, "token.create", None, {k: v for k, v in record.items() if k != "token_hash"})

        await self.store.write(tx)
        return token

    async def list(self) -> list[dict[str, Any]]:
        return await self.store.read(lambda repo: repo.tokens())

    async def revoke(self, token_id: int, by: str = "cli") -> bool:
        now = self.clock()

        def tx(repo: Repositories) -> bool:
            done = repo.revoke_token(token_id, now.isoformat())
            if done:
                repo.audit(now, by, "token.revoke", None, {"token_id": token_id})
            return done

        return await self.store.write(tx)

    async def authenticate(self, token: str) -> Identity | None:
        """The identity a token stands for, or None (unknown, revoked or expired): read on every
        request, so a revocation takes effect at once."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = await self.store.read(lambda repo: repo.token_by_hash(token_hash(token)))
        if row is None or row["revoked_at"] or (row["expires_at"] and row["expires_at"] <= self.clock().isoformat()):
            return None
        return Identity(row["name"], parse_roles(row["roles"].split(",")), row["pharmacy_id"], via="token")


def _chain(prev: str, row: dict[str, Any]) -> str:
    return hashlib.sha256((prev + json.dumps(row, sort_keys=True, separators=(",", ":"))).encode()).hexdigest()


_BODY = ("at", "subject", "roles", "action", "patient_id", "patient_authority", "outcome", "source")


def _body(r: dict[str, Any]) -> dict[str, Any]:
    """What an entry's hash covers: its fields, and its sequence number (entries before 0007 have none)."""
    body = {k: r[k] for k in _BODY}
    if r.get("seq") is not None:
        body["seq"] = r["seq"]
    return body


@dataclass
class AccessTrail:
    """Append-only record of who did or read what; ``verify`` walks the hash chain, and the
    chain head is anchored outside the store (service/audit_anchor.py)."""

    store: UnitOfWork
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    signer: Signer | None = None
    on_anchor: Callable[[], None] = lambda: None  # wake the outbox relay: the anchor leaves at once

    async def record(self, who: Identity, action: str, patient: PatientKey | None, outcome: int, source: str, *, anchor: bool = False) -> None:
        """``anchor``: a state-changing request: the new head is anchored in the same transaction."""
        row: dict[str, Any] = {
            "at": self.clock().isoformat(),
            "subject": who.subject[:200],
            "roles": ",".join(sorted(r.value for r in who.roles)),
            "action": action[:120],
            "patient_id": patient.id[:200] if patient else "",
            "patient_authority": patient.authority[:200] if patient else "",
            "outcome": outcome,
            "source": source[:64],
        }

        def tx(repo: Repositories) -> Anchor | None:
            seq, prev = repo.last_access_head()  # under the store's single writer (and a lock on PostgreSQL)
            entry = {**row, "seq": seq + 1}
            digest = _chain(prev or GENESIS, _body(entry))
            repo.append_access({**entry, "prev_hash": prev or GENESIS, "hash": digest})
            return self._anchor(repo, seq + 1, digest) if anchor else None

        written = await self.store.write(tx)
        if written is not None:
            self._announce(written)

    async def anchor_now(self) -> Anchor | None:
        """The periodic anchor of the head as the store holds it (None: an empty trail)."""

        def tx(repo: Repositories) -> Anchor | None:
            seq, head = repo.last_access_head()
            return self._anchor(repo, seq, head) if head else None

        written = await self.store.write(tx)
        if written is not None:
            self._announce(written)
        return written

    def _anchor(self, repo: Repositories, seq: int, digest: str) -> Anchor:
        a = Anchor(seq, digest, self.clock().astimezone(UTC).isoformat())
        a = self.signer.sign(a) if self.signer else a
        repo.add_alerts([anchor_entry(a)])  # leaves through the outbox as a rems.audit message
        return a

    def _announce(self, a: Anchor) -> None:
        log.info("audit_anchor", anchor=a.as_dict())  # the log is the other place outside the store
        self.on_anchor()

    async def chain(self) -> tuple[list[tuple[str, str]], int | None]:
        """(hash, at) of every entry in order, and the position where its links break (or None)."""

        def walk(repo: Repositories) -> tuple[list[tuple[str, str]], int | None]:
            prev, broken = GENESIS, None
            out: list[tuple[str, str]] = []
            for r in repo.access_chain():
                n = len(out) + 1
                seq_ok = r.get("seq") is None or r["seq"] == n
                if broken is None and (not seq_ok or r["prev_hash"] != prev or r["hash"] != _chain(prev, _body(r))):
                    broken = n
                out.append((str(r["hash"]), str(r["at"])))
                prev = r["hash"]
            return out, broken

        return await self.store.read(walk)

    async def verify_against(self, anchors: list[Anchor], public_key_file: Path | None = None) -> Findings:
        entries, broken = await self.chain()
        return check(entries, broken, anchors, public_key_file)

    async def show(self, patient: PatientKey | None = None, limit: int = 500) -> list[dict[str, Any]]:
        return await self.store.read(lambda repo: repo.access_rows(patient, limit))

    async def verify(self) -> tuple[int, int | None]:
        """(rows checked, id of the first row whose hash or link does not hold, or None)."""

        def walk(repo: Repositories) -> tuple[int, int | None]:
            prev, n = GENESIS, 0
            for r in repo.access_chain():
                if (r.get("seq") is not None and r["seq"] != n + 1) or r["prev_hash"] != prev or r["hash"] != _chain(prev, _body(r)):
                    return n, int(r["id"])
                prev, n = r["hash"], n + 1
            return n, None

        return await self.store.read(walk)
