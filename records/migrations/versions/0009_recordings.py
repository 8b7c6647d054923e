"""calls.recording_*: a recorded call's file (RECORD_CALLS, an agent's `record`): its
path, size, seconds, SHA-256 and how it ended (complete, stopped, partial).

Calls stored before it, and calls not recorded, get empty values.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (
    ("recording_path", sa.String(1024), ""),
    ("recording_bytes", sa.BigInteger(), "0"),
    ("recording_seconds", sa.Float(), "0"),
    ("recording_sha256", sa.String(64), ""),
    ("recording_state", sa.String(16), ""),
)


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        for name, kind, default in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=False, server_default=default))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        for name, _kind, _default in reversed(COLUMNS):
            batch_op.drop_column(name)
