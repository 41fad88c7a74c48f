"""patient.last_sort_key holds the whole sort key of a result (date|rank|time|result key)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Why: a result key (filler order | code | sub-id) is bounded at parse time to 220 characters;
with the date and time in front the sort key can reach ~270. At 120 PostgreSQL refused the
row (value too long) and the sender got AE for ever; SQLite ignored the length.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('patient') as batch:
        batch.alter_column('last_sort_key', existing_type=sa.String(length=120), type_=sa.String(length=400), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('patient') as batch:
        batch.alter_column('last_sort_key', existing_type=sa.String(length=400), type_=sa.String(length=120), existing_nullable=False)
