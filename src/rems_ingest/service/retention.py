"""PHI retention: blank the raw HL7 of old messages, audited (the ``prune`` command)."""

from __future__ import annotations

from datetime import datetime, timedelta

from rems_ingest.service.ports import Repositories, UnitOfWork


async def prune_raw_messages(store: UnitOfWork, *, older_than_days: int, dry_run: bool, actor: str, now: datetime) -> tuple[int, str]:
    """(how many messages were (or would be) blanked, the cut-off). Results, decisions, alerts
    and duplicate detection stay; a pruned message can no longer be replayed."""
    cutoff = (now - timedelta(days=older_than_days)).isoformat()

    def job(repo: Repositories) -> int:
        n = repo.prune_raw(cutoff, dry_run=dry_run)
        if not dry_run:
            repo.audit(now, actor, "prune_raw", None, {"received_before": cutoff, "messages": n})
        return n

    return await store.write(job), cutoff
