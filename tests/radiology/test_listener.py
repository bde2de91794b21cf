"""`cxr listen` with dcmtk's storescu as the modality: a kill -9 mid-stream loses and duplicates
nothing, an outage of the database does not stop reception, and the spool, the database and the
log hold no patient name."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import create_engine, text

from cxr.data.population import intensity_ranges
from cxr.dicomnode.scoring import Scorer
from cxr.inference.predict import predict_paths
from cxr.inference.predictor import load_predictor
from cxr.models import create_model, save_model
from tests.radiology.conftest import MARKER, Listener, dump, wait_until

STORESCU = ["storescu", "-v", "-xy", "-aec", "CXR", "127.0.0.1"]


def _instances(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sop_instance_uid, status FROM instances")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.fixture()
def twelve(data):
    """Nine Kermany DICOMs in all four encodings and three distinct NIH ones."""
    folder = data / "dicom_cxr"
    files = sorted((folder / "kermany_wrapped").glob("*.dcm"))[::4][:9]
    return files + [folder / "nih_udacity" / f"test{i}.dcm" for i in (1, 2, 3)]


def _acknowledged(output: str) -> list[str]:
    """The files storescu saw a Success response for, in order."""
    acked, current = [], None
    for line in output.splitlines():
        if m := re.search(r"Sending file: (.+)$", line):
            current = m[1].strip()
        elif "Received Store Response (Success)" in line and current:
            acked.append(current)
    return acked


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(
    db_url, listener_factory, twelve
):
    listener = listener_factory(db_url).start()
    uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in twelve}
    assert len(uids) == 12
    sender = subprocess.Popen(
        [*STORESCU, str(listener.port), "--repeat", "30", "-pdu", "4096", "-nh",
         *map(str, twelve)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until(lambda: len(list(listener.spool.glob("*.dcm"))) >= 6, 60, "six spooled files", 0.02)
    listener.kill9()
    output = sender.communicate(timeout=120)[0]
    acked = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
             for f in _acknowledged(output)}  # fmt: skip
    assert len(acked) >= 4, output[-2000:]  # a spooled file may die before its answer: fine
    assert "Store Failed" in output  # the stream was cut mid-way

    listener.start()  # the restart catches up on the spool, nothing is sent again
    rows = wait_until(
        lambda: (r := _instances(db_url)) and acked <= {u for u, _ in r} and r,
        180,
        "every acknowledged instance in the worklist",
    )
    assert len(rows) == len({u for u, _ in rows})

    resend = subprocess.run([*STORESCU, str(listener.port), *map(str, twelve)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert resend.returncode == 0, resend.stdout + resend.stderr
    rows = wait_until(lambda: len(r := _instances(db_url)) == 12 and r, 180, "all twelve")
    assert {u for u, _ in rows} == uids  # exactly once each
    assert {s for _, s in rows} == {"scored"}
    listener.stop()
    assert len(_instances(db_url)) == 12
    log = listener.log.read_text()
    spooled = b"".join(p.read_bytes() for p in listener.spool.rglob("*") if p.is_file())
    assert MARKER.encode() not in spooled.upper()
    assert MARKER not in (log + dump(db_url)).upper()


def test_database_outage_does_not_stop_reception(postgres, listener_factory, twelve):
    import psycopg

    name = "cxr_outage"
    with psycopg.connect(f"host=127.0.0.1 port={postgres['port']} user=cxr dbname=postgres",
                         autocommit=True) as conn:  # fmt: skip
        conn.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://cxr@127.0.0.1:{postgres['port']}/{name}"
    listener = listener_factory(url).start()
    wait_until(lambda: "database ready" in listener.log.read_text(), 60, "the migration")
    subprocess.run(postgres["stop"], check=True, capture_output=True)
    try:
        sent = subprocess.run([*STORESCU, str(listener.port), *map(str, twelve[:4])],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr  # acknowledged while it is down
        wait_until(lambda: "database error" in listener.log.read_text(), 60, "a noticed outage")
    finally:
        subprocess.run(postgres["start"], check=True, capture_output=True)
    rows = wait_until(lambda: len(r := _instances(url)) == 4 and r, 120, "the catch-up")
    assert {s for _, s in rows} == {"scored"}


def test_worklist_rows_carry_the_warnings_cxr_predict_gives(data, tmp_path, db_url):
    """A model trained on darker films of children aged 1-5: the node scores NIH's test1 with the
    grey-level and the age warnings `cxr predict` prints for it, and test2 (58 years) with the age
    warning alone, as predict does (the spool keeps PatientAge, the export removes it)."""
    train = sorted((data / "chest_xray" / "train").rglob("*.jpeg"))[::100]
    model = create_model("cxr_cnn").eval()
    model.card = dataclasses.replace(
        model.card,
        classes=("NORMAL", "PNEUMONIA"),
        population={**intensity_ranges(train), "age_years": [1.0, 5.0]},
    )
    model_file = save_model(tmp_path / "model.pt", model)
    films = [data / "dicom_cxr" / "nih_udacity" / f"test{i}.dcm" for i in (1, 2)]
    predicted = predict_paths(load_predictor(model_file), films).rows
    expected = {str(pydicom.dcmread(Path(r.path)).SOPInstanceUID): r.warnings for r in predicted}
    assert sorted(map(len, expected.values())) == [1, 2]  # both too old, one also too bright
    assert all(any("patient age" in w for w in warned) for warned in expected.values())
    listener = Listener(model_file, db_url, tmp_path).start()
    try:
        sent = subprocess.run([*STORESCU, str(listener.port), *map(str, films)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(lambda: len(_instances(db_url)) == 2, 120, "both rows")
    finally:
        listener.stop()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sop_instance_uid, status, warnings FROM instances"))
        stored = {
            uid: (status, w if isinstance(w, list) else json.loads(w)) for uid, status, w in rows
        }
    engine.dispose()
    assert stored == {uid: ("scored", warnings) for uid, warnings in expected.items()}


def test_an_age_over_89_is_stored_as_90(data, tmp_path):
    """Ages from 90 on identify (HIPAA): the row, and so the monitor's age spread, holds 90;
    the warning says "90 years or older", as `cxr predict` does."""
    model = create_model("cxr_cnn").eval()
    model.card = dataclasses.replace(
        model.card, classes=("NORMAL", "PNEUMONIA"), population={"age_years": [1.0, 5.0]}
    )
    scorer = Scorer(load_predictor(save_model(tmp_path / "model.pt", model)))
    film = pydicom.dcmread(data / "dicom_cxr" / "nih_udacity" / "test2.dcm")
    film.PatientAge = "093Y"
    spooled = tmp_path / f"{film.SOPInstanceUID}_{'0' * 16}.dcm"
    film.save_as(spooled)
    received = scorer.assess(spooled, film, "p1").received
    assert received.age_years == 90.0
    age = "patient age 90 years or older, outside the training data's 1–5"
    assert received.warnings[0] == age, received.warnings
    assert not any("93" in w for w in received.warnings)
