"""What needs someone's attention now (the web console's landing page), and a patient's whole
record for the patient page. Both read through the unit of work, like the JSON API."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rems_ingest.core import dispense
from rems_ingest.core.model import ClinicalEvent, Enroll, PatientKey, Phase
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.ports import PatientRow, Repositories, UnitOfWork

LISTS = (
    ("overdue", "Overdue now"),
    ("due", "Due today or tomorrow"),
    ("holds", "Pharmacy holds"),
    ("decisions", "Awaiting a prescriber decision"),
    ("confirm", "Pending confirmation repeats"),
    ("quality", "Data-quality problems (7 days)"),
    ("unattributed", "Results for no enrolled patient (30 days)"),
)


@dataclass
class Filters:
    prescriber: str = ""
    pharmacy: str = ""
    population: str = ""


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

    async def worklists(self, f: Filters) -> Worklists:
        today, policy, now = self.today(), self.policy(), self.clock()

        def read(repo: Repositories) -> Worklists:
            out = Worklists(today, {name: [] for name, _ in LISTS})
            for row in repo.enrolled_patients(f.prescriber, f.pharmacy):
                if f.population and row.state.population.value != f.population:
                    continue
                for name, item in _placements(policy, row, today):
                    out.lists[name].append(item)
            for a in repo.recent_alerts_of_kind("data.quality", (now - timedelta(days=7)).isoformat()):
                body = json.loads(a["payload"])
                p = body.get("patient") or {}
                out.lists["quality"].append(Item(PatientKey(p.get("id", ""), p.get("authority", "")), detail=body.get("reason", ""), sort=a["created_at"]))
            if not (f.prescriber or f.pharmacy or f.population):
                for u in repo.unenrolled_with_results((now - timedelta(days=30)).isoformat()):
                    out.lists["unattributed"].append(Item(PatientKey(u["patient_id"], u["authority"]), detail=f"{u['results']} result(s), last drawn {str(u['last'])[:10]}", sort=u["last"]))
            for name, items in out.lists.items():
                items.sort(key=lambda i: i.sort, reverse=name in ("overdue", "quality", "unattributed"))
            return out

        return await self.store.read(read)

    async def record(self, key: PatientKey) -> dict[str, Any] | None:
        """Everything the patient page shows: the row, every result, every alert, the events."""

        def read(repo: Repositories) -> dict[str, Any] | None:
            row = repo.patient(key, create=False, lock=False)
            if row is None:
                return None
            events = [e for e in repo.events(row.pk) if isinstance(e, ClinicalEvent | Enroll)]
            return {"row": row, "results": repo.observation_points(row.pk), "alerts": repo.alerts_for(row.pk, 1000), "events": events}

        return await self.store.read(read)


def _placements(policy: RulesPolicy, row: PatientRow, today: date) -> list[tuple[str, Item]]:
    s = row.state
    latest = s.latest
    base = dict(prescriber_id=row.prescriber_id, pharmacy_id=row.pharmacy_id, population=s.population.value, category=latest.category.value if latest else "", action=s.action, next_due=s.next_due.isoformat() if s.next_due else "")
    out: list[tuple[str, Item]] = []
    if s.next_due is not None and s.phase not in (Phase.PRE, Phase.CLOSED):
        late = (today - s.next_due).days
        if late > 0:
            out.append(("overdue", Item(row.key, **base, detail=f"{late} day(s) late (due {s.next_due})", sort=late)))
        elif late >= -1:
            out.append(("due", Item(row.key, **base, detail="today" if late == 0 else "tomorrow", sort=s.next_due)))
    if s.dispense_hold:
        out.append(("holds", Item(row.key, **base, detail=dispense.check(policy, s, today).reason, sort=row.key.id)))
    if s.phase is Phase.SEV_RECOVERED_HOLD:
        out.append(("decisions", Item(row.key, **base, detail="recovered from severe neutropenia: rechallenge or discontinue", sort=row.key.id)))
    if s.pending_confirm_until is not None and s.pending_confirm_until >= today:
        out.append(("confirm", Item(row.key, **base, detail=f"repeat ANC by {s.pending_confirm_until}", sort=s.pending_confirm_until)))
    return out
