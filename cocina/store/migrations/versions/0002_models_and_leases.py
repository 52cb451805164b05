"""Many models in one store: each prediction names its model, version, deployment, principal and source, and
carries a lease; versions are kept with their schema.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("model", sa.Text))
        batch.add_column(sa.Column("version", sa.Text))
        batch.add_column(sa.Column("deployment", sa.Text))
        batch.add_column(sa.Column("principal", sa.Text))
        batch.add_column(sa.Column("source", sa.Text, nullable=False, server_default="api"))
        batch.add_column(sa.Column("lease_owner", sa.Text))
        batch.add_column(sa.Column("lease_expires_at", sa.Float))
    op.create_index("predictions_model_seq", "predictions", ["model", "seq"])
    op.create_index("predictions_lease", "predictions", ["status", "lease_expires_at"])
    op.create_table(
        "versions",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("openapi_schema", sa.Text, nullable=False),
        sa.Column("info", sa.Text, nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_table("versions")
    op.drop_index("predictions_lease", "predictions")
    op.drop_index("predictions_model_seq", "predictions")
    with op.batch_alter_table("predictions") as batch:
        for column in ("lease_expires_at", "lease_owner", "source", "principal", "deployment", "version", "model"):
            batch.drop_column(column)
