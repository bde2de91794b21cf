"""Every endpoint and error path through FastAPI's TestClient, with real images."""

import base64
import csv
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cxr.errors import CxrError
from cxr.inference.predict import predict_paths, pseudonym
from cxr.inference.predictor import load_predictor
from cxr.metrics.classification import binary_metrics
from cxr.models.io import read_card
from cxr.serve.app import ServeConfig, create_app

MARKER = "SYNTHETIC"


@pytest.fixture(scope="module")
def client(model_file):
    return TestClient(create_app(ServeConfig(model_file, max_upload_bytes=3 * 2**20)))


def _original(data):
    return sorted((data / "chest_xray_originals" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]


def test_health_model_card_page_and_docs(client, model_file):
    assert client.get("/healthz").json()["model"] == model_file.name  # the file it was given
    card = client.get("/api/model").json()
    assert card["classes"] == ["NORMAL", "PNEUMONIA"] and card["data_fingerprint"]
    assert "not a medical device" in client.get("/").text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/predict", "/api/triage", "/api/model", "/healthz"} <= set(paths)


def test_predict_matches_the_command_line_and_draws_the_heat_map(client, model_file, data):
    path = _original(data)
    answer = client.post("/api/predict?cam=1", files={"file": (path.name, path.read_bytes())})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (row,) = predict_paths(load_predictor(model_file), [path]).rows
    assert np.allclose(list(body["probabilities"].values()), row.probs, atol=1e-6)
    assert body["predicted"] == row.predicted and body["threshold"]["value"] == 0.5
    for key in ("cam", "image", "heat"):
        png = base64.b64decode(body[key].removeprefix("data:image/png;base64,"))
        assert Image.open(io.BytesIO(png)).size[0] > 500
    assert (
        client.post("/api/predict", files={"file": (path.name, path.read_bytes())}).json()["cam"]
        is None
    )


def test_dicom_flags_and_no_patient_fields(client, data):
    texts = []
    for path in sorted((data / "dicom_cxr" / "kermany_wrapped").glob("*.dcm"))[:6]:
        answer = client.post("/api/predict?cam=1", files={"file": (path.name, path.read_bytes())})
        assert answer.status_code == 200
        texts.append(answer.text)
    odd = data / "dicom_cxr" / "nih_udacity" / "test5.dcm"
    answer = client.post("/api/predict", files={"file": (odd.name, odd.read_bytes())}).json()
    assert answer["not_a_frontal_xray"] and "CT" in answer["flags"][0]
    assert not any(MARKER in t.upper() for t in texts)


def test_bad_input_is_a_clear_4xx_never_a_500(client, damaged_folder, data):
    folder = damaged_folder / "NORMAL"
    cases = {
        "notes.png": (415, "not a chest X-ray image we can read"),
        "truncated.jpeg": (422, "truncated or corrupt"),
        "empty.jpeg": (422, "empty"),
    }
    for name, (status, words) in cases.items():
        answer = client.post("/api/predict", files={"file": (name, (folder / name).read_bytes())})
        assert answer.status_code == status, (name, answer.text)
        assert words in answer.json()["detail"] and name in answer.json()["detail"]
    big = b"\0" * (3 * 2**20 + 1)
    assert client.post("/api/predict", files={"file": ("big.dcm", big)}).status_code == 413
    assert client.post("/api/predict").status_code == 422  # no file at all


def test_triage_sorts_skips_and_gives_csv(client, data, damaged_folder):
    good = sorted((data / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[:5]
    good += sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:5]
    files = [("files", (p.name, p.read_bytes())) for p in good]
    files.append(("files", ("notes.png", (damaged_folder / "NORMAL" / "notes.png").read_bytes())))
    body = client.post("/api/triage", files=files).json()
    urgency = [r["urgency"] for r in body["worklist"]]
    assert len(urgency) == 10 and urgency == sorted(urgency, reverse=True)
    assert [r["rank"] for r in body["worklist"]] == list(range(1, 11))
    assert body["skipped"][0]["filename"] == "notes.png"
    csv_text = client.post("/api/triage?format=csv", files=files).text
    assert csv_text.splitlines()[0].startswith("rank,group,path,p_NORMAL,p_PNEUMONIA,predicted")
    assert len(csv_text.splitlines()) == 12  # header, 10 ranked, the skipped file with its reason
    assert csv_text.splitlines()[-1].startswith(",skipped,notes.png,")
    assert "not an image" in csv_text
    assert body["csv"].replace("\r\n", "\n") == csv_text.replace("\r\n", "\n")


def test_heat_map_explains_the_positive_class_unless_told(client, data):
    path = sorted((data / "chest_xray_originals" / "train" / "NORMAL").glob("*.jpeg"))[0]
    upload = {"file": (path.name, path.read_bytes())}
    body = client.post("/api/predict?cam=1", files=upload).json()
    assert body["cam_class"] == "PNEUMONIA"  # a NORMAL image shows the evidence for disease
    assert body["cam_probability"] == body["probabilities"]["PNEUMONIA"]
    assert "evidence for PNEUMONIA" in body["cam_caption"]
    legend = base64.b64decode(body["legend"].removeprefix("data:image/png;base64,"))
    assert Image.open(io.BytesIO(legend)).mode == "RGBA"
    heat = Image.open(io.BytesIO(base64.b64decode(body["heat"].split(",", 1)[1])))
    assert heat.mode == "RGBA" and np.asarray(heat)[..., 3].std() > 1  # faint parts transparent
    chosen = client.post("/api/predict?cam=1&cam_class=NORMAL", files=upload).json()
    assert chosen["cam_class"] == "NORMAL" and chosen["heat"] != body["heat"]
    wrong = client.post("/api/predict?cam=1&cam_class=COVID", files=upload)
    assert wrong.status_code == 422 and "NORMAL, PNEUMONIA" in wrong.json()["detail"]


def test_triage_keeps_non_xrays_out_and_warns_outside_the_population(client, data, tmp_path):
    import pydicom

    nih = data / "dicom_cxr" / "nih_udacity"
    mr = pydicom.dcmread(nih / "test1.dcm")
    mr.Modality = "MR"
    mr.save_as(tmp_path / "mr.dcm")
    paths = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:3]
    paths += [nih / "test2.dcm", nih / "test5.dcm", tmp_path / "mr.dcm"]
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    body = client.post("/api/triage", files=files).json()
    assert [r["rank"] for r in body["worklist"]] == [1, 2, 3, 4]
    assert {r["filename"] for r in body["not_scored"]} == {"test5.dcm", "mr.dcm"}
    assert all("not CR/DX" in r["flags"][0] for r in body["not_scored"])
    (adult,) = [r for r in body["worklist"] if r["filename"] == "test2.dcm"]
    assert adult["warnings"] == ["patient age 58 years, outside the training data's 1–5"]
    assert all(r["warnings"] == [] for r in body["worklist"] if r["filename"].endswith(".jpeg"))
    for r in body["worklist"] + body["not_scored"]:
        jpeg = base64.b64decode(r["thumbnail"].removeprefix("data:image/jpeg;base64,"))
        assert max(Image.open(io.BytesIO(jpeg)).size) == 96


def test_operating_points_are_the_metrics_of_the_stored_predictions(client, model_file):
    points = client.get("/api/operating-points").json()
    tuning = read_card(model_file).tuning  # what the card stores, as training leaves it
    truth, p = np.array(tuning["targets"]), np.array(tuning["probs"])[:, 1]
    assert points["images"] == 60 and points["positives"] == 40 and points["threshold"] == 0.5
    for k in (0, len(points["thresholds"]) // 2, len(points["thresholds"]) - 1):
        m = binary_metrics(truth, p, points["thresholds"][k])
        assert [points[c][k] for c in ("tp", "fp", "fn", "tn")] == [
            m[c] for c in ("tp", "fp", "fn", "tn")
        ]
    assert "path" not in str(points) and ".jpeg" not in str(points)


def test_bearer_token_when_configured(model_file, monkeypatch, data):
    monkeypatch.setenv("CXR_API_TOKEN", "s3cret")
    guarded = TestClient(create_app(ServeConfig(model_file)))
    path = _original(data)
    assert guarded.get("/api/model").status_code == 401
    assert guarded.get("/api/model", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = guarded.get("/api/model", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    upload = {"file": (path.name, path.read_bytes())}
    assert guarded.post("/api/predict", files=upload).status_code == 401
    assert guarded.get("/healthz").status_code == 200  # liveness stays open


def test_triage_answers_the_worklist_cxr_predict_writes(client, model_file, data, tmp_path):
    """One worklist schema: `/api/triage` and `cxr predict --format json` on the same files agree
    key for key, the file names apart (an upload has only its name, the command its path)."""
    import json
    import shutil
    import subprocess
    import sys

    images, out = tmp_path / "images", tmp_path / "worklist.json"
    images.mkdir()
    for path in sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:4]:
        shutil.copy(path, images / path.name)
    (images / "notes.png").write_text("not an image")
    files = [("files", (p.name, p.read_bytes())) for p in sorted(images.iterdir())]
    api = client.post("/api/triage", files=files).json()
    assert api.pop("csv").startswith("rank,")  # the page's download; the command writes no CSV here
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(model_file), str(images), "--out", str(out),
         "--workers", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr  # notes.png was skipped
    cli = json.loads(out.read_text())
    for row in api["worklist"] + api["not_scored"]:
        assert row.pop("thumbnail").startswith("data:image/jpeg")  # for the page only
    for answer in (api, cli):
        for row in answer["worklist"] + answer["skipped"]:
            row["filename"] = row["filename"].rsplit("/", 1)[-1]
        for row in answer["worklist"]:
            row["probabilities"] = {c: round(p, 5) for c, p in row["probabilities"].items()}
            row["urgency"] = round(row["urgency"], 5)
        for row in answer["skipped"]:
            row["reason"] = "not an image" in row["reason"]
    assert api == cli and len(api["worklist"]) == 4


INJECTIONS = ["=HYPERLINK(x;y).jpeg", "+cmd|' C calc'!A0.jpeg", "@SUM(1+1).jpeg", "-2+3.jpeg"]


def test_formula_names_are_neutralised_in_the_service_and_page_csv(client, data):
    source = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0].read_bytes()
    files = [("files", (name, source)) for name in INJECTIONS]
    files.append(("files", ("=bad.png", b"not a png")))
    body = client.post("/api/triage", files=files).json()
    served = client.post("/api/triage?format=csv", files=files).text
    for text in (served, body["csv"]):  # the page downloads body["csv"]
        cells = {row["path"]: row for row in csv.DictReader(io.StringIO(text))}
        assert set(cells) == {"'" + n for n in INJECTIONS} | {"'=bad.png"}
        assert cells["'=bad.png"]["error"].startswith("not an image")


def test_oversized_files_in_a_batch_are_rows_not_a_failed_request(client, data):
    good = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    files = [("files", (good.name, good.read_bytes())), ("files", ("big.dcm", b"\0" * 4 * 2**20))]
    body = client.post("/api/triage", files=files).json()
    assert [r["filename"] for r in body["worklist"]] == [good.name]
    assert body["skipped"] == [{"filename": "big.dcm", "reason": "larger than 3 MB"}]


def test_pseudonymized_names_in_every_answer(model_file, data):
    private = TestClient(create_app(ServeConfig(model_file, pseudonymize_names=True)))
    good = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    files = [("files", ("Doe_John.jpeg", good.read_bytes())), ("files", ("Roe_Jane.png", b"x"))]
    texts = [
        private.post("/api/triage", files=files).text,
        private.post("/api/triage?format=csv", files=files).text,
        private.post("/api/predict", files={"file": ("Doe_John.jpeg", good.read_bytes())}).text,
        private.post("/api/predict", files={"file": ("Roe_Jane.png", b"x")}).text,
    ]
    assert not any("Doe" in t or "Roe" in t for t in texts)
    assert pseudonym("Doe_John.jpeg") in texts[0] and pseudonym("Roe_Jane.png") in texts[3]


def test_an_empty_token_refuses_to_start_unless_no_auth(model_file, monkeypatch):
    monkeypatch.setenv("CXR_API_TOKEN", " ")
    with pytest.raises(CxrError, match="set but empty"):
        create_app(ServeConfig(model_file))
    open_app = TestClient(create_app(ServeConfig(model_file, no_auth=True)))
    assert open_app.get("/api/model").status_code == 200
