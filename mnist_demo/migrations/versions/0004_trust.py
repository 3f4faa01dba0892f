"""A trustworthy room: one engine per store (a lease with a fencing token), a run's
phase as it happens, seats counted per person (the address group a seat came from, when
it was last seen, a short code to get it back), an experiment's compute budget and how
often a run was resumed after the engine failed under it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "engine_lease",
        sa.Column("name", sa.Text, primary_key=True),  # one row: "engine"
        sa.Column("holder", sa.Text),  # host:pid:nonce of the supervisor holding it
        sa.Column("token", sa.Integer, nullable=False, server_default="0"),  # grows per takeover
        sa.Column("heartbeat", sa.Float),
        sa.Column("acquired_at", sa.Float),
        sa.Column("info", sa.Text),  # JSON: address, capacity, pid, host (what pages show)
    )
    with op.batch_alter_table("runs") as batch:
        # queued / preparing / training / scoring / saving (None: not started or ended)
        batch.add_column(sa.Column("phase", sa.Text))
        batch.add_column(sa.Column("lease_token", sa.Integer))  # the claim's fencing token
        batch.add_column(sa.Column("network", sa.Text))  # the submitter's address group
        batch.add_column(sa.Column("budget_s", sa.Float))  # an experiment's allowed seconds
        batch.add_column(sa.Column("auto_resumes", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("students") as batch:
        batch.add_column(sa.Column("network", sa.Text))  # the address group it was made from
        batch.add_column(sa.Column("last_seen", sa.Float))
        batch.add_column(sa.Column("seat_code", sa.Text))
    op.create_index("students_by_seat_code", "students", ["seat_code"], unique=True)
    op.create_index("students_by_network", "students", ["network"])
