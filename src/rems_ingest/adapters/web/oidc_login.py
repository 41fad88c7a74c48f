"""The console's "Log in with the hospital's identity provider": OAuth 2.0 authorization code
flow with PKCE (RFC 7636) and a state value. The access token the provider returns is a JWT the
API's verifier accepts (signature, issuer, audience, expiry); it becomes the session, checked
again on every page like an API token, so it ends when it expires."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass
class OidcLogin:
    authorize_url: str
    token_url: str
    client_id: str
    redirect_url: str
    scope: str = "openid"
    client_secret_file: Path | None = None
    _pending: OrderedDict[str, tuple[str, float]] = field(default_factory=OrderedDict)  # state -> (PKCE verifier, when)

    def start(self) -> str:
        """The provider's authorize URL for a new login (state and PKCE challenge remembered)."""
        state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        self._pending[state] = (verifier, time.monotonic())
        while len(self._pending) > 1000 or (self._pending and next(iter(self._pending.values()))[1] < time.monotonic() - 600):
            self._pending.popitem(last=False)  # abandoned logins: bounded and forgotten after 10 minutes
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_url, "scope": self.scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{self.authorize_url}{'&' if '?' in self.authorize_url else '?'}{urllib.parse.urlencode(query)}"

    async def finish(self, state: str, code: str) -> str:
        """The access token for a returning login, or ValueError (unknown state, refused code)."""
        pending = self._pending.pop(state, None)
        if pending is None or pending[1] < time.monotonic() - 600 or not code:
            raise ValueError("this login has expired or was not started here; log in again")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_url, "client_id": self.client_id, "code_verifier": pending[0]}
        if self.client_secret_file:
            form["client_secret"] = self.client_secret_file.read_text().strip()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s, s.post(self.token_url, data=form) as r:
            body = await r.json(content_type=None)
            if r.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
                raise ValueError(f"the identity provider refused the login ({r.status})")
            return str(body["access_token"])
