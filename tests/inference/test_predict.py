"""cxr predict, Grad-CAM and the ONNX export on real files, through the real command."""

import csv
import dataclasses
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as photos
from tests.conftest import as_nobody, save_tiny_model

from cxr.data.population import intensity_ranges
from cxr.data.reader import read_image
from cxr.errors import CxrError
from cxr.inference.benchmark import BACKENDS
from cxr.inference.export import export_onnx
from cxr.inference.predict import explained_class, predict_paths, pseudonym
from cxr.inference.predictor import OnnxPredictor, TorchPredictor, load_predictor
from cxr.models import create_model, save_model
from cxr.speed import forward_gflop

MARKER = "SYNTHETIC"  # kermany_wrapped's PatientName is SYNTHETIC^PATIENT


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "model.pt")


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_worklist_keeps_the_odd_headers_out_of_the_ranking(model_file, data, tmp_path):
    out = tmp_path / "worklist.csv"
    result = _cxr("predict", model_file, data / "dicom_cxr", "--out", out, "--workers", 0)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 42  # 36 kermany_wrapped + 6 nih_udacity, found recursively
    ranked = [r for r in rows if r["group"] == "ranked"]
    urgency = [float(r["urgency"]) for r in ranked]
    assert urgency == sorted(urgency, reverse=True)
    assert [int(r["rank"]) for r in ranked] == list(range(1, 40))
    assert all(float(r["urgency"]) == float(r["p_PNEUMONIA"]) for r in ranked)
    assert not any(r["flags"] for r in ranked)
    flagged = {r["path"].rsplit("/", 1)[1]: r for r in rows if r["group"] == "not scored"}
    assert set(flagged) == {"test4.dcm", "test5.dcm", "test6.dcm"}
    assert "RIBCAGE" in flagged["test4.dcm"]["flags"] and "CT" in flagged["test5.dcm"]["flags"]
    assert "XX" in flagged["test6.dcm"]["flags"]
    assert all(r["rank"] == r["p_PNEUMONIA"] == r["predicted"] == "" for r in flagged.values())
    assert rows[-3:] == list(flagged.values())  # after every X-ray, whatever their scores
    assert "not scored: 3 probably not frontal chest X-rays" in result.stdout


def test_worklist_warns_outside_the_training_population(data, tmp_path):
    """The model card's population (ages 1-5, grey levels of real training images): the adult
    NIH X-rays are ranked with a warning, the Kermany ones without."""
    train = sorted((data / "chest_xray" / "train").rglob("*.jpeg"))[::13]  # 402, both classes
    model = create_model("cxr_cnn").eval()
    model.card = dataclasses.replace(
        model.card, classes=("NORMAL", "PNEUMONIA"), population=intensity_ranges(train, (1, 5))
    )
    save_model(tmp_path / "model.pt", model)
    folders = [data / "dicom_cxr" / "nih_udacity", data / "dicom_cxr" / "kermany_wrapped"]
    worklist = predict_paths(load_predictor(tmp_path / "model.pt"), folders)
    warned = {Path(r.path).name: r.warnings for r in worklist.rows if r.warnings}
    assert {"test1.dcm", "test2.dcm", "test3.dcm"} <= set(warned)
    assert warned["test3.dcm"][0] == "patient age 77 years, outside the training data's 1–5"
    assert warned["test1.dcm"][1].startswith("mean grey level 180, outside the ")
    assert warned["test1.dcm"][1].endswith(" of 99 % of the training images")
    # Kermany's own films, at full size: a few in the tails of the training range, never by age
    kermany = {n: w for n, w in warned.items() if not n.startswith("test")}
    assert len(kermany) <= 3 and not any("patient age" in " ".join(w) for w in kermany.values())
    assert len(worklist.rows) == 39 and len(worklist.not_scored) == 3


def test_no_dicom_patient_field_in_any_output(model_file, data, tmp_path):
    folder = data / "dicom_cxr" / "kermany_wrapped"
    outputs = []
    for fmt in ("csv", "json"):
        result = _cxr(
            "predict", model_file, folder, "--out", tmp_path / f"w.{fmt}", "--format", fmt
        )
        outputs += [result.stdout, result.stderr, (tmp_path / f"w.{fmt}").read_text()]
    outputs.append(_cxr("predict", model_file, folder, "--format", "json", "--show", 100).stdout)
    assert len("".join(outputs)) > 10_000
    assert not any(MARKER in text.upper() for text in outputs)


