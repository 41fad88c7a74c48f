"""Who may send results (issue #25), over real sockets: a valid result from an unregistered
source, an unregistered facility, an authority the feed does not report for, or a certificate
issued to another party gets AR, changes no patient, is kept REJECTED and shows on the feeds
page; once the feed is registered a replay takes it."""

from __future__ import annotations

import ssl
from datetime import date, timedelta
from pathlib import Path

import aiohttp
import pytest
import trustme
from sqlalchemy import select

from rems_ingest.adapters.db.schema import inbound_message
from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.config import ConfigError, check_settings
from rems_ingest.core.model import PatientKey, Population
from rems_ingest.demo import oru
from rems_ingest.feeds.settings import FeedSettings
from rems_ingest.service.commands import EnrollPatient
from tests.conftest import make_settings

TODAY = date.today()
P1 = PatientKey("FEED-P1", "HOSP")


def _forged(control_id: str, facility: str = "DEMO_LAB", anc: str = "4.5", patient: str = P1.id) -> bytes:
    return oru(control_id, patient, TODAY, anc, control_id).replace(b"|DEMO_LAB|", f"|{facility}|".encode(), 1)


def _code(ack: bytes) -> tuple[str, str]:
    segs = ack.decode().split("\r")
    return next(s for s in segs if s.startswith("MSA|")).split("|")[1], " ".join(s for s in segs if s.startswith("ERR|"))


async def _start(tmp_path: Path, feeds: dict[str, FeedSettings], **mllp: object) -> Daemon:
    s = make_settings(tmp_path, **mllp)
    s.feeds = feeds
    d = Daemon(s)
    await d.start()
    return d


async def _held(d: Daemon) -> bool:
    """P1 enrolled and interrupted at ANC 800 by its own lab: the pharmacy may not dispense."""
    await d.clinic.enroll(EnrollPatient(P1, Population.GENERAL, TODAY - timedelta(days=10)))
    async with MllpClient("127.0.0.1", d.server.bound_port) as c:
        assert _code(await c.send(_forged("REAL-1", anc="0.8")))[0] == "AA"
    return (await d.clinic.dispense_check(P1, TODAY))["authorized"] is False


async def _status(d: Daemon, control_id: str) -> list[tuple[str, str | None]]:
    m = inbound_message
    return await d.store.aread(lambda c: [(r.status, r.feed) for r in c.execute(select(m.c.status, m.c.feed).where(m.c.control_id == control_id))])


async def _feeds_page(d: Daemon) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{d.http_port}/ui/feeds") as r:
        assert r.status == 200
        return await r.text()


async def test_an_unregistered_facility_cannot_lift_a_hold_and_is_kept_for_replay(tmp_path: Path) -> None:
    d = await _start(tmp_path, {"lab": FeedSettings(networks=["127.0.0.0/8"], facilities=["DEMO_LAB"], authorities=["HOSP"])})
    try:
        assert await _held(d)
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            code, err = _code(await c.send(_forged("FORGED-1", facility="NOT_A_REAL_LAB")))
        assert code == "AR" and "not registered for feed lab" in err
        assert (await d.clinic.dispense_check(P1, TODAY))["authorized"] is False  # still held
        assert await _status(d, "FORGED-1") == [("REJECTED", None)]
        page = await _feeds_page(d)
        assert "NOT_A_REAL_LAB" in page and "NOT REGISTERED" in page
    finally:
        await d.shutdown()


async def test_an_unregistered_network_gets_ar_and_a_replay_takes_it_once_the_feed_is_registered(tmp_path: Path) -> None:
    d = await _start(tmp_path, {"lab": FeedSettings(networks=["192.0.2.0/24"], facilities=["*"], authorities=["*"])})
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            code, err = _code(await c.send(_forged("ELSEWHERE-1", anc="2.1", patient="FEED-P2")))
        assert code == "AR" and "no feed accepts connections from 127.0.0.1" in err
        assert await _status(d, "ELSEWHERE-1") == [("REJECTED", None)]
    finally:
        await d.shutdown()
    d = await _start(tmp_path, {"lab": FeedSettings(networks=["192.0.2.0/24"], facilities=["*"], authorities=["*"]),
                                "local": FeedSettings(networks=["127.0.0.1/32"], facilities=["DEMO_LAB"], authorities=["HOSP"])})
    try:
        rows = await d.services.replay.select(status="REJECTED")
        results = [await d.services.replay.replay(r, "test") for r in rows]
        assert [r["replayed"] for r in results] == [True]
        assert await _status(d, "ELSEWHERE-1") == [("REPLAYED", "local")]
    finally:
        await d.shutdown()


