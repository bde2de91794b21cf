"""The worklist database on SQLite and PostgreSQL: migrations, idempotent records, reviews,
the append-only audit, reviewer tokens, and the worklist API's refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from cxr.errors import CxrError
from cxr.serve.worklist import worklist_router
from cxr.store import worklist
from cxr.store.database import MIGRATIONS, DatabaseError, open_database, unit_of_work
from cxr.store.models import Base
from cxr.store.reviewers import add_reviewer, identify
from cxr.store.worklist import Queue, Received, ReviewConflict, ReviewError


def _received(sop="1.2.3.4", digest="aaaa", **kw) -> Received:
    threshold = {"rule": "fixed:0.5", "positive_class": "PNEUMONIA", "value": 0.5}
    scored = {"status": "scored", "classes": ["NORMAL", "PNEUMONIA"], "threshold": threshold,
              "probabilities": [0.3, 0.7], "predicted": "PNEUMONIA", "urgency": 0.7}  # fmt: skip
    return Received(sop, digest, "1.2.3", "1.2.3.1", "dcm-0123", "/spool/x.dcm",
                    **{**scored, **kw})  # fmt: skip


def test_migrations_build_the_models_schema_and_rerun_harmlessly(db_url):
    sessions = open_database(db_url)
    open_database(db_url)  # a second start migrates nothing
    with sessions() as session, session.get_bind().connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest


def test_records_are_idempotent_and_a_reused_uid_is_kept_apart(db_url):
    with open_database(db_url)() as session:
        assert worklist.record(session, _received())
        assert not worklist.record(session, _received())  # the same instance again
        assert worklist.uid_taken(session, "1.2.3.4", "bbbb")
        assert not worklist.uid_taken(session, "1.2.3.4", "aaaa")
        assert worklist.record(session, _received(digest="bbbb", status="not_scored"))
        assert worklist.total(session) == 2
        assert worklist.counts(session) == {"pending": 1, "reviewed": 0, "not_scored": 1,
                                            "disagreements": 0}  # fmt: skip


def test_reviews_and_the_append_only_audit(db_url):
    with open_database(db_url)() as session:
        worklist.record(session, _received())
        (row,) = worklist.queue(session, Queue.PENDING)
        with pytest.raises(ReviewError, match="not one of the model's classes"):
            worklist.review(session, row.id, "COVID", "", "ann")
        with pytest.raises(ReviewError, match="no such entry"):
            worklist.review(session, row.id + 99, "NORMAL", "", "ann")
        worklist.review(session, row.id, "NORMAL", "small effusion?", "ann")
        session.commit()
        assert [r.id for r in worklist.queue(session, Queue.DISAGREEMENTS)] == [row.id]
        (event,) = worklist.audit_trail(session)
        assert (event.actor, event.action, event.detail["label"]) == ("ann", "review", "NORMAL")
        for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(text(statement))
            session.rollback()
        assert worklist.audit_trail(session)[0].actor == "ann"


def _refuse_audit_rows_by(sessions, actor: str) -> None:
    """A constraint the audit table does not have: its rows by `actor` fail to insert."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":  # SQLite adds no CHECK to a table
            session.execute(text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON audit WHEN NEW.actor = '{actor}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ))  # fmt: skip
        else:
            session.execute(text(f"ALTER TABLE audit ADD CONSTRAINT refuse CHECK "
                                 f"(actor <> '{actor}')"))  # fmt: skip


def test_an_action_and_its_audit_row_commit_or_roll_back_together(db_url):
    sessions = open_database(db_url)
    with unit_of_work(sessions) as session:
        worklist.record(session, _received())
        worklist.record(session, _received("1.2.3.5"))
        first, second = (row.id for row in worklist.queue(session, Queue.PENDING))
    _refuse_audit_rows_by(sessions, "mallory")
    with pytest.raises(IntegrityError), unit_of_work(sessions) as session:
        worklist.review(session, first, "NORMAL", "", "mallory")  # its audit row fails
    with pytest.raises(IntegrityError), unit_of_work(sessions) as session:
        worklist.review(session, second, "NORMAL", "", "ann")  # stored only if the next is
        worklist.audit(session, "mallory", "view", "1.2.3.5")
    with sessions() as session:
        assert worklist.counts(session)["reviewed"] == 0
        assert worklist.audit_trail(session) == []
    with unit_of_work(sessions) as session:
        worklist.review(session, second, "NORMAL", "", "ann")
        worklist.audit(session, "ann", "view", "1.2.3.5")
    with sessions() as session:
        assert worklist.instance(session, second).reviewed_by == "ann"
        assert [e.action for e in worklist.audit_trail(session)] == ["view", "review"]


def test_two_reviewers_at_once_one_label_stands_the_other_is_a_conflict(db_url):
    """The race of two reviewers submitting the same case together: each read the case
    unlabelled before the other's label was stored. The one stored second must be refused, not
    written over the first (the HTTP attack had four of six simultaneous reviewers told 200)."""
    sessions = open_database(db_url)
    with unit_of_work(sessions) as session:
        worklist.record(session, _received())
        (case,) = (row.id for row in worklist.queue(session, Queue.PENDING))
    with sessions() as late:
        seen = worklist.instance(late, case)  # read (and held) before bob's label is stored
        assert seen.reviewed_by is None
        with unit_of_work(sessions) as first:
            worklist.review(first, case, "PNEUMONIA", "", "bob")
        with pytest.raises(ReviewConflict, match="meanwhile"):
            worklist.review(late, case, "NORMAL", "", "ann")
        late.rollback()
    with sessions() as session:
        row = worklist.instance(session, case)
        assert (row.review_label, row.reviewed_by) == ("PNEUMONIA", "bob")
        assert [e.actor for e in worklist.audit_trail(session) if e.action == "review"] == ["bob"]


def test_reviewer_tokens_are_stored_only_as_hashes(db_url):
    with open_database(db_url)() as session:
        token = add_reviewer(session, "ann", "admin")
        with pytest.raises(CxrError, match="exists already"):
            add_reviewer(session, "ann")
        with pytest.raises(CxrError, match="role"):
            add_reviewer(session, "bob", "superuser")
        assert identify(session, token).role == "admin"
        assert identify(session, token + "x") is None
        stored = session.execute(text("SELECT token_sha256 FROM reviewers")).scalar()
        assert token not in stored


def test_worklist_api_refuses_strangers_bad_labels_and_unknown_entries(db_url):
    sessions = open_database(db_url)
    with sessions.begin() as session:
        worklist.record(session, _received(pixel_mean=200.0))
        reviewer = add_reviewer(session, "ann")
    app = FastAPI()
    app.include_router(worklist_router(sessions, {"pixel_mean": [60.0, 180.0]}, "s3cret"))
    client = TestClient(app)
    assert client.get("/api/worklist").status_code == 401
    assert client.get("/api/worklist", headers={"Authorization": "Bearer nope"}).status_code == 401
    scripted = client.get("/api/worklist", headers={"Authorization": "Bearer s3cret"})
    assert scripted.status_code == 403 and "own reviewer token" in scripted.json()["detail"]
    auth = {"Authorization": f"Bearer {reviewer}"}
    (row,) = client.get("/api/worklist", headers=auth).json()["rows"]
    assert client.get("/api/worklist/audit", headers=auth).status_code == 403
    assert client.get("/api/worklist/9999", headers=auth).status_code == 404
    bad = client.post(f"/api/worklist/{row['id']}/review", json={"label": "COVID"}, headers=auth)
    assert bad.status_code == 422 and "not one of the model's classes" in bad.text
    long = client.post(f"/api/worklist/{row['id']}/review",
                       json={"label": "NORMAL", "note": "x" * 5000}, headers=auth)  # fmt: skip
    assert long.status_code == 422
    case = client.get(f"/api/worklist/{row['id']}", headers=auth).json()
    assert case["image"] is None  # the spooled preview is gone: the case still opens
    done = client.post(f"/api/worklist/{row['id']}/review", json={"label": "NORMAL"}, headers=auth)
    assert done.json()["review"]["label"] == "NORMAL"
    watched = client.get("/api/worklist/monitor", headers=auth).json()
    (day,) = watched["periods"]
    assert {k: day[k] for k in ("received", "not_scored", "reviewed", "agreed")} == {
        "received": 1, "not_scored": 0, "reviewed": 1, "agreed": 0}  # fmt: skip
    against = watched["against_reviewers"]
    assert (against["n"], against["agreement"]["value"]) == (1, 0.0)
    assert against["specificity"]["value"] == 0.0  # a reviewed negative the model called positive
    assert against["sensitivity"]["value"] is None  # no reviewed positive yet
    drift = watched["inputs"]["pixel_mean"]
    assert (drift["outside"], drift["n"], drift["training_range"]) == (1, 1, [60.0, 180.0])


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(DatabaseError, match="cannot migrate"):
        open_database("postgresql+psycopg://cxr@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="--db"):
        open_database("nosuchdialect://x")


def test_the_export_is_relocatable_de_identified_copies(db_url, data, tmp_path):
    import pydicom

    from cxr.store.export import export_reviews

    source = pydicom.dcmread(data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm")
    source.AccessionNumber, source.InstitutionName, source.PatientName = "ACC1", "St X", "Doe^J"
    source.PatientAge = "004Y"  # the spool keeps it for the node's age warning; exports do not
    source.add_new(0x00091001, "LO", "private")
    spooled = tmp_path / "spool" / f"{source.SOPInstanceUID}_aaaa.dcm"
    spooled.parent.mkdir()
    source.save_as(spooled)
    with open_database(db_url)() as session:
        received = replace(_received(source.SOPInstanceUID), study_instance_uid="=1+1",
                           spool_path=str(spooled), patient_pseudonym="dcm-77")  # fmt: skip
        worklist.record(session, received)
        (row,) = worklist.queue(session, Queue.PENDING)
        worklist.review(session, row.id, "NORMAL", "", "ann")
        done = export_reviews(session, tmp_path / "out", "cli:test")
    assert done.rows == 1
    (copy,) = (tmp_path / "out" / "images").iterdir()
    moved = (tmp_path / "out").rename(tmp_path / "moved")  # relocatable: no link into the spool
    copy = moved / "images" / copy.name
    assert not copy.is_symlink() and copy.is_file()
    exported = pydicom.dcmread(copy)
    assert (exported.PatientID, str(exported.PatientName)) == ("dcm-77", "dcm-77")
    assert "kermany" not in copy.read_bytes().decode("latin-1")
    for gone in ("AccessionNumber", "InstitutionName", "PatientAge"):
        assert gone not in exported
    assert exported.PatientIdentityRemoved == "YES" and 0x00091001 not in exported
    assert exported.pixel_array.shape == source.pixel_array.shape
    assert ",'=1+1," in (moved / "labels.csv").read_text()  # the UID formula, neutralised


def test_an_export_of_nothing_reviewed_is_refused_and_writes_nothing(db_url, tmp_path):
    """An empty labels.csv is no dataset (cxr train and cxr evaluate refuse it, and name its
    header): the export says why at once instead."""
    from cxr.errors import DatasetError
    from cxr.store.export import export_reviews

    with open_database(db_url)() as session:
        worklist.record(session, _received())  # pending: received, not reviewed
        with pytest.raises(DatasetError, match="no case reviewed yet"):
            export_reviews(session, tmp_path / "out", "cli:test")
    assert not (tmp_path / "out").exists()


def test_cli_refusals_come_before_the_database_is_touched(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "worklist.db"
    bad_role = subprocess.run(
        [sys.executable, "-m", "cxr", "reviews", "add-reviewer", "eve", "--role", "superuser",
         "--db", f"sqlite:///{db}"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad_role.returncode == 2 and "superuser" in bad_role.stderr
    assert not db.exists()  # refused before any migration
    no_scheme = subprocess.run(
        [sys.executable, "-m", "cxr", "reviews", "export", "--db", "worklist.db", "--out",
         str(tmp_path / "out")], capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    said = no_scheme.stderr + no_scheme.stdout
    assert no_scheme.returncode == 2 and "sqlite:///worklist.db" in said
    assert not (tmp_path / "worklist.db").exists()
