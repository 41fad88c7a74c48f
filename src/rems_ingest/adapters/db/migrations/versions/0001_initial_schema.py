"""initial schema: messages, observations, patients and their events, outbox, audit

Revision ID: 0001
Revises:
Create Date: 2026-11-25 (generated with alembic --autogenerate from adapters/db/schema.py)
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('patient_pk', sa.BigInteger(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('inbound_message',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('sending_app', sa.String(length=200), nullable=False),
    sa.Column('sending_facility', sa.String(length=200), nullable=False),
    sa.Column('control_id', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('ack_code', sa.String(length=2), nullable=False),
    sa.Column('ack_detail', sa.Text(), nullable=False),
    sa.Column('charset', sa.String(length=20), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    op.create_table('observation',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.Column('patient_pk', sa.BigInteger(), nullable=False),
    sa.Column('result_key', sa.String(length=400), nullable=False),
    sa.Column('anc_per_ul', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=1), nullable=False),
    sa.Column('observed_at', sa.String(length=40), nullable=False),
    sa.Column('code', sa.String(length=80), nullable=False),
    sa.Column('code_system', sa.String(length=40), nullable=False),
    sa.Column('original_value', sa.String(length=80), nullable=False),
    sa.Column('original_unit', sa.String(length=80), nullable=False),
    sa.Column('derived', sa.Boolean(), nullable=False),
    sa.Column('censored', sa.String(length=2), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('observation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_observation_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_observation_patient_pk'), ['patient_pk'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.String(length=64), nullable=False),
    sa.Column('patient_pk', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('cause', sa.String(length=500), nullable=False),
    sa.Column('alert', sa.Text(), nullable=False),
    sa.Column('routing_key', sa.String(length=80), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.Column('withdrawn', sa.Boolean(), nullable=False),
    sa.Column('published_at', sa.String(length=40), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.String(length=40), nullable=False),
    sa.Column('claimed_until', sa.String(length=40), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('alert_id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_patient_pk'), ['patient_pk'], unique=False)
        batch_op.create_index('ix_outbox_pending', ['published_at', 'id'], unique=False)

    op.create_table('patient',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=200), nullable=False),
    sa.Column('authority', sa.String(length=200), nullable=False),
    sa.Column('enrolled', sa.Boolean(), nullable=False),
    sa.Column('prescriber_id', sa.String(length=200), nullable=False),
    sa.Column('pharmacy_id', sa.String(length=200), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_sort_key', sa.String(length=120), nullable=False),
    sa.Column('next_due', sa.String(length=10), nullable=True),
    sa.Column('updated_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('patient_id', 'authority', name='uq_patient_key')
    )
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.create_index('ix_patient_due', ['enrolled', 'next_due'], unique=False)

    op.create_table('patient_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_pk', sa.BigInteger(), nullable=False),
    sa.Column('event_key', sa.String(length=400), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('patient_pk', 'event_key', name='uq_patient_event')
    )
    op.create_table('schema_version',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('schema_version')
    op.drop_table('patient_event')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_due')

    op.drop_table('patient')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')
        batch_op.drop_index(batch_op.f('ix_outbox_patient_pk'))

    op.drop_table('outbox')
    with op.batch_alter_table('observation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_observation_patient_pk'))
        batch_op.drop_index(batch_op.f('ix_observation_message_id'))

    op.drop_table('observation')
    op.drop_table('inbound_message')
    op.drop_table('audit')
