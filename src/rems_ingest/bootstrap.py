"""One place builds the object graph from the settings (issue #14): the daemon (app.Daemon),
the CLI and the demo all get the same store, rules profile, use cases and relay, wired the
same way. Building is kept apart from running: ``Daemon`` owns the lifecycle (start, serve,
drain), this module only constructs."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from rems_ingest.adapters.amqp.relay import OutboxRelay
from rems_ingest.adapters.amqp.topology import Topology
from rems_ingest.adapters.db.store import Store
from rems_ingest.adapters.db.unit_of_work import StoreOutboxSource, StoreUnitOfWork
from rems_ingest.adapters.http.identity import Authenticator, JwtVerifier
from rems_ingest.adapters.web.oidc_login import OidcLogin
from rems_ingest.config import Settings
from rems_ingest.profiles import PolicyHolder
from rems_ingest.service.access import AccessTrail, Identity, TokenService, parse_roles
from rems_ingest.service.audit_anchor import Signer
from rems_ingest.service.clinic import ClinicService
from rems_ingest.service.feed_watchdog import FeedWatchdog
from rems_ingest.service.feeds import FeedService
from rems_ingest.service.ingest import IngestService
from rems_ingest.service.replay import ReplayService
from rems_ingest.service.snapshots import SnapshotService
from rems_ingest.service.worklists import WorklistService


@dataclass
class Services:
    settings: Settings
    policy: PolicyHolder
    store: Store
    uow: StoreUnitOfWork  # what use cases write and read through
    relay: OutboxRelay
    ingest: IngestService
    clinic: ClinicService
    replay: ReplayService
    tokens: TokenService
    trail: AccessTrail
    worklists: WorklistService
    feeds: FeedService
    snapshots: SnapshotService
    watchdog: FeedWatchdog


def relay_owner(s: Settings, *, pid: int) -> str:
    """The name this daemon's relay claims outbox rows under. A relay that starts or recovers
    releases every claim under its name as stale, so a restarted daemon frees its predecessor's
    at once; two live daemons under one name would free each other's in-flight claims and page
    twice. Daemons sharing an MLLP port (mllp.reuse_port) run on one host from one
    configuration, so each adds its process id (a crashed one's claims then wait out the lease)."""
    name = s.amqp.relay_id or f"{socket.gethostname()}:{s.mllp.port}"
    return f"{name}:{pid}" if s.mllp.reuse_port else name


def build_services(s: Settings, *, create_store: bool = True) -> Services:
    """Construct everything; nothing is started, connected or migrated here. ``create_store``:
    False for commands that must find an existing SQLite store (see adapters/db/store.Store)."""
    policy = PolicyHolder(s.rules.profile, s.rules.dispense_profile)
    store = Store(s.store.resolved_url(), group_max=s.store.group_commit_max, create=create_store)
    relay = OutboxRelay(
        StoreOutboxSource(store),
        s.amqp.resolved_url(),
        Topology.with_prefix(s.amqp.topology_prefix, s.amqp.queue_type),
        batch=s.amqp.batch,
        publish_timeout=s.amqp.publish_timeout_seconds,
        owner=relay_owner(s, pid=os.getpid()),
    )
    uow = StoreUnitOfWork(store)
    feeds = s.registry()
    ingest = IngestService(uow, policy, registry=feeds, **s.mllp.ingest_options())
    ingest.on_alerts = relay.wake
    clinic = ClinicService(uow, policy, timezone=s.rules.timezone, on_alerts=relay.wake)
    return Services(s, policy, store, uow, relay, ingest, clinic, ReplayService(uow, ingest), TokenService(uow), AccessTrail(uow, signer=Signer(s.audit.signing_key_file) if s.audit.signing_key_file else None, on_anchor=relay.wake), WorklistService(uow, policy, timezone=s.rules.timezone), FeedService(uow, feeds), SnapshotService(uow, policy),
                    FeedWatchdog(uow, feeds, policy, timezone=s.rules.timezone, on_alerts=relay.wake))


def build_authenticator(s: Settings, tokens: TokenService) -> Authenticator | None:
    """None when http.auth = none (loopback only: the settings check refuses anything else)."""
    if s.http.auth == "none":
        return None
    h = s.http
    verifier = None
    if h.oidc_issuer:
        verifier = JwtVerifier(h.oidc_issuer, h.oidc_audience, h.oidc_jwks_url, h.oidc_jwks_file, h.oidc_subject_claim, h.oidc_roles_claim, dict(h.oidc_role_map), h.oidc_pharmacy_claim)
    certificates = {cn: Identity(cn, parse_roles(m.roles), m.pharmacy_id, via="mtls") for cn, m in h.mtls_identities.items()}
    return Authenticator(tokens, verifier, h.max_auth_failures_per_minute, certificates)


def oidc_login(s: Settings) -> OidcLogin | None:
    """The console's provider login, when http.oidc_authorize_url is set (with tokens auth)."""
    h = s.http
    if h.auth == "none" or not h.oidc_authorize_url:
        return None
    return OidcLogin(h.oidc_authorize_url, h.oidc_token_url, h.oidc_client_id, h.oidc_redirect_url, h.oidc_scope, h.oidc_client_secret_file)
