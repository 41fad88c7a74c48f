"""``rems-ingest demo``: the whole product in one command, on embedded defaults."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.config import Settings, display_url
from rems_ingest.core.model import PatientKey, Population
from rems_ingest.feeds.settings import FeedSettings
from rems_ingest.service.access import Role
from rems_ingest.service.commands import EnrollPatient


def oru(control_id: str, patient: str, on: date, anc_k: str, filler: str) -> bytes:
    t = on.strftime("%Y%m%d") + "0800"
    segs = [
        f"MSH|^~\\&|DEMO_LIS|DEMO_LAB|REMS|PSYCH|{t}||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{patient}^^^HOSP^MR||DEMO^PATIENT",
        f"OBR|1||{filler}|57021-8^CBC W Auto Differential panel - Blood^LN|||{t}|||||||||||||||||F",
        f"OBX|1|NM|751-8^Neutrophils [#/volume] in Blood by Automated count^LN||{anc_k}|10*3/uL|1.50-7.80||||F",
    ]
    return ("\r".join(segs) + "\r").encode()


def demo_feeds() -> dict[str, FeedSettings]:
    """The demo's own lab feed: its simulated lab on this host, for its facility and authority
    only (whatever the site's config registers, the demo never accepts more)."""
    return {"demo-lab": FeedSettings(networks=["127.0.0.0/8", "::1/128"], applications=["DEMO_LIS"], facilities=["DEMO_LAB"], authorities=["HOSP"])}


async def run_demo(settings: Settings, echo: Callable[[str], None], stay: bool = False) -> bool:
    """The walk-through; False when a configured broker did not take every alert."""
    daemon = Daemon(settings)
    await daemon.start()
    try:
        start = date.today() - timedelta(days=40)
        echo(f"daemon up: MLLP 127.0.0.1:{daemon.server.bound_port}, HTTP 127.0.0.1:{daemon.http_port}, store {daemon.store.dialect}, broker {'configured' if daemon.relay.url else 'none (alerts held in the outbox)'}")
        patients = [("DEMO-GP", "general", None), ("DEMO-BEN", "ben", 1100)]
        async with MllpClient("127.0.0.1", daemon.server.bound_port) as mllp:
            for pid, population, _ in patients:
                baselines = ["1.8"] if population == "general" else ["1.2", "1.1"]
                for i, b in enumerate(baselines):
                    await mllp.send(oru(f"{pid}-B{i}", pid, start - timedelta(days=2 - i), b, f"{pid}-ACC-B{i}"))
            for pid, population, baseline in patients:
                cmd = EnrollPatient(PatientKey(pid, "HOSP"), Population(population), start, Decimal(baseline) if baseline else None, prescriber_id="DR-DEMO", pharmacy_id="RX-DEMO")
                view = await daemon.clinic.enroll(cmd, actor="demo")
                echo(f"\nenrolled {pid} ({population}): {view['action']}, {view['monitoring']['frequency']}, next ANC due {view['monitoring']['next_due']}")
            walk = [(7, "1.4"), (14, "0.9"), (15, "0.45")]
            for pid, population, _ in patients:
                echo(f"\n== {pid} ({population}): seed walk-through 1400 -> 900 -> 450 ==")
                for n, (day, anc) in enumerate(walk):
                    on = start + timedelta(days=day)
                    reply = (await mllp.send(oru(f"{pid}-W{n}", pid, on, anc, f"{pid}-ACC-W{n}"))).decode()
                    ack = reply.split("\r")[1]
                    view = await daemon.clinic.status(PatientKey(pid, "HOSP"))
                    check = await daemon.clinic.dispense_check(PatientKey(pid, "HOSP"), on)
                    echo(
                        f"{on}  ANC {int(float(anc) * 1000):>5}/uL  {ack:<22} category={view['category']:<16} action={view['action']:<30} "
                        f"treatment={view['treatment_status']:<11} monitoring={view['monitoring']['frequency']:<18} next_due={view['monitoring']['next_due']}  dispense={'yes' if check['authorized'] else 'NO'}"
                    )
        rows = await daemon.services.uow.read(lambda repo: [r for pk in (1, 2) for r in repo.alerts_for(pk, 100)])
        echo("\n== alerts (outbox; published to RabbitMQ when a broker is configured) ==")
        for r in sorted(rows, key=lambda r: r.created_at):
            body = json.loads(r.payload)
            echo(f"{body['patient']['id']:<9} {body['kind']:<28} {body['severity']:<9} {body['reason'][:80]}")
        echo(f"\n{len(rows)} alerts")
        published = await _published(daemon, len(rows)) if daemon.relay.url else None
        if stay:
            await _console(daemon, echo)
    finally:
        await daemon.shutdown()
    if published is not None:
        shown = display_url(daemon.relay.url or "")
        if published < len(rows):
            echo(f"broker {shown}: {published} of {len(rows)} alerts published; {daemon.relay.last_error or 'no confirm'}: check the URL and credentials")
            return False
        echo(f"broker {shown}: all {published} alerts published and confirmed")
    if not stay:
        echo("to look around in the web console, run: rems-ingest demo --stay (it prints the address and a login)")
    return True


async def _console(daemon: Daemon, echo: Callable[[str], None]) -> None:
    """Keep the demo daemon up with a console login that holds every role, until Ctrl-C."""
    token = await daemon.services.tokens.create("demo", frozenset(Role), created_by="demo")
    base = f"http://127.0.0.1:{daemon.http_port}"
    echo(f"\nweb console: {base}/ui/  (log in with this token: {token})")
    echo(f"API: curl -s -H 'Authorization: Bearer {token}' '{base}/v1/patients/DEMO-GP?authority=HOSP'")
    echo("Ctrl-C stops the demo (its store is thrown away)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _published(daemon: Daemon, total: int, wait: float = 10.0) -> int:
    """How many of the demo's alerts the broker confirmed, waiting a little for the relay."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        rows = await daemon.services.uow.read(lambda repo: [r for pk in (1, 2) for r in repo.alerts_for(pk, 100)])
        done = sum(1 for r in rows if r.published_at is not None)
        if done >= total or asyncio.get_running_loop().time() > deadline:
            return done
        await asyncio.sleep(0.2)
