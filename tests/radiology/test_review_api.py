"""The review API's edge, on SQLite and PostgreSQL, served by uvicorn on 127.0.0.1: out-of-range
ids and hostile notes are 4xx (never a 500, never an unencodable echo), schemathesis finds no
server error, a case another reviewer labelled changes only by an admin's force, refused
attempts are audited, and the audit refuses a replace."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from cxr.serve.connections import HEADER_SECONDS, hardened
from cxr.serve.worklist import worklist_router
from cxr.store import worklist
from cxr.store.database import DatabaseError, create, migrate, open_database
from cxr.store.models import Instance
from cxr.store.reviewers import add_reviewer
from cxr.store.roles import grant_application_role
from cxr.store.worklist import Received
from tests.radiology.conftest import free_port, wait_until

THRESHOLD = {"rule": "fixed:0.5", "positive_class": "PNEUMONIA", "value": 0.5}


def scored(n: int, spool: Path, picture: Path | None = None) -> list[Received]:
    """`n` scored cases; with `picture`, their spooled previews are that image (and a tint)."""
    rows = []
    for i in range(n):
        p = round(0.05 + 0.9 * i / max(n - 1, 1), 3)
        path = spool / f"1.2.826.0.1.{i}_{i:016x}.dcm"
        rows.append(Received(
            f"1.2.826.0.1.{i}", f"{i:016x}", f"1.2.826.0.2.{i // 2}", "1.2.826.0.3", f"p{i // 2}",
            str(path), "scored", classes=["NORMAL", "PNEUMONIA"], probabilities=[1 - p, p],
            predicted="PNEUMONIA" if p >= 0.5 else "NORMAL", urgency=p, threshold=THRESHOLD,
            width=2000, height=2000, pixel_mean=120.0 + i, pixel_std=50.0, age_years=40.0 + i,
            model_fingerprint="f" * 16,
        ))  # fmt: skip
        if picture is not None:
            (spool / "previews").mkdir(parents=True, exist_ok=True)
            grey = Image.open(picture).convert("L").resize((512, 512))
            grey.save(spool / "previews" / f"{path.stem}.image.png")
            tint = np.asarray(grey.convert("RGB")).copy()
            tint[..., 0] = np.maximum(tint[..., 0], 80 + 40 * (i % 3))
            Image.fromarray(tint).save(spool / "previews" / f"{path.stem}.cam.png")
    return rows


@contextmanager
def running_worklist(
    db_url: str, population: dict | None = None, header_seconds: float = HEADER_SECONDS
) -> Iterator[str]:
    """The worklist router in a real uvicorn on 127.0.0.1, as `cxr serve --db` mounts it (Host
    allow list and header deadline included)."""
    app = FastAPI(title="worklist")
    app.include_router(worklist_router(open_database(db_url), population, "api-s3cret"))
    port = free_port()
    guarded, limits = hardened(app, "127.0.0.1", None, header_seconds)
    config = uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning", **limits)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "uvicorn", interval=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture()
def department(db_url, tmp_path):
    sessions = open_database(db_url)
    with sessions.begin() as session:
        for row in scored(4, tmp_path / "spool"):
            worklist.record(session, row)
        tokens = {name: add_reviewer(session, name, role)
                  for name, role in (("ann", "reviewer"), ("bob", "reviewer"),
                                     ("root", "admin"))}  # fmt: skip
    with running_worklist(db_url) as url:
        yield url, tokens, sessions


def _as(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_out_of_range_ids_and_hostile_text_are_refused_with_a_reason(department):
    url, tokens, sessions = department
    client = httpx.Client(base_url=url, headers=_as(tokens["ann"]), timeout=30)
    for entry in ("0", "-1", str(2**31), str(2**63), str(2**64), "1e3", "%00"):
        assert client.get(f"/api/worklist/{entry}").status_code in (404, 422), entry
        answer = client.post(f"/api/worklist/{entry}/review", json={"label": "NORMAL"})
        assert answer.status_code in (404, 422), (entry, answer.text)
    assert client.get(f"/api/worklist/{2**31 - 1}").status_code == 404
    stranger = httpx.get(f"{url}/api/worklist/%00%ff%ed%a0%80", headers=_as("\x7f"), timeout=30)
    assert stranger.status_code == 401
    with sessions() as session:  # refused, and audited with a printable path
        (event,) = [e for e in worklist.audit_trail(session) if e.action == "refused"]
    assert event.detail["status"] == 401 and event.detail["path"].isprintable()
    assert "\\x00" in event.detail["path"]
    hostile = ['"a\\u0000b"', '"\\ud800"', '"\\udfff tail"', '"bell\\u0007"', "7", "null"]
    for note in hostile:
        body = f'{{"label": "NORMAL", "note": {note}}}'
        answer = client.post("/api/worklist/1/review", content=body,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 422, (note, answer.text)
        assert answer.json()["detail"], note  # the body encodes and says why
    extra = client.post("/api/worklist/1/review", content='{"label": "NORMAL", "\\ud800": 1}',
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert extra.status_code == 422 and extra.json()["detail"][0]["type"], extra.text
    for label in ('"\\ud800"', '"NOR\\u0000MAL"', '""', json.dumps("N" * 65)):
        body = f'{{"label": {label}}}'
        answer = client.post("/api/worklist/1/review", content=body,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 422, (label, answer.text)
    for raw in (b'{"label": "NORMAL", "note": "\xed\xa0\x80"}', b"\xff\xfe", b"{", b"[]"):
        answer = client.post("/api/worklist/1/review", content=raw,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert 400 <= answer.status_code < 500, (raw, answer.text)
    too_long = client.post("/api/worklist/1/review", json={"label": "NORMAL", "note": "x" * 2001})
    assert too_long.status_code == 422
    fine = client.post("/api/worklist/1/review",
                       json={"label": "NORMAL", "note": "line one\n\tline two: é ✓"})  # fmt: skip
    assert fine.status_code == 200 and fine.json()["review"]["note"].endswith("é ✓")
    assert client.get("/api/worklist/monitor", params={"by": "year"}).status_code == 422


def test_another_reviewers_label_changes_only_by_an_admins_force(department):
    url, tokens, _ = department
    ann, bob, root = (httpx.Client(base_url=url, headers=_as(tokens[n]), timeout=30)
                      for n in ("ann", "bob", "root"))  # fmt: skip
    assert ann.post("/api/worklist/2/review", json={"label": "NORMAL"}).status_code == 200
    assert ann.post("/api/worklist/2/review", json={"label": "PNEUMONIA"}).status_code == 200
    taken = bob.post("/api/worklist/2/review", json={"label": "NORMAL"})
    assert taken.status_code == 409 and "reviewed already by ann" in taken.json()["detail"]
    forced = bob.post("/api/worklist/2/review", json={"label": "NORMAL", "force": True})
    assert forced.status_code == 403
    assert root.post("/api/worklist/2/review", json={"label": "NORMAL"}).status_code == 409
    replaced = root.post("/api/worklist/2/review", json={"label": "NORMAL", "force": True})
    assert replaced.status_code == 200 and replaced.json()["review"]["by"] == "root"
    assert httpx.get(f"{url}/api/worklist/2", headers=_as("guess")).status_code == 401
    assert httpx.get(f"{url}/api/worklist", headers=_as("api-s3cret")).status_code == 403
    assert bob.get("/api/worklist/audit").status_code == 403

    trail = root.get("/api/worklist/audit").json()
    refusals = [(e["actor"], e["detail"]["status"]) for e in trail if e["action"] == "refused"]
    assert sorted(refusals) == sorted([("bob", 409), ("bob", 403), ("root", 409),
                                       ("(no reviewer)", 401), ("(no reviewer)", 403),
                                       ("bob", 403)])  # fmt: skip
    (last,) = [e for e in trail if e["action"] == "review" and e["actor"] == "root"]
    assert (last["detail"]["previous"], last["detail"]["previous_by"]) == ("PNEUMONIA", "ann")


def test_the_audit_refuses_a_replace(db_url):
    with open_database(db_url)() as session:
        worklist.audit(session, "ann", "list")
        session.commit()
        (event,) = worklist.audit_trail(session)
        dialect = session.get_bind().dialect.name
        replace = {
            "sqlite": "INSERT OR REPLACE INTO audit (id, at, actor, action, detail) "
            "VALUES (:id, '2020-01-01', 'mallory', 'list', '{}')",
            "postgresql": "INSERT INTO audit (id, at, actor, action, detail) "
            "VALUES (:id, now(), 'mallory', 'list', '{}') "
            "ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
        }[dialect]
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(replace), {"id": event.id})
        session.rollback()
        assert [e.actor for e in worklist.audit_trail(session)] == ["ann"]


def test_schemathesis_finds_no_server_error_with_a_reviewer_token(department):
    url, tokens, _ = department
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", "40",
            "--phases", "examples,coverage,fuzzing",
            "-H", f"Authorization: Bearer {tokens['root']}",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_monitor_summarises_10000_rows(db_url):
    """Generated rows over ten weeks: scored and not (MR/CT), a third reviewed by a few
    reviewers; the answer is timed at the endpoint."""
    sessions = open_database(db_url)
    rng = np.random.default_rng(0)
    n, start = 10_000, datetime(2026, 9, 1, tzinfo=UTC)
    p = rng.random(n)
    status = np.where(rng.random(n) < 0.1, "not_scored", "scored")
    reviewed = (rng.random(n) < 0.33) & (status == "scored")
    truth = np.where(rng.random(n) < 0.8, p >= 0.5, p < 0.5)  # the reviewer agrees 80 %
    rows = [{
        "sop_instance_uid": f"1.2.826.9.{i}", "content_digest": f"{i:016x}",
        "study_instance_uid": f"1.2.826.8.{i}", "series_instance_uid": "1.2.826.7",
        "patient_pseudonym": f"p{i // 3}", "spool_path": f"/spool/{i}.dcm",
        "received_at": start + timedelta(minutes=10 * i), "status": str(status[i]),
        "reason": None if status[i] == "scored" else "Modality MR, not CR/DX", "flags": [],
        "model_fingerprint": "f" * 16, "classes": ["NORMAL", "PNEUMONIA"],
        "probabilities": [1 - p[i], p[i]], "predicted": "PNEUMONIA" if p[i] >= 0.5 else "NORMAL",
        "urgency": p[i], "threshold": THRESHOLD, "width": 2000, "height": 2400,
        # not-scored MR/CT rows carry absurd statistics: the monitor must leave them out
        "pixel_mean": 120.0 + rng.normal(0, 10) if status[i] == "scored" else 9999.0,
        "pixel_std": 50.0, "age_years": float(rng.integers(1, 90)),
        "review_label": ("PNEUMONIA" if truth[i] else "NORMAL") if reviewed[i] else None,
        "reviewed_by": "ann" if reviewed[i] else None,
        "reviewed_at": start + timedelta(minutes=10 * i + 5) if reviewed[i] else None,
    } for i in range(n)]  # fmt: skip
    with sessions.begin() as session:
        session.execute(insert(Instance), rows)
        token = add_reviewer(session, "ann")
    population = {"pixel_mean": [100.0, 140.0], "age_years": [1.0, 5.0]}
    with running_worklist(db_url, population) as url:
        client = httpx.Client(base_url=url, headers=_as(token), timeout=60)
        client.get("/api/worklist/monitor")  # connection and first-query warm-up
        for by, periods in (("day", 70), ("week", 11)):
            began = time.perf_counter()
            answer = client.get("/api/worklist/monitor", params={"by": by})
            took = time.perf_counter() - began
            # a loose bound: it catches a query per row, not a slow or shared host
            assert answer.status_code == 200 and took < 5.0, (by, took)
            watched = answer.json()
            assert len(watched["periods"]) in (periods, periods + 1), len(watched["periods"])
    assert sum(d["received"] for d in watched["periods"]) == n
    assert sum(d["not_scored"] for d in watched["periods"]) == int((status != "scored").sum())
    inputs = watched["inputs"]
    assert inputs["pixel_mean"]["n"] == int((status == "scored").sum())
    assert inputs["pixel_mean"]["p95"] < 200  # no MR/CT statistics among them
    assert inputs["age_years"]["outside"] > 0.9 * inputs["age_years"]["n"]
    overall = watched["against_reviewers"]
    assert overall["n"] == int(reviewed.sum())
    assert 0.75 < overall["agreement"]["value"] < 0.85
    low, high = overall["sensitivity"]["ci95"]
    assert low < overall["sensitivity"]["value"] < high and high - low < 0.1
    week = watched["periods"][1]["against_reviewers"]
    assert week["n"] > 100 and week["specificity"]["ci95"][0] < week["specificity"]["value"]


def test_the_monitor_never_claims_certainty_from_one_review(department):
    """One review that corrects the model (the first day of a deployment): 0 of 1 agreed, and its
    interval is Wilson's, not a percentile bootstrap collapsed to 0–0."""
    url, tokens, _ = department
    ann = httpx.Client(base_url=url, headers=_as(tokens["ann"]), timeout=30)
    assert ann.get("/api/worklist/4").json()["predicted"] == "PNEUMONIA"
    assert ann.post("/api/worklist/4/review", json={"label": "NORMAL"}).status_code == 200
    against = ann.get("/api/worklist/monitor").json()["against_reviewers"]
    for figure in ("agreement", "specificity"):
        shown = against[figure]
        assert shown["value"] == 0.0 and shown["method"] == "Wilson", (figure, shown)
        assert shown["ci95"][0] == 0.0 and shown["ci95"][1] > 0.5, (figure, shown)
    assert against["sensitivity"] == {"value": None, "ci95": None, "method": None}


