"""The clinical commands through the HTTP API instead of the database (issue #15): with
``REMS_API_URL`` and a token (``REMS_API_TOKEN`` or ``--token-file``), a pharmacist or prescriber
on another machine needs no database credentials, and the daemon records who acted."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from rems_ingest.cli._common import fail


def remote(ctx: click.Context) -> tuple[str, str] | None:
    """(base URL, token) when the CLI should go through the API, else None (database mode)."""
    url = os.environ.get("REMS_API_URL", "").rstrip("/")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        fail(f"REMS_API_URL {url!r} is not an http(s) URL")
    token_file = ctx.find_root().params.get("token_file")
    token = os.environ.get("REMS_API_TOKEN", "")
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            fail(f"--token-file {token_file}: {exc.strerror or exc}")
    if not token:
        fail("REMS_API_URL is set: give a token with REMS_API_TOKEN or --token-file")
    return url, token


def call(target: tuple[str, str], method: str, path: str, query: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Any:
    """One API call; its JSON answer, or one line naming the refusal (exit 2 for invalid input,
    1 for anything else)."""
    base, token = target
    url = base + path + (f"?{urllib.parse.urlencode({k: v for k, v in (query or {}).items() if v})}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except (ValueError, AttributeError):
            detail = exc.reason
        fail(f"{base} answered {exc.code}: {detail}", 2 if exc.code in (400, 422) else 1)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"could not reach {base}: {reason}", 1)
