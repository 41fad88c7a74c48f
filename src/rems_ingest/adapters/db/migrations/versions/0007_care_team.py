"""The care team: designees named on a patient beside the responsible prescriber; the access trail's sequence numbers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Why (issue #26): any prescriber could lift any patient's hold. Decisions (override, rechallenge,
resume, interrupt, discontinue, step-down) are now the patient's own prescriber's or a designee's;
anyone else must break glass. NULL: no designees.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if 'designees' not in {c['name'] for c in sa.inspect(op.get_bind()).get_columns('patient')}:
        with op.batch_alter_table('patient') as batch:
            batch.add_column(sa.Column('designees', sa.String(length=2000), nullable=True))
    # the access trail's entries carry their place in the chain, inside the hash: an anchor of
    # (place, hash) kept outside the store then shows a deleted tail or a recomputed chain
    if 'seq' not in {c['name'] for c in sa.inspect(op.get_bind()).get_columns('access_audit')}:
        with op.batch_alter_table('access_audit') as batch:
            batch.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('access_audit') as batch:
        batch.drop_column('seq')
    with op.batch_alter_table('patient') as batch:
        batch.drop_column('designees')
