"""Lab feeds: the feed and connection each message came through, and the time a result was produced

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Why (issue #25): a message is accepted only from a registered feed. Each stored message names
the feed it came through (NULL: refused, or stored before feeds) and the connection it came
from (address, TLS certificate), so a REJECTED one can be replayed once its feed is registered
and judged as if it had just arrived; the watchdog reads each feed's last accepted message
through (feed, received_at). A result is dated by its draw (SPM-17 / OBR-7); OBX-14, when the
value was produced, is kept beside it. feed_state is the watchdog's memory: which feed is
silent since when, and the alert that said so.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _columns(table: str) -> set[str]:
    return {c['name'] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {str(i['name']) for i in sa.inspect(op.get_bind()).get_indexes(table)}


def upgrade() -> None:
    if 'feed' not in _columns('inbound_message'):
        with op.batch_alter_table('inbound_message') as batch:
            batch.add_column(sa.Column('feed', sa.String(length=120), nullable=True))
            batch.add_column(sa.Column('origin', sa.String(length=400), nullable=True))
    if 'ix_inbound_message_feed' not in _indexes('inbound_message'):
        op.create_index('ix_inbound_message_feed', 'inbound_message', ['feed', 'received_at'])
    if 'feed_state' not in set(sa.inspect(op.get_bind()).get_table_names()):
        op.create_table(
            'feed_state',
            sa.Column('feed', sa.String(length=120), primary_key=True),
            sa.Column('silent_since', sa.String(length=40), nullable=True),
            sa.Column('silent_alert_id', sa.String(length=64), nullable=True),
            sa.Column('updated_at', sa.String(length=40), nullable=False),
        )
    if 'resulted_at' not in _columns('observation'):
        with op.batch_alter_table('observation') as batch:
            batch.add_column(sa.Column('resulted_at', sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_table('feed_state')
    with op.batch_alter_table('observation') as batch:
        batch.drop_column('resulted_at')
    op.drop_index('ix_inbound_message_feed', table_name='inbound_message')
    with op.batch_alter_table('inbound_message') as batch:
        batch.drop_column('origin')
        batch.drop_column('feed')
