"""calls.caller_hash: the keyed hash of the full caller number (records/privacy.py), so that
a masked caller (RECORDS_MASK_CALLERS) is still found by the full number.

Calls stored before it get "" (no hash: they hold the number as it was stored).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("caller_hash", sa.String(length=64), nullable=False, server_default=""))
        batch_op.create_index("ix_calls_caller_hash", ["caller_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_caller_hash")
        batch_op.drop_column("caller_hash")
