"""Repository functions over the worklist: record what arrived (idempotent on SOP Instance UID),
list the queues, record reviews, and append to the audit trail. None of them commits: the caller
holds the transaction (`cxr.store.database.unit_of_work`), so an action and its audit row are
stored together or not at all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cxr.errors import CxrError
from cxr.store.models import AuditEvent, Instance, Status, now


class Queue(StrEnum):
    PENDING = "pending"  # scored, waiting for a reviewer
    REVIEWED = "reviewed"
    NOT_SCORED = "not_scored"  # not a chest radiograph, or unreadable: the reason says which
    DISAGREEMENTS = "disagreements"  # the reviewer chose another label than the model


MAX_NOTE = 2000  # characters: a short remark, not a report (the audit keeps every note for good)


class ReviewError(CxrError, ValueError):
    """A review that cannot be recorded: unknown instance, or a label the model does not know."""


class ReviewConflict(ReviewError):
    """Another reviewer labelled this case already; only a deliberate overwrite replaces that."""


@dataclass
class Received:
    """What the node learnt about one instance; becomes one `instances` row."""

    sop_instance_uid: str
    content_digest: str
    study_instance_uid: str
    series_instance_uid: str
    patient_pseudonym: str | None
    spool_path: str
    status: str
    reason: str | None = None
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # unlike the training data: still scored
    model_name: str | None = None
    model_fingerprint: str | None = None
    classes: list[str] | None = None
    probabilities: list[float] | None = None
    predicted: str | None = None
    urgency: float | None = None
    threshold: dict | None = None
    width: int | None = None
    height: int | None = None
    pixel_mean: float | None = None
    pixel_std: float | None = None
    age_years: float | None = None


def record(session: Session, received: Received) -> bool:
    """Insert once; a second arrival of the same instance changes nothing. True if new."""
    values = {**asdict(received), "received_at": now()}
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    statement = (
        insert(Instance)
        .values(values)
        .on_conflict_do_nothing(index_elements=["sop_instance_uid", "content_digest"])
        .returning(Instance.id)
    )
    return session.execute(statement).first() is not None


def known_keys(session: Session, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (SOP Instance UID, content digest) pairs are in the worklist already."""
    keys, found = list(keys), set()
    for start in range(0, len(keys), 500):
        uids = {uid for uid, _ in keys[start : start + 500]}
        query = select(Instance.sop_instance_uid, Instance.content_digest).where(
            Instance.sop_instance_uid.in_(uids)
        )
        found |= {(uid, digest) for uid, digest in session.execute(query)}
    return found & set(keys)


def uid_taken(session: Session, sop_instance_uid: str, content_digest: str) -> bool:
    """Does another, different instance already hold this SOP Instance UID?"""
    query = select(Instance.id).where(
        Instance.sop_instance_uid == sop_instance_uid, Instance.content_digest != content_digest
    )
    return session.scalar(query.limit(1)) is not None


def _query(which: Queue):
    query = select(Instance)
    if which is Queue.PENDING:
        return query.where(Instance.status == Status.SCORED, Instance.review_label.is_(None))
    if which is Queue.NOT_SCORED:
        return query.where(Instance.status == Status.NOT_SCORED)
    query = query.where(Instance.review_label.is_not(None))
    if which is Queue.DISAGREEMENTS:
        query = query.where(Instance.review_label != Instance.predicted)
    return query


def queue(session: Session, which: Queue, limit: int = 500) -> list[Instance]:
    """Pending: most urgent first; not scored: newest first; reviewed: last reviewed first."""
    order = {
        Queue.PENDING: (Instance.urgency.desc(), Instance.id),
        Queue.NOT_SCORED: (Instance.id.desc(),),
    }.get(which, (Instance.reviewed_at.desc(),))
    return list(session.scalars(_query(which).order_by(*order).limit(limit)))


def counts(session: Session) -> dict[str, int]:
    return {
        q.value: session.scalar(select(func.count()).select_from(_query(q).subquery())) or 0
        for q in Queue
    }


def instance(session: Session, instance_id: int) -> Instance:
    found = session.get(Instance, instance_id)
    if found is None:
        raise ReviewError(f"worklist entry {instance_id}: no such entry")
    return found


def entry(session: Session, sop_instance_uid: str, content_digest: str) -> Instance:
    query = select(Instance).where(
        Instance.sop_instance_uid == sop_instance_uid, Instance.content_digest == content_digest
    )
    found = session.scalar(query)
    if found is None:
        raise ReviewError(f"{sop_instance_uid}: not in the worklist")
    return found


def review(
    session: Session, instance_id: int, label: str, note: str, actor: str, overwrite: bool = False
) -> Instance:
    """Record a reviewer's label (confirming or correcting the model) and audit it. A case that
    another reviewer labelled already changes only with `overwrite` (an admin's deliberate act).
    The label is stored only if the case still holds what was read: of two reviewers submitting
    at once, the second gets a conflict, never a silent overwrite."""
    row = instance(session, instance_id)
    if row.status != Status.SCORED or not row.classes:
        raise ReviewError(f"worklist entry {instance_id}: not scored, nothing to review")
    if label not in row.classes:
        raise ReviewError(f"{label!r}: not one of the model's classes {row.classes}")
    if len(note) > MAX_NOTE:
        raise ReviewError(f"a note holds at most {MAX_NOTE} characters")
    if row.reviewed_by not in (None, actor) and not overwrite:
        raise ReviewConflict(
            f"worklist entry {instance_id}: reviewed already by {row.reviewed_by}; "
            "only an admin replaces another reviewer's label, with force"
        )
    previous, previous_by = row.review_label, row.reviewed_by
    stored = session.execute(
        update(Instance)
        .where(Instance.id == instance_id, _holds(Instance.review_label, previous),
               _holds(Instance.reviewed_by, previous_by))
        .values(review_label=label, review_note=note.strip() or None, reviewed_by=actor,
                reviewed_at=now())
    )  # fmt: skip
    if stored.rowcount != 1:  # another request labelled it since it was read: no lost update
        raise ReviewConflict(
            f"worklist entry {instance_id}: labelled meanwhile by another request; reload it"
        )
    session.add(
        AuditEvent(
            actor=actor,
            action="review",
            sop_instance_uid=row.sop_instance_uid,
            detail={
                "entry": instance_id,
                "label": label,
                "model": row.predicted,
                "previous": previous,
                "previous_by": previous_by,
                "note": note,
            },
        )
    )
    return row


def _holds(column, value):
    """`column` still holds `value` (NULL included): the check of a compare-and-set."""
    return column.is_(None) if value is None else column == value


def audit(session: Session, actor: str, action: str, sop: str | None = None, **detail) -> None:
    session.add(AuditEvent(actor=actor, action=action, sop_instance_uid=sop, detail=detail))


def audit_trail(session: Session, limit: int = 1000) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))


def reviewed(session: Session) -> list[Instance]:
    return list(session.scalars(_query(Queue.REVIEWED).order_by(Instance.id)))


def unsent(session: Session) -> list[Instance]:
    """Scored instances whose Secondary Capture and SR have not reached the PACS yet."""
    waiting = Instance.status == Status.SCORED, Instance.results_sent_at.is_(None)
    query = select(Instance).where(*waiting)
    return list(session.scalars(query))


def mark_sent(session: Session, row: Instance) -> None:
    row.results_sent_at = now()


def total(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Instance)) or 0
