"""The department, end to end, on SQLite and on PostgreSQL: storescu (the modality) sends the 42
DICOMs of dicom_cxr to Orthanc (the PACS), which forwards them to `cxr listen`; the worklist fills,
the 3 non-chest images land in "not scored"; Secondary Captures and SRs appear beside the originals
in Orthanc; in Chromium a reviewer corrects 3 cases with the keyboard; `cxr reviews export` holds
exactly those corrections, `cxr evaluate` reads them and `cxr train` learns from them (training
part only); no patient name anywhere. Once with the prediction API open on 127.0.0.1, once with
CXR_API_TOKEN set, as beyond localhost: reviewers keep their own tokens, a script the API token."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pydicom
import pytest
from playwright.sync_api import expect, sync_playwright

from cxr.models import load_model
from tests.radiology.conftest import MARKER, dump, free_port, wait_until

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage"]  # fmt: skip
SC, SR = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"


def _cxr(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cxr", *map(str, args)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert not check or result.returncode == 0, result.stdout + result.stderr
    return result


def _store(port: int, files: list[Path]) -> None:
    """dcmtk's storescu as the modality, JPEG Baseline proposed for the compressed files."""
    sent = subprocess.run(["storescu", "-xy", "-aec", "ORTHANC", "127.0.0.1", str(port), *files],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr


def _serve(model: Path, db: str, log: Path, api_token: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cxr", "serve", str(model), "--db", db, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
            env={**env, "CXR_API_TOKEN": api_token} if api_token else env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 120, "cxr serve")
    return process, url


@pytest.mark.parametrize("api_token", [None, "s3cret-script-token"], ids=["open", "tokens"])
def test_pacs_to_reviewed_dataset(
    db_url, api_token, data, model_file, listener_factory, orthanc_factory, tmp_path
):
    originals = sorted((data / "dicom_cxr").rglob("*.dcm"))
    assert len(originals) == 42
    listener = listener_factory(db_url)
    pacs = orthanc_factory(listener.port)
    listener.send_to = f"ORTHANC@127.0.0.1:{pacs.dicom_port}"
    listener.start()

    # Three NIH files reuse test1's SOP Instance UID with other headers (RIBCAGE, CT,
    # PatientPosition XX). Orthanc keeps one instance per UID (overwriting) and its Lua job
    # forwards what is stored when it runs, so those three go one at a time, each once the
    # previous one has reached cxr: the PACS would otherwise overwrite them before forwarding.
    reused = [p for p in originals if p.name in {"test4.dcm", "test5.dcm", "test6.dcm"}]
    batches = [[p for p in originals if p not in reused], *([p] for p in reused)]
    for n, batch in zip((39, 40, 41, 42), batches, strict=True):
        _store(pacs.dicom_port, batch)
        wait_until(lambda n=n: len(list(listener.spool.glob("*.dcm"))) == n, 180, f"{n} spooled")

    # The worklist: 39 to review, the three UID-reusing non-chest files kept but not scored.
    admin = _cxr("reviews", "add-reviewer", "admin", "--role", "admin", "--db", db_url)
    admin_token = admin.stdout.strip()
    serve, url = _serve(model_file, db_url, tmp_path / "serve.log", api_token)
    try:
        client = httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {admin_token}"})  # fmt: skip
        counts = wait_until(
            lambda: (c := client.get("/api/worklist").json()["counts"])
            and c["pending"] + c["not_scored"] == 42 and c,
            600, "42 entries in the worklist",
        )  # fmt: skip
        assert counts["pending"] == 39 and counts["not_scored"] == 3
        not_scored = client.get("/api/worklist", params={"queue": "not_scored"}).json()["rows"]
        reasons = " | ".join(r["reason"] for r in not_scored)
        for why in ("BodyPartExamined RIBCAGE", "Modality CT", "PatientPosition XX"):
            assert why in reasons

        # Results beside the originals: one SC and one SR per scored instance, same study.
        wait_until(lambda: len(pacs.find(Modality="SR")) == 39, 600, "39 SRs in Orthanc")
        wait_until(lambda: len(pacs.find(Modality="OT")) == 39, 60, "39 SCs in Orthanc")
        sc = pydicom.dcmread(io.BytesIO(pacs.file(pacs.find(Modality="OT")[0])))
        sr = pydicom.dcmread(io.BytesIO(pacs.file(pacs.find(Modality="SR")[0])))
        assert sc.SOPClassUID == SC and sc.BurnedInAnnotation == "YES"
        assert sc.pixel_array.shape[2] == 3
        assert sr.SOPClassUID == SR
        studies = {pacs.get(f"/instances/{i}/tags?simplify")["StudyInstanceUID"]
                   for i in pacs.find(Modality="CR")}  # fmt: skip
        assert sc.StudyInstanceUID in studies and sr.StudyInstanceUID in studies
        # A DICOMweb viewer (e.g. OHIF over Orthanc's plugin) finds both series in the study.
        qido = httpx.get(f"{pacs.url}/dicom-web/studies/{sr.StudyInstanceUID}/series", timeout=30)
        modalities = {s["00080060"]["Value"][0] for s in qido.raise_for_status().json()}
        assert {"OT", "SR"} <= modalities
        items = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
        assert items["Intended use"].TextValue == "RESEARCH USE ONLY - NOT A DIAGNOSIS"
        assert re.fullmatch(r"[0-9a-f]{16}", items["Model fingerprint (SHA-256)"].TextValue)
        assert items["Threshold rule"].TextValue == "fixed:0.5"
        probabilities = [float(items[f"Probability of {c}"].MeasuredValueSequence[0].NumericValue)
                         for c in ("NORMAL", "PNEUMONIA")]  # fmt: skip
        assert abs(sum(probabilities) - 1) < 1e-3
        decided = items["Predicted class"].ConceptCodeSequence[0].CodeMeaning
        assert decided == ("PNEUMONIA" if probabilities[1] >= 0.5 else "NORMAL")
        # Filed with the patient the PACS knows (issue 29): the source's name and ID, copied
        # from the spool's routing data, which the database never sees.
        source = pacs.find(Modality="CR", StudyInstanceUID=sc.StudyInstanceUID)[0]
        patient = pacs.get(f"/instances/{source}/tags?simplify")
        for result in (sc, sr):
            assert str(result.PatientName) == patient["PatientName"]
            assert result.PatientID == patient["PatientID"]

        # A reviewer corrects three cases with the keyboard only.
        token = _cxr("reviews", "add-reviewer", "Dr Ann", "--db", db_url).stdout.strip()
        corrected = _review_in_chromium(url, token, tmp_path, api_token)
        assert len(corrected) == 3
        counts = client.get("/api/worklist").json()["counts"]
        assert counts["disagreements"] == 3 and counts["reviewed"] == 3
        trail = client.get("/api/worklist/audit").json()
        mine = [e for e in trail if e["actor"] == "Dr Ann"]
        assert sum(e["action"] == "review" for e in mine) == 3
        assert sum(e["action"] == "view" for e in mine) >= 3
        denied = httpx.get(f"{url}/api/worklist/audit",
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert denied.status_code == 403
        assert httpx.get(f"{url}/api/worklist").status_code == 401
        _script_uses_the_prediction_api(url, api_token, originals[0], token)
        started = (tmp_path / "serve.log").read_text()
        assert "worklist needs a reviewer token" in started and "OFF" not in started, started
    finally:
        serve.terminate()
        serve.wait(timeout=30)

    # The reviews out as a dataset, and the model measured against the reviewer.
    out = tmp_path / "reviewed"
    _cxr("reviews", "export", "--db", db_url, "--out", out)
    with (out / "labels.csv").open() as fh:
        exported = list(csv.DictReader(fh))
    assert {(r["sop_instance_uid"], r["label"]) for r in exported} == set(corrected.values())
    assert all(r["label"] != r["model_predicted"] for r in exported)
    assert _cxr("reviews", "export", "--db", db_url, "--out", out, check=False).returncode == 2
    evaluation = _cxr("evaluate", model_file, out, "--out", tmp_path / "eval",
                      "--bootstrap", "20", "--workers", "0")  # fmt: skip
    with (tmp_path / "eval" / "predictions.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3, evaluation.stdout
    inspected = _cxr("data", "inspect", out)
    assert "3" in inspected.stdout
    # ... and learnt from: the corrections join a training run's training part only.
    trained = _cxr("train", "--config", Path(__file__).parents[2] / "configs" / "quick.yaml",
                   f"data.root={data / 'chest_xray'}", "data.limit=24", "data.workers=0",
                   "optim.epochs=1", "model.size=48", f"runs_dir={tmp_path / 'runs'}",
                   f"data.extra_train=[{out}]")  # fmt: skip
    card = load_model(tmp_path / "runs" / "quick" / "model.pt").card
    assert card.population["extra_images"] == {str(out): 3}
    assert str(out) not in (tmp_path / "runs" / "quick" / "tuning_predictions.csv").read_text()

    listener.stop()
    copies = b"".join(p.read_bytes() for p in (out / "images").iterdir())
    assert not any(p.is_symlink() for p in (out / "images").iterdir())  # copies, relocatable
    texts = [dump(db_url), listener.log.read_text(), (tmp_path / "serve.log").read_text(),
             evaluation.stdout, (out / "labels.csv").read_text(), trained.stdout + trained.stderr,
             copies.decode("latin-1"),
             (tmp_path / "runs" / "quick" / "model.pt").read_bytes().decode("latin-1")]  # fmt: skip
    assert not any(MARKER in t.upper() for t in texts)
    stored = b"".join(p.read_bytes() for p in listener.spool.rglob("*") if p.is_file())
    assert MARKER.encode() not in stored.upper()


def _script_uses_the_prediction_api(url: str, api_token: str | None, dicom: Path,
                                    reviewer: str) -> None:  # fmt: skip
    """What the start-up line states: the prediction API takes the API token or a reviewer's
    (and is open on 127.0.0.1 without CXR_API_TOKEN); the worklist takes reviewer tokens only."""

    def predict(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{url}/api/predict", files={"file": (dicom.name, dicom.read_bytes())},
                          headers=headers, timeout=120)  # fmt: skip

    scripted = predict(api_token)
    assert scripted.status_code == 200 and scripted.json()["predicted"], scripted.text
    assert predict(reviewer).status_code == 200
    if api_token:
        assert predict(None).status_code == 401
        refused = httpx.get(f"{url}/api/worklist", headers={"Authorization": f"Bearer {api_token}"})
        assert refused.status_code == 403 and "reviewer token" in refused.json()["detail"]


def _review_in_chromium(
    url: str, token: str, tmp_path: Path, api_token: str | None
) -> dict[int, tuple[str, str]]:
    """Sign in (after the API token is turned away, when there is one), then for three cases
    press the number key of the label the model did not pick."""
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    corrected: dict[int, tuple[str, str]] = {}
    expect.set_options(timeout=30_000)  # a loaded 2-core CI machine, not a slow page
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/worklist")
        if api_token:
            page.fill("#token", api_token)
            page.keyboard.press("Enter")
            expect(page.locator("#error")).to_contain_text("needs your own reviewer token")
            expect(page.locator("#login")).to_be_visible()
        page.fill("#token", token)
        page.keyboard.press("Enter")
        expect(page.locator("#who")).to_have_text("Dr Ann (reviewer)")
        expect(page.locator("#list tbody tr")).to_have_count(39, timeout=30_000)
        second = page.locator("#list tbody tr").nth(1).locator("td").first.inner_text()
        page.keyboard.press("ArrowDown")  # the second case: arrows move through the queue
        expect(page.locator("#study")).to_contain_text(f"entry {second} ")  # shown, not the first
        for _ in range(3):
            expect(page.locator("#labels button")).to_have_count(2)
            expect(page.locator("#cam")).to_have_attribute("src", re.compile("^data:image/png"))
            entry = int(page.locator("#study").inner_text().split()[1])
            sop = page.evaluate("current.sop_instance_uid")
            buttons = page.locator("#labels button")
            model = page.locator("#labels button.model").get_attribute("data-label")
            labels = [buttons.nth(i).get_attribute("data-label") for i in range(2)]
            other = next(i for i, name in enumerate(labels) if name != model)
            page.keyboard.press(str(other + 1))
            expect(page.locator("#status")).to_contain_text(f"entry {entry}: {labels[other]}")
            expect(page.locator("#status")).to_contain_text("corrects the model")
            expect(page.locator("#study")).not_to_contain_text(f"entry {entry} ")  # the next one
            corrected[entry] = (sop, labels[other])
        page.screenshot(path=str(tmp_path / "worklist.png"))
        page.keyboard.press("ArrowRight")  # to the Reviewed queue
        expect(page.locator("#list tbody tr")).to_have_count(3)
        browser.close()
    return corrected
