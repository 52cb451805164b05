"""Retrieval-augmented generation: each prediction keeps the passages its prompt was given (`sources`, JSON).

Revision ID: 0004_rag
Revises: 0003_hub
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_rag"
down_revision = "0003_hub"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("sources", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("sources")
