"""Retrieval-augmented generation: each prediction keeps the passages its prompt was given (`sources`, JSON)
and what was searched for them (`retrieval`, JSON: the index, its version, the query, whether the model rewrote
it).

Revision ID: 0005_rag
Revises: 0004_trainings
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_rag"
down_revision = "0004_trainings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("sources", sa.Text))
        batch.add_column(sa.Column("retrieval", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("retrieval")
        batch.drop_column("sources")
