"""Numbers a user can trust, on tiny real runs: operating points with intervals, exact intervals
where the bootstrap degenerates, and the same figure printed the same way by evaluate,
metrics.json, the report and compare."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import train_tiny

from cxr.data.reader import read_image
from cxr.data.split import INTERNAL_TEST
from cxr.errors import CxrError
from cxr.evaluation.ensemble import build_ensemble
from cxr.evaluation.evaluate import evaluate
from cxr.evaluation.held_out import train_and_test
from cxr.evaluation.report import build_report
from cxr.inference.export import export_onnx
from cxr.inference.predictor import load_predictor
from cxr.metrics.stats import wilson_interval
from cxr.models import create_model, list_models
from cxr.models.io import load_model, read_model_file, write_model_file
from cxr.numbers import number
from cxr.training.config import load_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("trust")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(tmp / "cache"))
        yield {
            "small": train_tiny(tmp, data, "small", "model.args={width: 8, depth: 3}"),
            "wide": train_tiny(tmp, data, "wide", "model.args={width: 12, depth: 3}"),
            "tmp": tmp,
        }


def _cxr(*args):
    env = {**os.environ, "COLUMNS": "240"}
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_operating_points_and_exact_intervals_in_metrics_json(runs, data, tmp_path):
    model = runs["small"] / "model.pt"
    result = evaluate(model, data / "chest_xray", INTERNAL_TEST, tmp_path / "e", bootstrap=200)
    info = json.loads((tmp_path / "e" / "metrics.json").read_text())
    points = info["operating_points"]
    assert [o["target_sensitivity"] for o in points] == [0.9, 0.95, 0.98]
    for o in points:
        assert o["tuning_sensitivity"] >= o["target_sensitivity"]
        lo, hi = o["threshold_ci95"]
        assert lo <= o["threshold"] <= hi
    # 16 internal-test images: every proportion rests on fewer than 30 cases -> Wilson
    m, methods = info["metrics"], info["ci_method"]
    assert m["n"] < 30
    tp, fn, tn, fp = (m[k] for k in ("tp", "fn", "tn", "fp"))
    counts = {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
              "accuracy": (tp + tn, tp + tn + fp + fn)}  # fmt: skip
    for key, (k, n) in counts.items():
        assert methods[key] == "Wilson", key
        assert info["ci95"][key] == pytest.approx(wilson_interval(k, n)), key
    assert methods["auroc"] == "patient bootstrap"
    assert result.scores["ci_method"] == methods


def _cli_table(text: str) -> dict[str, str]:
    return dict(re.findall(r"│ (\w+)\s+│ (n/a|\d\.\d{4})", text))


def test_the_study_scores_its_internal_test_as_evaluate_does_from_the_file(
    data, tmp_path, monkeypatch
):
    """train_and_test scores the model, data and split that training holds in memory: the same
    rows, probabilities, figures and card as `evaluate` reading model.pt and splitting again."""
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    overrides = ["name=held", "data.limit=64", "data.workers=0", "optim.epochs=1", "model.size=48"]
    cfg = load_config(
        None, [*overrides, f"data.root={data / 'chest_xray'}", f"runs_dir={tmp_path / 'runs'}"]
    )
    run, held = train_and_test(cfg, bootstrap=20)
    again = evaluate(
        run / "model.pt", data / "chest_xray", INTERNAL_TEST, tmp_path / "e", bootstrap=20
    )
    first, second = held.predictions, again.predictions
    assert len(first.paths) > 8 and first.paths == second.paths and first.seen == second.seen
    assert np.array_equal(first.probs, second.probs)
    assert json.dumps(held.scores, sort_keys=True) == json.dumps(again.scores, sort_keys=True)
    cards = [json.dumps(p.card.to_dict(), sort_keys=True, default=str) for p in (first, second)]
    assert cards[0] == cards[1]  # the card in memory is the one model.pt holds
    written = run / "evaluation" / "predictions.csv"
    assert written.read_bytes() == (tmp_path / "e" / "predictions.csv").read_bytes()


def test_evaluate_json_report_and_compare_print_the_same_digits(runs, data, tmp_path):
    folders = [tmp_path / "small", tmp_path / "wide"]
    done = _cxr(
        "evaluate", runs["small"] / "model.pt", data / "chest_xray",
        "--split", INTERNAL_TEST, "--out", folders[0], "--bootstrap", "100",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    printed = _cli_table(done.stdout)
    assert "operating points chosen on the tuning split" in done.stdout
    evaluate(runs["wide"] / "model.pt", data / "chest_xray", INTERNAL_TEST, folders[1], bootstrap=9)
    stored = json.loads((folders[0] / "metrics.json").read_text())["metrics"]
    html = build_report([folders[0]], tmp_path / "r.html", 100).read_text()
    row = html.split("<th>Brier</th><th>ECE</th></tr>", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="n">(n/a|\d\.\d{4})', row)
    keys = ["auroc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity"]
    in_report = dict(zip([*keys, "specificity"], cells[:6], strict=True))
    compared = _cxr("compare", *folders, "--out", tmp_path / "cmp", "--bootstrap", "100")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    header = next(line for line in compared.stdout.splitlines() if "auroc" in line)
    columns = [c.strip() for c in header.strip("┃ ").split("┃")]
    line = next(line for line in compared.stdout.splitlines() if line.startswith("│ small"))
    in_compare = dict(zip(columns, [c.strip() for c in line.strip("│ ").split("│")], strict=True))
    for key in ("auroc", "sensitivity", "specificity", "accuracy"):
        expected = number(stored[key])
        assert printed[key] == expected, key
        assert in_report[key] == expected, key
        assert in_compare[key] == expected, key
    assert "Operating points chosen on the tuning split" in html
    assert "Wilson score intervals" in html


def test_every_perturbation_changes_a_real_image_and_keeps_its_shape(data):
    from cxr.data.cache import PixelCache
    from cxr.evaluation.shift import PERTURBATIONS

    path = sorted((data / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
    image = PixelCache(96).load([path])[0]
    rng = np.random.default_rng(0)
    for pert in PERTURBATIONS:
        assert len(pert.strengths) >= 3, pert.name
        for strength in pert.strengths:
            changed = pert.apply(image, strength, rng)
            assert changed.shape == image.shape and changed.dtype == np.uint8
            assert np.abs(changed.astype(int) - image).mean() > 0.1, (pert.name, strength)


def test_shift_check_writes_json_figure_and_report_block(runs, data, tmp_path):
    out = tmp_path / "s"
    result = evaluate(
        runs["small"] / "model.pt", data / "chest_xray", INTERNAL_TEST, out, bootstrap=20,
        shift=True,
    )  # fmt: skip
    shift = json.loads((out / "shift.json").read_text())
    assert shift == result.shift and shift["n"] == result.scores["metrics"]["n"]
    assert len(shift["perturbations"]) == 7
    for p in shift["perturbations"]:
        assert len(p["strength"]) >= 4 and p["strength"] == sorted(p["strength"])
        at = p["strength"].index(p["identity"])
        for key in ("auroc", "sensitivity", "specificity"):
            assert p[key][at] == result.scores["metrics"][key]  # the evaluation's own figures
    assert (out / "shift.png").read_bytes()[:4] == b"\x89PNG"
    html = build_report([out], tmp_path / "r.html", 20).read_text()
    assert "Acquisition shift" in html and 'alt="acquisition shift"' in html
    assert "fell most under" in html


def test_ensemble_is_one_model_file_like_any_other(runs, data, tmp_path):
    members = [runs["small"], runs["wide"]]
    path = build_ensemble(members, tmp_path / "ens")
    model = load_model(path)
    card = model.card
    assert card.architecture == "ensemble" and card.members == ("small", "wide")
    assert card.data_fingerprint == load_model(runs["small"] / "model.pt").card.data_fingerprint
    assert card.threshold.source == "tuning split" and card.calibration.verdict
    assert len(card.tuning["patients"]) == len(card.tuning["targets"])
    # the forward pass is the mean of the members' calibrated log-probabilities
    x = torch.from_numpy(
        np.stack([card.preprocessing.to_array(read_image(p).pixels) for p in _some(data)])
    )
    with torch.no_grad():
        singles = [load_model(m / "model.pt") for m in members]
        expected = torch.stack(
            [m.card.calibration.logits(m(x)).log_softmax(1) for m in singles]
        ).mean(0)
        assert torch.allclose(model(x), expected, atol=1e-5)
    result = evaluate(path, data / "chest_xray", INTERNAL_TEST, tmp_path / "e", bootstrap=20)
    assert result.warnings == [] and result.scores["operating_points"]
    onnx_file = export_onnx(path, tmp_path / "ens.onnx")
    batch = x.numpy()
    assert np.allclose(
        load_predictor(onnx_file).predict(batch), load_predictor(path).predict(batch), atol=1e-4
    )
    with pytest.raises(CxrError, match="never overwrites"):
        build_ensemble(members, tmp_path / "ens")


def _some(data: Path) -> list[Path]:
    root = data / "chest_xray" / "train"
    return (
        sorted((root / "NORMAL").glob("*.jpeg"))[:2]
        + sorted((root / "PNEUMONIA").glob("*.jpeg"))[:2]
    )


def _altered(run: Path, out: Path, **changes) -> Path:
    payload = read_model_file(run / "model.pt")
    payload["card"] = {**payload["card"], **changes}
    return write_model_file(out, {k: v for k, v in payload.items() if k != "sha256"})


def test_ensemble_refuses_members_that_do_not_fit(runs, tmp_path):
    small = runs["small"]
    other_split = _altered(runs["wide"], tmp_path / "split.pt", data_fingerprint="0123456789abcdef")
    with pytest.raises(CxrError, match="other patients"):
        build_ensemble([small, other_split], tmp_path / "a")
    other_classes = _altered(
        runs["wide"], tmp_path / "classes.pt", classes=["A", "B"], threshold=None
    )
    with pytest.raises(CxrError, match="predicts"):
        build_ensemble([small, other_classes], tmp_path / "b")
    with pytest.raises(CxrError, match="at least two"):
        build_ensemble([small], tmp_path / "c")
    assert "ensemble" not in list_models()  # built from trained models, never trained itself
    with pytest.raises(CxrError, match="not trained"):
        create_model("ensemble")
    refused = _cxr("ensemble", small, other_split, "--out", tmp_path / "d")
    assert refused.returncode == 2 and "other patients" in refused.stdout
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
