"""``rems-ingest demo``: a newcomer sees the whole product in one command (issue #6)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from rems_ingest.cli import cli


def test_demo_prints_the_seed_walk_through_decisions_and_alerts() -> None:
    r = CliRunner().invoke(cli, ["demo"], env={"REMS_AMQP__URL": ""})
    assert 0 == r.exit_code, r.output
    out = r.output
    gp = out[out.index("== DEMO-GP"):out.index("== DEMO-BEN")]
    ben = out[out.index("== DEMO-BEN"):out.index("== alerts")]
    assert [("1400", "mild", "yes"), ("900", "moderate", "NO"), ("450", "severe", "NO")] == re.findall(r"ANC\s+(\d+)/uL.*?category=(\w+).*?dispense=(\w+)", gp)
    assert [("1400", "normal", "yes"), ("900", "ben_neutropenia", "yes"), ("450", "severe", "NO")] == re.findall(r"ANC\s+(\d+)/uL.*?category=(\w+).*?dispense=(\w+)", ben)
    assert all(line.split()[3].startswith("MSA|AA|") for line in (gp + ben).splitlines() if " ANC " in line)
    alerts = out[out.index("== alerts"):]
    for kind in ("therapy.interrupt", "therapy.emergency", "pharmacy.hold", "monitoring.confirm_repeat"):
        assert kind in alerts
    assert '"level": "warning"' not in out  # the walk-through, not daemon chatter


@pytest.mark.rabbitmq
def test_demo_with_a_broker_it_cannot_log_in_to_says_so_and_fails(rabbitmq_url: str) -> None:
    """Issue #19: wrong credentials printed nothing, exited 0 and published nothing."""
    r = CliRunner().invoke(cli, ["demo", "--amqp", rabbitmq_url.replace("guest:guest", "guest:wrong-password")])
    assert 1 == r.exit_code, r.output
    assert "0 of 13 alerts published" in r.output and "check the URL and credentials" in r.output
    assert "wrong-password" not in r.output


@pytest.mark.rabbitmq
def test_demo_with_the_broker_counts_what_was_published(rabbitmq_url: str) -> None:
    r = CliRunner().invoke(cli, ["demo", "--amqp", rabbitmq_url])
    assert 0 == r.exit_code, r.output
    assert "all 13 alerts published and confirmed" in r.output


def test_demo_stay_prints_a_console_address_and_a_login_that_works(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue #16: `rems-ingest demo --stay` prints the console URL and a login that works."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    from tests.process import BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith("REMS_")}
    proc = subprocess.Popen([str(BIN), "demo", "--stay"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, url, token = time.monotonic() + 90, "", ""
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if m := re.search(r"web console: (\S+)  \(log in with this token: (\S+)\)", line):
                url, token = m.group(1), m.group(2)
        assert url and token
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        page = opener.open(urllib.request.Request(url + "login", data=f"token={token}".encode(), method="POST"), timeout=10).read().decode()
        assert "Worklists" in page and "DEMO-GP" in page
    finally:
        proc.send_signal(signal.SIGINT)
        assert 0 == proc.wait(30)
