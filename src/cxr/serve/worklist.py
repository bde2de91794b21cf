"""The reviewed worklist in the web app: the queues from the database `cxr listen` fills, one
case at a time with its image and heat map, and the reviewer's decision. Every request names its
reviewer by their own token (never the API token: `cxr.serve.auth`); every list, view and
decision, and every refused attempt, goes into the append-only audit table.

Every input is checked here, at the edge, against what both databases hold: ids are positive
32-bit integers, text has a length limit and no NUL, control character or lone surrogate, and a
422 never echoes the input (an unencodable echo would turn it into a 500)."""

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from cxr.dicomnode.spool import preview
from cxr.inline import data_uri
from cxr.serve import pages
from cxr.serve.auth import bearer, worklist_reviewer
from cxr.store import worklist
from cxr.store.models import Instance, Reviewer
from cxr.store.text import plain_text
from cxr.store.worklist import MAX_NOTE, Queue, ReviewConflict, ReviewError

MAX_ID = 2**31 - 1  # PostgreSQL's INTEGER; SQLite takes more, but the two must answer alike
NO_CONTROLS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"  # the schema's half of plain_text


class Decision(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"label": "NORMAL", "note": ""}]}
    )

    label: Annotated[str, AfterValidator(plain_text)] = Field(
        min_length=1, max_length=64, pattern=NO_CONTROLS, description="One of the model's classes."
    )
    note: Annotated[str, AfterValidator(plain_text)] = Field(
        "",
        max_length=MAX_NOTE,
        pattern=NO_CONTROLS,
        description="Optional free text, kept for good in the audit: no patient identifiers.",
    )
    force: bool = Field(False, description="An admin replacing another reviewer's label.")


EntryId = Annotated[
    int, PathParam(ge=1, le=MAX_ID, examples=[1], description="A worklist entry's id.")
]


class SafeErrors(APIRoute):
    """A 422 that lists where and why, without the input: the body always encodes."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                detail = [
                    {"loc": [_safe(str(part)) for part in error.get("loc", ())],
                     "msg": _safe(str(error.get("msg", ""))), "type": str(error.get("type", ""))}
                    for error in exc.errors()
                ]  # fmt: skip
                return JSONResponse({"detail": detail}, status_code=422)

        return answer


def _safe(text: str) -> str:
    """At most 200 printable characters: what an error body or the audit may repeat."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[:200])


def worklist_router(
    sessions: sessionmaker[Session], population: dict | None = None, api_token: str | None = None
) -> APIRouter:
    """`population`: the served model's training-image ranges, for the drift figures;
    `api_token`: the server's CXR_API_TOKEN, refused here with a 403 that says why."""
    router = APIRouter(route_class=SafeErrors)
    budget = RefusalBudget()

    def session():
        with sessions() as s:
            yield s
            s.commit()  # one unit of work per request, before the answer; an error rolls back

    Db = Annotated[Session, Depends(session, scope="function")]

    def reviewer(request: Request, db: Db) -> Reviewer:
        try:
            return worklist_reviewer(
                db, bearer(request.headers.get("authorization", "")), api_token
            )
        except HTTPException as exc:
            refused(db, None, request, exc.status_code, budget)
            raise

    Who = Annotated[Reviewer, Depends(reviewer)]
    _listing_routes(router, Db, Who, budget, population)
    _case_routes(router, Db, Who, budget)
    return router


def _listing_routes(
    router: APIRouter, Db: Any, Who: Any, budget: "RefusalBudget", population: dict | None
) -> None:
    """The page, the queues, the audit trail and the drift monitor. `Db`, `Who`: the
    request's session and reviewer, as `worklist_router` depends on them."""

    @router.get("/worklist", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return pages.page("worklist.html")

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
    def audit_trail(
        request: Request, who: Who, db: Db, limit: Annotated[int, Query(ge=1, le=10_000)] = 500
    ):
        if who.role != "admin":
            refused(db, who.name, request, 403, budget)
            raise HTTPException(403, "the audit trail is for admins")
        return [
            {"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "sop_instance_uid": e.sop_instance_uid, "detail": e.detail}
            for e in worklist.audit_trail(db, limit)
        ]  # fmt: skip

    @router.get("/api/worklist/monitor")
    def monitoring(
        who: Who, db: Db, by: Annotated[Literal["day", "week"], Query()] = "day"
    ) -> dict:
        from cxr.serve.monitor import monitor

        worklist.audit(db, who.name, "monitor", by=by)
        return monitor(db, population, by)


def _case_routes(router: APIRouter, Db: Any, Who: Any, budget: "RefusalBudget") -> None:
    """One case: its view (image and heat map) and the reviewer's decision."""

    @router.get("/api/worklist/{entry}")
    def case(entry: EntryId, who: Who, db: Db) -> dict:
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
    def review(request: Request, entry: EntryId, decision: Decision, who: Who, db: Db) -> dict:
        if decision.force and who.role != "admin":
            refused(db, who.name, request, 403, budget, entry=entry)
            raise HTTPException(403, "only an admin replaces another reviewer's label")
        try:
            row = worklist.review(
                db, entry, decision.label, decision.note, who.name, overwrite=decision.force
            )
        except ReviewConflict as exc:
            refused(db, who.name, request, 409, budget, entry=entry)
            raise HTTPException(409, str(exc)) from None
        except ReviewError as exc:
            status = 404 if "no such entry" in str(exc) else 422
            raise HTTPException(status, str(exc)) from None
        return _summary(row)


class RefusalBudget:
    """At most `per_minute` refused attempts audited per client address and minute. The audit
    table is append-only, so a flood of bad tokens (hundreds a second) would otherwise grow it
    without bound; the attempts beyond the budget are counted, and the count goes into the next
    audited refusal from that address."""

    def __init__(self, per_minute: int = 30) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, tuple[int, int, int]] = {}  # address -> (minute, audited, skipped)
        self.lock = threading.Lock()

    def admit(self, address: str) -> int | None:
        """None: do not audit this one; else how many went unaudited before it."""
        minute = int(time.monotonic() // 60)
        with self.lock:
            if len(self.seen) > 10_000:  # many addresses: forget the old minutes
                self.seen = {a: v for a, v in self.seen.items() if v[0] == minute}
            last, audited, skipped = self.seen.get(address, (minute, 0, 0))
            if last != minute:
                audited = 0
            if audited >= self.per_minute:
                self.seen[address] = (minute, audited, skipped + 1)
                return None
            self.seen[address] = (minute, audited + 1, 0)
            return skipped


def refused(
    db: Session, actor: str | None, request: Request, status: int, budget: RefusalBudget, **detail
) -> None:
    """Audit a refused attempt: who (if known), what they asked for, and the answer."""
    db.rollback()
    address = request.client.host if request.client else "?"
    skipped = budget.admit(address)
    if skipped is None:
        return
    if skipped:
        detail["unaudited_before"] = skipped
    worklist.audit(db, actor or "(no reviewer)", "refused", status=status, client=address,
                   method=request.method, path=_safe(request.url.path), **detail)  # fmt: skip
    db.commit()  # on its own: the error answered next rolls the request's unit back


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
        "warnings": row.warnings,
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
    return data_uri(path.read_bytes())
