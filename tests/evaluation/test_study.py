"""The study end to end on tiny real runs: train -> evaluate -> calibrate -> compare -> report,
and the report opened in a real Chromium."""

import base64
import csv
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from tests.conftest import look, train_tiny

from cxr.errors import CxrError, DatasetError
from cxr.evaluation.compare import load_and_compare
from cxr.evaluation.evaluate import evaluate
from cxr.evaluation.report import build_report
from cxr.models.io import read_card, read_model_file, write_model_file
from cxr.numbers import interval, number
from cxr.training.config import load_config
from cxr.training.fit import fit

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(tmp / "cache"))
        yield {
            "small": train_tiny(tmp, data, "small", "model.args={width: 8, depth: 3}", epochs=2),
            "wide": train_tiny(tmp, data, "wide", "model.args={width: 16, depth: 3}", epochs=2),
            "three": train_tiny(tmp, data, "three", "data.scheme=kermany3", epochs=2),
            "tmp": tmp,
        }


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_evaluate_rebuilds_the_tuning_part_exactly_and_tests_on_other_patients(
    runs, data, tmp_path
):
    model = runs["small"] / "model.pt"
    result = evaluate(model, data / "chest_xray", "tuning", tmp_path / "e", bootstrap=50)
    assert result.warnings == [] and result.failures == []
    with (runs["small"] / "tuning_predictions.csv").open() as fh:
        stored = {r["path"]: float(r["p_PNEUMONIA"]) for r in csv.DictReader(fh)}
    again = dict(zip(result.predictions.paths, result.predictions.probs[:, 1], strict=True))
    assert set(again) == set(stored)
    assert max(abs(again[p] - stored[p]) for p in stored) < 1e-5
    test = evaluate(model, data / "chest_xray", "internal-test", tmp_path / "t", bootstrap=20)
    assert not set(test.predictions.patients) & set(result.predictions.patients)
    info = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert info["card"]["threshold"]["source"] == "tuning split"
    assert set(info["ci95"]) >= {"auroc", "sensitivity", "specificity", "ece"}
    assert info["bootstrap"]["unit"] == "patient"
    for name in ("roc", "precision_recall", "threshold", "confusion_matrix", "reliability",
                 "learning_curves"):  # fmt: skip
        pixels = np.asarray(Image.open(tmp_path / "e" / f"{name}.png").convert("L"), float)
        assert min(pixels.shape) > 200 and pixels.std() > 10, name  # drawn, not blank
    header = (tmp_path / "e" / "predictions.csv").read_text().splitlines()[0]
    assert header == "path,digest,patient,label,p_NORMAL,p_PNEUMONIA,predicted,threshold,seen"


def test_evaluate_dicom_folder_and_refusals(runs, data, tmp_path):
    folder = data / "dicom_cxr" / "kermany_wrapped"
    result = evaluate(runs["small"] / "model.pt", folder, out=tmp_path / "d", bootstrap=50)
    assert result.scores["metrics"]["n"] == 36 and result.predictions.split == "all"
    with pytest.raises(DatasetError, match="choose one with --split"):
        evaluate(runs["small"] / "model.pt", data / "chest_xray", out=tmp_path / "x")
    with pytest.raises(DatasetError, match="no split 'test'"):
        evaluate(runs["small"] / "model.pt", data / "chest_xray", "test", tmp_path / "y")


def test_evaluating_the_models_own_training_radiographs_is_called_out(data, tmp_path, monkeypatch):
    """kermany_wrapped re-encodes chest_xray_originals as DICOM (JPEG inside, raw, 16-bit windowed,
    MONOCHROME1): a model trained on the originals must not be scored on them without a word."""
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    run = fit(
        load_config(
            None,
            [f"data.root={data / 'chest_xray_originals'}", "data.workers=0", "optim.epochs=1",
             "model.size=32", "model.args={width: 8, depth: 3}", f"runs_dir={tmp_path}"],
        )
    )  # fmt: skip
    wrapped = data / "dicom_cxr" / "kermany_wrapped"
    result = evaluate(run / "model.pt", wrapped, out=tmp_path / "w", bootstrap=10)
    (warning,) = [w for w in result.warnings if "training or tuning radiographs" in w]
    assert int(warning.split(" of ")[0]) >= 18  # most of the 36 are from the training part
    # the card's content keys (no data needed) find the same images the data itself does
    payload = read_model_file(run / "model.pt")
    card = read_card(run / "model.pt", payload)
    older = write_model_file(
        tmp_path / "older.pt", {**payload, "card": {**card.to_dict(), "overlap": {}}}
    )
    by_data = evaluate(older, wrapped, out=tmp_path / "d", bootstrap=10)
    assert card.overlap and result.predictions.seen == by_data.predictions.seen


def test_a_bad_file_never_stops_an_evaluation(runs, damaged_folder, tmp_path):
    result = evaluate(runs["small"] / "model.pt", damaged_folder, out=tmp_path / "b", bootstrap=20)
    assert len(result.failures) == 3 and result.scores["metrics"]["n"] == 4
    listed = (tmp_path / "b" / "failures.csv").read_text()
    assert "truncated.jpeg" in listed and "empty.jpeg" in listed and "notes.png" in listed


