"""API tokens and the access trail in the store (service/access.py says what they mean)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection

from rems_ingest.adapters.db.schema import access_audit, api_token
from rems_ingest.core.model import PatientKey

_TOKEN_COLUMNS = (api_token.c.id, api_token.c.name, api_token.c.roles, api_token.c.pharmacy_id, api_token.c.created_at, api_token.c.created_by, api_token.c.expires_at, api_token.c.revoked_at)
_TRAIL_LOCK = 727002  # PostgreSQL advisory lock: one appender at a time keeps the chain a line


class AccessRecords:
    """Mixed into the Repository: the same connection and transaction as every other write."""

    conn: Connection
    pg: bool

    def add_token(self, record: dict[str, Any]) -> None:
        self.conn.execute(insert(api_token).values(**record, revoked_at=None))

    def tokens(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(select(*_TOKEN_COLUMNS).order_by(api_token.c.id))]

    def token_by_hash(self, digest: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(*_TOKEN_COLUMNS).where(api_token.c.token_hash == digest)).fetchone()
        return dict(row._mapping) if row else None

    def revoke_token(self, token_id: int, at: str) -> bool:
        done = self.conn.execute(update(api_token).where(api_token.c.id == token_id, api_token.c.revoked_at.is_(None)).values(revoked_at=at))
        return bool(done.rowcount)

    def last_access_head(self) -> tuple[int, str | None]:
        """(the head's sequence number, its hash); (0, None) for an empty trail. A head written
        before sequence numbers (schema 0007) is numbered by counting, once."""
        if self.pg:
            self.conn.execute(text(f"SELECT pg_advisory_xact_lock({_TRAIL_LOCK})"))
        row = self.conn.execute(select(access_audit.c.seq, access_audit.c.hash).order_by(access_audit.c.id.desc()).limit(1)).fetchone()
        if row is None:
            return 0, None
        seq = row[0] if row[0] is not None else int(self.conn.execute(select(func.count()).select_from(access_audit)).scalar_one())
        return int(seq), str(row[1])

    def append_access(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(access_audit).values(**row))

    def access_rows(self, patient: PatientKey | None, limit: int) -> list[dict[str, Any]]:
        q = select(access_audit).order_by(access_audit.c.id.desc()).limit(limit)
        if patient is not None:
            q = q.where(access_audit.c.patient_id == patient.id, access_audit.c.patient_authority == patient.authority)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def access_chain(self) -> Iterator[dict[str, Any]]:
        for r in self.conn.execute(select(access_audit).order_by(access_audit.c.id)):
            yield dict(r._mapping)
