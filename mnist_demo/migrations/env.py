"""Alembic's entry: migrations run on the connection the store hands over (Store.migrate),
inside its write transaction, never from a config file of their own."""

from alembic import context

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it; Alembic does that for us.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
