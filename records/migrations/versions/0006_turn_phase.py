"""turns.phase: gpt-realtime-2.x answers in phases, each an item of one reply: a spoken
preamble ("let me check that") while it works, then the answer. The record keeps which an
agent turn was ("preamble" or "answer"; call_worker/transcript.py).

Turns stored before it get NULL, as do caller turns and earlier models' replies: their
phase was not given.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("phase")
