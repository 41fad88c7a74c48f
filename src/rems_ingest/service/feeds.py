"""The lab feeds at a glance (issue #16): per sender, the last message, messages per hour over
24 hours, reject and warning rates, and a flag when a sender that normally sends in this hour of
the day has gone quiet — the first sign of a stalled interface engine."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rems_ingest.feeds.registry import Registry
from rems_ingest.service.ports import UnitOfWork

HISTORY_DAYS = 7  # the days that say what "normally sends in this hour" means


@dataclass
class Feed:
    sender: str
    feed: str = ""  # the registered feed its messages came through ("" = none: refused)
    last_at: str = ""
    hourly: list[int] = field(default_factory=lambda: [0] * 24)  # the last 24 hours, oldest first
    messages: int = 0
    rejected: int = 0
    warned: int = 0
    quiet: bool = False

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.messages if self.messages else 0.0

    @property
    def warning_rate(self) -> float:
        return self.warned / self.messages if self.messages else 0.0


def gone_quiet(now: datetime, counts: dict[str, int], days: int = HISTORY_DAYS) -> bool:
    """Quiet now, though it sent in this hour of the day on most of the previous ``days`` days."""
    this_hour = now.strftime("%Y-%m-%dT%H")
    if counts.get(this_hour, 0) or counts.get((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H"), 0):
        return False
    usual = sum(1 for d in range(1, days + 1) if counts.get((now - timedelta(days=d)).strftime("%Y-%m-%dT%H"), 0))
    return usual * 2 > days


@dataclass
class FeedService:
    store: UnitOfWork
    registry: Registry | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def registered(self) -> list[dict[str, Any]]:
        """Every registered feed: who it is, what it may send, how it is read, and whether it
        is sending (its last accepted message, and since when it is silent)."""
        feeds = self.registry.feeds if self.registry else ()

        def read(repo: Any) -> tuple[dict[str, str | None], dict[str, dict[str, Any]]]:
            return {f.name: repo.feed_last_accepted(f.name) for f in feeds}, repo.feed_states()

        last, states = await self.store.read(read)
        out = []
        for f in feeds:
            hours = f"{f.lab_hours[0]:%H:%M}-{f.lab_hours[1]:%H:%M}" if f.lab_hours else ""
            out.append({
                "name": f.name,
                "networks": [str(n) for n in f.networks],
                "certificate_names": list(f.certificate_names),
                "fingerprints": list(f.fingerprints),
                "applications": list(f.applications),
                "facilities": list(f.facilities),
                "authorities": list(f.authorities),
                "draw_time": f.draw_time,
                "versions": sorted(f.versions),
                "units": dict(f.code_map.units),
                "lab_hours": hours,
                "silent_after_minutes": int(f.silent_after.total_seconds() // 60),
                "silent_after_minutes_off_hours": int(f.silent_after_off_hours.total_seconds() // 60),
                "last_accepted_at": last.get(f.name),
                "silent_since": (states.get(f.name) or {}).get("silent_since"),
            })
        return out

    async def feeds(self) -> list[Feed]:
        now = self.clock().astimezone(UTC)
        since = (now - timedelta(days=HISTORY_DAYS, hours=1)).isoformat()
        rows = await self.store.read(lambda repo: repo.feed_hours(since))
        by_sender: dict[str, dict[str, int]] = defaultdict(dict)
        feeds: dict[str, Feed] = {}
        day_ago = now - timedelta(hours=24)
        for r in rows:
            sender = f"{r['app']} {r['facility']}".strip() or "(no MSH-3/MSH-4)"
            f = feeds.setdefault(sender, Feed(sender))
            f.feed = f.feed or (r.get("feed") or "")
            by_sender[sender][r["hour"]] = int(r["n"])
            f.last_at = max(f.last_at, str(r["last"]))
            hour = datetime.fromisoformat(r["hour"] + ":00:00+00:00")
            if hour > day_ago - timedelta(hours=1):
                slot = 23 - int((now - hour).total_seconds() // 3600)
                if 0 <= slot < 24:
                    f.hourly[slot] += int(r["n"])
                f.messages += int(r["n"])
                f.rejected += int(r["rejected"] or 0)
                f.warned += int(r["warned"] or 0)
        for sender, f in feeds.items():
            f.quiet = gone_quiet(now, by_sender[sender])
        return sorted(feeds.values(), key=lambda f: (not f.quiet, f.sender))

    async def messages(self, *, status: str = "", control_id: str = "", sender: str = "", ack: str = "", since: str = "", limit: int = 200) -> list[dict[str, Any]]:
        """The message browser's search, newest first, each with its ACK's warnings in words."""
        rows = await self.store.read(lambda repo: repo.messages(status=status, control_id=control_id, sender=sender, ack=ack, since=since, limit=limit))
        for m in rows:
            m["warnings"] = "; ".join(e.get("message", "") for e in json.loads(m.pop("ack_detail") or "[]"))
        return rows

    async def message(self, message_id: int) -> dict[str, Any] | None:
        return await self.store.read(lambda repo: repo.message_detail(message_id))
