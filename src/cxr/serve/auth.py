"""Who may use what, in one place. The prediction API (`/api/predict`, `/api/triage`, the model
endpoints) takes the API token (CXR_API_TOKEN, for scripts) or any reviewer's token; without
CXR_API_TOKEN it is open. The worklist (`/api/worklist*`) takes a reviewer's own token only,
always: every list, view and decision there is audited under a person's name, which a shared
script token does not have. Both checks read the Authorization header alone, before any body
byte; the API token is compared in constant time, reviewer tokens by their SHA-256."""

from __future__ import annotations

import json
import os
import secrets
from typing import TYPE_CHECKING

import anyio
from fastapi import HTTPException

from cxr.errors import CxrError

if TYPE_CHECKING:  # the worklist database is the optional `pacs` extra; the API runs without it
    from sqlalchemy.orm import Session, sessionmaker

    from cxr.store.models import Reviewer

TOKEN_ENV = "CXR_API_TOKEN"
GUARDED = "/api/"
WORKLIST = "/api/worklist"
ADD_REVIEWER = "cxr reviews add-reviewer NAME --db URL"


def api_token(no_auth: bool) -> str | None:
    """The API token from CXR_API_TOKEN; an empty value is a mistake, not a way to turn it off."""
    token = os.environ.get(TOKEN_ENV)
    if no_auth:
        return None
    if token is not None and not token.strip():
        raise CxrError(f"{TOKEN_ENV} is set but empty: set a token, or pass --no-auth explicitly")
    return token


def bearer(authorization: str | bytes) -> str:
    """The token of an `Authorization: Bearer <token>` header ('' when there is none)."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def is_api_token(given: str, token: str | None) -> bool:
    return bool(token and given) and secrets.compare_digest(given.encode(), token.encode())


def worklist_reviewer(session: Session, given: str, token: str | None) -> Reviewer:
    """The reviewer a worklist request comes from: 401 without a reviewer token, 403 for the API
    token, which is valid here but names nobody."""
    from cxr.store.reviewers import identify

    found = identify(session, given)
    if found is not None:
        return found
    if is_api_token(given, token):
        raise HTTPException(
            403,
            f"the API token ({TOKEN_ENV}) is for scripts on the prediction API; the worklist "
            f"needs your own reviewer token (an admin creates one: {ADD_REVIEWER})",
        )
    raise HTTPException(
        401, f"the worklist needs a reviewer token: Authorization: Bearer … ({ADD_REVIEWER})"
    )


def describe(token: str | None, worklist: bool) -> str:
    """The start-up line's account of what is protected by what."""
    if token:
        api = f"prediction API needs {TOKEN_ENV}" + (" or a reviewer token" if worklist else "")
    else:
        api = "prediction API open (no token asked: anyone who reaches the port can use it)"
    if not worklist:
        return api
    refused = "; the API token is refused there" if token else ""
    return f"{api}; worklist needs a reviewer token{refused}"


def _in_worklist(path: str) -> bool:
    return path == WORKLIST or path.startswith(WORKLIST + "/")


class TokenGate:
    """ASGI middleware for the prediction API: with an API token configured, a request under
    /api/ (outside the worklist, which checks its reviewer itself) needs that token or a
    reviewer's; 401 otherwise, answered from the headers before any body byte is read."""

    def __init__(self, app, token: str | None, reviewers: sessionmaker[Session] | None) -> None:
        self.app, self.token, self.reviewers = app, token, reviewers

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.token
            or not path.startswith(GUARDED)
            or (self.reviewers is not None and _in_worklist(path))
            or await self._allowed(bearer(dict(scope["headers"]).get(b"authorization", b"")))
        ):
            await self.app(scope, receive, send)
            return
        others = " or a reviewer token" if self.reviewers is not None else ""
        detail = f"this server needs its API token ({TOKEN_ENV}){others}: Authorization: Bearer …"
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _allowed(self, given: str) -> bool:
        if is_api_token(given, self.token):
            return True
        if not given or self.reviewers is None:
            return False
        return await anyio.to_thread.run_sync(self._is_reviewer, given)

    def _is_reviewer(self, given: str) -> bool:
        from cxr.store.reviewers import identify

        with self.reviewers() as session:
            return identify(session, given) is not None
