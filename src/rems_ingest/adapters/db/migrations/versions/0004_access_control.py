"""api_token and access_audit: identities for the HTTP API and a tamper-evident access trail

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Why (issue #15): the API had no authentication. Tokens are stored as hashes only; every
state-changing request and every read of a patient's record is appended to access_audit, each
row carrying the hash of the previous one.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if 'api_token' not in tables:
        op.create_table(
            'api_token',
            sa.Column('id', ID, primary_key=True, autoincrement=True),
            sa.Column('name', sa.String(length=120), nullable=False),
            sa.Column('roles', sa.String(length=200), nullable=False),
            sa.Column('pharmacy_id', sa.String(length=200), nullable=False),
            sa.Column('token_hash', sa.String(length=64), nullable=False, unique=True),
            sa.Column('created_at', sa.String(length=40), nullable=False),
            sa.Column('created_by', sa.String(length=200), nullable=False),
            sa.Column('expires_at', sa.String(length=40), nullable=True),
            sa.Column('revoked_at', sa.String(length=40), nullable=True),
        )
    if 'access_audit' not in tables:
        op.create_table(
            'access_audit',
            sa.Column('id', ID, primary_key=True, autoincrement=True),
            sa.Column('at', sa.String(length=40), nullable=False),
            sa.Column('subject', sa.String(length=200), nullable=False),
            sa.Column('roles', sa.String(length=200), nullable=False),
            sa.Column('action', sa.String(length=120), nullable=False),
            sa.Column('patient_id', sa.String(length=200), nullable=False),
            sa.Column('patient_authority', sa.String(length=200), nullable=False),
            sa.Column('outcome', sa.Integer(), nullable=False),
            sa.Column('source', sa.String(length=64), nullable=False),
            sa.Column('prev_hash', sa.String(length=64), nullable=False),
            sa.Column('hash', sa.String(length=64), nullable=False),
        )
        op.create_index('ix_access_audit_patient', 'access_audit', ['patient_id', 'patient_authority'])


def downgrade() -> None:
    op.drop_index('ix_access_audit_patient', table_name='access_audit')
    op.drop_table('access_audit')
    op.drop_table('api_token')
