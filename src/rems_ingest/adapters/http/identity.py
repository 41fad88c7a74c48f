"""Who is calling: an API token (service/access.TokenService) or an OIDC bearer JWT, checked
here with PyJWT against the identity provider's JWKS (signature, issuer, audience, expiry).
Failed attempts are counted and, past a limit per client address, answered 429 for a minute."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from rems_ingest.observability import metrics
from rems_ingest.service.access import Identity, Role, TokenService

# http.auth = none (loopback only): every caller is this identity, with every role
ANONYMOUS = Identity("anonymous (http.auth = none, loopback)", frozenset(Role), via="none")
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class Unauthenticated(Exception):
    """401: no identity, or one that does not hold (expired, revoked, wrong audience...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class TooManyFailures(Exception):
    """429: this client address failed to authenticate too often in the last minute."""


@dataclass
class JwtVerifier:
    issuer: str
    audience: str
    jwks_url: str = ""
    jwks_file: Path | None = None
    subject_claim: str = "sub"
    roles_claim: str = "roles"
    role_map: dict[str, str] = field(default_factory=dict)
    pharmacy_claim: str = "pharmacy_id"

    def __post_init__(self) -> None:
        # PyJWKClient caches the provider's keys (and refetches on an unknown kid)
        self._client = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300) if self.jwks_url else None
        self._keys: jwt.PyJWKSet | None = None
        self._file_mtime = 0.0

    def _key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        assert self.jwks_file is not None
        mtime = self.jwks_file.stat().st_mtime
        if self._keys is None or mtime != self._file_mtime:  # a rotated key file is read again
            self._keys, self._file_mtime = jwt.PyJWKSet.from_dict(json.loads(self.jwks_file.read_text())), mtime
        kid = jwt.get_unverified_header(token).get("kid")
        for k in self._keys.keys:
            if kid is None or k.key_id == kid:
                return k.key
        raise jwt.InvalidTokenError("no key in the JWKS for this token's kid")

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("jwt_expired", "the bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("jwt_audience", "the bearer token is not for this service (audience)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("jwt_issuer", "the bearer token is from another issuer") from None
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            raise Unauthenticated("jwt_invalid", f"the bearer token does not verify ({type(exc).__name__})") from None
        subject = str(claims.get(self.subject_claim) or "")
        if not subject:
            raise Unauthenticated("jwt_subject", f"the bearer token has no {self.subject_claim} claim")
        raw = claims.get(self.roles_claim) or []
        names = raw.split() if isinstance(raw, str) else [str(r) for r in raw] if isinstance(raw, list) else []
        roles = set()
        for name in names:
            mapped = self.role_map.get(name, name if not self.role_map else "")
            if mapped in Role.__members__.values():
                roles.add(Role(mapped))
        return Identity(subject[:200], frozenset(roles), str(claims.get(self.pharmacy_claim) or "")[:200], via="jwt")


@dataclass
class Authenticator:
    tokens: TokenService
    jwt: JwtVerifier | None = None
    max_failures_per_minute: int = 20
    certificates: dict[str, Identity] = field(default_factory=dict)  # client certificate subject CN -> identity
    _failures: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)

    async def identify(self, authorization: str, source: str, peercert: dict[str, Any] | None = None) -> Identity:
        """A verified client certificate mapped in http.mtls_identities, else the bearer credential."""
        if peercert and not authorization:
            who = self.certificates.get(_common_name(peercert))
            if who is not None:
                return who
        self._check_rate(source)
        try:
            return await self._identify(authorization)
        except Unauthenticated as exc:
            self._failed(source, exc.reason)
            raise

    async def _identify(self, authorization: str) -> Identity:
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("missing", "send Authorization: Bearer <API token or OIDC token>")
        if credential.count(".") == 2:  # a JWT (API tokens have no dots)
            if self.jwt is None:
                raise Unauthenticated("jwt_not_configured", "bearer JWTs are not accepted here (no OIDC provider configured)")
            return await asyncio.to_thread(self.jwt.verify, credential)  # a JWKS fetch must not stall the loop
        who = await self.tokens.authenticate(credential)
        if who is None:
            raise Unauthenticated("token", "the API token is unknown, revoked or expired")
        return who

    def _check_rate(self, source: str) -> None:
        recent = [t for t in self._failures.get(source, ()) if t > time.monotonic() - 60]
        if len(recent) >= self.max_failures_per_minute:
            metrics.AUTH_FAILURES.labels("rate_limited").inc()
            raise TooManyFailures(source)

    def _failed(self, source: str, reason: str) -> None:
        metrics.AUTH_FAILURES.labels(reason).inc()
        if reason == "missing":  # a client not configured with a credential is not guessing one
            return
        now = time.monotonic()
        self._failures[source] = [t for t in self._failures.pop(source, []) if t > now - 60] + [now]
        while len(self._failures) > 10_000:  # bounded: a scan from many addresses cannot grow it
            self._failures.popitem(last=False)


def _common_name(peercert: dict[str, Any]) -> str:
    """The subject CN of a certificate the TLS layer verified (ssl.getpeercert() form)."""
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""
