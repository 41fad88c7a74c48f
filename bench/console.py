#!/usr/bin/env python3
"""Console pages at hospital scale (issue #16): server time of the worklists and of a patient
page with 10,000 enrolled patients and 1,000,000 stored results, on SQLite.

Builds the store directly (bulk SQL, not the ingest path: what is measured is reading), serves
the daemon's own aiohttp app (console and API) in-process, and prints the median and worst wall
time of each page over N requests on loopback (which is server time plus a few hundred µs).

    .venv/bin/python bench/console.py [--patients 10000] [--results-per-patient 100] [--requests 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from rems_ingest.adapters.db import codec  # noqa: E402
from rems_ingest.adapters.db.schema import inbound_message, observation, patient  # noqa: E402
from rems_ingest.adapters.http.api import build_app  # noqa: E402
from rems_ingest.adapters.web.console import Console  # noqa: E402
from rems_ingest.bootstrap import build_services  # noqa: E402
from rems_ingest.config import Settings  # noqa: E402
from rems_ingest.core.model import Category, Frequency, LatestAnc, PatientState, Phase, Population, evolve  # noqa: E402


def _state(rng: random.Random, today: date) -> PatientState:
    phase = rng.choices([Phase.NORMAL, Phase.GP_MILD, Phase.GP_MOD_DAILY, Phase.SEV_RECOVERED_HOLD, Phase.BEN_NEUT], [90, 4, 3, 1, 2])[0]
    due = today + timedelta(days=rng.randint(-10, 28))
    s = PatientState(enrolled=True, population=Population.BEN if phase is Phase.BEN_NEUT else Population.GENERAL, therapy_start=today - timedelta(days=rng.randint(30, 3000)), phase=phase, interval=Frequency.MONTHLY, next_due=due)
    latest = LatestAnc(value=Decimal(rng.randint(400, 4000)), on=due - timedelta(days=7), category=Category.NORMAL, key="k")
    return evolve(s, latest=latest, dispense_hold=phase is Phase.GP_MOD_DAILY, pending_confirm_until=today if phase is Phase.GP_MILD else None)


def build(store_url: str, patients: int, per: int) -> None:
    s = Settings()
    s.store.url = store_url  # type: ignore[assignment]
    svc = build_services(s)
    svc.store.migrate()
    rng, today, now = random.Random(7), date.today(), datetime.now(UTC).isoformat()
    with svc.store._writer.begin() as c:
        c.execute(insert(patient), [dict(patient_id=f"P{i:06d}", authority="HOSP", enrolled=True, prescriber_id=f"DR{i % 40}", pharmacy_id=f"RX{i % 25}", state=codec.dump_state(_state(rng, today)), version=1, last_sort_key="", next_due=None, updated_at=now) for i in range(patients)])
        c.execute(insert(inbound_message), [dict(dedupe_key=f"{i:064d}", sending_app="LIS", sending_facility="LAB", control_id=f"C{i}", received_at=now, status="PROCESSED", ack_code="AA", ack_detail="[]", charset="utf-8", raw=b"") for i in range(patients)])
    start = datetime(2016, 1, 1)
    batch: list[dict[str, object]] = []
    with svc.store._writer.begin() as c:
        for p in range(patients):
            for k in range(per):
                batch.append(dict(message_id=p + 1, patient_pk=p + 1, result_key=f"F{p}-{k}|751-8|", anc_per_ul=str(rng.randint(400, 4000)), status="F", observed_at=(start + timedelta(days=30 * k)).isoformat(), code="751-8", code_system="LN", original_value="2.1", original_unit="10*3/uL", derived=False, censored=""))
                if len(batch) >= 50_000:
                    c.execute(insert(observation), batch)
                    batch.clear()
        if batch:
            c.execute(insert(observation), batch)
    svc.store.close()


async def measure(store_url: str, requests: int) -> dict[str, dict[str, float]]:
    s = Settings()
    s.store.url = store_url  # type: ignore[assignment]
    s.http.auth = "none"
    svc = build_services(s)
    svc.store.start()
    app = build_app(svc.clinic, lambda: {"ready": True}, authenticator=None, trail=None)
    Console(svc.clinic, svc.worklists, svc.policy, None, None).routes(app)
    out: dict[str, dict[str, float]] = {}
    async with TestClient(TestServer(app)) as client:
        for name, path in (("worklists", "/ui/worklists"), ("worklists, one prescriber", "/ui/worklists?prescriber=DR7"), ("patient page (100 results)", "/ui/patients/P004242?authority=HOSP"), ("dispense check (JSON)", "/v1/patients/P004242/dispense-check?authority=HOSP")):
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = await client.get(path)
                await r.read()
                assert r.status == 200, (path, r.status)
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = {"median_ms": round(statistics.median(times), 1), "worst_ms": round(max(times), 1)}
    svc.store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--results-per-patient", type=int, default=100)
    ap.add_argument("--requests", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/console.db"
        t0 = time.perf_counter()
        build(url, args.patients, args.results_per_patient)
        print(f"built {args.patients} enrolled patients, {args.patients * args.results_per_patient} results in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        result = asyncio.run(measure(url, args.requests))
    for name, r in result.items():
        print(f"{name:<28} median {r['median_ms']:>8} ms   worst {r['worst_ms']:>8} ms")
    print(json.dumps({"patients": args.patients, "results": args.patients * args.results_per_patient, "pages": result}))


if __name__ == "__main__":
    main()