async def test_a_patient_authority_the_feed_does_not_report_for_is_refused(tmp_path: Path) -> None:
    d = await _start(tmp_path, {"lab": FeedSettings(networks=["127.0.0.0/8"], facilities=["DEMO_LAB"], authorities=["OTHER_HOSP"])})
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            code, err = _code(await c.send(_forged("AUTH-1")))
        assert code == "AR" and "may not report for patients of authority HOSP" in err
        assert await _status(d, "AUTH-1") == [("REJECTED", "lab")]  # came through the feed, refused by it
    finally:
        await d.shutdown()


async def test_a_rejection_asked_for_with_msh16_al_gets_its_application_ack(tmp_path: Path) -> None:
    """The IHE analyzer convention (MSH-15 NE, MSH-16 AL): no commit ACK, and the application
    ACK comes for a rejection too (a sender waiting for it would hang or resend for ever)."""
    d = await _start(tmp_path, {"lab": FeedSettings(networks=["127.0.0.0/8"], facilities=["DEMO_LAB"], authorities=["HOSP"])})
    try:
        msg = _forged("IHE-1", facility="ANALYZER_9").replace(b"|P|2.5.1", b"|P|2.5.1|||NE|AL")
        async with MllpClient("127.0.0.1", d.server.bound_port, timeout=5) as c:
            assert _code(await c.send(msg))[0] == "AR"
    finally:
        await d.shutdown()


def test_a_network_bind_without_a_registered_feed_is_refused_at_start(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    s.feeds = {}
    s.mllp.host = "0.0.0.0"
    with pytest.raises(ConfigError, match="no registered lab feed"):
        check_settings(s)
    s.feeds = {"lab": FeedSettings(networks=["10.20.30.40/32"], facilities=["GHH_LAB"], authorities=["HOSP"])}
    check_settings(s)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _client(ca: trustme.CA, tmp_path: Path, name: str) -> ssl.SSLContext:
    pem = tmp_path / f"{name}.pem"
    ca.issue_cert(name).private_key_and_cert_chain_pem.write_to_path(str(pem))
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(str(pem))
    return ctx


async def test_over_mutual_tls_a_certificate_sends_only_for_its_own_feed(tmp_path: Path, ca: trustme.CA) -> None:
    """The hospital CA signs the lab's, another lab's and the pharmacy's certificates alike:
    only the certificate registered for a feed sends for that feed's facility."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    feeds = {
        "lab-a": FeedSettings(certificate_names=["lis.lab-a.example"], facilities=["DEMO_LAB"], authorities=["HOSP"]),
        "lab-b": FeedSettings(certificate_names=["lis.lab-b.example"], facilities=["LAB_B"], authorities=["HOSP"]),
    }
    d = await _start(tmp_path, feeds, tls_cert=tmp_path / "server.pem", tls_key=tmp_path / "server.key", tls_client_ca=tmp_path / "ca.pem")
    try:
        answers = {}
        for name in ("lis.lab-a.example", "lis.lab-b.example", "rx-main-st.pharmacy.example"):
            async with MllpClient("127.0.0.1", d.server.bound_port, timeout=5, ssl_context=_client(ca, tmp_path, name)) as c:
                answers[name] = _code(await c.send(_forged(f"TLS-{name[:12]}", anc="2.0", patient="FEED-P3")))
        assert answers["lis.lab-a.example"][0] == "AA"
        assert answers["lis.lab-b.example"][0] == "AR" and "not registered for feed lab-b" in answers["lis.lab-b.example"][1]
        assert answers["rx-main-st.pharmacy.example"][0] == "AR" and "no feed accepts connections" in answers["rx-main-st.pharmacy.example"][1]
        assert await _status(d, "TLS-lis.lab-a.ex") == [("PROCESSED", "lab-a")]
    finally:
        await d.shutdown()


async def test_the_demo_registers_its_own_feed_for_its_own_lab_only(tmp_path: Path) -> None:
    from rems_ingest.demo import demo_feeds

    d = await _start(tmp_path, demo_feeds())
    try:
        async with MllpClient("127.0.0.1", d.server.bound_port) as c:
            assert _code(await c.send(_forged("DEMO-1", anc="2.0", patient="DEMO-X")))[0] == "AA"
            assert _code(await c.send(_forged("DEMO-2", facility="SOMEONE_ELSE", anc="2.0", patient="DEMO-X")))[0] == "AR"
        assert await _status(d, "DEMO-1") == [("PROCESSED", "demo-lab")]
    finally:
        await d.shutdown()
