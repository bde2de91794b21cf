"""Open the worklist database by URL and bring its schema to the newest migration.

SQLite (the default, one file) and PostgreSQL (`postgresql+psycopg://...`) behave the same; SQLite
gets WAL and a busy timeout so the listener and the web page can share the file. On PostgreSQL the
tables' owner migrates and the application may run as a role without ownership
(`cxr.store.roles`), which cannot disable the audit trigger.

The caller owns the transaction: repository functions (`cxr.store.worklist`, `.reviewers`,
`.export`) only add and query, and `unit_of_work` commits what one action did, its audit row
with it, or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cxr.errors import CxrError

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(CxrError):
    """The worklist database cannot be reached or migrated."""


def create(url: str) -> Engine:
    """An engine without touching the schema (the listener must start while the DB is down)."""
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise DatabaseError(f"--db {_safe(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine) -> None:
    """Run every Alembic migration not yet applied; safe to call at each start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        hint = (
            " (an application role migrates nothing: run any cxr command once with the owner's "
            "URL, e.g. `cxr reviews grant-app-role ROLE --db OWNER_URL`)"
            if "permission denied" in str(exc)
            else ""
        )
        raise DatabaseError(f"{_safe(str(engine.url))}: cannot migrate: {exc}{hint}") from exc


def open_database(url: str) -> sessionmaker[Session]:
    """Sessions on a migrated database; `sessions.begin()` (or `unit_of_work`) is one
    transaction, a bare `sessions()` is for reading."""
    engine = create(url)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(bind: Engine | sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits once when the block ends, or rolls back entirely if it
    raises: an action and its audit row are stored together or not at all. Rows stay readable
    after the commit (no expiry), for callers that go on using what they stored."""
    if not isinstance(bind, sessionmaker):
        bind = sessionmaker(bind, expire_on_commit=False)
    with bind.begin() as session:
        yield session


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL holds nothing we can mask reliably
        return "<unparsable database URL>"
