"""The predictions table of a single-model server (cocina's schema before migrations).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("surface", sa.Text, nullable=False),
        sa.Column("input", sa.Text),
        sa.Column("run_input", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("logs", sa.Text, nullable=False, server_default=""),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text),
        sa.Column("completed_at", sa.Text),
        sa.Column("metrics", sa.Text),
        sa.Column("webhook", sa.Text),
        sa.Column("webhook_events_filter", sa.Text),
        sa.Column("deadline", sa.Float),
        sa.Column("data_removed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("predictions_status", "predictions", ["status"])
    op.create_index("predictions_completed", "predictions", ["completed_at"])


def downgrade() -> None:
    op.drop_table("predictions")
