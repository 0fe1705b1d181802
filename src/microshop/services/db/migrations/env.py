"""Alembic environment: migrations always run on a connection the db service hands over."""

from alembic import context

from microshop.services.db.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
