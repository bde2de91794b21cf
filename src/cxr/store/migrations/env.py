"""Alembic environment. cxr runs it itself (`cxr.store.database.migrate`) with an open connection;
developers run it through the repository's alembic.ini: `alembic upgrade head --sql` (offline:
the SQL a DBA can review) or `alembic revision --autogenerate -m "..."` against the URL in
`$CXR_DB` (default: a scratch SQLite file)."""

import os

from alembic import context
from sqlalchemy import create_engine

from cxr.store.models import Base

config = context.config
url = os.environ.get("CXR_DB") or config.get_main_option("sqlalchemy.url")

if "connection" in config.attributes:  # cxr's own migrate(): the caller's transaction
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=Base.metadata,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with create_engine(url).connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
