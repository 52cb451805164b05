"""The hub: models, pushed versions (their manifest and environment), deployments with numbered releases; each
prediction records the release that routed it.

Revision ID: 0003_hub
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_hub"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text),
        sa.Column("visibility", sa.Text, nullable=False, server_default="private"),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("manifest", sa.Text))  # JSON list of files: a pushed version
        batch.add_column(sa.Column("environment", sa.Text))  # JSON: python, env hash, what was installed
    op.create_table(
        "deployments",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("deployment", sa.Text, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("configuration", sa.Text, nullable=False),
    )
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("release", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("release")
    op.drop_table("releases")
    op.drop_table("deployments")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("environment")
        batch.drop_column("manifest")
    op.drop_table("models")
