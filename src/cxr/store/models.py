"""The worklist schema. Only UIDs (to link back to the PACS), a one-way patient pseudonym,
scores, flags, model identity, image statistics and review state: never a name, birth date or
other demographic field. Changes go through an Alembic migration in `migrations/versions`."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> datetime:
    return datetime.now(UTC)


class Status(StrEnum):
    """What became of a received instance: the one spelling store/, the node and the page use."""

    SCORED = "scored"
    NOT_SCORED = "not_scored"  # not a chest radiograph, unreadable or refused: `reason` says why


class Base(DeclarativeBase):
    pass


class Instance(Base):
    """One received DICOM instance: one worklist row, keyed by its SOP Instance UID and a digest
    of its content (a sender that reuses a UID for a different image gets a second, flagged row,
    never a silent overwrite; the same image sent again is the same row)."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "content_digest", name="uq_instance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    content_digest: Mapped[str] = mapped_column(String(16))
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    patient_pseudonym: Mapped[str | None] = mapped_column(String(32))
    spool_path: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    status: Mapped[str] = mapped_column(String(16), index=True)  # a Status
    reason: Mapped[str | None] = mapped_column(Text)  # why not scored
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)  # out of the population
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_fingerprint: Mapped[str | None] = mapped_column(String(64))
    classes: Mapped[list[str] | None] = mapped_column(JSON)
    probabilities: Mapped[list[float] | None] = mapped_column(JSON)
    predicted: Mapped[str | None] = mapped_column(String(64))
    urgency: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[dict | None] = mapped_column(JSON)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    pixel_mean: Mapped[float | None] = mapped_column(Float)
    pixel_std: Mapped[float | None] = mapped_column(Float)
    age_years: Mapped[float | None] = mapped_column(Float)  # DICOM PatientAge, for drift only
    results_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_label: Mapped[str | None] = mapped_column(String(64))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Reviewer(Base):
    """Who may use the worklist; only a SHA-256 of the token is kept."""

    __tablename__ = "reviewers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # reviewer | admin
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class AuditEvent(Base):
    """Append-only (database triggers refuse UPDATE and DELETE): who did what, and when."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))  # list | view | review | export
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
