"""Idempotent RabbitMQ topology (contract.md): exchange, paging/pharmacy queues, DLX."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange


def _queues(prefix: str) -> dict[str, tuple[str, ...]]:
    return {
        f"{prefix}.paging": ("alert.therapy.*", "alert.lab.overdue", "alert.lab.overdue_resolved", "alert.monitoring.confirm_repeat", "alert.alert.superseded", "alert.feed.*"),
        f"{prefix}.pharmacy": ("alert.pharmacy.*", "alert.therapy.*", "alert.alert.superseded"),
        # every kind is routable somewhere: the complete clinical feed (EHR / audit consumers)
        f"{prefix}.clinic": ("alert.#",),
        # the access trail's anchors, for whoever keeps them beyond the database's reach
        f"{prefix}.audit": ("audit.anchor",),
    }


@dataclass(frozen=True)
class Topology:
    exchange: str = "rems.alerts"
    dlx: str = "rems.dlx"
    dead_letter_queue: str = "rems.dead-letter"
    queue_type: str = "quorum"  # quorum where the broker supports it; "classic" otherwise
    queues: dict[str, tuple[str, ...]] = field(default_factory=lambda: _queues("rems"))

    @classmethod
    def with_prefix(cls, prefix: str, queue_type: str = "quorum") -> Topology:
        """``rems`` gives the contract's names; another prefix isolates an environment."""
        return cls(f"{prefix}.alerts", f"{prefix}.dlx", f"{prefix}.dead-letter", queue_type, _queues(prefix))


async def declare(channel: AbstractChannel, topo: Topology) -> AbstractExchange:
    exchange = await channel.declare_exchange(topo.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(topo.dlx, aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await channel.declare_queue(topo.dead_letter_queue, durable=True, arguments={"x-queue-type": "classic"})
    await dlq.bind(dlx)
    args: dict[str, Any] = {"x-queue-type": topo.queue_type, "x-dead-letter-exchange": topo.dlx, "x-overflow": "reject-publish"}
    for name, keys in topo.queues.items():
        q = await channel.declare_queue(name, durable=True, arguments=args)
        for key in keys:
            await q.bind(exchange, routing_key=key)
    return exchange
