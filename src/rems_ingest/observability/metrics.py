"""Prometheus metrics (one registry per process; tests read values through it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter("rems_messages_total", "HL7 messages answered, by ACK code", ["ack_code"], registry=REGISTRY)
ACK_LATENCY = Histogram(
    "rems_ack_latency_seconds",
    "Frame received -> ACK ready (includes the durable commit)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
    registry=REGISTRY,
)
FEED_MESSAGES = Counter("rems_feed_messages_total", "HL7 messages per registered lab feed, by outcome (accepted, warned, rejected); feed (refused) = no feed may send it", ["feed", "outcome"], registry=REGISTRY)
FEED_LAST_MESSAGE_AGE = Gauge("rems_feed_last_message_age_seconds", "Seconds since each feed's last accepted message (any daemon's), as the watchdog last read it", ["feed"], registry=REGISTRY)
FEED_SILENT = Gauge("rems_feed_silent", "1 while a feed is silent past its threshold (feed.silent raised), else 0", ["feed"], registry=REGISTRY)
OBSERVATIONS = Counter("rems_observations_total", "ANC observations extracted, by outcome", ["outcome"], registry=REGISTRY)
ALERTS = Counter("rems_alerts_created_total", "Alerts written to the outbox, by kind", ["kind"], registry=REGISTRY)
PUBLISHED = Counter("rems_alerts_published_total", "Alerts confirmed by the broker", registry=REGISTRY)
PUBLISH_FAILURES = Counter("rems_publish_failures_total", "Relay publish failures, by reason", ["reason"], registry=REGISTRY)
OUTBOX_BACKLOG = Gauge("rems_outbox_backlog", "Alerts waiting in the outbox", registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge("rems_outbox_oldest_pending_seconds", "Age of the oldest unpublished alert", registry=REGISTRY)
BROKER_CONNECTED = Gauge("rems_broker_connected", "1 while the relay holds a confirmed channel to RabbitMQ (0 also when none is configured)", registry=REGISTRY)
OPEN_CONNECTIONS = Gauge("rems_mllp_open_connections", "Open MLLP connections", registry=REGISTRY)
LIMIT_HITS = Counter("rems_limit_hits_total", "Limits hit, by limit", ["limit"], registry=REGISTRY)
STORE_FAILURES = Counter("rems_store_failures_total", "Transactions that failed (answered AE)", registry=REGISTRY)
AUTH_FAILURES = Counter("rems_http_auth_failures_total", "HTTP requests refused for want of a valid identity or role, by reason", ["reason"], registry=REGISTRY)
PERMANENT_FAILURES = Counter("rems_messages_rejected_permanent_total", "Messages that could never be stored as they are (answered AR, kept as REJECTED)", registry=REGISTRY)
TASK_RESTARTS = Counter("rems_task_restarts_total", "Background tasks restarted after an exception, by task", ["task"], registry=REGISTRY)
RELAY_LAST_PUBLISH = Gauge("rems_relay_last_publish_timestamp_seconds", "Unix time of the last alert the broker confirmed (0: none since start)", registry=REGISTRY)
STORE_WRITE_FAILING = Gauge("rems_store_write_failing", "1 while the last store write failed and no write of a row has succeeded since", registry=REGISTRY)
STORE_RETRIES = Counter(
    "rems_store_retries_total",
    "Work the store ran again: a shared group rolled back and re-run job by job (group_failed), or a "
    "PostgreSQL deadlock / serialization failure retried (deadlock, serialization), or a constraint error re-run (constraint)",
    ["reason"],
    registry=REGISTRY,
)


# ---------------------------------------------------------------- counting inside a transaction

_pending = threading.local()


def count(counter: Counter, *labels: str) -> None:
    """Increment ``counter`` now or, inside a store transaction, when that transaction commits.

    A group commit that fails is re-run one job at a time, and a deadlocked transaction is
    retried: counting at commit means what was written is counted once, and what was rolled
    back not at all."""
    child = counter.labels(*labels) if labels else counter
    buffer = getattr(_pending, "buffer", None)
    if buffer is None:
        child.inc()
    else:
        buffer.append(child)


@contextmanager
def counted_on_commit() -> Iterator[None]:
    """Wrap a transaction (its commit included): ``count`` calls inside it take effect only if
    the block finishes without an exception."""
    outer = getattr(_pending, "buffer", None)
    buffer: list[Any] = []
    _pending.buffer = buffer
    try:
        yield
    finally:
        _pending.buffer = outer
    for child in buffer:
        child.inc()
