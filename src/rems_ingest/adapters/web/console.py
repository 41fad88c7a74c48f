"""Console routes: a login with an API token (kept in an HttpOnly, SameSite=Strict cookie and
checked again on every request, so a revoked token logs out at once), CSRF tokens on every
form, pages that call the same services as the JSON API and the same permission table.
Templates are Jinja2 (aiohttp-jinja2: autoescaped, well kept); the chart is server-side SVG."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from rems_ingest.adapters.http.identity import ANONYMOUS, Authenticator, TooManyFailures, Unauthenticated
from rems_ingest.adapters.web.chart import STATUS_NAMES, bands, sparkline, svg
from rems_ingest.adapters.web.decisions import CONFIRMED, consequence, patient_named
from rems_ingest.adapters.web.oidc_login import OidcLogin
from rems_ingest.core.errors import CoreError, InvalidInput
from rems_ingest.core.model import CLINICAL_EVENT_TYPES, PatientKey
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.access import AccessTrail, Identity, Permission
from rems_ingest.service.clinic import ClinicService, Conflict, NotFound, NotInCareTeam
from rems_ingest.service.commands import EnrollPatient, RecordEvent, clinic_csv_rows, designees_of, parse_date
from rems_ingest.service.feeds import FeedService
from rems_ingest.service.ports import StoreUnavailable
from rems_ingest.service.replay import ReplayService
from rems_ingest.service.worklists import LISTS, Filters, WorklistService

HERE = Path(__file__).resolve().parent
COOKIE = "rems_session"
PAGE = 50
SHOWN = 50  # rows per worklist on the page (the count is always the whole list)


class Console:
    def __init__(self, clinic: ClinicService, worklists: WorklistService, policy: Any, authenticator: Authenticator | None, trail: AccessTrail | None, feeds: FeedService | None = None, replay: ReplayService | None = None, oidc: OidcLogin | None = None) -> None:
        self.clinic, self.worklists, self.policy, self.feeds, self.replay, self.oidc = clinic, worklists, policy, feeds, replay, oidc
        self.authenticator, self.trail = authenticator, trail
        self._secret = secrets.token_bytes(32)  # CSRF tokens: valid for this process's life

    def routes(self, app: web.Application) -> None:
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=jinja2.select_autoescape(default=True), app_key=aiohttp_jinja2.APP_KEY)
        app.router.add_get("/ui", self.home)
        app.router.add_get("/ui/", self.home)
        app.router.add_get("/ui/login", self.login_form)
        app.router.add_post("/ui/login", self.login)
        app.router.add_post("/ui/logout", self.logout)
        app.router.add_get("/ui/login/oidc", self.oidc_start)
        app.router.add_get("/ui/oidc/callback", self.oidc_callback)
        app.router.add_get("/ui/worklists", self.worklist_page)
        app.router.add_get("/ui/patients/{id}", self.patient_page)
        app.router.add_post("/ui/patients/{id}/events", self.post_event)
        app.router.add_post("/ui/patients/{id}/events/{event_id}/void", self.post_void)
        app.router.add_get("/ui/messages", self.messages_page)
        app.router.add_get("/ui/feeds", self.feeds_page)
        app.router.add_get("/ui/audit", self.audit_page)
        app.router.add_post("/ui/replay", self.post_replay)
        app.router.add_get("/ui/messages/{mid:\\d+}", self.message_page)
        app.router.add_post("/ui/patients/{id}/assignment", self.post_assignment)
        app.router.add_post("/ui/enroll", self.post_enroll)
        app.router.add_post("/ui/patients/{id}/unenroll", self.post_unenroll)
        app.router.add_post("/ui/import", self.post_import)
        app.router.add_static("/ui/static", HERE / "static")
        app.middlewares.append(self.unavailable)

    @web.middleware
    async def unavailable(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """A console page while the store cannot be reached says so in a page (the API answers JSON)."""
        try:
            return await handler(request)
        except StoreUnavailable:
            if not request.path.startswith("/ui"):
                raise
            page = self.render("base.html", request, None, "", status=503, error="The store cannot be reached right now; nothing was changed. Try again in a few seconds.")
            page.headers["Retry-After"] = "5"
            return page

    # ------------------------------------------------------------ identity, CSRF, rendering

    def csrf(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()[:32]

    async def who(self, request: web.Request) -> tuple[Identity, str]:
        if self.authenticator is None:
            return ANONYMOUS, ""
        token = request.cookies.get(COOKIE, "")
        if not token:
            raise web.HTTPFound("/ui/login")
        try:
            return await self.authenticator.identify(f"Bearer {token}", request.remote or ""), token
        except (Unauthenticated, TooManyFailures):
            response = web.HTTPFound("/ui/login")
            response.del_cookie(COOKIE, path="/ui")
            raise response from None

    def render(self, name: str, request: web.Request, who: Identity | None, token: str, status: int = 200, **context: Any) -> web.Response:
        roles = ", ".join(sorted(r.value for r in who.roles)) if who else ""
        base = {"who": who, "roles": roles, "csrf": self.csrf(token) if who else "", "can_read": bool(who and who.may(Permission.READ_PATIENT)), "can_messages": bool(who and who.may(Permission.RUN_SWEEP)), "can_audit": bool(who and who.may(Permission.READ_AUDIT))}
        return aiohttp_jinja2.render_template(name, request, {**base, **context}, status=status)

    async def audit(self, who: Identity, action: str, key: PatientKey | None, status: int, request: web.Request) -> None:
        if self.trail is not None:
            await self.trail.record(who, action, key, status, request.remote or "", anchor=request.method == "POST" and status < 400)

    def forbidden(self, request: web.Request, who: Identity, token: str, what: str) -> web.Response:
        return self.render("base.html", request, who, token, status=403, error=f"{who.subject} may not {what}")

    # ------------------------------------------------------------ pages

    async def home(self, request: web.Request) -> web.Response:
        who, _ = await self.who(request)
        if who.may(Permission.READ_PATIENT):
            raise web.HTTPFound("/ui/worklists")
        raise web.HTTPFound("/ui/messages" if who.may(Permission.RUN_SWEEP) else "/ui/audit")

    async def login_form(self, request: web.Request) -> web.Response:
        return self.render("login.html", request, None, "", oidc=self.oidc is not None)

    async def oidc_start(self, request: web.Request) -> web.Response:
        if self.oidc is None:
            raise web.HTTPFound("/ui/login")
        raise web.HTTPFound(self.oidc.start())

    async def oidc_callback(self, request: web.Request) -> web.Response:
        """Back from the provider: exchange the code, check the token like any bearer JWT."""
        if self.oidc is None or self.authenticator is None:
            raise web.HTTPFound("/ui/login")
        try:
            token = await self.oidc.finish(request.query.get("state", ""), request.query.get("code", ""))
            await self.authenticator.identify(f"Bearer {token}", request.remote or "")
        except (ValueError, aiohttp.ClientError, TimeoutError, Unauthenticated, TooManyFailures) as exc:
            detail = exc.detail if isinstance(exc, Unauthenticated) else str(exc) or type(exc).__name__
            return self.render("login.html", request, None, "", status=401, oidc=True, error=f"Login failed: {detail}")
        response = web.HTTPFound("/ui/")
        response.set_cookie(COOKIE, token, path="/ui", httponly=True, samesite="Lax", secure=request.secure, max_age=12 * 3600)
        raise response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if self.authenticator is not None:
            try:
                await self.authenticator.identify(f"Bearer {token}", request.remote or "")
            except (Unauthenticated, TooManyFailures):
                return self.render("login.html", request, None, "", status=401, error="That token is unknown, revoked or expired.")
        response = web.HTTPFound("/ui/")
        response.set_cookie(COOKIE, token, path="/ui", httponly=True, samesite="Strict", secure=request.secure, max_age=12 * 3600)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        _, token = await self.who(request)
        await self._check_csrf(request, token)
        response = web.HTTPFound("/ui/login")
        response.del_cookie(COOKIE, path="/ui")
        raise response

    async def _check_csrf(self, request: web.Request, token: str) -> dict[str, str]:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if self.authenticator is not None and not hmac.compare_digest(form.get("csrf", ""), self.csrf(token)):
            raise web.HTTPForbidden(text=json.dumps({"error": "csrf", "detail": "the form is stale or from another site: reload the page"}), content_type="application/json")
        return form

    async def worklist_page(self, request: web.Request, **extra: Any) -> web.Response:
        who, token = await self.who(request)
        if not who.may(Permission.READ_PATIENT):
            return self.forbidden(request, who, token, "read patients")
        q = request.query
        f = Filters(q.get("prescriber", "")[:200], (who.pharmacy_id or q.get("pharmacy", ""))[:200], q.get("population", "") if q.get("population") in ("general", "ben") else "", q.get("sort", "")[:20])
        wl = await self.worklists.worklists(f, shown=SHOWN)
        await self.audit(who, "ui.worklists", None, 200, request)
        return self.render("worklists.html", request, who, token, wl=wl, f=f, lists=LISTS, shown=SHOWN, can_enroll=who.may(Permission.ENROLL), **extra)

    async def patient_page(self, request: web.Request, error: str = "", confirm: dict[str, str] | None = None) -> web.Response:
        who, token = await self.who(request)
        key = PatientKey(request.match_info["id"], request.query.get("authority", ""))
        if not who.may(Permission.READ_PATIENT):
            return self.forbidden(request, who, token, "read patients")
        try:
            view = await self.clinic.status(key, pharmacy=who.pharmacy_id)
        except NotFound as exc:
            await self.audit(who, "ui.patient.read", key, 404, request)
            return self.render("base.html", request, who, token, status=404, error=str(exc))
        record = await self.worklists.record(key)
        assert record is not None
        check = await self.clinic.dispense_check(key, None, pharmacy=who.pharmacy_id)
        policy: RulesPolicy = self.policy()
        row = record["row"]
        results = record["results"]
        pages = max(1, math.ceil(len(results) / PAGE))
        try:
            page = min(max(1, int(request.query.get("page", "1"))), pages)
        except ValueError:
            page = 1
        newest_first = list(reversed(results))
        await self.audit(who, "ui.patient.read", key, 200, request)
        return self.render(
            "patient.html", request, who, token, status=422 if error else 200, error=error,
            key=key, view=view, check=check, chart=svg(policy, row.state.population, results, record["episodes"]), bands=bands(policy, row.state.population), episodes=record["episodes"],
            alerts=record["alerts"], events=record["events"], total=len(results), page=page, pages=pages,
            page_rows=newest_first[(page - 1) * PAGE : page * PAGE], status_names=STATUS_NAMES,
            can_event=who.may(Permission.RECORD_EVENT), event_types=sorted(CLINICAL_EVENT_TYPES), today=self.worklists.today().isoformat(), can_manage=who.may(Permission.ENROLL),
            confirm=confirm,
        )

    async def post_event(self, request: web.Request) -> web.Response:
        who, token = await self.who(request)
        form = await self._check_csrf(request, token)
        key = PatientKey(request.match_info["id"], request.query.get("authority", ""))
        if not who.may(Permission.RECORD_EVENT):
            await self.audit(who, "ui.patient.event", key, 403, request)
            return self.forbidden(request, who, token, "record clinical events")
        try:
            temp = Decimal(form["temperature_c"]) if form.get("temperature_c", "").strip() else None
            etype = form.get("type", "")
            if etype == "discontinue" and form.get("stop") not in ("planned", "abrupt"):
                raise InvalidInput("choose how clozapine is stopped: a planned taper or an abrupt stop")
            cmd = RecordEvent(etype, parse_date(form.get("on", ""), "on"), who.subject if who.via != "none" else "console", form.get("rationale", ""),
                              abrupt=form.get("stop") != "planned", temperature_c=temp, break_glass=form.get("break_glass") == "yes", break_glass_reason=form.get("break_glass_reason", ""))
            if etype in CONFIRMED and form.get("confirmed") != "yes":  # a mis-click stops no one's therapy
                view = await self.clinic.status(key)
                return await self.patient_page(request, confirm={**{k: str(v) for k, v in form.items() if k != "csrf"}, "consequence": consequence(cmd, view)})
            await self.clinic.record_event(key, cmd, actor=who.subject, care_team=who.via != "none")
        except NotInCareTeam as exc:
            await self.audit(who, "ui.patient.event", key, 403, request)
            return await self.patient_page(request, error=str(exc))
        except (CoreError, Conflict, NotFound, InvalidOperation) as exc:
            await self.audit(who, "ui.patient.event", key, 422, request)
            return await self.patient_page(request, error=str(exc) or "temperature_c must be a number")
        await self.audit(who, f"ui.patient.event {cmd.type} {cmd.event_id}", key, 201, request)  # the author and what: in the chain
        raise web.HTTPSeeOther(f"/ui/patients/{request.match_info['id']}?authority={request.query.get('authority', '')}")

    async def post_void(self, request: web.Request) -> web.Response:
        """Entered in error: the use case decides who may (author, care team, clinic)."""
        who, token = await self.who(request)
        form = await self._check_csrf(request, token)
        key = PatientKey(request.match_info["id"], request.query.get("authority", ""))
        if not (who.may(Permission.RECORD_EVENT) or who.may(Permission.ENROLL)):
            await self.audit(who, "ui.patient.event.void", key, 403, request)
            return self.forbidden(request, who, token, "void clinical events")
        try:
            await self.clinic.void_event(key, request.match_info["event_id"], form.get("reason", ""), by=who.subject if who.via != "none" else "console", clinic=who.may(Permission.ENROLL), care_team=who.via != "none")
        except (NotInCareTeam, CoreError, Conflict, NotFound) as exc:
            await self.audit(who, "ui.patient.event.void", key, 403 if isinstance(exc, NotInCareTeam) else 422, request)
            return await self.patient_page(request, error=str(exc))
        await self.audit(who, "ui.patient.event.void", key, 200, request)
        raise web.HTTPSeeOther(f"/ui/patients/{request.match_info['id']}?authority={request.query.get('authority', '')}")

    async def post_replay(self, request: web.Request) -> web.Response:
        """Replay the stored messages in a status received since a date: a preview first."""
        who, token = await self.who(request)
        form = await self._check_csrf(request, token)
        if not who.may(Permission.RUN_SWEEP) or self.replay is None:
            return self.forbidden(request, who, token, "replay messages")
        rq = {"status": form.get("status", ""), "since": form.get("since", "")}
        try:
            since = datetime.combine(parse_date(rq["since"], "since"), datetime.min.time(), UTC)
        except CoreError as exc:
            return await self.messages_page(request, error=str(exc))
        if rq["status"] not in ("FILTERED", "REJECTED", "PROCESSED", "REPLAYED"):
            return await self.messages_page(request, error="choose a status")
        rows = await self.replay.select(since=since, status=rq["status"])
        if form.get("step") != "apply":
            return await self.messages_page(request, replay_preview=rows, rq=rq)
        done = [await self.replay.replay(r, who.subject) for r in rows]
        await self.audit(who, f"ui.replay {rq['status']} since {rq['since']}", None, 200, request)
        return await self.messages_page(request, replayed=done)

    async def messages_page(self, request: web.Request, **extra: Any) -> web.Response:
        who, token = await self.who(request)
        if not who.may(Permission.RUN_SWEEP) or self.feeds is None:  # the integration role
            await self.audit(who, "ui.messages", None, 403, request)
            return self.forbidden(request, who, token, "browse messages")
        q = {k: request.query.get(k, "")[:200] for k in ("status", "control_id", "sender", "ack", "since")}
        assert self.feeds is not None
        rows = await self.feeds.messages(status=q["status"], control_id=q["control_id"], sender=q["sender"], ack=q["ack"], since=q["since"])
        await self.audit(who, "ui.messages", None, 200, request)
        return self.render("messages.html", request, who, token, messages=rows, q=q, **extra)

    # ------------------------------------------------------------ clinic actions, message detail

    async def post_assignment(self, request: web.Request) -> web.Response:
        who, token = await self.who(request)
        form = await self._check_csrf(request, token)
        key = PatientKey(request.match_info["id"], request.query.get("authority", ""))
        if not who.may(Permission.ENROLL):
            await self.audit(who, "ui.patient.reassign", key, 403, request)
            return self.forbidden(request, who, token, "change a patient's prescriber or pharmacy")
        try:
            team = designees_of(form.get("designees", "")) if "designees" in form else None
            await self.clinic.reassign(key, form.get("prescriber_id", ""), form.get("pharmacy_id", ""), actor=who.subject, designees=team)
        except (CoreError, NotFound) as exc:
            await self.audit(who, "ui.patient.reassign", key, 422, request)
            return await self.patient_page(request, error=str(exc))
        await self.audit(who, "ui.patient.reassign", key, 200, request)
        raise web.HTTPSeeOther(f"/ui/patients/{request.match_info['id']}?authority={request.query.get('authority', '')}")

    async def post_unenroll(self, request: web.Request) -> web.Response:
        who, token = await self.who(request)
        form = await self._check_csrf(request, token)
        key = PatientKey(request.match_info["id"], request.query.get("authority", ""))
        if not who.may(Permission.ENROLL):
            await self.audit(who, "ui.patient.unenroll", key, 403, request)
            return self.forbidden(request, who, token, "un-enroll patients")
        try:
            await self.clinic.unenroll(key, form.get("reason", ""), actor=who.subject)
        except (CoreError, Conflict, NotFound) as exc:
            await self.audit(who, "ui.patient.unenroll", key, 409, request)
            return await self.patient_page(request, error=str(exc))
        await self.audit(who, "ui.patient.unenroll", key, 200, request)
        raise web.HTTPSeeOther(f"/ui/patients/{request.match_info['id']}?authority={request.query.get('authority', '')}")

    async def post_enroll(self, request: web.Request) -> web.Response:
        who, token = await self.who(request)
        form = await self._check_csrf(request, token)
        key = PatientKey(form.get("id", "")[:200], form.get("authority", "")[:200])
        if not who.may(Permission.ENROLL):
            return self.forbidden(request, who, token, "enroll patients")
        try:
            body = {k: v for k, v in form.items() if k != "csrf" and v.strip()}
            await self.clinic.enroll(EnrollPatient.from_mapping(body), actor=who.subject)
        except (CoreError, Conflict) as exc:
            await self.audit(who, "ui.patient.enroll", key, 422, request)
            return await self.worklist_page(request, error=str(exc))
        await self.audit(who, "ui.patient.enroll", key, 201, request)
        raise web.HTTPSeeOther(f"/ui/patients/{key.id}?authority={key.authority}")

    async def post_import(self, request: web.Request) -> web.Response:
        """A clinic's CSV: preview (a dry run of import-patients) first, then apply the same rows."""
        who, token = await self.who(request)
        await self._check_csrf(request, token)
        form = await request.post()  # cached by aiohttp: the same form, with its file field
        if not who.may(Permission.ENROLL):
            return self.forbidden(request, who, token, "import patients")
        try:
            if form.get("step") == "apply":
                rows = json.loads(str(form.get("rows", "[]")))
            else:
                upload = form.get("csv")
                text = upload.file.read().decode("utf-8-sig") if isinstance(upload, web.FileField) else ""
                rows = clinic_csv_rows(io.StringIO(text))
            commands = []
            for n, row in enumerate(rows, 1):
                try:
                    commands.append(EnrollPatient.from_mapping(row))
                except CoreError as exc:
                    raise CoreError(f"row {n}: {exc}") from None
            dry = form.get("step") != "apply"
            outcome = await self.clinic.enroll_many(commands, actor=who.subject, dry_run=dry)
        except (CoreError, Conflict, UnicodeDecodeError, ValueError) as exc:
            return await self.worklist_page(request, error=f"nothing was imported: {exc}")
        if dry:
            preview = [(f"{c.patient.id} ({c.patient.authority or 'no authority'})", what) for c, what in zip(commands, outcome, strict=True)]
            return await self.worklist_page(request, preview=preview, rows_json=json.dumps(rows))
        await self.audit(who, "ui.import", None, 201, request)
        raise web.HTTPSeeOther("/ui/worklists")

    async def audit_page(self, request: web.Request) -> web.Response:
        """The auditor's view: the trail (newest first, by patient if asked) and whether its chain holds."""
        who, token = await self.who(request)
        q = {"patient": request.query.get("patient", "")[:200], "authority": request.query.get("authority", "")[:200]}
        key = PatientKey(q["patient"], q["authority"]) if q["patient"] else None
        if not who.may(Permission.READ_AUDIT) or self.trail is None:
            await self.audit(who, "ui.audit.read", key, 403, request)
            return self.forbidden(request, who, token, "read the access trail")
        entries = await self.trail.show(key, limit=500)
        checked, broken = await self.trail.verify()
        await self.audit(who, "ui.audit.read", key, 200, request)
        return self.render("audit.html", request, who, token, entries=entries, checked=checked, broken=broken, q=q)

    async def feeds_page(self, request: web.Request) -> web.Response:
        who, token = await self.who(request)
        if not who.may(Permission.RUN_SWEEP) or self.feeds is None:
            return self.forbidden(request, who, token, "see the feeds")
        return self.render("feeds.html", request, who, token, feeds=await self.feeds.feeds(), registered=await self.feeds.registered(), spark=sparkline)

    async def message_page(self, request: web.Request) -> web.Response:
        who, token = await self.who(request)
        if not who.may(Permission.RUN_SWEEP):  # raw HL7 is PHI: the integration role only, every view audited
            await self.audit(who, "ui.message.raw", None, 403, request)
            return self.forbidden(request, who, token, "read raw messages")
        mid = int(request.match_info["mid"])
        m = await self.feeds.message(mid) if self.feeds else None
        if m is None:
            return self.render("base.html", request, who, token, status=404, error=f"no stored message {mid}")
        raw = bytes(m.pop("raw") or b"").decode(m.get("charset") or "utf-8", "replace")
        first = (m.get("results") or [{}])[0]  # raw HL7 names the patient: the view is on that patient's trail
        await self.audit(who, f"ui.message.raw #{mid}", PatientKey(first["patient_id"], first["authority"]) if first.get("patient_id") else patient_named(raw), 200, request)
        raw = raw.replace("\r", "\n")
        return self.render("message.html", request, who, token, m=m, raw=raw, errors=json.loads(m.get("ack_detail") or "[]"), status_names=STATUS_NAMES)

