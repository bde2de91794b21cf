"""The audit refuses `INSERT OR REPLACE` on SQLite (a REPLACE deletes the old row without
running delete triggers); the instances keep the patient's age in years, for drift monitoring.

On PostgreSQL an `ON CONFLICT DO UPDATE` fires the UPDATE trigger of 0001 already. The trigger
itself belongs to whoever owns the table: run migrations as an owner role and `cxr listen` /
`cxr serve` as another role with only SELECT, INSERT on `audit` (see cxr.store.database), so
the application cannot disable it.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NO_REPLACE = (
    "CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit "
    "WHEN EXISTS (SELECT 1 FROM audit WHERE id = NEW.id) "
    "BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END"
)


def upgrade() -> None:
    op.add_column("instances", sa.Column("age_years", sa.Float))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(NO_REPLACE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_no_replace")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("age_years")
