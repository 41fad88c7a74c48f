"""What needs someone's attention now (the web console's landing page), and a patient's whole
record for the patient page. Both read through the unit of work, like the JSON API."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rems_ingest.core import dispense, rules
from rems_ingest.core.model import ClinicalEvent, Enroll, Event, PatientKey, Phase, TreatmentStatus, event_sort_key
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.ports import PatientSummary, Repositories, UnitOfWork

LISTS = (
    ("overdue", "Overdue now"),
    ("due", "Due today or tomorrow"),
    ("holds", "Pharmacy holds"),
    ("decisions", "Awaiting a prescriber decision"),
    ("confirm", "Pending confirmation repeats"),
    ("quality", "Data-quality problems (7 days)"),
    ("unattributed", "Results for no enrolled patient (30 days)"),
)


SORTS = {"patient": lambda i: (i.patient.id, i.patient.authority), "category": lambda i: i.category, "next_due": lambda i: i.next_due, "prescriber": lambda i: i.prescriber_id, "pharmacy": lambda i: i.pharmacy_id}


@dataclass
class Filters:
    prescriber: str = ""
    pharmacy: str = ""
    population: str = ""
    sort: str = ""  # one of SORTS; "" = each list's own order (most urgent first)


@dataclass
class Item:
    patient: PatientKey
    prescriber_id: str = ""
    pharmacy_id: str = ""
    population: str = ""
    category: str = ""
    action: str = ""
    next_due: str = ""
    detail: str = ""  # how late, the hold's reason, what is awaited
    sort: Any = 0
    pk: int = 0  # the stored patient, for completing the items a page shows


@dataclass
class Worklists:
    today: date
    lists: dict[str, list[Item]] = field(default_factory=dict)


@dataclass
class WorklistService:
    store: UnitOfWork
    policy: Callable[[], RulesPolicy]
    timezone: str = "UTC"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def today(self) -> date:
        return self.clock().astimezone(ZoneInfo(self.timezone)).date()

    async def worklists(self, f: Filters, shown: int = 100) -> Worklists:
        """Every list in full (the counts), with the first ``shown`` items of each completed
        (action, the hold's reason) from the decoded state: the page shows no more than that."""
        today, policy, now = self.today(), self.policy(), self.clock()

        def read(repo: Repositories) -> Worklists:
            out = Worklists(today, {name: [] for name, _ in LISTS})
            for p in repo.enrolled_summaries(f.prescriber, f.pharmacy, due_by=today + timedelta(days=1)):
                if f.population and p.population != f.population:
                    continue
                for name, item in _placements(p, today):
                    out.lists[name].append(item)
            for a in repo.recent_alerts_of_kind("data.quality", (now - timedelta(days=7)).isoformat()):
                body = json.loads(a["payload"])
                pk = body.get("patient") or {}
                out.lists["quality"].append(Item(PatientKey(pk.get("id", ""), pk.get("authority", "")), detail=body.get("reason", ""), sort=a["created_at"]))
            if not (f.prescriber or f.pharmacy or f.population):
                for u in repo.unenrolled_with_results((now - timedelta(days=30)).isoformat()):
                    out.lists["unattributed"].append(Item(PatientKey(u["patient_id"], u["authority"]), detail=f"{u['results']} result(s), last drawn {str(u['last'])[:10]}", sort=u["last"]))
            for name, items in out.lists.items():
                if f.sort in SORTS:
                    items.sort(key=SORTS[f.sort])
                else:
                    items.sort(key=lambda i: i.sort, reverse=name in ("overdue", "quality", "unattributed"))
            _complete(repo, policy, today, [i for items in out.lists.values() for i in items[:shown] if i.pk])
            return out

        return await self.store.read(read)

    async def record(self, key: PatientKey) -> dict[str, Any] | None:
        """Everything the patient page shows: the row, every result, every alert, the events."""

        policy = self.policy()

        def read(repo: Repositories) -> dict[str, Any] | None:
            row = repo.patient(key, create=False, lock=False)
            if row is None:
                return None
            history = repo.events(row.pk)
            events = [e for e in history if isinstance(e, ClinicalEvent | Enroll)]
            return {"row": row, "results": repo.observation_points(row.pk), "alerts": _timeline(repo.alerts_for(row.pk, 1000)), "events": events, "episodes": episodes(policy, history)}

        return await self.store.read(read)


def _placements(p: PatientSummary, today: date) -> list[tuple[str, Item]]:
    def item(detail: str, sort: Any) -> Item:
        return Item(p.key, p.prescriber_id, p.pharmacy_id, p.population, p.category, "", p.next_due.isoformat() if p.next_due else "", detail, sort, p.pk)

    out: list[tuple[str, Item]] = []
    if p.next_due is not None and p.phase not in (Phase.PRE.value, Phase.CLOSED.value):
        late = (today - p.next_due).days
        if late > 0:
            out.append(("overdue", item(f"{late} day(s) late (due {p.next_due})", late)))
        elif late >= -1:
            out.append(("due", item("today" if late == 0 else "tomorrow", p.next_due)))
    if p.dispense_hold:
        out.append(("holds", item("", p.key.id)))
    if p.phase == Phase.SEV_RECOVERED_HOLD.value:
        out.append(("decisions", item("recovered from severe neutropenia: rechallenge or discontinue", p.key.id)))
    if p.pending_confirm_until is not None and p.pending_confirm_until >= today:
        out.append(("confirm", item(f"repeat ANC by {p.pending_confirm_until}", p.pending_confirm_until)))
    return out


def _complete(repo: Repositories, policy: RulesPolicy, today: date, items: list[Item]) -> None:
    """The action (a property of the whole state) and a hold's reason, for the items shown."""
    rows = {r.pk: r for r in repo.patients_by_pk(sorted({i.pk for i in items}))}
    for i in items:
        row = rows.get(i.pk)
        if row is None:
            continue
        i.action = row.state.action
        if not i.detail:
            i.detail = dispense.check(policy, row.state, today).reason


@dataclass(frozen=True)
class Episode:
    start: date
    end: date | None  # None: still going
    what: str


_HELD = {TreatmentStatus.HELD_HEME: "therapy interrupted for neutropenia", TreatmentStatus.ON_HOLD_DECISION: "held: awaiting a prescriber decision"}


def episodes(policy: RulesPolicy, history: list[Event]) -> list[Episode]:
    """The spans when therapy was held for neutropenia or awaited a decision, from the same
    fold the daemon applies (for the chart's shading)."""
    out: list[Episode] = []
    current: tuple[date, str] | None = None
    for d, ev in zip(rules.fold(policy, history).decisions, sorted(history, key=event_sort_key), strict=True):
        what = _HELD.get(d.state.treatment)
        if current and what != current[1]:
            out.append(Episode(current[0], ev.on, current[1]))
            current = None
        if what and current is None:
            current = (ev.on, what)
    if current:
        out.append(Episode(current[0], None, current[1]))
    return out


def _timeline(rows: list[Any]) -> list[dict[str, Any]]:
    """Alerts newest first with severity, reason, published or not, and what superseded them."""
    out, superseded_by = [], {}
    for r in rows:
        body = json.loads(r.payload)
        old = (body.get("detail") or {}).get("superseded_alert_id")
        if old:
            superseded_by[old] = f"{r.kind} {r.alert_id[:12]}"
        out.append({"alert_id": r.alert_id, "kind": r.kind, "severity": body.get("severity", ""), "reason": body.get("reason", ""), "created_at": r.created_at, "published": r.published_at is not None, "withdrawn": bool(r.withdrawn)})
    for a in out:
        a["superseded_by"] = superseded_by.get(a["alert_id"], "")
    return out
