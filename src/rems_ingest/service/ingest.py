"""Ingest use case: frame -> parse -> ONE transaction (message, observations, state, outbox) -> ACK.

AA is built only from a committed transaction's result. A store failure answers AE (the
sender may resend); permanent problems answer AR. A resend of the same message returns the
stored ACK and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from rems_ingest.core.errors import CoreError
from rems_ingest.core.model import Alert, AlertKind, AncResult, PatientKey, Phase, Severity, event_sort_key
from rems_ingest.core.plausibility import TimeLimits, implausible_draw_time
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.feeds.registry import ConnectionRouter, Origin, Registry
from rems_ingest.feeds.settings import registry as feed_registry
from rems_ingest.hl7v2.ack import ErrDetail, build_ack, commit_code, wants
from rems_ingest.hl7v2.codes import CodeMap
from rems_ingest.hl7v2.errors import ReadFailed, StoreUnavailable, TooLarge
from rems_ingest.hl7v2.extract import Header
from rems_ingest.hl7v2.order import Observation
from rems_ingest.hl7v2.parse import ParsedMessage, _header_only, parse_frame
from rems_ingest.observability import metrics
from rems_ingest.observability.logging import loggable_id
from rems_ingest.service import ports
from rems_ingest.service.outbox import outbox_entry
from rems_ingest.service.patients import DUPLICATE, apply_event
from rems_ingest.service.ports import Repositories, UnitOfWork

log = structlog.get_logger("rems_ingest.ingest")

_ERR_TEXT = {100: "Segment sequence error", 101: "Required field missing", 102: "Data type error", 103: "Table value not found", 207: "Application internal error"}


def origin_json(origin: Origin | None) -> str | None:
    """The connection a message came from, as stored with it (replay judges it again)."""
    if origin is None:
        return None
    return json.dumps({"ip": origin.ip, "tls": origin.tls, "certificate_names": list(origin.certificate_names), "fingerprint": origin.fingerprint})[:400]


def origin_of(stored: str | None) -> Origin | None:
    if not stored:
        return None
    o = json.loads(stored)
    return Origin(o["ip"], o["tls"], tuple(o["certificate_names"]), o["fingerprint"])


def _insert_message(repo: Repositories, m: ParsedMessage, dkey: str, now: datetime, status: str, ack_code: str, ack_detail: str, origin: Origin | None) -> int | None:
    """The raw message row (None: this dedupe key is already stored, i.e. a resend)."""
    h = m.header
    assert h is not None
    return repo.insert_message(
        dedupe_key=dkey,
        sending_app=h.sending_app[:200],
        sending_facility=h.sending_facility[:200],
        control_id=h.control_id[:200],
        received_at=now.isoformat(),
        status=status,
        ack_code=ack_code,
        ack_detail=ack_detail,
        charset=m.charset,
        raw=m.text.encode("utf-8", "surrogateescape"),
        feed=m.feed or None,
        origin=origin_json(origin),
    )


def is_transient(exc: BaseException) -> bool:
    """Could the same message succeed later? Store unreachable, locked, full or a lost
    connection: yes (AE). A value or constraint the store refuses (too long, out of range) or an
    error in processing this message's content: no (AR, kept as REJECTED)."""
    return isinstance(exc, (ports.StoreUnavailable, OSError, TimeoutError))


def patient_ref(key: PatientKey | None) -> str:
    """A stable pseudonym for logs: never the identifier itself."""
    if key is None:
        return "-"
    return hashlib.sha256(f"{key.id}\x1f{key.authority}".encode()).hexdigest()[:12]


def dedupe_key(h: Header, text: str) -> str:
    """MSH-3, MSH-4, MSH-10 and the content with MSH-7 blanked (some engines rebuild it on resend)."""
    first, _, rest = text.partition("\r")
    fields = first.split(h.delimiters.field)
    if len(fields) > 6:
        fields[6] = ""
    content = hashlib.sha256((h.delimiters.field.join(fields) + "\r" + rest).encode("utf-8", "surrogateescape")).hexdigest()
    return hashlib.sha256(f"{h.sending_app}\x1f{h.sending_facility}\x1f{h.control_id}\x1f{content}".encode()).hexdigest()


_Quality = tuple[PatientKey | None, int, str, str, bool]  # patient, HL7 0357 code, location, reason, enrolled only


@dataclass
class IngestResult:
    ack_code: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False
    observations: int = 0
    alerts: int = 0
    patients: list[str] = field(default_factory=list)


