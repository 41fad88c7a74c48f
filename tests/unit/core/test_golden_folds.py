"""Refactoring guard (issue #14): folds of 3,000 seeded random histories, on every profile, give
exactly the states and alerts recorded in golden_folds.json. A change in clinical behaviour
must be deliberate: regenerate with ``python -m tests.unit.core.test_golden_folds`` and say why."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rems_ingest import profiles
from rems_ingest.core.model import AncResult, ClinicalEvent, Enroll, Event, Population, ResultStatus, Tick
from rems_ingest.core.rules import fold

GOLDEN = Path(__file__).with_name("golden_folds.json")
START = date(2026, 1, 5)
CASES = [("us-label", "general", 1200), ("us-label", "ben", 1000), ("uk-cpms", "general", 800)]
VALUES = [0, 300, 499, 500, 700, 999, 1000, 1100, 1200, 1499, 1500, 1800, 2500]
EVENTS = ["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]


def history(rng: random.Random, population: str) -> list[Event]:
    evs: list[Event] = []
    base = [(1200, 1100)] if population == "ben" else [(1800, 1700)]
    for i, v in enumerate(base[0]):
        evs.append(AncResult(f"b{i}", Decimal(v), datetime(2026, 1, 3 + i, 8), ResultStatus.FINAL))
    evs.append(Enroll("enroll", START, Population(population), START, Decimal(1100) if population == "ben" else None))
    day = 0
    keys: list[str] = []
    for n in range(rng.randint(0, 30)):
        day += rng.randint(0, 9)
        on = START + timedelta(days=day)
        r = rng.random()
        if r < 0.12:
            evs.append(ClinicalEvent(f"e{n}", rng.choice(EVENTS), on, by="DR1", rationale="documented", abrupt=rng.random() < 0.7, temperature_c=Decimal(rng.choice(["37.5", "38.5", "39.5"]))))
        elif r < 0.18:
            evs.append(Tick(f"tick{n}", on))
        elif r < 0.25 and keys:
            k = rng.choice(keys)
            old = next(e for e in evs if e.key == k)
            evs.append(AncResult(k, Decimal(rng.choice(VALUES)), datetime(old.on.year, old.on.month, old.on.day, 8), ResultStatus(rng.choice("CWP"))))
        else:
            keys.append(f"k{n}")
            value = rng.choice(VALUES) if rng.random() < 0.7 else rng.randint(0, 4000)
            wbc = Decimal(rng.randint(1500, 9000)) if rng.random() < 0.5 else None
            evs.append(AncResult(f"k{n}", Decimal(value), datetime(on.year, on.month, on.day, 8), ResultStatus(rng.choice("FFFFFFP")), wbc=wbc))
    return evs


def digest(profile: str, events: list[Event]) -> str:
    from rems_ingest.adapters.db import codec

    folded = fold(profiles.load(profile), events)
    alerts = [[a.kind.value, a.cause, a.on.isoformat(), a.severity.value, a.reason, list(a.detail)] for a in folded.alerts]
    body = json.dumps([codec.dump_state(folded.state), alerts, [d.explanation for d in folded.decisions]], default=str, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def digests() -> list[str]:
    rng = random.Random(20261128)
    out = []
    for i in range(3000):
        profile, population, _ = CASES[i % len(CASES)]
        evs = history(rng, population)
        try:
            out.append(digest(profile, evs))
        except Exception as exc:  # noqa: BLE001 - a history the rules refuse is recorded as such
            out.append(f"error:{type(exc).__name__}")
    return out


def test_folds_are_unchanged() -> None:
    want = json.loads(GOLDEN.read_text())
    got = digests()
    changed = [i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b]
    assert not changed, f"{len(changed)} of {len(got)} folds changed, e.g. history #{changed[:5]}"


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(digests()))
    print(f"wrote {GOLDEN}")
