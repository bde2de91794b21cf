"""The worklist: instances, reviewers and an append-only audit table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the audit table is append-only'; END $$",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
    ],
}


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, index=True),
        sa.Column("content_digest", sa.String(16), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_pseudonym", sa.String(32)),
        sa.Column("spool_path", sa.Text, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text),
        sa.Column("flags", sa.JSON, nullable=False),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_fingerprint", sa.String(64)),
        sa.Column("classes", sa.JSON),
        sa.Column("probabilities", sa.JSON),
        sa.Column("predicted", sa.String(64)),
        sa.Column("urgency", sa.Float),
        sa.Column("threshold", sa.JSON),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("pixel_mean", sa.Float),
        sa.Column("pixel_std", sa.Float),
        sa.Column("results_sent_at", TZ),
        sa.Column("review_label", sa.String(64)),
        sa.Column("review_note", sa.Text),
        sa.Column("reviewed_by", sa.String(100)),
        sa.Column("reviewed_at", TZ),
        sa.UniqueConstraint("sop_instance_uid", "content_digest", name="uq_instance"),
    )
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", TZ, nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    for statement in APPEND_ONLY.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    for table in ("audit", "reviewers", "instances"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_append_only()")
