"""Reprocess stored messages through the live code path (ecosystem.md: ``replay``).

Why: a local code or unit mapping was missing when a feed started, or a rules profile was
fixed; the stored raw message is extracted again and its results applied exactly as live
traffic would be. Idempotent: an observation already applied is a duplicate event and changes
nothing; an alert already raised has the same id and is not written twice. Every replay is
audited with who ran it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rems_ingest.feeds.registry import ConnectionRouter
from rems_ingest.hl7v2.parse import parse_text
from rems_ingest.service.ingest import IngestService, origin_of
from rems_ingest.service.ports import Repositories, UnitOfWork

STATUSES = ("PROCESSED", "FILTERED", "REPLAYED", "REJECTED")


def _when(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


@dataclass
class ReplayService:
    store: UnitOfWork
    ingest: IngestService
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def select(self, *, ids: Sequence[int] = (), since: datetime | None = None, status: str | None = None, warned: bool = False) -> list[Any]:
        return await self.store.read(lambda repo: repo.messages_for_replay(ids=ids, since=since.isoformat() if since else None, status=status, warned=warned))

    async def replay(self, row: Any, actor: str) -> dict[str, Any]:
        if not row.raw:
            return {"message_id": row.id, "control_id": row.control_id, "replayed": False, "reason": "raw message was pruned (retention)"}
        text = bytes(row.raw).decode("utf-8", "surrogateescape")
        # judged by the feeds registered now, as if it came again from the connection it came from
        router = ConnectionRouter(self.ingest.registry, origin_of(getattr(row, "origin", None)))
        m = parse_text(text, row.charset, processing_ids=self.ingest.processing_ids, code_map=self.ingest.code_map, router=router)
        if m.extraction is None:
            reason = m.error.text if m.error else "not an ORU^R01"
            return {"message_id": row.id, "control_id": row.control_id, "replayed": False, "reason": reason}
        now = self.clock()

        def tx(repo: Repositories) -> dict[str, Any]:
            before = repo.observation_count(row.id)
            result, obs_rows = self.ingest.apply_message(repo, m, row.dedupe_key, now, received_at=_when(row.received_at), replay=True)
            if not obs_rows and not before:
                # nothing new was read (the site code is still unknown, say): the message stays
                # findable by its status for the replay after the fix
                summary = {"message_id": row.id, "control_id": row.control_id, "replayed": False, "previous_status": row.status,
                           "reason": "no ANC extracted; status unchanged", "warnings": [e["message"] for e in result.errors]}
                repo.audit(now, actor, "replay", None, {k: v for k, v in summary.items() if k != "warnings"})
                return summary
            repo.replace_observations(row.id, obs_rows)
            repo.mark_replayed(row.id, json.dumps(result.errors), m.feed)
            summary = {
                "message_id": row.id,
                "control_id": row.control_id,
                "replayed": True,
                "previous_status": row.status,
                "observations_before": before,
                "observations_after": len(obs_rows),
                "warnings": [e["message"] for e in result.errors],
            }
            repo.audit(now, actor, "replay", None, {k: v for k, v in summary.items() if k != "warnings"})
            return summary

        return await self.store.write(tx, locks=(o.patient for o in m.extraction.observations))
