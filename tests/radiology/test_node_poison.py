"""Poison messages, on SQLite and PostgreSQL alike: values no database column takes (a UID of 74
characters, NUL inside a UID or a text field, a formula for a UID) become "not scored" rows with
the reason, a spooled file nothing can read is quarantined once, and the instance after them is
scored; a restart retries none of them."""

from __future__ import annotations

import subprocess

import pydicom
from pydicom import config
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text

from tests.radiology.conftest import wait_until


def _rows(url: str) -> dict[str, dict]:
    engine = create_engine(url)
    with engine.connect() as conn:
        query = "SELECT sop_instance_uid, study_instance_uid, series_instance_uid, status, reason"
        rows = {r[0]: dict(r._mapping) for r in conn.execute(text(query + " FROM instances"))}
    engine.dispose()
    return rows


def _poison(source, folder) -> dict[str, str]:
    """Copies of a chest DX under new SOP Instance UIDs, each with one poisoned attribute."""
    cases = {
        "long study": ("StudyInstanceUID", "1." + "2" * 72),  # 74 characters
        "NUL in series": ("SeriesInstanceUID", "1.2.826.0\x00.1.5"),
        "formula study": ("StudyInstanceUID", '=HYPERLINK("http://example.org")'),
        "NUL in body part": ("BodyPartExamined", "CHE\x00ST"),
    }
    made = {}
    mode = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE  # a hostile sender's bytes
    try:
        for n, (name, (keyword, value)) in enumerate(cases.items()):
            ds = pydicom.dcmread(source)
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[name])
            setattr(ds, keyword, value)
            ds.save_as(folder / f"poison{n}.dcm")
            made[name] = str(ds.SOPInstanceUID)
    finally:
        config.settings.writing_validation_mode = mode
    return made


def test_poison_instances_are_listed_not_retried_and_the_next_is_scored(
    data, tmp_path, db_url, listener_factory
):
    nih = data / "dicom_cxr" / "nih_udacity"
    poison = _poison(nih / "test2.dcm", tmp_path)
    listener = listener_factory(db_url)
    # A spooled file nothing can read (a disk fault, a partial copy by hand): quarantined.
    listener.spool.mkdir(parents=True)
    broken = listener.spool / f"1.2.826.0.1.3680043.99.1_{'0' * 16}.dcm"
    broken.write_bytes(b"not DICOM at all")
    listener.start()
    files = [*sorted(tmp_path.glob("poison*.dcm")), nih / "test3.dcm"]
    sent = subprocess.run(
        ["storescu", "-v", "-aec", "CXR", "127.0.0.1", str(listener.port), *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    good = str(pydicom.dcmread(nih / "test3.dcm", stop_before_pixels=True).SOPInstanceUID)
    rows = wait_until(lambda: len(r := _rows(db_url)) == 6 and r, 180, "six rows")
    assert rows[good]["status"] == "scored"
    expected = {
        "long study": "StudyInstanceUID of 74 characters",
        "NUL in series": "SeriesInstanceUID holds characters other than digits",
        "formula study": "StudyInstanceUID holds characters other than digits",
        "NUL in body part": "BodyPartExamined CHE\ufffdST",
    }
    for name, why in expected.items():
        row = rows[poison[name]]
        assert row["status"] == "not_scored" and why in row["reason"], row
        assert "\x00" not in "".join(str(v) for v in row.values())
    assert rows[poison["long study"]]["study_instance_uid"] == ""  # never the poisoned value
    assert rows[poison["formula study"]]["study_instance_uid"] == ""
    quarantined = rows["1.2.826.0.1.3680043.99.1"]
    assert quarantined["status"] == "not_scored"
    assert quarantined["reason"].startswith("quarantined, not retried")
    assert (listener.spool / "quarantine" / broken.name).is_file()
    assert not broken.exists()

    listener.kill9()  # a restart catches up on nothing: none of them loops
    listener.start()
    wait_until(lambda: "0 spooled instance(s) to catch up" in listener.log.read_text(), 120,
               "an empty catch-up")  # fmt: skip
    listener.kill9()
    log = listener.log.read_text()
    assert log.count("quarantined, not retried") == 1
    assert "database error" not in log
    assert "HYPERLINK" not in log and "\x00" not in log  # pydicom quotes no value
    assert len(_rows(db_url)) == 6