@dataclass
class IngestService:
    store: UnitOfWork
    policy: Callable[[], RulesPolicy]
    processing_ids: tuple[str, ...] = ("P",)
    default_charset: str = "utf-8"
    max_segments: int = 2000
    code_map: CodeMap = field(default_factory=CodeMap)
    time_limits: TimeLimits = field(default_factory=TimeLimits)
    application: str = "REMS_INGEST"
    facility: str = ""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_alerts: Callable[[], None] = lambda: None  # wake the outbox relay (only when alerts were written)
    # who may send (issue #25): by default this host alone, as a daemon with no [feeds] registered
    registry: Registry = field(default_factory=lambda: feed_registry({}, {}))

    def __post_init__(self) -> None:
        self._seq = 0

    def _control_id(self) -> str:
        self._seq += 1
        return f"RI{int(time.time() * 1000):x}{self._seq:06d}"[-20:]

    # ------------------------------------------------------------ MLLP entry points

    async def handle_frame(self, payload: bytes, peer: str, origin: Origin | None = None) -> bytes | list[bytes] | None:
        """The reply frame(s): the ACK (or a response batch), then any enhanced-mode application
        acknowledgements MSH-16 asked for, each its own frame on the same connection.
        ``origin``: who the connection is (address, TLS certificate); plain TCP from ``peer``."""
        origin = origin or Origin.from_peer(peer)
        router = ConnectionRouter(self.registry, origin)
        started = time.perf_counter()
        now = self.clock()
        acks: list[str] = []
        app_acks: list[str] = []
        charset = self.default_charset
        for m in parse_frame(payload, default_charset=self.default_charset, processing_ids=self.processing_ids, max_segments=self.max_segments, code_map=self.code_map, router=router):
            charset = m.charset
            if m.is_ack:
                log.info("hl7_ack_ignored", control_id=loggable_id(m.header.control_id) if m.header else "")
                continue
            ack, app_ack = await self._answer(m, now, started, origin)
            if ack is not None:
                acks.append(ack)
            if app_ack is not None:
                app_acks.append(app_ack)
        frames: list[bytes] = []
        if len(acks) > 1:  # batch in one frame: answer with a response batch
            acks = ["BHS|^~\\&|" + self.application] + acks + [f"BTS|{len(acks)}"]
            acks = [a.rstrip("\r") for a in acks]
            frames.append(("\r".join(acks) + "\r").encode(charset, "replace"))
        elif acks:
            frames.append(acks[0].encode(charset, "replace"))
        frames += [a.encode(charset, "replace") for a in app_acks]
        if not frames:
            return None
        return frames[0] if len(frames) == 1 else frames

    def reject_oversize(self, head: bytes) -> bytes | None:
        header = _header_only(head.decode("latin-1"))
        if header is None:
            return None
        metrics.MESSAGES.labels("AR").inc()
        err = TooLarge("message exceeds the maximum frame size")
        return build_ack(header, "AR", control_id=self._control_id(), now=self.clock(), text=err.text, errors=[ErrDetail(err.err_code, err.err_text, "MSH^1", "E", err.text)]).encode("latin-1", "replace")

    async def _answer(self, m: ParsedMessage, now: datetime, started: float, origin: Origin | None = None) -> tuple[str | None, str | None]:
        """(the ACK or enhanced-mode commit ACK if MSH-15 wants one, the application ACK if MSH-16 does)."""
        h = m.header
        result = await (self._refused(m, now, origin) if m.error is not None else self._stored(m, now, origin))
        code = result.ack_code
        errors = [ErrDetail(**x) for x in result.errors]
        text = "; ".join(x.message for x in errors if x.severity == "E")
        ack: str | None = build_ack(h, code, control_id=self._control_id(), now=now, text=text, errors=errors, application=self.application, facility=self.facility)
        app_ack = None
        if h is not None and h.enhanced:
            if not wants(h.accept_ack, commit_code(code)):
                ack = None
            # Processing is complete at commit, so the application ACK follows at once, for a
            # rejection too: an analyzer sending MSH-15 NE / MSH-16 AL (the IHE convention)
            # waits for it and would otherwise hang or resend for ever
            if wants(h.app_ack, code, default=False):
                app_ack = build_ack(h, code, control_id=self._control_id(), now=now, text=text, errors=errors, application=self.application, facility=self.facility, commit=False)
        metrics.MESSAGES.labels(code).inc()
        feed = m.feed or ("(refused)" if m.error is not None else "(none)")
        metrics.FEED_MESSAGES.labels(feed, "rejected" if code in ("AR", "AE") else ("warned" if errors else "accepted")).inc()
        latency = time.perf_counter() - started
        metrics.ACK_LATENCY.observe(latency)
        # fields may have slid (a birth date where MSH-10 belongs): ids are logged by shape only,
        # and the facility only from a message that parsed (the peer address names the sender)
        log.info(
            "hl7_message_processed",
            control_id=loggable_id(h.control_id) if h else "",
            sending_facility=h.sending_facility if h and m.error is None else "",
            ack_code=code,
            duplicate=result.duplicate,
            observations=result.observations,
            alerts=result.alerts,
            patient_refs=result.patients,
            error_codes=[e.code for e in errors],
            latency_ms=round(latency * 1000, 3),
        )
        return ack, app_ack

    async def _refused(self, m: ParsedMessage, now: datetime, origin: Origin | None = None) -> IngestResult:
        """A message the parser refused: its NAK, kept as REJECTED when it is AR and readable."""
        h, e = m.header, m.error
        assert e is not None
        result = IngestResult(e.ack_code, [dict(code=e.err_code, text=e.err_text, location=e.location, severity="E", message=e.text)])
        if h is not None and m.text and e.ack_code == "AR":
            if isinstance(e, ReadFailed):  # a defect, not the message: the operator must hear it
                metrics.PERMANENT_FAILURES.inc()
                log.error("hl7_message_rejected", control_id=loggable_id(h.control_id), error=e.text)
            result = await self._keep_rejected(m, now, result, origin)
        return result

    async def _stored(self, m: ParsedMessage, now: datetime, origin: Origin | None = None) -> IngestResult:
        """Store and apply a parsed message; AA only after the commit. A store that is away is
        AE (a resend can succeed); anything a resend cannot fix is AR, kept for a replay."""
        h = m.header
        assert m.extraction is not None and h is not None
        try:
            result = await self.store.write(lambda repo: self._ingest(repo, m, now, origin), locks=(o.patient for o in m.extraction.observations))
        except Exception as exc:  # noqa: BLE001 - never AA without a commit
            if is_transient(exc):  # AE: the same message can succeed once the store is back
                metrics.STORE_FAILURES.inc()
                log.error("hl7_store_failed", control_id=loggable_id(h.control_id), error=type(exc).__name__)
                err = StoreUnavailable("message could not be stored; resend later")
                return IngestResult(err.ack_code, [dict(code=err.err_code, text=err.err_text, location="", severity="E", message=err.text)])
            # this message can never be stored as it is: AR, kept as REJECTED for a replay
            metrics.PERMANENT_FAILURES.inc()
            log.error("hl7_message_rejected", control_id=loggable_id(h.control_id), error=type(exc).__name__)
            reason = f"message could not be processed ({type(exc).__name__}); kept for replay"
            return await self._keep_rejected(m, now, IngestResult("AR", [dict(code=207, text=_ERR_TEXT[207], location="", severity="E", message=reason)]), origin)
        if result.alerts and not result.duplicate:
            self.on_alerts()
        return result

    async def _keep_rejected(self, m: ParsedMessage, now: datetime, result: IngestResult, origin: Origin | None = None) -> IngestResult:
        """Store a message answered AR as REJECTED with its reason: it is never lost, a replay
        can take it once the cause is fixed, and a resend gets the same answer. If even that
        write fails the answer stays AR (resending the same bytes cannot fix the message)."""
        h = m.header
        assert h is not None

        def tx(repo: Repositories) -> IngestResult:
            dkey = dedupe_key(h, m.text)
            msg_id = _insert_message(repo, m, dkey, now, "REJECTED", result.ack_code, json.dumps(result.errors), origin)
            if msg_id is None:
                found = repo.find_message(dkey)
                return IngestResult(found.ack_code, json.loads(found.ack_detail), duplicate=True)
            return result

        try:
            return await self.store.write(tx)
        except Exception as exc:  # noqa: BLE001 - the answer is AR either way
            log.error("hl7_rejected_not_kept", control_id=loggable_id(h.control_id), error=type(exc).__name__)
            return result

    # ------------------------------------------------------------ the transaction

    def _ingest(self, repo: Repositories, m: ParsedMessage, now: datetime, origin: Origin | None = None) -> IngestResult:
        h, ex = m.header, m.extraction
        assert h is not None and ex is not None
        dkey = dedupe_key(h, m.text)
        msg_id = _insert_message(repo, m, dkey, now, "PROCESSED" if ex.observations else "FILTERED", "AA", "[]", origin)
        if msg_id is None:  # a resend: answer what was answered then, change nothing
            found = repo.find_message(dkey)
            return IngestResult(found.ack_code, json.loads(found.ack_detail), duplicate=True)
        result, obs_rows = self.apply_message(repo, m, dkey, now)
        if result.errors:
            repo.set_ack_detail(msg_id, json.dumps(result.errors))
        repo.insert_observations([{**r, "message_id": msg_id} for r in obs_rows])
        return result

    def apply_message(self, repo: Repositories, m: ParsedMessage, dkey: str, now: datetime, received_at: datetime | None = None, *, replay: bool = False) -> tuple[IngestResult, list[dict[str, Any]]]:
        """Rules and outbox for one parsed message, inside the caller's transaction (live
        ingest and replay share it). Returns the result and the observation rows to store.
        ``received_at``: when the message first arrived (a replay judges draw times by it).
        ``replay``: keep a row for every result (a replay replaces the message's own rows; live,
        a result another message already brought unchanged is no second history row)."""
        received = received_at or now
        h, ex = m.header, m.extraction
        assert h is not None and ex is not None
        policy = self.policy()
        obs_rows: list[dict[str, Any]] = []
        cause = {"sending_facility": h.sending_facility, "sending_application": h.sending_app, "message_control_id": h.control_id}
        alerts = 0
        refs: list[str] = []
        quality: list[_Quality] = [(i.patient, i.code, i.location, i.reason, i.enrolled_only) for i in ex.issues]
        events = sorted(
            ((o, AncResult(o.result_key, o.anc, o.observed_at, o.status, o.censored, o.derived, o.wbc)) for o in ex.observations),
            key=lambda pair: event_sort_key(pair[1]),
        )
        for obs, event in events:
            raised = self._apply_result(repo, policy, obs, event, cause, now, received, obs_rows, quality, replay)
            if raised is not None:
                alerts += raised
                refs.append(patient_ref(obs.patient))
        errors, dq_alerts = self._report_quality(repo, policy, quality, dkey, cause, now)
        alerts += dq_alerts
        return IngestResult("AA", errors, observations=len(ex.observations), alerts=alerts, patients=refs), obs_rows

    def _apply_result(
        self, repo: Repositories, policy: RulesPolicy, obs: Observation, event: AncResult, cause: dict[str, str], now: datetime, received: datetime, obs_rows: list[dict[str, Any]], quality: list[_Quality], replay: bool = False
    ) -> int | None:
        """One observation through the rules; the number of alerts it raised, or None (with a
        data-quality entry) when it was not applied."""
        row = repo.patient(obs.patient, create=True, lock=True, now=now.isoformat())
        assert row is not None
        on_therapy = row.state.therapy_start if row.state.enrolled and row.state.phase is not Phase.PRE else None
        implausible = implausible_draw_time(obs.observed_at, received, self.time_limits, on_therapy, policy.baseline_window_days)
        if implausible is not None:
            quality.append((obs.patient, 102, "OBX^14", implausible, False))
            metrics.count(metrics.OBSERVATIONS, "rejected")
            return None
        obs_row = dict(
            patient_pk=row.pk,
            result_key=obs.result_key[:400],
            anc_per_ul=str(obs.anc),
            status=obs.status.value,
            observed_at=obs.observed_at.isoformat(),
            code=obs.code[:80],
            code_system=obs.code_system[:40],
            original_value=obs.original_value[:80],
            original_unit=obs.original_unit[:80],
            derived=obs.derived,
            censored=obs.censored,
            resulted_at=obs.resulted_at.isoformat() if obs.resulted_at else None,
        )
        try:
            applied = apply_event(repo, policy, obs.patient, event, cause=cause, now=now, row=row)
        except CoreError as exc:
            quality.append((obs.patient, 102, "OBX", str(exc), False))
            metrics.count(metrics.OBSERVATIONS, "rejected")
            return None
        if replay or applied.changed or applied.explanation != DUPLICATE:
            obs_rows.append(obs_row)  # the same result sent again (a new MSH-10) is one history row
        # results for patients nobody enrolled are kept (as possible baselines) and counted
        metrics.count(metrics.OBSERVATIONS, "stored" if applied.state.enrolled else "stored_not_enrolled")
        return len(applied.alerts)

    def _report_quality(self, repo: Repositories, policy: RulesPolicy, quality: list[_Quality], dkey: str, cause: dict[str, str], now: datetime) -> tuple[list[dict[str, Any]], int]:
        """ERR (severity W) for the lab on every problem; a data.quality alert for those about
        an enrolled patient (or any patient, unless the problem is for enrolled ones only)."""
        errors: list[dict[str, Any]] = []
        alerts = 0
        for n, (pkey, code, location, reason, enrolled_only) in enumerate(quality):
            metrics.count(metrics.OBSERVATIONS, "data_quality")
            row = repo.patient(pkey, create=False, lock=False) if pkey else None
            errors.append(dict(code=code, text=_ERR_TEXT.get(code, "Application error"), location=location, severity="W", message=reason))
            if enrolled_only and (row is None or not row.state.enrolled):
                continue  # the lab hears it in the ACK; nobody is paged for a patient not on clozapine
            alert = Alert(AlertKind.DATA_QUALITY, f"dq:{dkey[:24]}:{n}", now.date(), Severity.NORMAL, reason, (("hl7_error_code", str(code)), ("location", location)))
            repo.add_alerts([outbox_entry(pkey or PatientKey(""), row.pk if row else None, alert, row.state if row else None, row.version if row else 0, cause, policy, now)])
            alerts += 1
        return errors, alerts
