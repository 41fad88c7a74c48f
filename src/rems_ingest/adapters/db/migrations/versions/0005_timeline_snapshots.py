"""Timeline snapshots: each stored event's place in the timeline and the folded state after it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Why (issue #18): a late, same-time or corrected result re-folded the patient's whole history and
diffed every alert the patient ever had, so its cost grew with the history (quadratic for a
backfill). With a snapshot per event it re-folds only from the last event before its draw time,
and diffs only the alerts raised from there on.

Existing rows get NULL: such a patient (``snapshot_profile`` NULL) is re-folded once from the
beginning, which writes every snapshot; ``db upgrade`` and ``serve`` do that for every patient
right after this migration (service/snapshots.py), and a patient missed there is re-folded from
the beginning at its next late result, as before.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SORT_KEY = sa.String(length=400).with_variant(sa.String(length=400, collation='C'), 'postgresql')


def _columns(table: str) -> set[str]:
    return {c['name'] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {str(i['name']) for i in sa.inspect(op.get_bind()).get_indexes(table)}


def upgrade() -> None:
    # a database adopted from before migrations may already have them (created from the models)
    if 'snapshot_profile' not in _columns('patient'):
        with op.batch_alter_table('patient') as batch:
            batch.add_column(sa.Column('snapshot_profile', sa.String(length=120), nullable=True))
    if 'sort_key' not in _columns('patient_event'):
        with op.batch_alter_table('patient_event') as batch:
            batch.add_column(sa.Column('sort_key', SORT_KEY, nullable=True))
            batch.add_column(sa.Column('state_after', sa.Text(), nullable=True))
    if 'ix_patient_event_timeline' not in _indexes('patient_event'):
        op.create_index('ix_patient_event_timeline', 'patient_event', ['patient_pk', 'sort_key'])
    if 'sort_key' not in _columns('outbox'):
        with op.batch_alter_table('outbox') as batch:
            batch.add_column(sa.Column('sort_key', SORT_KEY, nullable=True))
    if 'ix_outbox_timeline' not in _indexes('outbox'):
        op.create_index('ix_outbox_timeline', 'outbox', ['patient_pk', 'withdrawn', 'sort_key'])


def downgrade() -> None:
    op.drop_index('ix_outbox_timeline', table_name='outbox')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('sort_key')
    op.drop_index('ix_patient_event_timeline', table_name='patient_event')
    with op.batch_alter_table('patient_event') as batch:
        batch.drop_column('state_after')
        batch.drop_column('sort_key')
    with op.batch_alter_table('patient') as batch:
        batch.drop_column('snapshot_profile')
