"""The reviewed worklist in the web app: the queues from the database `cxr listen` fills, one
case at a time with its image and heat map, and the reviewer's decision. Every request names its
reviewer by their own token (never the API token: `cxr.serve.auth`); every list, view and
decision goes into the append-only audit table."""

import base64
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from cxr.dicomnode.spool import preview
from cxr.serve.auth import bearer, worklist_reviewer
from cxr.store import worklist
from cxr.store.models import Instance, Reviewer
from cxr.store.worklist import Queue, ReviewError

PAGE = Path(__file__).with_name("static") / "worklist.html"
MAX_NOTE = 2000


class Decision(BaseModel):
    label: str = Field(max_length=64, description="One of the model's classes.")
    note: str = Field("", max_length=MAX_NOTE, description="Optional free text.")


def worklist_router(
    sessions: sessionmaker[Session], population: dict | None = None, api_token: str | None = None
) -> APIRouter:
    """`population`: the served model's training-image ranges, for the drift figures;
    `api_token`: the server's CXR_API_TOKEN, refused here with a 403 that says why."""
    router = APIRouter()

    def session():
        with sessions() as s:
            yield s

    Db = Annotated[Session, Depends(session)]

    def reviewer(request: Request, db: Db) -> Reviewer:
        return worklist_reviewer(db, bearer(request.headers.get("authorization", "")), api_token)

    Who = Annotated[Reviewer, Depends(reviewer)]

    @router.get("/worklist", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text()

    @router.get("/api/worklist")
    def queue(
        who: Who, db: Db, which: Annotated[Queue, Query(alias="queue")] = Queue.PENDING
    ) -> dict:
        rows = worklist.queue(db, which)
        worklist.audit(db, who.name, "list", queue=which.value, rows=len(rows))
        return {
            "reviewer": {"name": who.name, "role": who.role},
            "counts": worklist.counts(db),
            "queue": which.value,
            "rows": [_summary(r) for r in rows],
        }

    @router.get("/api/worklist/audit")
    def audit_trail(who: Who, db: Db, limit: Annotated[int, Query(ge=1, le=10_000)] = 500):
        if who.role != "admin":
            raise HTTPException(403, "the audit trail is for admins")
        return [
            {"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "sop_instance_uid": e.sop_instance_uid, "detail": e.detail}
            for e in worklist.audit_trail(db, limit)
        ]  # fmt: skip

    @router.get("/api/worklist/monitor")
    def monitoring(who: Who, db: Db) -> dict:
        from cxr.serve.monitor import monitor

        worklist.audit(db, who.name, "monitor")
        return monitor(db, population)

    @router.get("/api/worklist/{entry}")
    def case(entry: int, who: Who, db: Db) -> dict:
        row = _entry(db, entry)
        worklist.audit(db, who.name, "view", row.sop_instance_uid, entry=entry)
        spooled = Path(row.spool_path)
        return {
            **_summary(row),
            "threshold": row.threshold,
            "model": {"name": row.model_name, "fingerprint": row.model_fingerprint},
            "image": _png_url(preview(spooled, "image")),
            "cam": _png_url(preview(spooled, "cam")),
        }

    @router.post("/api/worklist/{entry}/review")
    def review(entry: int, decision: Decision, who: Who, db: Db) -> dict:
        try:
            row = worklist.review(db, entry, decision.label, decision.note, who.name)
        except ReviewError as exc:
            status = 404 if "no such entry" in str(exc) else 422
            raise HTTPException(status, str(exc)) from None
        return _summary(row)

    return router


def _entry(db: Session, entry: int) -> Instance:
    try:
        return worklist.instance(db, entry)
    except ReviewError as exc:
        raise HTTPException(404, str(exc)) from None


def _summary(row: Instance) -> dict:
    return {
        "id": row.id,
        "study_instance_uid": row.study_instance_uid,
        "sop_instance_uid": row.sop_instance_uid,
        "received_at": row.received_at.isoformat(),
        "status": row.status,
        "reason": row.reason,
        "flags": row.flags,
        "classes": row.classes,
        "probabilities": row.probabilities,
        "predicted": row.predicted,
        "urgency": row.urgency,
        "review": None
        if row.review_label is None
        else {
            "label": row.review_label,
            "note": row.review_note,
            "by": row.reviewed_by,
            "at": row.reviewed_at.isoformat() if row.reviewed_at else None,
        },
    }


def _png_url(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
