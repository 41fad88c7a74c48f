"""A private RabbitMQ node and a private PostgreSQL cluster on free ports, for tests that
kill and restart them (never the shared services on 5672 / 5432). Recipes: reliability.md §5."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.process import free_port


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {timeout:.0f} s")


class RabbitNode:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port, self.dist = free_port(), free_port()
        self.name = f"rfault{self.port}@localhost"
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n")
        (base / "enabled_plugins").write_text("[].\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(base)], check=True)
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, check: bool = True) -> int:
        r = subprocess.run(["rabbitmqctl", "-n", self.name, *args], env=self.env, capture_output=True, timeout=60)
        if check and r.returncode:
            raise AssertionError(f"rabbitmqctl {' '.join(args)} failed ({r.returncode}): {(r.stderr or r.stdout).decode(errors='replace')[-400:]}")
        return r.returncode

    def _registered(self) -> bool:
        """Is the node name still registered with epmd? A start while it is fails in silence
        (``-detached`` returns 0 and the new node exits: "node with name ... already running")."""
        r = subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=10)
        short = self.name.split("@", 1)[0]
        return any(line.split()[1:2] == [short] for line in r.stdout.splitlines() if line.startswith("name "))

    def start(self) -> None:
        for attempt in range(3):
            _wait(lambda: not self._registered(), 30, "the old node name to leave epmd")
            subprocess.run(["rabbitmq-server", "-detached"], env=self.env, capture_output=True, timeout=60, check=True)
            try:
                _wait(lambda: _port_open(self.port), 40, "private RabbitMQ node")
                return
            except AssertionError:
                if attempt == 2:
                    raise
                self.stop()  # whatever half-started goes, then try again

    def kill9(self) -> None:
        pid = int((self.base / "pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _port_open(self.port), 20, "RabbitMQ node death")
        _wait(lambda: not self._registered(), 30, "the killed node to leave epmd")

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        _wait(lambda: _port_open(self.port), 60, "RabbitMQ app")

    def stop(self) -> None:
        self.ctl("stop", check=False)
        pid_file = self.base / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))


class PgCluster:
    """initdb refuses root: the cluster belongs to the postgres system user."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        base.mkdir(parents=True, exist_ok=True)
        shutil.chown(base, "postgres", "postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")

    def _as_postgres(self, *cmd: str) -> None:
        r = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, timeout=120, cwd=str(self.base))
        if r.returncode:
            raise AssertionError(f"{cmd[0].rsplit('/', 1)[-1]} failed ({r.returncode}): {(r.stderr or r.stdout).decode(errors='replace')[-500:]}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "pg.log"), *args, "-o", opts)

    def start(self) -> None:
        self._ctl("start", "-w")

    def restart(self, mode: str) -> None:
        self._ctl("restart", "-w", "-m", mode)

    def stop(self) -> None:
        try:
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate")
        except AssertionError:
            pass


def available() -> str | None:
    """Why the fault suite cannot run here, or None."""
    if os.geteuid() != 0:
        return "the fault suite needs root (private broker and cluster users, tmpfs mounts)"
    if not shutil.which("rabbitmq-server") or not (PG_BIN / "initdb").exists():
        return "rabbitmq-server or PostgreSQL's initdb is not installed"
    return None