def test_a_dicom_scores_like_the_jpeg_it_wraps(model_file, data):
    folder = data / "dicom_cxr" / "kermany_wrapped"
    sources = {
        r["file"]: data / "chest_xray_originals" / "train" / r["source_image"]
        for r in csv.DictReader((folder / "labels.csv").open())
        if r["encoding"] == "jpeg-baseline"
    }
    predictor = load_predictor(model_file)
    dicoms = predict_paths(predictor, [folder / f for f in sources])
    jpegs = predict_paths(predictor, list(sources.values()))
    by_path = {r.path: r.probs for r in jpegs.rows}
    for row in dicoms.rows:
        source = str(sources[row.path.rsplit("/", 1)[1]])
        assert np.abs(row.probs - by_path[source]).max() < 1e-4, row.path


def test_bad_files_are_skipped_listed_and_set_the_exit_code(
    model_file, damaged_folder, data, tmp_path
):
    lossy = data / "dicom_samples" / "JPEG-lossy_12bit.dcm"  # needs an optional decoder
    result = _cxr("predict", model_file, damaged_folder, lossy, "--out", tmp_path / "w.csv")
    assert result.returncode == 1
    assert "4 file(s) skipped" in result.stdout and "truncated.jpeg" in result.stdout
    assert "pip install 'cxr[dicom]'" in result.stdout  # printed as written, not as markup
    rows = list(csv.DictReader((tmp_path / "w.csv").open()))
    assert [r["group"] for r in rows] == ["ranked"] * 4 + ["skipped"] * 4
    assert all(r["error"] for r in rows[4:]) and "cxr[dicom]" in rows[-1]["error"]
    again = _cxr("predict", model_file, damaged_folder, "--out", tmp_path / "w.csv")
    assert again.returncode == 2 and "never overwrites" in again.stdout


def test_photos_constant_and_odd_shapes_are_flagged(model_file, tmp_path):
    Image.fromarray(photos.astronaut()).save(tmp_path / "photo.png")
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(tmp_path / "flat.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 300), np.uint8)).save(
        tmp_path / "wide.png"
    )
    worklist = predict_paths(load_predictor(model_file), [tmp_path])
    assert worklist.rows == []  # none of them is ranked among X-rays
    found = {r.path.rsplit("/", 1)[1]: r.flags for r in worklist.not_scored}
    assert any("colour" in f for f in found["photo.png"])
    assert any("constant" in f for f in found["flat.png"])
    assert any("aspect ratio 3.0" in f for f in found["wide.png"])


