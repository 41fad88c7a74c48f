"""outbox.claimed_by: which relay holds a claim, so a restarted relay takes its own back at once

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Why: after a kill -9 (or a store error between claim and mark) the claimed alerts waited out
the whole lease before anyone published them. A relay knows it has no batch in flight when it
(re)starts, so every claim under its own name is stale and is released then.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # a database adopted from before migrations may already have the column (created from the models)
    if 'claimed_by' in {c['name'] for c in sa.inspect(op.get_bind()).get_columns('outbox')}:
        return
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('claimed_by')
