"""A conformance case end to end: ORU^R01 over MLLP, enrollment and events over HTTP, the
overdue sweep over HTTP, alerts read back from RabbitMQ, status and dispense check from the
HTTP API. One daemon serves every case; each case is its own patient."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from decimal import Decimal
from typing import Any

import aio_pika
import aiohttp

from rems_ingest.adapters.db.repository import Repository
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.demo import oru
from tests.conformance.cases import Case

EVENTS = {"interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"}


class Collector:
    """Every alert the broker delivers on the complete clinical queue, by patient id."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue
        self.by_patient: dict[str, dict[str, dict[str, Any]]] = {}

    async def start(self) -> None:
        self.conn = await aio_pika.connect(self.url)
        ch = await self.conn.channel()
        await ch.set_qos(prefetch_count=500)
        q = await ch.get_queue(self.queue)
        await q.consume(self._on)

    async def _on(self, msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(msg.body)
        self.by_patient.setdefault(body["patient"]["id"], {})[body["alert_id"]] = body
        await msg.ack()

    async def stop(self) -> None:
        await self.conn.close()


def _patient(case: Case) -> str:
    return "C-" + re.sub(r"[^A-Za-z0-9.-]", "-", case.id)


def _k(value: str) -> str:
    return format(Decimal(value) / 1000, "f")


class Driver:
    def __init__(self, daemon: Daemon, collector: Collector) -> None:
        self.d, self.collector = daemon, collector
        self.base = f"http://127.0.0.1:{daemon.http_port}"
        self._n = 0

    async def _http(self, s: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with s.request(method, self.base + path, json=body) as r:
            return r.status, await r.json()

    async def run(self, case: Case) -> dict[str, Any]:
        pid = _patient(case)
        enrolled = False
        refused = False
        version_before = 0
        async with aiohttp.ClientSession() as s, MllpClient("127.0.0.1", self.d.server.bound_port, timeout=20) as mllp:

            async def enroll() -> None:
                body: dict[str, Any] = {"id": pid, "authority": "HOSP", "population": case.population, "therapy_start": case.start.isoformat()}
                if case.baseline is not None:
                    body["baseline_anc"] = case.baseline
                if case.transfer:
                    body["monitoring_frequency"] = case.transfer
                code, out = await self._http(s, "POST", "/v1/patients", body)
                assert code == 201, out

            for i, line in enumerate(case.lines):
                parts = [p.strip() for p in line.split(",")]
                on, what, args = date.fromisoformat(parts[0]), parts[1], parts[2:]
                if not enrolled and on >= case.start:
                    await enroll()
                    enrolled = True
                if i == len(case.lines) - 1:
                    code, view = await self._http(s, "GET", f"/v1/patients/{pid}?authority=HOSP")
                    version_before = view["state_version"] if code == 200 else 0
                refused = False
                if what in EVENTS:
                    body: dict[str, Any] = {"type": what, "on": on.isoformat()}
                    if what in ("rechallenge", "override"):
                        body.update(by=args[0] if args else "", rationale=args[1] if len(args) > 1 else "")
                    if what == "fever":
                        body["temperature_c"] = float(args[0])
                    if what == "discontinue":
                        body["abrupt"] = not (args and args[0] in ("planned", "taper"))
                    code, out = await self._http(s, "POST", f"/v1/patients/{pid}/events?authority=HOSP", body)
                    assert code in (201, 409, 422), out
                    refused = code != 201
                elif what == "tick":
                    code, out = await self._http(s, "POST", f"/v1/sweeps/overdue?now={on.isoformat()}T12:00:00%2B00:00")
                    assert code == 200, out
                else:
                    self._n += 1
                    status = args[0] if args and args[0] else "F"
                    filler = args[2] if len(args) > 2 and args[2] else f"{pid}-L{i}"
                    msg = oru(f"{pid}-{self._n}", pid, on, _k(what), f"{pid}-{filler}")
                    if status != "F":
                        msg = msg.replace(b"1.50-7.80||||F\r", f"1.50-7.80||||{status}\r".encode())
                    ack = (await mllp.send(msg)).decode()
                    assert "MSA|AA" in ack, ack
            if not enrolled:
                await enroll()
            code, view = await self._http(s, "GET", f"/v1/patients/{pid}?authority=HOSP")
            assert code == 200, view
            seen: dict[str, Any] = {}
            if "dispense" in case.expect:
                on = case.expect["dispense"][0]
                code, check = await self._http(s, "GET", f"/v1/patients/{pid}/dispense-check?authority=HOSP&on={on}")
                seen["dispense"] = (on, check["authorized"])
        alerts = await self._published(pid, view)
        last = [a for a in alerts if a["state_version"] > version_before and not refused]
        kinds = {a["kind"] for a in last}
        seen.update(
            phase=view["phase"],
            cat=view["category"],
            tx=view["treatment_status"],
            freq=view["monitoring"]["frequency"],
            due=view["monitoring"]["next_due"],
            action=view["action"],
            alerts={k for k in kinds if not k.startswith("pharmacy.")},
            pharmacy={k for k in kinds if k.startswith("pharmacy.")},
            severity={a["kind"]: a["severity"] for a in last},
            refused=refused,
        )
        return seen

    async def _published(self, pid: str, view: dict[str, Any]) -> list[dict[str, Any]]:
        """Wait until every alert the store holds for this patient has come back from RabbitMQ."""
        pk = await self.d.store.aread(lambda c: Repository(c).patient(__import__("rems_ingest.core.model", fromlist=["PatientKey"]).PatientKey(pid, "HOSP"), create=False, lock=False))
        assert pk is not None
        want = {r.alert_id for r in await self.d.store.aread(lambda c: Repository(c).alerts_for(pk.pk, 1000))}
        for _ in range(300):
            got = self.collector.by_patient.get(pid, {})
            if want <= set(got):
                return list(got.values())
            await asyncio.sleep(0.05)
        raise AssertionError(f"alerts not delivered by RabbitMQ within 15 s: {sorted(want - set(self.collector.by_patient.get(pid, {})))}")