def test_grad_cam_explains_the_positive_class_beside_the_original(model_file, data, tmp_path):
    path = sorted((data / "chest_xray_originals" / "train" / "NORMAL").glob("*.jpeg"))[0]
    image = read_image(path)
    predictor = load_predictor(model_file)
    (cam,) = predictor.explain(predictor.card.preprocessing.to_array(image.pixels)[None], [1])
    side = predictor.card.preprocessing.size
    assert cam.shape == (side, side) and cam.std() > 0.01  # model resolution, upsampled when drawn
    (row,) = predict_paths(predictor, [path]).rows
    assert explained_class(predictor, row.probs) == "PNEUMONIA"  # whatever the decision
    assert explained_class(predictor, row.probs, "NORMAL") == "NORMAL"
    with pytest.raises(CxrError, match="no class 'COVID'"):
        explained_class(predictor, row.probs, "COVID")
    result = _cxr("predict", model_file, path, "--cam", tmp_path / "cams")
    assert result.returncode == 0, result.stdout + result.stderr
    (figure,) = (tmp_path / "cams").iterdir()
    picture = np.asarray(Image.open(figure).convert("RGB"))
    # original and heat map side by side, with a caption and colour bar above and below
    assert picture.shape[1] > 1.5 * picture.shape[0] and picture.shape[1] >= 1000
    left, right = picture[:, : picture.shape[1] // 2], picture[:, picture.shape[1] // 2 :]
    saturation = lambda a: (a.max(2).astype(int) - a.min(2)).mean()  # noqa: E731
    assert saturation(right) > 3 * saturation(left)  # colour on the heat map side only
    typo = _cxr("predict", model_file, path, "--cam", tmp_path / "c2", "--cam-class", "COVID")
    assert typo.returncode == 2 and "no class 'COVID'" in typo.stdout
    assert not (tmp_path / "c2").exists()


def test_onnx_export_stands_alone_and_matches_pytorch(model_file, data, tmp_path):
    onnx_file = export_onnx(model_file, tmp_path / "m.onnx")
    with pytest.raises(CxrError, match="never overwrites"):
        export_onnx(model_file, onnx_file)
    torch_p, onnx_p = load_predictor(model_file), load_predictor(onnx_file)
    assert isinstance(torch_p, TorchPredictor) and isinstance(onnx_p, OnnxPredictor)
    assert onnx_p.card == torch_p.card  # the whole card travels in the ONNX metadata
    originals = data / "chest_xray_originals" / "train"
    a, b = predict_paths(torch_p, [originals]), predict_paths(onnx_p, [originals])
    assert len(a.rows) == 59 and len(a.not_scored) == 1  # one film is 2.1 times wider than tall
    pa = {r.path: r.probs for r in a.rows + a.not_scored}
    assert max(np.abs(pa[r.path] - r.probs).max() for r in b.rows + b.not_scored) < 1e-4
    out = tmp_path / "o.json"
    result = _cxr("predict", onnx_file, originals, "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(out.read_text())
    assert [r["filename"] for r in listed["worklist"] + listed["not_scored"]] == [
        r.path for r in a.rows + a.not_scored
    ]
    refused = _cxr("predict", onnx_file, originals, "--cam", tmp_path / "c")
    assert refused.returncode == 2 and "Grad-CAM needs" in refused.stdout


def test_inference_benchmark_measures_every_backend(tmp_path):
    out = tmp_path / "bench.json"
    result = _cxr("benchmark", "predict", "cxr_cnn", "--batches", "2", "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(out.read_text())
    backends = {r["backend"] for r in payload["results"]}
    assert backends == set(BACKENDS) and "onnx-as-traced" in backends
    gflop = forward_gflop(create_model("cxr_cnn"), 128)  # checked by hand in test_benchmark
    for r in payload["results"]:
        assert r["gflop_per_image"] == pytest.approx(gflop, abs=5e-4)
        assert r["achieved_gflops"] == pytest.approx(r["images_per_s"] * gflop, rel=0.02, abs=0.1)
    assert payload["decode_images"].endswith("chest_xray_originals")
    again = _cxr("benchmark", "predict", "cxr_cnn", "--out", out)
    assert again.returncode == 2 and "never overwrites" in again.stdout


def test_int8_export_calibrates_on_real_images(model_file, data, tmp_path):
    out = tmp_path / "int8.onnx"
    result = _cxr(
        "export", model_file, data / "chest_xray" / "train", "--out", out, "--to", "onnx-int8",
        "--max-images", 8,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    int8, fp32 = load_predictor(out), load_predictor(model_file)
    assert "int8" in int8.card.recipe["quantized"] and int8.card.classes == fp32.card.classes
    paths = sorted((data / "chest_xray_originals" / "train" / "NORMAL").glob("*.jpeg"))[:8]
    a = {r.path: r.probs for r in predict_paths(fp32, paths).rows}
    b = {r.path: r.probs for r in predict_paths(int8, paths).rows}
    assert max(np.abs(a[p] - b[p]).max() for p in a) < 0.05
    missing = _cxr("export", model_file, "--out", tmp_path / "x.onnx", "--to", "onnx-int8")
    assert missing.returncode == 2 and "IMAGES" in missing.stdout


def test_piped_output_is_the_bare_worklist_and_out_folders_are_made(model_file, data, tmp_path):
    folder = data / "dicom_cxr" / "nih_udacity"
    piped = _cxr("predict", model_file, folder, "--format", "csv", "--workers", 0)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    rows = list(csv.DictReader(io.StringIO(piped.stdout)))
    assert len(rows) == 6 and rows[0]["rank"] == "1"
    nested = tmp_path / "new" / "folder" / "w.json"
    written = _cxr("predict", model_file, folder, "--out", nested, "--workers", 0)
    assert written.returncode == 0, written.stdout + written.stderr
    answer = json.loads(nested.read_text())
    assert len(answer["worklist"]) == 3 and len(answer["not_scored"]) == 3  # CT, RIBCAGE, XX
    blocked = _cxr("predict", model_file, folder, "--out", nested / "w.csv")
    assert blocked.returncode == 2 and "cannot create its folder" in blocked.stdout


def test_a_batch_survives_every_hostile_file(model_file, hostile_dicoms, data, tmp_path):
    folder = tmp_path / "batch"
    shutil.copytree(hostile_dicoms, folder)
    good = sorted((data / "dicom_cxr" / "kermany_wrapped").glob("*.dcm"))[:2]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "loop_a.jpeg").symlink_to(folder / "loop_b.jpeg")
    (folder / "loop_b.jpeg").symlink_to(folder / "loop_a.jpeg")
    result = _cxr("predict", model_file, folder, "--out", tmp_path / "w.csv")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    rows = list(csv.DictReader((tmp_path / "w.csv").open()))
    scored = [r for r in rows if not r["error"]]
    failed = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert len(scored) == 2 and all(r["rank"] for r in scored)
    assert set(failed) == {p.name for p in hostile_dicoms.iterdir()} | {
        "loop_a.jpeg",
        "loop_b.jpeg",
    }
    assert "symbolic links" in failed["loop_a.jpeg"]
    assert "NumberOfFrames 'abc'" in failed["frames_abc.dcm"]


def test_a_file_the_process_may_not_read_is_skipped(model_file, data):
    folder = Path(tempfile.mkdtemp(prefix="cxr-perm-"))  # under /tmp, so `nobody` can enter it
    try:
        folder.chmod(0o755)
        source = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
        for name in ("good.jpeg", "locked.jpeg"):
            shutil.copy(source, folder / name)
            (folder / name).chmod(0o644)
        (folder / "locked.jpeg").chmod(0)
        predictor = load_predictor(model_file)
        with as_nobody():
            worklist = predict_paths(predictor, [folder])
        assert [Path(r.path).name for r in worklist.rows] == ["good.jpeg"]
        ((path, reason),) = worklist.failures
        assert path.endswith("locked.jpeg") and "cannot be opened: Permission denied" in reason
    finally:
        shutil.rmtree(folder)


def test_pseudonymized_names_and_neutralised_cells_in_every_cli_output(model_file, data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    source = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    for name in ("=HYPERLINK(x;y).jpeg", "@SUM(1+1).jpeg", "Doe_John.jpeg"):
        shutil.copy(source, folder / name)
    (folder / "+cmd.png").write_text("not a png")
    plain = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(model_file), ".", "--out", "../w.csv"],
        capture_output=True, text=True, timeout=300, cwd=folder,
    )  # fmt: skip
    assert plain.returncode == 1, plain.stdout + plain.stderr
    paths = {r["path"] for r in csv.DictReader((tmp_path / "w.csv").open())}
    assert paths == {"'=HYPERLINK(x;y).jpeg", "'@SUM(1+1).jpeg", "Doe_John.jpeg", "'+cmd.png"}
    result = _cxr(
        "predict", model_file, folder, "--out", tmp_path / "p.json", "--cam", tmp_path / "cams",
        "--pseudonymize-names",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    outputs = [result.stdout, (tmp_path / "p.json").read_text()]
    outputs += [p.name for p in (tmp_path / "cams").iterdir()]
    assert not any(word in text for text in outputs for word in ("Doe", "HYPERLINK", "cmd"))
    assert len(list((tmp_path / "cams").iterdir())) == 3
    assert pseudonym(str(folder / "Doe_John.jpeg")) in outputs[1]


def test_an_interrupted_heat_map_run_leaves_nothing_that_looks_finished(model_file, data, tmp_path):
    from cxr.outputs import new_folder

    cams = tmp_path / "cams"
    with pytest.raises(KeyboardInterrupt), new_folder(cams) as partial:
        (partial / "0001_a.png").write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # neither `cams` nor a partial folder
    image = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    rerun = _cxr("predict", model_file, image, "--cam", cams)
    assert rerun.returncode == 0 and len(list(cams.iterdir())) == 1, rerun.stdout
