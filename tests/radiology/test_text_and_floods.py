"""Edges found by a hostile try of the department (issue 29/30 review): reviewer names and notes
hold no invisible formatting (a bidirectional override shows "evil" as "live"), a name longer
than its column is one clear error on both databases, a flood of bad tokens cannot grow the
append-only audit table without bound, and a pseudonym key file cut short is refused."""

import os
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cxr.dicomnode.pseudonym import MIN_KEY_CHARS, PseudonymKeyError, site_key
from cxr.errors import CxrError
from cxr.serve.worklist import worklist_router
from cxr.store.database import open_database
from cxr.store.models import AuditEvent
from cxr.store.reviewers import add_reviewer


@pytest.mark.parametrize(
    ("name", "words"),
    [("n" * 101, "at most 100 characters"), ("ev\u202eil", r"U\+202E"), ("a\x7fb", "control")],
)
def test_reviewer_names_are_checked_before_the_database(db_url, name, words):
    sessions = open_database(db_url)
    with sessions() as session, pytest.raises(CxrError, match=words):
        add_reviewer(session, name)


def test_notes_with_bidi_overrides_are_refused(tmp_path):
    sessions = open_database(f"sqlite:///{tmp_path / 'w.db'}")
    with sessions.begin() as session:
        token = add_reviewer(session, "Ann")
    app = FastAPI()
    app.include_router(worklist_router(sessions))
    client = TestClient(app)
    answer = client.post(
        "/api/worklist/1/review",
        json={"label": "NORMAL", "note": "\u202eevil\u2066"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 422


def test_a_flood_of_bad_tokens_is_audited_within_a_budget(tmp_path):
    sessions = open_database(f"sqlite:///{tmp_path / 'w.db'}")
    app = FastAPI()
    app.include_router(worklist_router(sessions))
    client = TestClient(app)
    start = time.monotonic()
    for _ in range(200):
        got = client.get("/api/worklist", headers={"Authorization": "Bearer " + "A" * 2000})
        assert got.status_code == 401
    minutes = int(time.monotonic() // 60) - int(start // 60) + 1  # 30 a clock minute: a flood
    with sessions() as session:  # across a minute's turn (or a busy host) gets 30 more
        rows = session.scalar(select(func.count()).select_from(AuditEvent))
    assert 1 <= rows <= 30 * minutes < 200  # not 200: the rest are counted, not written one by one


def test_a_pseudonym_key_file_cut_short_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CXR_PSEUDONYM_KEY", raising=False)
    key = tmp_path / "pseudonym.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)  # empty, as a kill between creating and writing leaves it
    with pytest.raises(PseudonymKeyError, match=f"at least {MIN_KEY_CHARS}"):
        site_key(tmp_path)
    key.unlink()
    made, where = site_key(tmp_path)
    assert len(made) >= MIN_KEY_CHARS and where == str(key)
