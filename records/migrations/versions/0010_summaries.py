"""calls.summary*: a call's post-call summary (SUMMARY_MODEL): its text, the agent's fields
(JSON), the model, its tokens and cost, and when it was made.

Calls stored before it, and calls not summarized, get empty values.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 23:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FILLED = (
    ("summary_model", sa.String(64), ""),
    ("summary_input_tokens", sa.BigInteger(), "0"),
    ("summary_output_tokens", sa.BigInteger(), "0"),
)


def upgrade() -> None:
    timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        # the texts have no default: MySQL allows a TEXT column none
        batch_op.add_column(sa.Column("summary", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("summary_fields", sa.Text(), nullable=True))
        for name, kind, default in FILLED:
            batch_op.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        batch_op.add_column(sa.Column("summary_cost", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("summarized_at", timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("summarized_at")
        batch_op.drop_column("summary_cost")
        for name, _kind, _default in reversed(FILLED):
            batch_op.drop_column(name)
        batch_op.drop_column("summary_fields")
        batch_op.drop_column("summary")
