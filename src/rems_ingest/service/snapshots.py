"""Timeline snapshots for patients stored without them (issue #18): a store migrated from
before 0005, or a rules profile other than the one the snapshots were folded under. Each such
patient's history is folded once from the beginning, and the state after every event is
stored with it, so its next late result re-folds only from that result's draw time.

Nothing clinical changes here: no state is saved and no alert is raised or withdrawn; alerts
only get their place in the timeline (the first decision that raises them). Each patient is
done under its row lock, so this runs safely beside live ingest and other daemons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from rems_ingest.core import rules
from rems_ingest.core.errors import CoreError
from rems_ingest.core.model import PatientKey, event_sort_key, evolve
from rems_ingest.core.policy import RulesPolicy
from rems_ingest.service.patients import sort_key_text
from rems_ingest.service.ports import Repositories, UnitOfWork

log = structlog.get_logger("rems_ingest.snapshots")

# an active alert no decision of the fold raises sorts after every event: the next re-fold of
# that patient, from wherever it starts, withdraws it (as a re-fold of the whole history did)
UNPLACED = "~"


def snapshot_patient(repo: Repositories, policy: RulesPolicy, key: PatientKey) -> str:
    """'written', 'differs' (written; the stored state is not what the history folds to, which
    the next re-fold settles), 'skipped' (already done, gone, or a history that cannot fold)."""
    row = repo.patient(key, create=False, lock=True)
    if row is None or row.snapshot_profile == policy.label:
        return "skipped"
    ordered = sorted(repo.events(row.pk), key=event_sort_key)
    try:
        folded = rules.fold(policy, ordered)
    except CoreError:  # the next re-fold of this patient starts from the beginning, as before
        return "skipped"
    keys = [sort_key_text(e) for e in ordered]
    repo.set_snapshots(row.pk, [(e.key, k, d.state) for e, k, d in zip(ordered, keys, folded.decisions)])
    first: dict[tuple[str, str], str] = {}
    for k, d in zip(keys, folded.decisions):
        for a in d.alerts:
            first.setdefault(a.identity, k)
    places = [(aid, first.get(a.identity, UNPLACED)) for aid, a, sk in repo.active_alerts(row.pk) if not rules.is_notice(a)]
    repo.set_alert_sort_keys([(aid, k) for aid, k in places])
    repo.set_snapshot_profile(row.pk, policy.label)
    return "differs" if evolve(folded.state, version=0) != evolve(row.state, version=0) else "written"


@dataclass
class SnapshotService:
    store: UnitOfWork
    policy: Callable[[], RulesPolicy]

    async def backfill(self, batch: int = 100) -> dict[str, int]:
        """Snapshot every patient that needs it, ``batch`` patients a transaction; counts by outcome."""
        counts = {"written": 0, "differs": 0, "skipped": 0}
        done: set[PatientKey] = set()
        policy = self.policy()

        def tx(repo: Repositories) -> tuple[list[PatientKey], list[str]]:
            keys = [k for k in repo.patients_to_snapshot(policy.label, batch + len(done)) if k not in done][:batch]
            return keys, [snapshot_patient(repo, policy, k) for k in keys]

        if not await self.store.read(lambda repo: repo.patients_to_snapshot(policy.label, 1)):
            return counts  # nothing to do: no write (an empty commit would also clear a failing store's flag)
        while True:
            keys, outcomes = await self.store.write(tx)
            done.update(keys)  # after the commit: a transaction retried alone redoes its patients
            if not outcomes:
                break
            for o in outcomes:
                counts[o] += 1
        if counts["written"] or counts["differs"]:
            log.info("timeline_snapshots_written", patients=counts["written"] + counts["differs"], state_differs=counts["differs"], skipped=counts["skipped"])
        return counts
