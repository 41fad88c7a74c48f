"""Access control (issue #15): who may read a patient, lift a hold or reload the rules, proven
route by route, with API tokens and OIDC JWTs, and every access on a tamper-evident trail."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from rems_ingest.adapters.mllp.client import MllpClient
from rems_ingest.app import Daemon
from rems_ingest.config import ConfigError, check_settings
from rems_ingest.demo import oru
from rems_ingest.service.access import Role
from tests.conftest import make_settings

START = date.today() - timedelta(days=10)
ISSUER, AUDIENCE = "https://idp.hospital.example", "rems-ingest"


class Client:
    def __init__(self, d: Daemon, s: aiohttp.ClientSession) -> None:
        self.d, self.s, self.base = d, s, f"http://127.0.0.1:{d.http_port}"

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {**kw.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        async with self.s.request(method, self.base + path, headers=headers, **kw) as r:
            assert r.content_type == "application/json", f"{method} {path}: {r.status} {r.content_type}"
            return r.status, await r.json()

    async def token(self, *roles: Role, name: str = "", pharmacy_id: str = "", days: int | None = None) -> str:
        return await self.d.services.tokens.create(name or "-".join(r.value for r in roles), frozenset(roles), pharmacy_id=pharmacy_id, expires_in_days=days)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Any, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return private, jwks


@pytest.fixture
async def api(tmp_path: Path, keys: tuple[Any, Path]) -> AsyncIterator[Client]:
    s = make_settings(tmp_path)
    s.http.auth = "tokens"
    s.http.oidc_issuer, s.http.oidc_audience, s.http.oidc_jwks_file = ISSUER, AUDIENCE, keys[1]
    s.http.oidc_role_map = {"clozapine-pharmacist": "pharmacy", "psychiatrist": "prescriber"}
    s.http.max_auth_failures_per_minute = 5
    d = Daemon(s)
    await d.start()
    async with aiohttp.ClientSession() as session:
        yield Client(d, session)
    await d.shutdown()


def _jwt(private: Any, **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "dr.house", "exp": int(time.time()) + 300, "roles": ["psychiatrist"], **claims}
    return jwt.encode(body, private, algorithm="RS256", headers={"kid": "k1"})


async def _patient(api: Client, pid: str, pharmacy_id: str = "RX1") -> None:
    async with MllpClient("127.0.0.1", api.d.server.bound_port) as c:
        assert b"MSA|AA" in await c.send(oru(f"{pid}-B", pid, START - timedelta(days=1), "1.8", f"{pid}-B"))
    clinic = await api.token(Role.CLINIC)
    body = {"id": pid, "authority": "HOSP", "population": "general", "therapy_start": START.isoformat(), "prescriber_id": "DR1", "pharmacy_id": pharmacy_id}
    assert 201 == (await api.call("POST", "/v1/patients", clinic, json=body))[0]


ROUTES = [  # (method, path, body, the roles allowed)
    ("POST", "/v1/patients", {"id": "NEW1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat()}, {Role.CLINIC}),
    ("GET", "/v1/patients/P1?authority=HOSP", None, {Role.PHARMACY, Role.PRESCRIBER, Role.CLINIC}),
    ("PATCH", "/v1/patients/P1?authority=HOSP", {"pharmacy_id": "RX1"}, {Role.CLINIC}),
    ("DELETE", "/v1/patients/P1?authority=HOSP", {"reason": "moved away"}, {Role.CLINIC}),  # 409: still monitored
    ("POST", "/v1/patients/P1/events?authority=HOSP", {"type": "fever", "on": date.today().isoformat(), "temperature_c": 37.0}, {Role.PRESCRIBER}),
    ("GET", "/v1/patients/P1/dispense-check?authority=HOSP", None, {Role.PHARMACY, Role.PRESCRIBER, Role.CLINIC}),
    ("POST", "/v1/sweeps/overdue", None, {Role.INTEGRATION}),
    ("POST", "/v1/admin/reload-rules", None, {Role.INTEGRATION}),
    ("GET", "/v1/audit?patient=P1&authority=HOSP", None, {Role.AUDITOR}),
]


async def test_every_route_admits_exactly_its_roles(api: Client) -> None:
    await _patient(api, "P1")
    tokens = {r: await api.token(r) for r in Role}
    for method, path, body, allowed in ROUTES:
        assert 401 == (await api.call(method, path, json=body))[0], f"{method} {path} without a token"
        for role, token in tokens.items():
            status, answer = await api.call(method, path, token, json=body)
            if role in allowed:
                assert status in (200, 201, 409), f"{role} {method} {path}: {status} {answer}"
            else:
                assert 403 == status and answer["error"] == "forbidden", f"{role} {method} {path}: {status}"


async def test_open_routes_need_no_token(api: Client) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await api.call("GET", path))[0] == 200
    _, doc = await api.call("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.") and "/v1/patients/{id}/dispense-check" in doc["paths"]


async def test_a_token_that_is_unknown_revoked_or_expired_is_refused(api: Client) -> None:
    await _patient(api, "P2")
    path = "/v1/patients/P2?authority=HOSP"
    good = await api.token(Role.PHARMACY)
    assert 200 == (await api.call("GET", path, good))[0]
    (row,) = [t for t in await api.d.services.tokens.list() if t["name"] == "pharmacy"]
    assert await api.d.services.tokens.revoke(row["id"])
    status, body = await api.call("GET", path, good)
    assert 401 == status and "revoked" in body["detail"]  # at once: no cache
    assert 401 == (await api.call("GET", path, "rems_not-a-real-token"))[0]
    expired = await api.token(Role.PHARMACY, name="old", days=1)
    api.d.services.tokens.clock = lambda: __import__("datetime").datetime.now(__import__("datetime").UTC) + timedelta(days=2)
    assert 401 == (await api.call("GET", path, expired))[0]


async def test_a_pharmacy_token_sees_only_its_own_patients(api: Client) -> None:
    await _patient(api, "MINE", pharmacy_id="RX1")
    await _patient(api, "THEIRS", pharmacy_id="RX2")
    rx1 = await api.token(Role.PHARMACY, name="Main St", pharmacy_id="RX1")
    assert 200 == (await api.call("GET", "/v1/patients/MINE/dispense-check?authority=HOSP", rx1))[0]
    for path in ("/v1/patients/THEIRS/dispense-check?authority=HOSP", "/v1/patients/THEIRS?authority=HOSP"):
        status, body = await api.call("GET", path, rx1)
        assert 404 == status and "RX1" in body["detail"]


async def test_the_author_of_an_event_is_the_authenticated_prescriber(api: Client) -> None:
    await _patient(api, "P3")
    dr = await api.token(Role.PRESCRIBER, name="DR-SMITH")
    fever = {"type": "fever", "on": date.today().isoformat(), "temperature_c": 38.9}
    assert 201 == (await api.call("POST", "/v1/patients/P3/events?authority=HOSP", dr, json=fever))[0]
    status, body = await api.call("POST", "/v1/patients/P3/events?authority=HOSP", dr, json={**fever, "by": "DR-SOMEONE-ELSE"})
    assert 422 == status and "DR-SMITH" in body["detail"]
    entries = (await api.call("GET", "/v1/audit?patient=P3&authority=HOSP", await api.token(Role.AUDITOR)))[1]["entries"]
    assert {"DR-SMITH"} == {e["subject"] for e in entries if e["action"] == "patient.event"}


async def test_oidc_jwts_are_checked_for_signature_issuer_audience_expiry_and_role(api: Client, keys: tuple[Any, Path]) -> None:
    private = keys[0]
    await _patient(api, "P4")
    path = "/v1/patients/P4?authority=HOSP"
    assert 200 == (await api.call("GET", path, _jwt(private)))[0]
    cases = {
        "expired": _jwt(private, exp=int(time.time()) - 3600),
        "audience": _jwt(private, aud="another-service"),
        "issuer": _jwt(private, iss="https://evil.example"),
        "signature": _jwt(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }
    for why, token in cases.items():
        status, body = await api.call("GET", path, token)
        assert 401 == status and body["error"] == "unauthenticated", why
    status, _ = await api.call("GET", path, _jwt(private, roles=["cafeteria"]))
    assert 403 == status  # verified, but no mapped role
    pharmacist = _jwt(private, sub="pharm.jones", roles=["clozapine-pharmacist"], pharmacy_id="RX9")
    assert 404 == (await api.call("GET", path, pharmacist))[0]  # scoped to RX9 by its claim


async def test_failed_authentications_are_counted_and_rate_limited(api: Client) -> None:
    for _ in range(5):
        assert 401 == (await api.call("GET", "/v1/patients/X"))[0]  # no credential: a misconfigured client, not a guess
    for _ in range(5):
        assert 401 == (await api.call("GET", "/v1/patients/X", "rems_wrong"))[0]
    status, body = await api.call("GET", "/v1/patients/X", "rems_wrong")
    assert 429 == status and body["error"] == "too_many_failures"
    async with api.s.get(api.base + "/metrics") as r:
        text = await r.text()
    assert 'rems_http_auth_failures_total{reason="token"}' in text and 'rems_http_auth_failures_total{reason="rate_limited"}' in text


async def test_the_access_trail_records_who_did_what_and_detects_tampering(api: Client) -> None:
    await _patient(api, "P5")
    reader = await api.token(Role.PHARMACY, name="reader")
    await api.call("GET", "/v1/patients/P5?authority=HOSP", reader)
    await api.call("POST", "/v1/patients", reader, json={"id": "X"})  # refused: recorded too
    entries = (await api.call("GET", "/v1/audit?patient=P5&authority=HOSP", await api.token(Role.AUDITOR)))[1]["entries"]
    assert any(e["subject"] == "reader" and e["action"] == "patient.read" and e["outcome"] == 200 and e["roles"] == "pharmacy" for e in entries)
    checked, broken = await api.d.services.trail.verify()
    assert broken is None and checked >= 4
    from sqlalchemy import text

    await api.d.store.write(lambda c: c.execute(text("UPDATE access_audit SET subject = 'someone-else' WHERE subject = 'reader'")))
    checked, broken = await api.d.services.trail.verify()
    assert broken is not None


async def test_every_error_is_json_and_bad_numbers_are_refused(api: Client) -> None:
    clinic = await api.token(Role.CLINIC)
    assert 404 == (await api.call("GET", "/nowhere", clinic))[0]
    assert 405 == (await api.call("DELETE", "/v1/patients", clinic))[0]
    assert 413 == (await api.call("POST", "/v1/patients", clinic, data=b"{" + b" " * (2 << 20) + b"}", headers={"Content-Type": "application/json"}))[0]
    deep = '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}"  # a RecursionError in the parser, before
    assert 400 == (await api.call("POST", "/v1/patients", clinic, data=deep, headers={"Content-Type": "application/json"}))[0]
    nested = '{"id": ' + "[" * 20 + "]" * 20 + "}"
    assert 400 == (await api.call("POST", "/v1/patients", clinic, data=nested, headers={"Content-Type": "application/json"}))[0]
    base = {"id": "R1", "authority": "HOSP", "population": "ben", "therapy_start": START.isoformat()}
    for bad in ({"baseline_anc": "NaN"}, {"baseline_anc": 1e308}, {"therapy_start": "1900-01-01"}, {"therapy_start": "2999-01-01"}):
        status, body = await api.call("POST", "/v1/patients", clinic, json={**base, **bad})
        assert 422 == status, (bad, body)
    await _patient(api, "P6")
    dr = await api.token(Role.PRESCRIBER)
    for temp in (1000, -5, "NaN"):
        status, _ = await api.call("POST", "/v1/patients/P6/events?authority=HOSP", dr, json={"type": "fever", "on": date.today().isoformat(), "temperature_c": temp})
        assert 422 == status, temp


def test_an_unauthenticated_public_bind_is_refused(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    s.http.host, s.http.auth = "0.0.0.0", "none"
    with pytest.raises(ConfigError, match=r"http\.auth = none on 0\.0\.0\.0"):
        check_settings(s)
    s.http.auth = "tokens"
    check_settings(s)  # tokens (and OIDC, when configured) on any address


async def test_the_cli_goes_through_the_api_with_a_token(api: Client, tmp_path: Path) -> None:
    """REMS_API_URL + a token: a prescriber on another machine needs no database credentials,
    and the trail names the token's holder (issue #15)."""
    import asyncio
    import os
    import subprocess

    from tests.process import BIN

    await _patient(api, "R1")
    dr = await api.token(Role.PRESCRIBER, name="DR-REMOTE")
    pharmacy = await api.token(Role.PHARMACY, name="RX-REMOTE")
    (tmp_path / "rx.token").write_text(pharmacy + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMS_")} | {"REMS_API_URL": api.base, "REMS_STORE__URL": "sqlite:////nonexistent/never.db"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env={**env, **extra}, capture_output=True, text=True, timeout=60)

    fever = await asyncio.to_thread(run, "event", "R1", "fever", "--authority", "HOSP", "--on", date.today().isoformat(), "--temperature-c", "38.7", REMS_API_TOKEN=dr)
    assert 0 == fever.returncode, fever.stderr
    assert "monitoring.confirm_repeat" in fever.stdout
    check = await asyncio.to_thread(run, "--token-file", str(tmp_path / "rx.token"), "dispense-check", "R1", "--authority", "HOSP")
    assert 0 == check.returncode and '"authorized"' in check.stdout, check.stderr
    refused = await asyncio.to_thread(run, "enroll", "R9", "--population", "general", "--therapy-start", START.isoformat(), REMS_API_TOKEN=pharmacy)
    assert 1 == refused.returncode and "answered 403" in refused.stderr and "Traceback" not in refused.stderr
    entries = (await api.call("GET", "/v1/audit?patient=R1&authority=HOSP", await api.token(Role.AUDITOR)))[1]["entries"]
    assert {"DR-REMOTE", "RX-REMOTE"} <= {e["subject"] for e in entries}


async def test_a_client_certificate_maps_to_its_identity_over_https(tmp_path: Path) -> None:
    """mTLS (issue #15): a certificate the hospital CA signed, whose CN is in
    http.mtls_identities, is that identity; an unmapped one still needs a bearer token."""
    import ssl

    import trustme

    from rems_ingest.config import MtlsIdentity

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    s = make_settings(tmp_path)
    s.http.auth = "tokens"
    s.http.tls_cert = s.http.tls_key = tmp_path / "server.pem"
    s.http.tls_client_ca = tmp_path / "ca.pem"
    s.http.mtls_identities = {"rx-main-st": MtlsIdentity(roles=["pharmacy"], pharmacy_id="RX1")}
    d = Daemon(s)
    await d.start()
    try:
        client = Client(d, aiohttp.ClientSession())
        client.base = f"https://127.0.0.1:{d.http_port}"
        async with client.s:
            await _patient_over(client, ca)
            for cn, expected in (("rx-main-st", 200), ("someone-else", 401)):
                ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
                ca.issue_cert("127.0.0.1", common_name=cn).configure_cert(ctx)
                async with client.s.get(client.base + "/v1/patients/M1/dispense-check?authority=HOSP", ssl=ctx) as r:
                    assert expected == r.status, (cn, await r.text())
            entries = await d.services.trail.show(None)
            assert any(e["subject"] == "rx-main-st" and e["outcome"] == 200 for e in entries)
    finally:
        await d.shutdown()


async def _patient_over(api: Client, ca: Any) -> None:
    import ssl

    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with MllpClient("127.0.0.1", api.d.server.bound_port) as c:
        assert b"MSA|AA" in await c.send(oru("M1-B", "M1", START - timedelta(days=1), "1.8", "M1-B"))
    clinic = await api.token(Role.CLINIC)
    body = {"id": "M1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat(), "pharmacy_id": "RX1"}
    async with api.s.post(api.base + "/v1/patients", json=body, headers={"Authorization": f"Bearer {clinic}"}, ssl=ctx) as r:
        assert 201 == r.status, await r.text()


async def test_people_log_in_to_the_console_through_the_identity_provider(tmp_path: Path, keys: tuple[Any, Path]) -> None:
    """The console's provider login (#16): authorization code with PKCE; the access token the
    provider returns is checked like any bearer JWT, and a forged state is refused."""
    import base64
    import hashlib
    import urllib.parse

    from aiohttp import web

    from tests.process import free_port

    private, jwks = keys
    codes: dict[str, str] = {}

    async def authorize(request: web.Request) -> web.Response:
        q = request.query
        codes["c1"] = q["code_challenge"]
        raise web.HTTPFound(f"{q['redirect_uri']}?{urllib.parse.urlencode({'code': 'c1', 'state': q['state']})}")

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        verifier = str(form["code_verifier"])
        ok = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() == codes.get(str(form["code"]))
        if not ok:
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response({"access_token": _jwt(private, sub="dr.grey", roles=["psychiatrist"]), "token_type": "Bearer"})

    idp = web.Application()
    idp.router.add_get("/authorize", authorize)
    idp.router.add_post("/token", token)
    runner = web.AppRunner(idp)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    idp_base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    port = free_port()
    s = make_settings(tmp_path)
    s.http.port, s.http.auth = port, "tokens"
    s.http.oidc_issuer, s.http.oidc_audience, s.http.oidc_jwks_file = ISSUER, AUDIENCE, jwks
    s.http.oidc_role_map = {"psychiatrist": "prescriber"}
    s.http.oidc_authorize_url, s.http.oidc_token_url = idp_base + "/authorize", idp_base + "/token"
    s.http.oidc_client_id, s.http.oidc_redirect_url = "rems-console", f"http://127.0.0.1:{port}/ui/oidc/callback"
    d = Daemon(s)
    await d.start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"http://127.0.0.1:{port}/ui/login") as r:
                assert "identity provider" in await r.text()
            async with browser.get(f"http://127.0.0.1:{port}/ui/login/oidc") as r:
                page = await r.text()
                assert r.status == 200 and "Worklists" in page and "dr.grey" in page
            async with aiohttp.ClientSession() as stranger, stranger.get(f"http://127.0.0.1:{port}/ui/oidc/callback?code=c1&state=forged", allow_redirects=False) as r:
                assert r.status == 401 and "Login failed" in await r.text()
    finally:
        await d.shutdown()
        await runner.cleanup()


def test_the_openapi_bodies_are_the_models_the_handlers_validate_with() -> None:
    from typing import get_args

    from rems_ingest.adapters.http.bodies import EventBody
    from rems_ingest.adapters.http.openapi import openapi_document
    from rems_ingest.core.model import CLINICAL_EVENT_TYPES

    assert set(get_args(EventBody.model_fields["type"].annotation)) == CLINICAL_EVENT_TYPES
    doc = openapi_document()
    assert doc["paths"]["/v1/patients/{id}/events"]["post"]["requestBody"]["content"]["application/json"]["schema"] == EventBody.model_json_schema(ref_template="#/components/schemas/{model}")
