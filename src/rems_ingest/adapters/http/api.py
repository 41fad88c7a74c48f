"""HTTP API (contract.md): enrollment, events, status, dispense check, sweep, audit, health,
metrics. Every /v1 route names the permission it needs (service/access.GRANTS says which roles
hold it); every state-changing request and every read of a patient is written to the access
trail with who, role, what, which patient and the outcome. Every answer is JSON, errors too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rems_ingest.adapters.http.bodies import EnrollBody, EventBody, ReassignBody, UnenrollBody, VoidBody, validated
from rems_ingest.adapters.http.identity import ANONYMOUS, Authenticator, TooManyFailures, Unauthenticated
from rems_ingest.core.errors import InvalidInput
from rems_ingest.core.model import PatientKey
from rems_ingest.observability import metrics
from rems_ingest.service.access import AccessTrail, Identity, Permission
from rems_ingest.service.clinic import ClinicService, Conflict, NotFound, NotInCareTeam
from rems_ingest.service.commands import EnrollPatient, RecordEvent, designees_of, parse_date
from rems_ingest.service.ports import RefusedByStore, StoreUnavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("rems_ingest.http")
MAX_DEPTH = 8  # JSON nesting a request body may have
IDENTITY = web.RequestKey("identity", Identity)
OPEN = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


TRAIL_NOTE = web.RequestKey("trail_note", str)  # what a handler adds to its line in the access trail


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is a JSON body, the framework's own 404, 405 and 413 included; an
    unexpected exception is a JSON 500 with no detail (logged by type only, never PHI)."""
    try:
        return await handler(request)
    except InvalidInput as exc:
        return _error(400 if request.method == "GET" else 422, "invalid", str(exc))
    except Conflict as exc:
        return _error(409, "conflict", str(exc))
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except NotInCareTeam as exc:
        return _error(403, "not_in_care_team", str(exc))
    except Unauthenticated as exc:
        return _error(401, "unauthenticated", exc.detail, {"WWW-Authenticate": 'Bearer realm="rems-ingest"'})
    except TooManyFailures:
        return _error(429, "too_many_failures", "too many failed authentications from this address; wait a minute", {"Retry-After": "60"})
    except StoreUnavailable:  # nothing was decided or changed: the same request can succeed later
        return _error(503, "store_unavailable", "the store cannot be reached; retry shortly", {"Retry-After": "5"})
    except RefusedByStore as exc:
        return _error(422, "refused_by_store", f"the store refused a value ({exc})")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":  # redirects, and errors already JSON
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        return _error(exc.status, code, exc.reason)
    except Exception as exc:  # noqa: BLE001 - the boundary: never a stack trace to a client
        log.error("http_unexpected_error", error=type(exc).__name__, path=request.match_info.route.resource.canonical if request.match_info.route.resource else "")
        return _error(500, "internal", "unexpected error; it has been logged")


def _depth(value: Any, limit: int) -> bool:
    if limit < 0:
        return False
    if isinstance(value, dict):
        return all(_depth(v, limit - 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth(v, limit - 1) for v in value)
    return True


async def _body(request: web.Request) -> dict[str, Any]:
    bad = {"error": "bad_json", "detail": "body must be a JSON object"}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps(bad), content_type="application/json") from None
    except RecursionError:
        body = None
    if not isinstance(body, dict) or not _depth(body, MAX_DEPTH):
        detail = "body must be a JSON object" if body is not None else f"body is nested deeper than {MAX_DEPTH} levels"
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json", "detail": detail}), content_type="application/json")
    return body


