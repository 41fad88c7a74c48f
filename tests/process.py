"""The daemon as an operator runs it: a child process started from the console script.

Used by the tests that need a real process boundary (signals, kill -9, the README's command).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent / "rems-ingest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess:
    """``rems-ingest serve`` (or any shell command) in its own process group."""

    def __init__(self, tmp: Path, *, env: dict[str, str] | None = None, command: str | None = None, cwd: Path | None = None) -> None:
        self.mllp_port, self.http_port = free_port(), free_port()
        self.log = tmp / f"daemon-{self.mllp_port}.log"
        self.env = {
            **os.environ,
            "REMS_MLLP__PORT": str(self.mllp_port),
            "REMS_HTTP__PORT": str(self.http_port),
            "REMS_LOG__LEVEL": "INFO",
            **(env or {}),
        }
        self.command = command or f"exec {BIN} serve"
        self.cwd = cwd or tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""  # an API token with every role, made with `rems-ingest token create` once the daemon is up

    def start(self, timeout: float = 120) -> DaemonProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["bash", "-c", self.command], cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        if self.env.get("REMS_HTTP__AUTH") != "none" and not self.token:
            roles = [a for r in ("clinic", "prescriber", "pharmacy", "integration", "auditor") for a in ("--role", r)]
            made = subprocess.run([str(BIN), "token", "create", "--name", "tests", *roles], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60)
            assert made.returncode == 0, made.stderr
            self.token = made.stdout.strip()
        return self

    def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.token}"} if self.token else {})}
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if self.http("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"daemon not ready after {timeout}s:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stored(db: Path) -> dict[str, tuple[str, int]]:
    """control id -> (status, observation count) for every message in a SQLite store."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT m.control_id, m.status, (SELECT count(*) FROM observation o WHERE o.message_id = m.id) FROM inbound_message m"
        ).fetchall()
    return {c: (s, n) for c, s, n in rows}


def outbox(db: Path) -> tuple[set[str], int]:
    """(every alert id in the outbox, how many rows are still unpublished). The access trail's
    anchors share the outbox but are not alerts (they go to rems.audit, not the alert queues)."""
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT alert_id FROM outbox WHERE kind <> 'audit.anchor'")}
        pending = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]
    return ids, int(pending)
