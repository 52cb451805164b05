"""The guard: API keys, their usage windows, and the audit log (entries, Merkle nodes, signed checkpoints); each
prediction records what the guard decided about it.

Revision ID: 0007_guard
Revises: 0006_web
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_guard"
down_revision = "0006_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        # The guard's record of a prediction: scanner verdicts, the AI-disclosure marker, keyed hashes.
        batch.add_column(sa.Column("guard", sa.Text))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),  # stable across rotations
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("lookup", sa.Text, nullable=False, unique=True),  # the non-secret part of the current key
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),  # keyed hash (HMAC-SHA256) of the whole key
        sa.Column("previous_lookup", sa.Text, unique=True),  # the key before the last rotation, in its grace time
        sa.Column("previous_hash", sa.LargeBinary),
        sa.Column("previous_expires_at", sa.Float),
        sa.Column("models", sa.Text, nullable=False, server_default="[]"),
        sa.Column("scopes", sa.Text, nullable=False, server_default="[]"),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("monthly_tokens", sa.Integer),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("rotated_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
    )
    op.create_table(
        "key_usage",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),  # requests / tokens per minute; month_requests / month_tokens
        sa.Column("window", sa.Integer, primary_key=True),  # minute number since the epoch, or YYYYMM
        sa.Column("amount", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("prediction_id", sa.Text),
        sa.Column("entry", sa.LargeBinary, nullable=False),  # canonical JSON, the leaf's data
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    )
    op.create_index("audit_entries_prediction", "audit_entries", ["prediction_id"])
    op.create_table(
        "audit_nodes",  # roots of the perfect subtrees above the leaves (level >= 1)
        sa.Column("level", sa.Integer, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),  # the signed note (C2SP tlog-checkpoint)
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")
    op.drop_index("audit_entries_prediction", "audit_entries")
    op.drop_table("audit_entries")
    op.drop_table("key_usage")
    op.drop_table("api_keys")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("guard")