def build_app(
    clinic: ClinicService,
    ready: Callable[[], dict[str, Any]],
    reload_rules: Callable[[], str] | None = None,
    *,
    authenticator: Authenticator | None = None,
    trail: AccessTrail | None = None,
    openapi: dict[str, Any] | None = None,
) -> web.Application:
    """``authenticator`` None: http.auth = none (loopback only; config refuses anything else)."""

    @web.middleware
    async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN or request.path.startswith("/ui") or request.match_info.http_exception is not None:  # the console checks its own session
            return await handler(request)
        source = request.remote or ""
        peercert = request.transport.get_extra_info("peercert") if request.transport is not None else None
        who = ANONYMOUS if authenticator is None else await authenticator.identify(request.headers.get("Authorization", ""), source, peercert)
        request[IDENTITY] = who
        return await handler(request)

    app = web.Application(middlewares=[errors, identify], client_max_size=1 << 20)

    def key(request: web.Request) -> PatientKey:
        return PatientKey(request.match_info["id"], request.query.get("authority", ""))

    def guarded(permission: Permission, action: str, patient: Callable[[web.Request], Awaitable[PatientKey | None]] | None = None, also: Permission | None = None) -> Callable[[Handler], Handler]:
        """The route's permission (or ``also``), and its line in the access trail (whatever the outcome)."""

        def wrap(fn: Handler) -> Handler:
            async def run(request: web.Request) -> web.StreamResponse:
                who = request[IDENTITY]
                status = 500
                try:
                    if not who.may(permission) and not (also and who.may(also)):
                        metrics.AUTH_FAILURES.labels("forbidden").inc()
                        status = 403
                        return _error(403, "forbidden", f"{who.subject} ({', '.join(sorted(r.value for r in who.roles)) or 'no role'}) may not {permission.value}")
                    response = await errors(request, fn)
                    status = response.status
                    return response
                finally:
                    if trail is not None:
                        subject_of = await patient(request) if patient else None
                        try:
                            note = request.get(TRAIL_NOTE, "")  # e.g. an event's type, id and author: in the chain
                            await trail.record(who, f"{action} {note}".strip(), subject_of, status, request.remote or "", anchor=request.method not in ("GET", "HEAD") and status < 400)
                        except Exception as exc:  # noqa: BLE001 - reported; the answer is already decided
                            log.error("access_trail_write_failed", error=type(exc).__name__)

            return run

        return wrap

    async def path_patient(request: web.Request) -> PatientKey:
        return key(request)

    async def body_patient(request: web.Request) -> PatientKey | None:
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001 - an unreadable body names no patient
            return None
        return PatientKey(str(body.get("id", ""))[:200], str(body.get("authority", ""))[:200]) if isinstance(body, dict) else None

    @guarded(Permission.ENROLL, "patient.enroll", body_patient)
    async def enroll(request: web.Request) -> web.Response:
        body = validated(EnrollBody, await _body(request))
        return web.json_response(await clinic.enroll(EnrollPatient.from_mapping(body), actor=request[IDENTITY].subject), status=201)

    @guarded(Permission.ENROLL, "patient.reassign", path_patient)
    async def reassign(request: web.Request) -> web.Response:
        body = validated(ReassignBody, await _body(request))
        current = await clinic.status(key(request))
        team = designees_of(body["designees"]) if body.get("designees") is not None else None
        return web.json_response(await clinic.reassign(key(request), body.get("prescriber_id") or current["prescriber_id"], body.get("pharmacy_id") or current["pharmacy_id"], actor=request[IDENTITY].subject, designees=team))

    @guarded(Permission.ENROLL, "patient.unenroll", path_patient)
    async def unenroll(request: web.Request) -> web.Response:
        body = validated(UnenrollBody, await _body(request))
        return web.json_response(await clinic.unenroll(key(request), body.get("reason", ""), actor=request[IDENTITY].subject))

    @guarded(Permission.READ_PATIENT, "patient.read", path_patient)
    async def status(request: web.Request) -> web.Response:
        return web.json_response(await clinic.status(key(request), pharmacy=request[IDENTITY].pharmacy_id))

    @guarded(Permission.RECORD_EVENT, "patient.event", path_patient)
    async def event(request: web.Request) -> web.Response:
        who = request[IDENTITY]
        body = validated(EventBody, await _body(request))
        if who.via != "none":  # the event's author is the authenticated identity, never a body field
            if body.get("by") and body["by"] != who.subject:
                raise InvalidInput(f"by is the authenticated subject ({who.subject}); leave it out or send that")
            body["by"] = who.subject
        cmd = RecordEvent.from_mapping(body)
        request[TRAIL_NOTE] = f"{cmd.type} {cmd.event_id} by {cmd.by}"[:100]
        view = await clinic.record_event(key(request), cmd, actor=who.subject, care_team=who.via != "none")
        return web.json_response(view, status=200 if view.get("duplicate") else 201)

    @guarded(Permission.RECORD_EVENT, "patient.event.void", path_patient, also=Permission.ENROLL)
    async def void(request: web.Request) -> web.Response:
        who = request[IDENTITY]
        body = validated(VoidBody, await _body(request))
        return web.json_response(await clinic.void_event(key(request), request.match_info["event_id"], body["reason"], by=who.subject, clinic=who.may(Permission.ENROLL), care_team=who.via != "none"))

    @guarded(Permission.CHECK_DISPENSE, "patient.dispense_check", path_patient)
    async def dispense_check(request: web.Request) -> web.Response:
        on = parse_date(request.query["on"], "on") if "on" in request.query else None
        return web.json_response(await clinic.dispense_check(key(request), on, pharmacy=request[IDENTITY].pharmacy_id))

    @guarded(Permission.RUN_SWEEP, "sweep.overdue")
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

    @guarded(Permission.RELOAD_RULES, "rules.reload")
    async def reload(_: web.Request) -> web.Response:
        """Same as SIGHUP: a profile that does not load is refused and the one in force stays."""
        if reload_rules is None:
            return _error(404, "not_found", "reload is not available")
        try:
            return web.json_response({"rules_profile": reload_rules()})
        except Exception as exc:  # noqa: BLE001 - report; the old profile stays in force
            return _error(422, "invalid_profile", str(exc))

    async def audit_patient(request: web.Request) -> PatientKey | None:
        return PatientKey(request.query["patient"], request.query.get("authority", "")) if "patient" in request.query else None

    @guarded(Permission.READ_AUDIT, "audit.read", audit_patient)
    async def audit_view(request: web.Request) -> web.Response:
        if trail is None:
            return _error(404, "not_found", "no access trail")
        rows = await trail.show(await audit_patient(request), limit=500)
        return web.json_response({"entries": rows})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await asyncio.to_thread(ready)  # store reads off the event loop: a slow store must not stall MLLP
        return web.json_response(checks, status=200 if checks["ready"] else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi_view(_: web.Request) -> web.Response:
        return web.json_response(openapi or {})

    app.router.add_post("/v1/patients", enroll)
    app.router.add_get("/v1/patients/{id}", status)
    app.router.add_patch("/v1/patients/{id}", reassign)
    app.router.add_delete("/v1/patients/{id}", unenroll)
    app.router.add_post("/v1/patients/{id}/events", event)
    app.router.add_post("/v1/patients/{id}/events/{event_id}/void", void)
    app.router.add_get("/v1/patients/{id}/dispense-check", dispense_check)
    app.router.add_post("/v1/sweeps/overdue", sweep)
    app.router.add_post("/v1/admin/reload-rules", reload)
    app.router.add_get("/v1/audit", audit_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi_view)
    return app
