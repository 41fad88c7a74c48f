"""The name a daemon's relay claims outbox rows under (amqp.relay_id). A relay that starts, or
recovers from a store error, releases every claim held under its name as stale: two live
daemons under one name would release each other's in-flight claims and page twice."""

from __future__ import annotations

import socket

from rems_ingest.bootstrap import relay_owner
from rems_ingest.config import Settings


def _settings(**env: object) -> Settings:
    return Settings.model_validate({"mllp": {"port": 2575, "reuse_port": env.get("reuse_port", False)}, "amqp": {"relay_id": env.get("relay_id", "")}})


def test_one_daemon_on_its_port_keeps_its_name_across_restarts() -> None:
    assert relay_owner(_settings(), pid=100) == relay_owner(_settings(), pid=200) == f"{socket.gethostname()}:2575"
    assert "lab-a" == relay_owner(_settings(relay_id="lab-a"), pid=100)


def test_daemons_sharing_one_port_with_one_config_never_share_a_name() -> None:
    """mllp.reuse_port: several daemons on one host, same port, same configuration file."""
    for relay_id in ("", "lab-a"):
        first, second = (relay_owner(_settings(reuse_port=True, relay_id=relay_id), pid=pid) for pid in (100, 200))
        assert first != second
        assert first.endswith(":100") and second.endswith(":200")
