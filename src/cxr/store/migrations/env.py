"""Alembic environment: `cxr.store.database.open_database` runs it with an open connection."""

from alembic import context

from cxr.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
