"""The fault suite's ledger (reliability.md §3.2): resending senders, a fault-free reference
run for the expected alerts, and the counts every fault test asserts on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.demo import oru
from rems_ingest.service.commands import EnrollPatient

START = date.today() - timedelta(days=60)
VALUES = ["2.0", "1.4", "0.9", "0.45", "1.2", "1.6", "2.2", "1.1", "0.8", "1.9"]  # 10^3/uL: every category


def msa(reply: bytes) -> str:
    return reply.decode(errors="replace").split("\r")[1].split("|")[1]


@dataclass
class Feed:
    """Per connection, each patient's results in date order (one patient stays on one
    connection, as one lab's interface engine sends them)."""

    tag: str
    patients: int
    per_patient: int
    connections: int

    def baselines(self) -> list[tuple[str, bytes]]:
        return [(f"{self.tag}-B{p}", oru(f"{self.tag}-B{p}", self.pid(p), START - timedelta(days=1), "1.8", f"{self.tag}-B{p}")) for p in range(self.patients)]

    def pid(self, p: int) -> str:
        return f"P{self.tag}{p}"

    def enrollments(self) -> list[dict[str, Any]]:
        return [{"id": self.pid(p), "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()} for p in range(self.patients)]

    def streams(self) -> list[list[tuple[str, bytes]]]:
        out: list[list[tuple[str, bytes]]] = [[] for _ in range(self.connections)]
        for day in range(self.per_patient):
            for p in range(self.patients):
                cid = f"{self.tag}-{p}-{day}"
                out[p % self.connections].append((cid, oru(cid, self.pid(p), START + timedelta(days=1 + day), VALUES[(day + p) % len(VALUES)], cid)))
        return out

    @property
    def total(self) -> int:
        return self.patients * self.per_patient


@dataclass
class Sender:
    """Sends one message at a time and keeps it until it has an answer: a lost connection or
    an AE means the same message again (as interface engines do); AA and AR are final."""

    port: int
    pace: float = 0.0  # seconds between messages on one connection
    answers: dict[str, str] = field(default_factory=dict)
    ae: Counter[str] = field(default_factory=Counter)
    refused_connects: int = 0

    async def send_all(self, msgs: list[tuple[str, bytes]], deadline: float) -> None:
        i = 0
        while i < len(msgs) and time.monotonic() < deadline:
            try:
                async with MllpClient("127.0.0.1", self.port, timeout=15) as c:
                    while i < len(msgs):
                        cid, raw = msgs[i]
                        code = msa(await c.send(raw))
                        if code == "AE":
                            self.ae[cid] += 1
                            await asyncio.sleep(0.2)
                            continue
                        self.answers[cid] = code
                        i += 1
                        if self.pace:
                            await asyncio.sleep(self.pace)
            except (ConnectionError, OSError, TimeoutError, IndexError):
                self.refused_connects += 1
                await asyncio.sleep(0.2)


def http(port: int, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class ReadyProbe:
    """/readyz every 100 ms in a thread: (monotonic time, ready?, reasons)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[float, bool, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                code, body = http(self.port, "GET", "/readyz", timeout=2)
                self.samples.append((time.monotonic(), code == 200, list(body.get("reasons", [])) if isinstance(body, dict) else []))
            except OSError:
                self.samples.append((time.monotonic(), False, ["no answer"]))
            self._stop.wait(0.1)

    def not_ready_between(self, a: float, b: float) -> bool:
        return any(not ok for t, ok, _ in self.samples if a <= t <= b)

    def last_reasons(self, t0: float) -> list[str]:
        """Why it was not ready, the last time it was not, after t0."""
        bad = [r for t, ok, r in self.samples if t >= t0 and not ok]
        return bad[-1] if bad else []

    def ready_after(self, t0: float) -> float | None:
        """Seconds from t0 to the first ready sample after it that stays ready."""
        later = [(t, ok) for t, ok, _ in self.samples if t >= t0]
        for i, (t, ok) in enumerate(later):
            if ok and all(o for _, o in later[i:]):
                return t - t0
        return None


def published_times(store_url: str) -> list[float]:
    """Unix times at which the relay marked alerts published."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            rows = [r[0] for r in conn.execute("SELECT published_at FROM outbox WHERE published_at IS NOT NULL")]
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as conn:
            rows = [r[0] for r in conn.execute("SELECT published_at FROM outbox WHERE published_at IS NOT NULL")]
    return sorted(datetime.fromisoformat(r).timestamp() for r in rows)


def store_rows(store_url: str, sql: str) -> list[tuple[Any, ...]]:
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(sql))
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        return list(conn.execute(sql))


def resumed_within(store_url: str, back_at: float) -> float | None:
    """Seconds from ``back_at`` (unix time) to the first publish after it."""
    after = [t for t in published_times(store_url) if t >= back_at]
    return after[0] - back_at if after else None


async def consume_all(url: str, queue: str = "rems.clinic", quiet: float = 1.0, timeout: float = 60) -> Counter[str]:
    """Every alert delivery in ``queue`` (manual acks), by alert id."""
    seen: Counter[str] = Counter()
    conn = await aio_pika.connect(url, timeout=10)
    try:
        ch = await conn.channel()
        q = await ch.get_queue(queue)
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet:
            msg = await q.get(no_ack=False, fail=False)
            if msg is None:
                await asyncio.sleep(0.05)
                continue
            seen[msg.headers.get("x-alert-id") or msg.message_id] += 1  # type: ignore[index]
            await msg.ack()
            last = time.monotonic()
    finally:
        await conn.close()
    return seen


async def reference_alerts(tmp: Path, feed: Feed) -> set[str]:
    """The alert ids a fault-free daemon raises for the same feed (alert ids are deterministic)."""
    from rems_ingest.app import Daemon
    from tests.conftest import make_settings

    d = Daemon(make_settings(tmp, store_url=f"sqlite:///{tmp}/reference.db"))
    await d.start()
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            for _, raw in feed.baselines():
                await c.send(raw)
            for body in feed.enrollments():
                await d.clinic.enroll(EnrollPatient.from_mapping(body))
            for stream in feed.streams():
                for _, raw in stream:
                    assert msa(await c.send(raw)) == "AA"
    finally:
        await d.shutdown()
    return {r[0] for r in store_rows(f"sqlite:///{tmp}/reference.db", "SELECT alert_id FROM outbox")}


@dataclass
class Ledger:
    sent: int
    aa: set[str]
    stored: set[str]
    expected: set[str]
    deliveries: Counter[str]
    ae: int
    ar: int

    @property
    def aa_not_stored(self) -> set[str]:
        return self.aa - self.stored

    @property
    def lost(self) -> set[str]:
        return self.expected - set(self.deliveries)

    @property
    def unexpected(self) -> set[str]:
        return set(self.deliveries) - self.expected

    @property
    def duplicates(self) -> int:
        return sum(self.deliveries.values()) - len(self.deliveries)

    def line(self, name: str) -> str:
        return (
            f"{name}: sent={self.sent} acked_AA={len(self.aa)} nak_AE={self.ae} nak_AR={self.ar} stored={len(self.stored)} "
            f"aa_not_stored={len(self.aa_not_stored)} alerts_expected={len(self.expected)} consumed_distinct={len(self.deliveries)} "
            f"lost={len(self.lost)} unexpected={len(self.unexpected)} dup_deliveries={self.duplicates}"
        )
