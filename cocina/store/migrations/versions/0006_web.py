"""The web page: shares (read-only links to one prediction, kept as token digests) and each model's examples;
an index for a model's history filtered by version.

Revision ID: 0006_web
Revises: 0005_rag
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_web"
down_revision = "0005_rag"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("prediction_id", sa.Text, nullable=False),
        sa.Column("digest", sa.Text, nullable=False, unique=True),  # SHA-256 of the token; never the token
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text),
        sa.Column("revoked_at", sa.Text),
        sa.Column("created_by", sa.Text),
    )
    op.create_index("shares_prediction", "shares", ["prediction_id"])
    op.create_table(
        "examples",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("prediction_id", sa.Text, primary_key=True),
        sa.Column("is_default", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text),
    )
    op.create_index("examples_prediction", "examples", ["prediction_id"])
    op.create_index("predictions_model_version_seq", "predictions", ["model", "version", "seq"])
    if op.get_context().dialect.name == "postgresql":
        # Shares and examples list newest first, equal creation times in insertion order: SQLite's implicit
        # rowid; PostgreSQL has none, so these tables get one (numbered at insert, unchanged by updates).
        for table in ("shares", "examples"):
            op.add_column(table, sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False))


def downgrade() -> None:
    op.drop_index("predictions_model_version_seq", "predictions")
    op.drop_index("examples_prediction", "examples")
    op.drop_table("examples")
    op.drop_index("shares_prediction", "shares")
    op.drop_table("shares")
