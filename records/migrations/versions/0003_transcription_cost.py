"""calls.transcription_model and calls.transcription_cost: the caller's speech is
transcribed by a model priced per minute of audio (callbridge/prices.py), whose cost the
call's estimate now includes and `callbridge calls show` shows apart.

Calls stored before it get "" and NULL: their transcription model was not kept, and their
estimate (tokens only) is left as it was stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("transcription_model", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("transcription_cost", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("transcription_cost")
        batch_op.drop_column("transcription_model")