def test_a_foreign_host_and_slow_headers_are_turned_away(db_url):
    with running_worklist(db_url, header_seconds=1.0) as url:
        port = int(url.rsplit(":", 1)[1])
        assert httpx.get(f"{url}/api/worklist").status_code == 401  # Host 127.0.0.1: answered
        rebound = httpx.get(f"{url}/api/worklist", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /api/worklist HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            began = time.monotonic()
            assert slow.recv(1024) == b""  # closed, unanswered
            assert time.monotonic() - began < 5
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
            kept.sendall(b"GET /worklist HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert kept.recv(64).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_application_role_cannot_touch_the_audit(db_url):
    """The owner migrates and grants; the app's role records, reviews and audits, but can
    neither rewrite the audit nor disable its trigger."""
    owner = create(db_url)
    role = f"cxr_app_{time.monotonic_ns()}"
    with owner.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
    app_url = make_url(db_url).set(username=role).render_as_string(hide_password=False)
    with pytest.raises(DatabaseError, match="grant-app-role ROLE --db OWNER_URL"):
        open_database(app_url)  # PostgreSQL 15: only the owner creates tables in `public`
    migrate(owner)
    assert grant_application_role(owner, role)
    with open_database(app_url)() as session:
        worklist.record(session, scored(1, Path("/nowhere"))[0])
        (row,) = worklist.queue(session, worklist.Queue.PENDING)
        worklist.review(session, row.id, "NORMAL", "", "ann")
        session.commit()
        for statement in (
            "UPDATE audit SET actor = 'mallory'",
            "DELETE FROM audit",
            "ALTER TABLE audit DISABLE TRIGGER audit_append_only",
            "DROP TRIGGER audit_append_only ON audit",
            "INSERT INTO reviewers (name, role, token_sha256, created_at) "
            "VALUES ('eve', 'admin', 'x', now())",
        ):
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
                session.execute(text(statement))
            session.rollback()
        assert [e.actor for e in worklist.audit_trail(session)] == ["ann"]
    owner.dispose()
