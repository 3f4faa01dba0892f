"""Runs are engine jobs: queued in the store, claimed by a training worker, their live
per-batch points and progress written there for every server to read.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.Text, nullable=False, server_default="instructor"))
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("queued_at", sa.Float))
        batch.add_column(sa.Column("started_at", sa.Float))
        batch.add_column(sa.Column("resume", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("host", sa.Text))
        batch.add_column(sa.Column("worker", sa.Text))
        batch.add_column(sa.Column("stop_requested_at", sa.Float))
        batch.add_column(sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("batch", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("batches_per_epoch", sa.Integer, nullable=False, server_default="0")
        )
    op.create_index("runs_by_status", "runs", ["status", "priority", "queued_at"])
    op.create_table(
        "points",
        sa.Column("run_id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("position", sa.Float, nullable=False),
        sa.Column("loss", sa.Float),
        sa.Column("accuracy", sa.Float),
    )
