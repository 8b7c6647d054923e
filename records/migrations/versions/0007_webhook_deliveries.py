"""webhook_deliveries: what became of each call event posted to a webhook (webhooks/sender.py),
one row per event and receiver, delivered or given up after CALL_WEBHOOK_RETRY_HOURS.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 08:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("instance", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("instance", "event_id", "target"),
    )
    op.create_index("ix_webhook_deliveries_call", "webhook_deliveries", ["instance", "call_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_call", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
