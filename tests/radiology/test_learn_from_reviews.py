"""Learning from the reviews: a `cxr reviews export`, built as the product builds it from real
spooled DICOMs, joins `cxr train`'s training part (never tuning or internal test) through
`data.extra_train`, the card says so, and `cxr evaluate` on the export knows those images."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxr.errors import DatasetError
from cxr.evaluation.evaluate import evaluate
from cxr.models import load_model
from cxr.store import worklist
from cxr.store.database import open_database
from cxr.store.export import export_reviews
from cxr.store.worklist import Queue, Received
from cxr.training.config import load_config
from cxr.training.fit import fit

THRESHOLD = {"rule": "fixed:0.5", "positive_class": "PNEUMONIA", "value": 0.5}


def _export(data: Path, folder: Path) -> Path:
    """Three real DICOMs spooled, scored PNEUMONIA, corrected by a reviewer, exported."""
    spool = folder / "spool"
    spool.mkdir(parents=True)
    sources = sorted((data / "dicom_cxr" / "kermany_wrapped").glob("*.dcm"))[:3]
    with open_database(f"sqlite:///{folder / 'worklist.db'}").begin() as session:
        for i, source in enumerate(sources):
            spooled = spool / f"1.2.826.{i}_{i:04x}.dcm"
            shutil.copy(source, spooled)
            worklist.record(session, Received(
                f"1.2.826.{i}", f"{i:04x}", "1.2.826", "1.2.826.1", "dcm-0123", str(spooled),
                "scored", classes=["NORMAL", "PNEUMONIA"], probabilities=[0.2, 0.8],
                predicted="PNEUMONIA", urgency=0.8, threshold=THRESHOLD,
            ))  # fmt: skip
        for row in worklist.queue(session, Queue.PENDING):
            worklist.review(session, row.id, "NORMAL", "", "Dr Ann")
        export_reviews(session, folder / "reviewed", "test")
    return folder / "reviewed"


def _cxr(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cxr", *map(str, args)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_train_learns_from_a_reviews_export_in_its_training_part_only(data, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    export = _export(data, tmp_path / "department")
    damaged = tmp_path / "damaged"  # one readable image, one truncated: skipped, not fatal
    (damaged / "images").mkdir(parents=True)
    good, cut = sorted((data / "dicom_cxr" / "kermany_wrapped").glob("*.dcm"))[3:5]
    shutil.copy(good, damaged / "images" / "good.dcm")
    (damaged / "images" / "cut.dcm").write_bytes(cut.read_bytes()[:3000])
    (damaged / "labels.csv").write_text(
        "file,label\nimages/good.dcm,NORMAL\nimages/cut.dcm,NORMAL\n"
    )
    trained = _cxr(
        "train", "--config", Path(__file__).parents[2] / "configs" / "quick.yaml",
        f"data.root={data / 'chest_xray'}", "data.limit=24", "data.workers=0", "optim.epochs=1",
        "model.size=48", f"runs_dir={tmp_path / 'runs'}", f"data.extra_train=[{export}, {damaged}]",
    )  # fmt: skip
    assert "cut.dcm: skipped" in trained.stderr

    card = load_model(tmp_path / "runs" / "quick" / "model.pt").card
    assert card.data["extra_train"] == [str(export), str(damaged)]
    assert card.population["extra_images"] == {str(export): 3, str(damaged): 1}
    assert card.population["images"] == 24 + 3 + 1
    assert card.summary()["extra training images"] == (
        f"3 from {export}, 1 from {damaged} (training part only)"
    )
    protocol = card.protocol()  # rebuilt from the card, as evaluation rebuilds it
    reviewed = set((export / "images").iterdir())
    assert reviewed <= {r.path for r in protocol.train}
    assert not reviewed & {r.path for r in protocol.tune + protocol.test}
    tuned = (tmp_path / "runs" / "quick" / "tuning_predictions.csv").read_text()
    assert "1.2.826." not in tuned and "good.dcm" not in tuned

    # the reviewers' verdicts measured, knowing the model learnt from them
    evaluation = evaluate(tmp_path / "runs" / "quick" / "model.pt", export, bootstrap=20,
                          out=tmp_path / "eval")  # fmt: skip
    assert len(evaluation.predictions.paths) == 3
    assert any("3 of 3 images are the model's own training" in w for w in evaluation.warnings)


def test_an_extra_label_outside_the_classes_names_the_file(data, tmp_path):
    """Another dataset's folder as extra training data: its classes are not the model's."""
    covid = data / "COVID-19_Radiography_Dataset"
    root, extra = f"data.root={data / 'chest_xray'}", f"data.extra_train=[{covid}]"
    cfg = load_config(None, [root, extra, f"runs_dir={tmp_path / 'runs'}"])
    with pytest.raises(DatasetError, match=r"COVID-1\.png: label 'COVID' is not one of the"):
        fit(cfg)
    assert not (tmp_path / "runs").exists()  # refused before any run folder is made
