"""One schema for SQLite and PostgreSQL (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 1
metadata = MetaData()
ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrement needs INTEGER PRIMARY KEY
# a patient timeline position (service/patients.sort_key_text), compared byte by byte in range
# queries: PostgreSQL's default collation would order punctuation differently from Python
SORT_KEY = String(400).with_variant(String(400, collation="C"), "postgresql")

schema_version = Table("schema_version", metadata, Column("version", Integer, primary_key=True))

inbound_message = Table(
    "inbound_message",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(64), nullable=False, unique=True),  # sha256(MSH-3, MSH-4, MSH-10, content)
    Column("sending_app", String(200), nullable=False),
    Column("sending_facility", String(200), nullable=False),
    Column("control_id", String(200), nullable=False),
    Column("received_at", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # PROCESSED | FILTERED | REPLAYED | REJECTED
    Column("ack_code", String(2), nullable=False),
    Column("ack_detail", Text, nullable=False),  # JSON list of ERR details, replayed for a resend
    Column("charset", String(20), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("feed", String(120), nullable=True),  # the registered feed it came through (NULL: refused)
    Column("origin", String(400), nullable=True),  # JSON: the connection's address and certificate
)
# each feed's last accepted message (the watchdog)
Index("ix_inbound_message_feed", inbound_message.c.feed, inbound_message.c.received_at)

observation = Table(
    "observation",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, nullable=False, index=True),
    Column("patient_pk", BigInteger, nullable=False, index=True),
    Column("result_key", String(400), nullable=False),
    Column("anc_per_ul", String(40), nullable=False),
    Column("status", String(1), nullable=False),
    Column("observed_at", String(40), nullable=False),
    Column("code", String(80), nullable=False),
    Column("code_system", String(40), nullable=False),
    Column("original_value", String(80), nullable=False),
    Column("original_unit", String(80), nullable=False),
    Column("derived", Boolean, nullable=False),
    Column("censored", String(2), nullable=False),
    Column("resulted_at", String(40), nullable=True),  # OBX-14: when the value was produced
)

patient = Table(
    "patient",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("patient_id", String(200), nullable=False),
    Column("authority", String(200), nullable=False),
    Column("enrolled", Boolean, nullable=False, default=False),
    Column("prescriber_id", String(200), nullable=False, default=""),
    Column("pharmacy_id", String(200), nullable=False, default=""),
    # the care team beside the responsible prescriber (issue #26): comma-separated subjects of
    # prescribers or clinic staff named on the patient, who may record decisions too
    Column("designees", String(2000), nullable=True),
    Column("state", Text, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("last_sort_key", String(400), nullable=False, default=""),
    Column("next_due", String(10), nullable=True),
    Column("updated_at", String(40), nullable=False),
    # the rules profile the patient's event snapshots were folded under (NULL: none yet, or
    # they cannot be trusted: the next re-fold starts from the beginning and writes them all)
    Column("snapshot_profile", String(120), nullable=True),
    UniqueConstraint("patient_id", "authority", name="uq_patient_key"),
)
Index("ix_patient_due", patient.c.enrolled, patient.c.next_due)

patient_event = Table(
    "patient_event",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("patient_pk", BigInteger, nullable=False),
    Column("event_key", String(400), nullable=False),
    Column("body", Text, nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("sort_key", SORT_KEY, nullable=True),  # its place in the timeline (NULL: stored before 0005)
    Column("state_after", Text, nullable=True),  # the folded state after it: a late result re-folds from here
    UniqueConstraint("patient_pk", "event_key", name="uq_patient_event"),
)
Index("ix_patient_event_timeline", patient_event.c.patient_pk, patient_event.c.sort_key)

outbox = Table(
    "outbox",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("alert_id", String(64), nullable=False, unique=True),
    Column("patient_pk", BigInteger, nullable=True, index=True),
    Column("kind", String(60), nullable=False),
    Column("cause", String(500), nullable=False),
    Column("alert", Text, nullable=False),  # the core Alert, for refold diffs
    Column("routing_key", String(80), nullable=False),
    Column("payload", Text, nullable=False),  # the published JSON body
    Column("state_version", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("withdrawn", Boolean, nullable=False, default=False),
    Column("published_at", String(40), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String(40), nullable=False),
    Column("claimed_until", String(40), nullable=True),
    Column("claimed_by", String(120), nullable=True),  # the relay holding the claim (amqp.relay_id)
    Column("last_error", String(200), nullable=True),
    # where in the timeline the decision that raised it sits: a re-fold from a point diffs only
    # the alerts at or after it
    Column("sort_key", SORT_KEY, nullable=True),
)
Index("ix_outbox_pending", outbox.c.published_at, outbox.c.id)
# active alerts by place: withdrawn rows (a re-fold's churn piles them up at one place, e.g. an
# overdue tick dated today) must not lie inside the range a re-fold reads
Index("ix_outbox_timeline", outbox.c.patient_pk, outbox.c.withdrawn, outbox.c.sort_key)

audit = Table(
    "audit",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("patient_pk", BigInteger, nullable=True),
    Column("detail", Text, nullable=False),
)

# the feed watchdog's memory (issue #25): a feed silent since its last accepted message, and the
# alert that said so (one row per feed; daemons sharing a store compare-and-set it)
feed_state = Table(
    "feed_state",
    metadata,
    Column("feed", String(120), primary_key=True),
    Column("silent_since", String(40), nullable=True),  # the last accepted message before the silence
    Column("silent_alert_id", String(64), nullable=True),
    Column("updated_at", String(40), nullable=False),
)

# ------------------------------------------------------------ access control (issue #15)

# API tokens: only a hash is kept (the token is shown once, at creation)
api_token = Table(
    "api_token",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False),
    Column("roles", String(200), nullable=False),  # comma-separated role names
    Column("pharmacy_id", String(200), nullable=False),  # "" = every pharmacy's patients
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the token
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", String(40), nullable=True),
    Column("revoked_at", String(40), nullable=True),
)

# who did or read what, append-only; each row carries the hash of the one before (tamper-evident)
access_audit = Table(
    "access_audit",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("roles", String(200), nullable=False),
    Column("action", String(120), nullable=False),
    Column("patient_id", String(200), nullable=False),
    Column("patient_authority", String(200), nullable=False),
    Column("outcome", Integer, nullable=False),  # the HTTP status answered
    Column("source", String(64), nullable=False),  # the client address
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("seq", BigInteger, nullable=True),  # its place in the chain, in the hash (NULL: written before 0007)
)
Index("ix_access_audit_patient", access_audit.c.patient_id, access_audit.c.patient_authority)
