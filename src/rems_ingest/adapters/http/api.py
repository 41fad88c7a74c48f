"""HTTP API (contract.md): enrollment, events, status, dispense check, sweep, health, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rems_ingest.core.errors import InvalidInput
from rems_ingest.core.model import PatientKey
from rems_ingest.observability import metrics
from rems_ingest.service.clinic import ClinicService, Conflict, NotFound
from rems_ingest.service.commands import EnrollPatient, RecordEvent, parse_date

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidInput as exc:
        return _error(422 if request.method == "POST" else 400, "invalid", str(exc))
    except Conflict as exc:
        return _error(409, "conflict", str(exc))
    except NotFound as exc:
        return _error(404, "not_found", str(exc))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json", "detail": "body must be a JSON object"}), content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json", "detail": "body must be a JSON object"}), content_type="application/json")
    return body


def build_app(clinic: ClinicService, ready: Callable[[], dict[str, Any]], reload_rules: Callable[[], str] | None = None) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=1 << 20)

    def key(request: web.Request) -> PatientKey:
        return PatientKey(request.match_info["id"], request.query.get("authority", ""))

    async def enroll(request: web.Request) -> web.Response:
        return web.json_response(await clinic.enroll(EnrollPatient.from_mapping(await _body(request))), status=201)

    async def status(request: web.Request) -> web.Response:
        return web.json_response(await clinic.status(key(request)))

    async def event(request: web.Request) -> web.Response:
        return web.json_response(await clinic.record_event(key(request), RecordEvent.from_mapping(await _body(request))), status=201)

    async def dispense_check(request: web.Request) -> web.Response:
        on = parse_date(request.query["on"], "on") if "on" in request.query else None
        return web.json_response(await clinic.dispense_check(key(request), on))

    async def sweep(request: web.Request) -> web.Response:
        now = None
        if "now" in request.query:
            try:
                now = datetime.fromisoformat(request.query["now"])
            except ValueError:
                raise InvalidInput("now must be an ISO date-time") from None
            if now.tzinfo is None:
                raise InvalidInput("now must include a UTC offset, e.g. 2026-03-05T09:00:00+00:00")
        return web.json_response({"alerts": await clinic.sweep_overdue(now)})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await asyncio.to_thread(ready)  # store reads off the event loop: a slow store must not stall MLLP
        return web.json_response(checks, status=200 if checks["ready"] else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_post("/v1/patients", enroll)
    app.router.add_get("/v1/patients/{id}", status)
    app.router.add_post("/v1/patients/{id}/events", event)
    app.router.add_get("/v1/patients/{id}/dispense-check", dispense_check)
    app.router.add_post("/v1/sweeps/overdue", sweep)
    async def reload(_: web.Request) -> web.Response:
        """Same as SIGHUP: a profile that does not load is refused and the one in force stays."""
        if reload_rules is None:
            return _error(404, "not_found", "reload is not available")
        try:
            return web.json_response({"rules_profile": reload_rules()})
        except Exception as exc:  # noqa: BLE001 - report; the old profile stays in force
            return _error(422, "invalid_profile", str(exc))

    app.router.add_post("/v1/admin/reload-rules", reload)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
