"""The lab-feed watchdog's reads and writes (issue #25): each feed's last accepted message
(through the (feed, received_at) index, whatever the volume), its silence, and the feed of a
patient's latest result (an overdue alert says when that feed went quiet)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, insert, select, update

from rems_ingest.adapters.db.schema import feed_state, inbound_message, observation


class FeedQueries:
    conn: Any

    def feed_last_accepted(self, feed: str) -> str | None:
        m = inbound_message
        q = select(m.c.received_at).where(m.c.feed == feed, m.c.status != "REJECTED").order_by(m.c.received_at.desc()).limit(1)
        last = self.conn.execute(q).scalar()
        return str(last) if last is not None else None

    def feed_states(self) -> dict[str, dict[str, Any]]:
        return {r.feed: dict(r._mapping) for r in self.conn.execute(select(feed_state))}

    def mark_feed_silent(self, feed: str, since: str, alert_id: str, now: str) -> bool:
        """Compare-and-set: True for the one daemon that marked it (the others see it done)."""
        if self.conn.execute(select(feed_state.c.feed).where(feed_state.c.feed == feed)).first() is None:
            self.conn.execute(insert(feed_state).values(feed=feed, silent_since=None, silent_alert_id=None, updated_at=now))
        done = self.conn.execute(update(feed_state).where(and_(feed_state.c.feed == feed, feed_state.c.silent_since.is_(None))).values(silent_since=since, silent_alert_id=alert_id, updated_at=now))
        return bool(done.rowcount)

    def mark_feed_resumed(self, feed: str, silent_alert_id: str, now: str) -> bool:
        done = self.conn.execute(
            update(feed_state).where(and_(feed_state.c.feed == feed, feed_state.c.silent_alert_id == silent_alert_id)).values(silent_since=None, silent_alert_id=None, updated_at=now)
        )
        return bool(done.rowcount)

    def patient_feed_silence(self, patient_pk: int) -> tuple[str, str] | None:
        """(feed, silent since) when the feed of the patient's latest result is silent now."""
        o, m = observation, inbound_message
        feed = self.conn.execute(select(m.c.feed).join(o, o.c.message_id == m.c.id).where(o.c.patient_pk == patient_pk).order_by(o.c.id.desc()).limit(1)).scalar()
        if not feed:
            return None
        since = self.conn.execute(select(feed_state.c.silent_since).where(feed_state.c.feed == feed)).scalar()
        return (feed, since) if since else None
