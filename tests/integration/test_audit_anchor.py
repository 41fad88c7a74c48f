"""The access trail held against anchors kept outside the store (issue #26): `audit verify`
passed after each of these four on both stores; with the anchors it names each one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import delete, insert, select, update

from rems_ingest.adapters.db.schema import access_audit, outbox
from rems_ingest.adapters.db.store import Store
from rems_ingest.adapters.db.unit_of_work import StoreUnitOfWork
from rems_ingest.core.model import PatientKey
from rems_ingest.service.access import AccessTrail, Identity, Role
from rems_ingest.service.audit_anchor import Anchor, Signer, read_anchors

DR = Identity("DR1", frozenset({Role.PRESCRIBER}))
P1 = PatientKey("P1", "HOSP")


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/trail.db"
    s = Store(url)
    s.migrate()
    s.start()
    yield s
    s.close()


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "anchor.key", tmp_path / "anchor.pub"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public


async def _trail_with_anchors(store: Store, signer: Signer | None = None) -> tuple[AccessTrail, list[Anchor]]:
    """Six entries: reads, and state-changing requests anchored as they are written."""
    trail = AccessTrail(StoreUnitOfWork(store), clock=Clock(), signer=signer)
    for n in range(6):
        await trail.record(DR, "patient.read" if n % 2 else "patient.event override E-1 by DR1", P1, 200, "127.0.0.1", anchor=n % 2 == 0)
    await trail.anchor_now()  # the periodic one covers the reads after the last change
    kept = store.read(lambda c: [r.payload for r in c.execute(select(outbox.c.payload).where(outbox.c.kind == "audit.anchor"))])
    anchors = read_anchors(kept)
    assert [a.seq for a in anchors] == [1, 3, 5, 6]
    return trail, anchors


def _rechain(c: Any) -> None:
    """What a careful forger does after an edit: recompute every hash (sha256 is keyless)."""
    from rems_ingest.service.access import GENESIS, _body, _chain

    prev = GENESIS
    for r in list(c.execute(select(access_audit).order_by(access_audit.c.id))):
        row = dict(r._mapping)
        digest = _chain(prev, _body(row))
        c.execute(update(access_audit).where(access_audit.c.id == row["id"]).values(prev_hash=prev, hash=digest))
        prev = digest


def _delete_tail(c: Any) -> None:
    last = c.execute(select(access_audit.c.id).order_by(access_audit.c.id.desc()).limit(2)).scalars().all()
    c.execute(delete(access_audit).where(access_audit.c.id.in_(last)))


def _delete_all(c: Any) -> None:
    c.execute(delete(access_audit))


def _edit_and_rechain(c: Any) -> None:
    first = c.execute(select(access_audit.c.id).order_by(access_audit.c.id).limit(1)).scalar_one()
    c.execute(update(access_audit).where(access_audit.c.id == first).values(subject="SOMEONE-ELSE"))
    _rechain(c)


def _append_forged(c: Any) -> None:
    from rems_ingest.service.access import _body, _chain

    head = dict(c.execute(select(access_audit).order_by(access_audit.c.id.desc()).limit(1)).fetchone()._mapping)
    forged = {k: head[k] for k in ("roles", "patient_id", "patient_authority", "outcome", "source")}
    forged.update(at="2026-12-01T09:00:02+00:00", subject="DR-FORGED", action="patient.event override E-9 by DR-FORGED", seq=head["seq"] + 1)
    digest = _chain(head["hash"], _body(forged))
    c.execute(insert(access_audit).values(**forged, prev_hash=head["hash"], hash=digest))


TAMPERING = {"deleted tail": (_delete_tail, "deleted tail"), "every row deleted": (_delete_all, "deleted tail"),
             "edited and rechained": (_edit_and_rechain, "rewritten"), "forged rows appended": (_append_forged, "forged appends")}


@pytest.mark.parametrize("kind", list(TAMPERING))
async def test_verify_against_anchors_names_each_kind_of_tampering(store: Store, kind: str) -> None:
    trail, anchors = await _trail_with_anchors(store)
    assert (await trail.verify_against(anchors)).holds
    tamper, said = TAMPERING[kind]
    await store.write(lambda c: tamper(c))
    _checked, broken = await trail.verify()
    assert broken is None  # the chain alone still "holds": this is what the anchors are for
    findings = await trail.verify_against(anchors)
    assert not findings.holds and any(said in line for line in findings.lines()), findings.lines()


async def test_signed_anchors_only_count_with_their_key(store: Store, tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    trail, anchors = await _trail_with_anchors(store, Signer(private))
    assert (await trail.verify_against(anchors, public)).holds
    forged = [*anchors, Anchor(anchors[-1].seq + 5, "0" * 64, anchors[-1].at, anchors[-1].signature)]
    f = await trail.verify_against(forged, public)
    assert f.bad_signatures == 1 and not f.deleted_tail  # a forged anchor is refused, not believed


def test_audit_verify_reads_anchors_from_the_log_on_stdin(tmp_path: Path) -> None:
    """The CLI an auditor runs: the daemon's own log lines are the anchor file."""
    import asyncio
    import os
    import subprocess

    from tests.process import BIN

    db = tmp_path / "trail.db"
    s = Store(f"sqlite:///{db}")
    s.migrate()
    s.start()
    _trail, anchors = asyncio.run(_trail_with_anchors(s))
    s.write_sync(lambda c: _delete_tail(c))
    s.close()
    log = "\n".join(json.dumps({"event": "audit_anchor", "level": "info", "anchor": a.as_dict()}) for a in anchors) + "\nnot json\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMS_")} | {"REMS_STORE__URL": f"sqlite:///{db}"}
    done = subprocess.run([str(BIN), "audit", "verify", "--anchor", "-"], input=log, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "deleted tail: the store holds 4 entries" in done.stderr, done.stderr
    assert hashlib.sha256(b"").hexdigest() not in done.stderr
