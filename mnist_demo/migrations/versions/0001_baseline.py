"""The schema Digit Lab used before versioned migrations: runs, settings, class sets
and drawings. Idempotent, so a registry made by an earlier version (which has some or
all of these tables, maybe without the heartbeat column) is adopted as it is.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if "runs" not in tables:
        op.create_table(
            "runs",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("finished_at", sa.Float),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("config", sa.Text, nullable=False),
            sa.Column("history", sa.Text, nullable=False, server_default="{}"),
            sa.Column("epochs_done", sa.Integer, nullable=False, server_default="0"),
            sa.Column("test_loss", sa.Float),
            sa.Column("test_accuracy", sa.Float),
            sa.Column("misclassified", sa.Integer),
            sa.Column("test_n", sa.Integer),
            sa.Column("model_path", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("pid", sa.Integer),
            sa.Column("heartbeat", sa.Float),
        )
    else:
        columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}
        if "heartbeat" not in columns:  # a registry from before heartbeats
            op.add_column("runs", sa.Column("heartbeat", sa.Float))
    if "settings" not in tables:
        op.create_table(
            "settings",
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("value", sa.Text),
        )
    if "class_sets" not in tables:
        op.create_table(
            "class_sets",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("archived_at", sa.Float),
        )
    if "drawings" not in tables:
        op.create_table(
            "drawings",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("set_id", sa.Integer, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("session", sa.Text, nullable=False),
            sa.Column("label", sa.Integer, nullable=False),
            sa.Column("predicted", sa.Integer),
            sa.Column("confidence", sa.Float),
            sa.Column("model", sa.Text),
            sa.Column("digest", sa.Text, nullable=False),
            sa.Column("image", sa.LargeBinary, nullable=False),
            sa.Column("canvas_png", sa.LargeBinary),
            sa.Column("hidden", sa.Integer, nullable=False, server_default="0"),
            sa.UniqueConstraint("set_id", "digest"),
        )
        op.create_index("drawings_by_session", "drawings", ["set_id", "session", "created_at"])
