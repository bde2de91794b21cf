"""Reviewer identities: one random token each, shown once; the database keeps only its SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cxr.errors import CxrError
from cxr.store.models import Reviewer

ROLES = ("reviewer", "admin")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_reviewer(session: Session, name: str, role: str = "reviewer") -> str:
    """Create a reviewer and return their token (the only time it is visible)."""
    if role not in ROLES:
        raise CxrError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if not name.strip():
        raise CxrError("a reviewer needs a name")
    token = secrets.token_urlsafe(24)
    session.add(Reviewer(name=name.strip(), role=role, token_sha256=_digest(token)))
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise CxrError(f"reviewer {name!r} exists already") from exc
    return token


def identify(session: Session, token: str) -> Reviewer | None:
    if not token:
        return None
    return session.scalar(select(Reviewer).where(Reviewer.token_sha256 == _digest(token)))
