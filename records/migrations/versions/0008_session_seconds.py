"""calls.session_seconds: GPT-Live bills a call by its session's time, by the second
(silence included), not by tokens; the record keeps those seconds, and the estimate
prices them per minute (callbridge/prices.py, `session_minute`).

Calls stored before it, and Realtime calls, get 0.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_seconds", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("session_seconds")