def test_threshold_override_is_loud(runs, data, tmp_path):
    out = tmp_path / "o"
    result = _cxr(
        "evaluate", runs["small"] / "model.pt", data / "dicom_cxr" / "kermany_wrapped",
        "--threshold", "0.5", "--out", out, "--bootstrap", "20",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "THRESHOLD OVERRIDDEN" in result.stdout
    card = json.loads((out / "metrics.json").read_text())["card"]
    assert card["threshold"]["source"].startswith("override")
    again = _cxr("evaluate", runs["small"] / "model.pt", "--out", out)
    assert again.returncode == 2 and "never overwrites" in again.stdout


def test_calibrate_writes_a_new_file_with_the_same_decisions(runs, data, tmp_path):
    model = runs["small"] / "model.pt"
    site = evaluate(model, data / "chest_xray_originals", "train", tmp_path / "s", bootstrap=10)
    result = _cxr(
        "calibrate", model, "--predictions", tmp_path / "s" / "predictions.csv",
        "--method", "temperature", "--out", tmp_path / "c.pt",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())  # two ECE figures, each saying which it is
    assert "expected calibration error on the images it was fitted on" in said
    assert "(in-sample, so optimistic; held out, next line)" in said
    # the held-out figure is measured on the site's images, not the tuning split
    verdict = said.split("next line) ")[1].split(" wrote ")[0]
    assert "lowered the held-out ECE on the labelled images of" in verdict
    assert "predictions.csv (patients held out in turn)" in verdict and "tuning" not in verdict
    assert "labels a site needs: " in result.stdout
    folder = data / "dicom_cxr" / "kermany_wrapped"
    before = evaluate(model, folder, out=tmp_path / "b1", bootstrap=10).predictions
    after = evaluate(tmp_path / "c.pt", folder, out=tmp_path / "b2", bootstrap=10).predictions
    assert after.card.calibration.method == "temperature"
    assert not np.allclose(before.probs, after.probs, atol=1e-3)  # the probabilities moved
    differ = before.decisions() != after.decisions()
    value = before.threshold.value
    assert np.all(np.abs(before.probs[differ, 1] - value) < 1e-4)  # float rounding at the edge
    assert site.predictions.split == "train"
    assert _cxr("calibrate", model, "--out", tmp_path / "c.pt").returncode == 2


def test_compare_pairs_and_refuses_different_images(runs, data, tmp_path):
    comparison = load_and_compare([runs["small"], runs["wide"]], bootstrap=50)
    (pair,) = comparison.pairs
    assert 0 <= pair.delong.p_value <= 1 and 0 <= pair.mcnemar.p_value <= 1
    evaluate(runs["wide"] / "model.pt", data / "dicom_cxr" / "kermany_wrapped", out=tmp_path / "w")
    with pytest.raises(CxrError, match="different images"):
        load_and_compare([runs["small"], tmp_path / "w"])
    result = _cxr(
        "compare", runs["small"], runs["wide"], "--out", tmp_path / "cmp", "--bootstrap", 20
    )
    assert result.returncode == 0, result.stderr
    assert {"comparison.json", "roc_overlay.png", "pr_overlay.png"} <= {
        p.name for p in (tmp_path / "cmp").iterdir()
    }


def test_cv_runs_every_fold_and_the_report_shows_the_spread(data, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    result = _cxr(
        "cv", f"data.root={data / 'chest_xray'}", "data.limit=48", "data.workers=0",
        "optim.epochs=1", "model.size=32", "model.args={width: 8, depth: 3}",
        f"runs_dir={tmp_path / 'runs'}", "--folds", "2", "--out", tmp_path / "cv",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert [f["fold"] for f in cv["folds"]] == [1, 2]
    assert cv["summary"]["auroc"]["min"] <= cv["summary"]["auroc"]["mean"]
    assert "fold 2/2" in result.stdout
    folds = sorted((tmp_path / "cv").glob("*-fold*/evaluation"))
    out = build_report(folds, tmp_path / "cv.html", 20, cv=[tmp_path / "cv"])
    assert "Cross-validation" in out.read_text() and "2 patient folds" in out.read_text()


def test_report_renders_every_figure_in_chromium(runs, tmp_path):
    out = build_report([runs["small"], runs["wide"], runs["three"]], tmp_path / "r.html", 50)
    html = out.read_text()
    for text in ("Decisions and conclusions", "DeLong", "McNemar", "bacterial vs viral",
                 "Confusion matrix", "Learning curves", "Model: three", "internal test",
                 "Calibration", "Glossary", "Images from ",
                 "Operating-point explorer", "width 8, depth 3"):  # fmt: skip
        assert text in html, text
    assert "{'" not in html  # no raw Python dict in the model card
    uris = html.split('src="data:image/png;base64,')[1:]
    assert len(uris) >= 15
    for uri in uris:
        assert base64.b64decode(uri.split('"', 1)[0])[:4] == b"\x89PNG"
    with pytest.raises(CxrError, match="never overwrites"):
        build_report([runs["small"]], out)
    assert CHROMIUM, "the report test needs Debian's chromium: apt-get install chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        for width in (1280, 320):  # 320: the narrowest phones; a data path must still wrap
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(out.as_uri())
            sizes = page.evaluate(
                "Array.from(document.images).map(i => i.complete && i.naturalWidth)"
            )
            assert len(sizes) == len(uris) and all(w > 100 for w in sizes)
            assert page.locator("h2", has_text="Decisions and conclusions").is_visible()
            assert page.locator(".explorer .sensitivity").count() == 3  # two binary, one view
            look(page, tmp_path, f"report_{width}")
        browser.close()
    assert (tmp_path / "report_1280.png").stat().st_size > 50_000


def test_report_slider_agrees_with_cxr_evaluate(runs, tmp_path):
    """The report's explorer at a threshold shows what `cxr evaluate --threshold` reports for
    the same tuning-split images (positive iff p >= threshold)."""
    model = runs["small"] / "model.pt"
    report = build_report([runs["small"]], tmp_path / "r.html", 20)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(report.as_uri())
        for threshold in ("0.3", "0.6"):
            result = _cxr(
                "evaluate", model, "--split", "tuning", "--threshold", threshold,
                "--out", tmp_path / threshold,
                "--bootstrap", "10",
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            m = json.loads((tmp_path / threshold / "metrics.json").read_text())["metrics"]
            page.locator(".explorer .threshold").fill(threshold)
            for key, name in (("sensitivity", "sensitivity"), ("specificity", "specificity"),
                              ("ppv", "precision"), ("npv", "npv")):  # fmt: skip
                shown = page.locator(f".explorer dd.{key}").evaluate(
                    "e => e.firstChild.textContent"
                )
                missing = m[name] is None or math.isnan(m[name])  # JSON NaN: no such call
                if missing:
                    assert shown == "n/a", (threshold, key, shown)
                else:  # the page rounds half up, Python half to even: same number
                    assert abs(float(shown.removesuffix("\u00a0%")) - 100 * m[name]) <= 0.0501, (
                        threshold, key, shown, m[name],
                    )  # fmt: skip
        browser.close()


def test_levers_train_on_one_split_and_are_judged_paired(data, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    result = _cxr(
        "levers", f"data.root={data / 'chest_xray'}", "data.limit=48", "data.workers=0",
        "optim.epochs=1", "model.size=32", "model.args={width: 8, depth: 3}",
        "evaluation.external=covid-db",
        "--lever", "seed 1: seed=1",
        "--bootstrap", 20, "--out", tmp_path / "levers",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    table = json.loads((tmp_path / "levers" / "levers.json").read_text())["rows"]
    assert [r["lever"] for r in table] == ["baseline", "seed 1"]
    assert "delong_p" not in table[0] and all(0 <= r["delong_p"] <= 1 for r in table[1:])
    base, seed1 = (
        list(csv.DictReader((tmp_path / "levers" / r["run"] / "evaluation" / "predictions.csv")
                            .open()))
        for r in table[:2]
    )  # fmt: skip
    assert [r["digest"] for r in base] == [r["digest"] for r in seed1]  # the same images
    assert [r["p_PNEUMONIA"] for r in base] != [r["p_PNEUMONIA"] for r in seed1]  # other weights
    runs = [load_config(tmp_path / "levers" / r["run"] / "config.yaml") for r in table]
    assert [c.seed for c in runs] == [0, 1] and {c.data.seed for c in runs} == {0}
    assert "| seed 1 | `seed=1` |" in (tmp_path / "levers" / "levers.md").read_text()
    # the config's external judge beside the internal test, paired against the baseline too
    judged = [r["external"] for r in table]
    assert [(j["normal"], j["pneumonia"]) for j in judged] == [(62, 218)] * 2
    assert "delong_p" not in judged[0] and 0 <= judged[1]["delong_p"] <= 1
    for r in table:
        written = json.loads(
            (tmp_path / "levers" / r["run"] / "evaluation" / "external.json").read_text()
        )
        assert {k: r["external"][k] for k in written} == written
    rows = (tmp_path / "levers" / "levers.md").read_text().splitlines()
    assert "| covid-db AUROC (95 % CI) | covid-db specificity (95 % CI) |" in rows[0]
    auroc, ci = judged[1]["auroc"], judged[1]["auroc_ci95"]
    assert f"| {number(auroc)} ({interval(ci)}) |" in rows[3]
    assert "seed 1: internal-test auroc" in result.stdout
    assert f", covid-db auroc {auroc:.4f} (" in " ".join(result.stdout.split())  # as it trains
    for noise in ("Seed set to", "GPU available", "Trainer.fit", "logging interval", "Warning"):
        assert noise not in result.stdout + result.stderr, noise  # Lightning's chatter stays out


def test_a_mistyped_lever_is_refused_before_anything_trains(tmp_path):
    result = _cxr("levers", "--lever", "ema: optim.emma=0.9", "--out", tmp_path / "levers")
    assert result.returncode == 2 and "optim.emma" in result.stdout
    assert not (tmp_path / "levers").exists()
