"""Every student runs the lab: students (signed identities, optional nicknames), limit
events keyed on the student (not the page load), the verdict a drawing was sent with,
and a finished run's score on the class's own drawings (the leaderboard's private
column).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "students",
        sa.Column("id", sa.Text, primary_key=True),  # the tag in the signed cookie
        sa.Column("nickname", sa.Text, unique=True),  # None: "Student <tag>"
        sa.Column("hidden", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "limit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),  # "send", "upload", "code", ...
        sa.Column("subject", sa.Text, nullable=False),  # a student id or a client address
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("limit_events_by_subject", "limit_events", ["kind", "subject", "at"])
    with op.batch_alter_table("drawings") as batch:
        batch.add_column(sa.Column("verdict", sa.Text))  # digit / not sure / not a digit
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("class_accuracy", sa.Float))
        batch.add_column(sa.Column("class_n", sa.Integer))
