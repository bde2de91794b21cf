"""Reviewer identities: one random token each, shown once; the database keeps only its SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cxr.errors import CxrError
from cxr.store.models import Reviewer
from cxr.store.text import plain_text

ROLES = ("reviewer", "admin")
MAX_NAME = 100  # the column's length


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_reviewer(session: Session, name: str, role: str = "reviewer") -> str:
    """Create a reviewer (stored when the caller's transaction commits) and return their token
    (the only time it is visible)."""
    if role not in ROLES:
        raise CxrError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    name = name.strip()
    if not name:
        raise CxrError("a reviewer needs a name")
    if len(name) > MAX_NAME:
        raise CxrError(f"a reviewer's name has at most {MAX_NAME} characters, not {len(name)}")
    try:
        plain_text(name)
    except ValueError as exc:
        raise CxrError(f"reviewer name: {exc}") from None
    exists = CxrError(f"reviewer {name!r} exists already")
    if session.scalar(select(Reviewer.id).where(Reviewer.name == name)) is not None:
        raise exists  # the caller's transaction stays usable
    token = secrets.token_urlsafe(24)
    session.add(Reviewer(name=name, role=role, token_sha256=_digest(token)))
    try:
        session.flush()  # a concurrent twin: refused here, the caller's transaction rolls back
    except IntegrityError as exc:
        raise exists from exc
    return token


def identify(session: Session, token: str) -> Reviewer | None:
    if not token:
        return None
    return session.scalar(select(Reviewer).where(Reviewer.token_sha256 == _digest(token)))
