"""Trainings and request context: a prediction record is of a `kind` (`prediction` or `training`, a training
naming its `destination` model), and keeps the request's `context` so that a re-run after a crash has it.

Revision ID: 0004_trainings
Revises: 0003_hub
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_trainings"
down_revision = "0003_hub"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("kind", sa.Text, nullable=False, server_default="prediction"))
        batch.add_column(sa.Column("destination", sa.Text))  # a training's destination model (owner/name)
        batch.add_column(sa.Column("context", sa.Text))  # JSON object of strings (Cog's request context)
    op.create_index("predictions_kind_seq", "predictions", ["kind", "seq"])


def downgrade() -> None:
    op.drop_index("predictions_kind_seq", "predictions")
    with op.batch_alter_table("predictions") as batch:
        for column in ("context", "destination", "kind"):
            batch.drop_column(column)
