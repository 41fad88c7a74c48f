"""The feed watchdog (issue #25): a lab feed that stops sending is a page, not a quiet flag.

An interface engine that stops, or a VPN that drops, looks like patients who missed their
blood test: overdue notices go out while the results sit upstream (NZ CareLink, October 2020).
Per registered feed, the last accepted message is read from the store (any daemon's), so
several daemons behind one Service agree. Silence longer than the feed's threshold (one in
lab hours, one outside) raises one ``feed.silent``; the first accepted message after it raises
one ``feed.resumed``. Both ids are stable (the feed and the last message before the silence),
and the feed's state is compare-and-set in the store, so one outage is one page however many
daemons watch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from rems_ingest.core.model import Alert, AlertKind, PatientKey, Severity, alert_id
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.feeds.registry import Feed, Registry
from rems_ingest.observability import metrics
from rems_ingest.service.outbox import outbox_entry
from rems_ingest.service.ports import Repositories, UnitOfWork

log = structlog.get_logger("rems_ingest.feeds")

NO_PATIENT = PatientKey("")  # feed alerts are about a feed: the envelope's patient is empty


def _feed_key(feed: str) -> PatientKey:
    return PatientKey(f"feed:{feed}", "")  # the alert id's namespace, never a patient


@dataclass
class FeedWatchdog:
    store: UnitOfWork
    registry: Registry
    policy: Callable[[], RulesPolicy]
    timezone: str = "UTC"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_alerts: Callable[[], None] = lambda: None

    async def check(self) -> list[dict[str, Any]]:
        """One look at every registered feed; the feed alerts it raised."""
        now = self.clock().astimezone(UTC)
        # a read first: a look that changes nothing writes nothing (no empty commit a minute on
        # every daemon, none that could hide a failing disk from readiness)
        due = await self.store.read(lambda repo: [f for f in self.registry.feeds if self._changes(repo, f, now)])
        if not due:
            return []
        raised = await self.store.write(lambda repo: [a for f in due if (a := self._look(repo, f, now))])
        if raised:
            self.on_alerts()
        return raised

    def _changes(self, repo: Repositories, feed: Feed, now: datetime) -> bool:
        """Would a look at this feed raise something now? (Also refreshes its gauges.)"""
        last = repo.feed_last_accepted(feed.name)
        if last is None:
            return False
        age = now - datetime.fromisoformat(last)
        metrics.FEED_LAST_MESSAGE_AGE.labels(feed.name).set(max(0.0, age.total_seconds()))
        since = (repo.feed_states().get(feed.name) or {}).get("silent_since")
        metrics.FEED_SILENT.labels(feed.name).set(1 if since else 0)
        if since:
            return bool(last > since)
        return age > feed.silence_threshold(now.astimezone(ZoneInfo(self.timezone)))

    def _look(self, repo: Repositories, feed: Feed, now: datetime) -> dict[str, Any] | None:
        last = repo.feed_last_accepted(feed.name)
        if last is None:
            return None  # never sent: nothing to miss yet
        age = now - datetime.fromisoformat(last)
        state = repo.feed_states().get(feed.name) or {}
        if state.get("silent_since"):
            if last > state["silent_since"] and repo.mark_feed_resumed(feed.name, state["silent_alert_id"], now.isoformat()):
                metrics.FEED_SILENT.labels(feed.name).set(0)
                return self._raise(repo, feed, now, AlertKind.FEED_RESUMED, f"{state['silent_alert_id']}:resumed", Severity.NORMAL,
                                   f"Lab feed {feed.name} is sending again (silent since {state['silent_since']})", (("silent_since", state["silent_since"]), ("resumed_at", last)))
            return None
        threshold = feed.silence_threshold(now.astimezone(ZoneInfo(self.timezone)))
        if age <= threshold:
            return None
        aid = alert_id(_feed_key(feed.name), AlertKind.FEED_SILENT.value, last)
        if not repo.mark_feed_silent(feed.name, last, aid, now.isoformat()):
            return None  # another daemon marked it first
        metrics.FEED_SILENT.labels(feed.name).set(1)
        minutes = int(age.total_seconds() // 60)
        reason = f"Lab feed {feed.name} has sent nothing for {minutes} min (threshold {int(threshold.total_seconds() // 60)} min): results may be held upstream; check the interface engine or link"
        return self._raise(repo, feed, now, AlertKind.FEED_SILENT, last, Severity.HIGH, reason, (("last_message_at", last), ("threshold_minutes", str(int(threshold.total_seconds() // 60)))), aid)

    def _raise(self, repo: Repositories, feed: Feed, now: datetime, kind: AlertKind, cause: str, severity: Severity, reason: str, detail: tuple[tuple[str, str], ...], aid: str | None = None) -> dict[str, Any]:
        alert = Alert(kind, cause, now.astimezone(ZoneInfo(self.timezone)).date(), severity, reason, (("feed", feed.name), *detail))
        aid = aid or alert_id(_feed_key(feed.name), kind.value, cause)
        repo.add_alerts([outbox_entry(NO_PATIENT, None, alert, None, 0, {"feed": feed.name}, self.policy(), now, aid=aid)])
        log.warning("feed_silent" if kind is AlertKind.FEED_SILENT else "feed_resumed", feed=feed.name, alert_id=aid)
        return {"alert_id": aid, "kind": kind.value, "feed": feed.name}
