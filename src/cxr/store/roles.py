"""PostgreSQL: the audit trigger and the audit rows belong to the tables' owner, and an owner
can disable a trigger. So the owner role runs the migrations and adds reviewers, and
`cxr listen` / `cxr serve` connect as another role, granted here only what they do: read and
add instances and set their review and sending state, read reviewers, append to the audit.
(SQLite has no roles: there the file's permissions are the boundary.)"""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

from cxr.errors import CxrError

ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
GRANTS = (
    "GRANT SELECT, INSERT, UPDATE ON instances TO {role}",
    "GRANT SELECT ON reviewers, alembic_version TO {role}",
    "GRANT SELECT, INSERT ON audit TO {role}",
    "GRANT USAGE, SELECT ON SEQUENCE instances_id_seq, audit_id_seq TO {role}",
)


def grant_application_role(engine: Engine, role: str) -> bool:
    """Give an existing PostgreSQL role the application's privileges and nothing more; False
    (nothing done) on SQLite."""
    if not ROLE.match(role):
        raise CxrError(f"role {role!r}: lower-case letters, digits and _ (at most 63)")
    if engine.dialect.name != "postgresql":
        return False
    quoted = engine.dialect.identifier_preparer.quote(role)
    with engine.begin() as connection:
        for statement in GRANTS:
            connection.execute(text(statement.format(role=quoted)))
    return True
